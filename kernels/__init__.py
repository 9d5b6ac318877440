"""Triton kernels, installed as `hyperscale.kernels` (never as top-level `kernels`).

Nothing is imported here: triton is heavy and absent on some hosts (the Ray
driver, CPU-only heads); import `hyperscale.kernels.lowrank` where needed.
"""

# From the repository root (a Ray job's working dir, `python -m`, PYTHONPATH=.),
# this folder is also reachable as top-level `kernels`, the name of an unrelated
# PyPI package that transformers and bitsandbytes probe for. Imported under that
# name it must read as "not installed": transformers treats a module with no
# version and no __file__ as a stray namespace folder (not an install), and
# bitsandbytes' `from kernels import get_kernel` then fails with the ImportError it
# expects. Raising here instead crashes transformers' probe, which only catches
# missing metadata (tests/ops/test_reference.py checks both libraries).
if __name__ != "hyperscale.kernels":
    __file__ = None
    __all__: list[str] = []
