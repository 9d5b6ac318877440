"""The batched per-row low-rank op: its contract and torch reference (reference.py), and the
choice of backend, made once per model and recorded (backend.py). The Triton kernels live in
the top-level kernels/ folder, installed as hyperscale.kernels."""

from hyperscale.ops.backend import (
    BACKENDS,
    lowrank_update,
    op_for,
    planner_for,
    resolve_backend,
    runtime_info,
)
from hyperscale.ops.reference import (
    LowRankUpdate,
    Segments,
    lowrank_update_rowloop,
    plan_segments,
    torch_lowrank_update,
)

__all__ = ["BACKENDS", "LowRankUpdate", "Segments", "lowrank_update", "lowrank_update_rowloop", "op_for",
           "plan_segments", "planner_for", "resolve_backend", "runtime_info", "torch_lowrank_update"]
