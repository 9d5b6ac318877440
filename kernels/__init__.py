"""Triton kernels, installed as `hyperscale.kernels` (never as top-level `kernels`).

Nothing is imported here: triton is heavy and absent on some hosts (the Ray
driver, CPU-only heads); import `hyperscale.kernels.lowrank` where needed.
"""

# From the repository root (a Ray job's working dir, `python -m`), this folder is
# also reachable as a top-level `kernels`, the name of an unrelated PyPI package
# that bitsandbytes tries to import. Refuse that name, so bitsandbytes sees the
# package as absent (its documented fallback) instead of importing this folder.
if __name__ != "hyperscale.kernels":
    raise ImportError(f"{__file__} is hyperscale.kernels, not the PyPI package 'kernels'")
