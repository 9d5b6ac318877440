"""Which implementation of the batched low-rank op runs, decided once and recorded.

`resolve_backend` turns `adapter.kernel` into a concrete backend when the model is
built (not per layer per forward): `auto` is Triton on CUDA when triton imports,
the torch reference elsewhere. `runtime_info` is what a run records about that
choice (backend, device, library versions) in config.yaml, eval.json and the
first metrics.jsonl record, so a GPU run shows that it used Triton.
"""

from __future__ import annotations

import importlib.metadata
import platform

import torch

from hyperscale.ops.reference import plan_segments, torch_lowrank_update

BACKENDS = ("auto", "torch", "triton")
LIBRARIES = ("torch", "triton", "transformers", "bitsandbytes", "deepspeed", "ray", "peft")


def resolve_backend(requested: str, device: torch.device | str) -> str:
    """`auto` -> `triton` on CUDA when triton imports, else `torch`; other names pass through."""
    if requested not in BACKENDS:
        raise ValueError(f"unknown low-rank backend {requested!r}; choose one of {BACKENDS}")
    if requested != "auto":
        return requested
    if torch.device(device).type != "cuda":
        return "torch"
    try:
        import triton  # noqa: F401  (heavy, platform-specific: imported only here)
    except ImportError:
        return "torch"
    return "triton"


def op_for(backend: str):
    """The op function of a resolved backend: f(base_out, x, A, B, idx, scale, deterministic, segments=None).

    `segments`: what `planner_for(backend)(idx, U)` returned for this idx, so that all
    layers of one forward share one row grouping; None: the op plans it itself.
    """
    if backend == "triton":
        from hyperscale.kernels.lowrank import triton_lowrank_update

        return triton_lowrank_update
    if backend == "torch":
        return _torch_op
    raise ValueError(f"{backend!r} is not a resolved backend (torch or triton)")


def planner_for(backend: str):
    """f(idx (N,), n_adapters) -> the backend's row grouping (torch: Segments; triton: its tile table).

    It depends only on idx and U, which every wrapped layer of one forward shares, so
    the model plans it once per forward (adapters/inject.py::AdapterState) instead of
    once per layer (an argsort, a bincount and, for torch, a host sync each).
    """
    if backend == "triton":
        from hyperscale.kernels.lowrank import build_tiles

        return build_tiles
    if backend == "torch":
        return plan_segments
    raise ValueError(f"{backend!r} is not a resolved backend (torch or triton)")


def _torch_op(base_out, x, A, B, idx, scale: float, deterministic: bool = False, segments=None):
    return torch_lowrank_update(base_out, x, A, B, idx, scale, segments)  # always deterministic


def lowrank_update(base_out, x, A, B, idx, scale: float, backend: str = "auto", deterministic: bool = False,
                   segments=None):
    """out = base_out + scale * B[idx] (A[idx] x), row by row (contract: ops/reference.py).

    For direct use; a built model resolves its backend once and calls `op_for(...)`.
    `deterministic` asks the Triton backward for a fixed reduction order (the torch
    reference is always deterministic). `segments` (optional): `planner_for(backend)(idx,
    A.shape[0])`, to reuse one row grouping across calls that share idx.
    """
    return op_for(resolve_backend(backend, x.device))(base_out, x, A, B, idx, scale, deterministic=deterministic,
                                                      segments=segments)


def library_versions() -> dict[str, str | None]:
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def runtime_info(backend: str, device: torch.device | str, compute_dtype: str) -> dict:
    """What a run records about where and how it computed."""
    from hyperscale.backbones.dtype import cpu_description

    device = torch.device(device)
    info = {"kernel_backend": backend, "device": str(device), "compute_dtype": compute_dtype,
            "cpu": cpu_description(), "torch_threads": torch.get_num_threads(), "versions": library_versions()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
