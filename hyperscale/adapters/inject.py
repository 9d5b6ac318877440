"""Adapter injection: wrap target modules so each adds its row's low-rank update.

A wrapped layer computes `y = base(x) + scale * B[idx] (A[idx] x)` for every row
through the one batched op (hyperscale.ops), with the backend the model resolved
when it was built. Base-layer differences (plain Linear, bitsandbytes 4-bit /
8-bit, GPT-2 Conv1D) reduce to the layer's (d_in, d_out), answered by the
dispatcher chain in base_layers.py.

How A, B and the row index reach the layers: a transformer's forward cannot
carry them, so the model publishes them on one shared `AdapterState` before it
runs the body, and every wrapped layer reads that state (`LowRankAdapted.forward`,
the only reader). The state is replaced only by the next forward, so activation
checkpointing's recomputation, which runs the layer again during backward, sees
the very same generated tensors, and the same row grouping: everything a layer
derives from the state alone (the (N,) row index for its input's lead shape, the
backend's row grouping of that index) is computed by the first layer that asks
and cached on the state until the next publish, so one forward plans it once,
not once per layer (each plan is an argsort, a bincount and a host sync).
The state also holds the compute dtype, so A and B are cast once at publish
(before, every layer cast its pair on every call, recomputation included).
tests/adapters/test_inject.py holds a wrapped
layer equal to base + the hand-computed update, and the gradients equal with and
without checkpointing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from hyperscale.adapters.base_layers import layer_dims
from hyperscale.errors import ConfigError
from hyperscale.ops import op_for, planner_for


@dataclass(frozen=True)
class ModuleSpec:
    """One adapted module: where it sits and its shape."""

    name: str  # full module name in the body
    kind: str  # the target pattern it matched, e.g. "q_proj"
    layer: int  # transformer block index
    d_in: int
    d_out: int


@dataclass
class AdapterState:
    """What the model publishes for one forward; read by every wrapped layer."""

    weights: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)  # name -> (A (U,r,d_in), B (U,d_out,r))
    seq_index: torch.Tensor | None = None  # (B,) condition index of each sequence
    enabled: bool = True
    plan: Callable | None = None  # the backend's planner (ops.planner_for): (idx, U) -> row grouping
    compute_dtype: torch.dtype | None = None  # A and B are published in it (None: as generated)
    _row_cache: dict = field(default_factory=dict)

    def publish(self, weights, seq_index):
        if self.compute_dtype is not None:
            weights = {name: (A.to(self.compute_dtype), B.to(self.compute_dtype)) for name, (A, B) in weights.items()}
        self.weights, self.seq_index, self._row_cache = weights, seq_index, {}

    def row_index(self, lead_shape: torch.Size) -> torch.Tensor:
        """(N,) condition of each flattened row, for inputs shaped (B, T, d) or (B, d)."""
        key = tuple(lead_shape)
        idx = self._row_cache.get(key)
        if idx is None:
            per_seq = self.seq_index
            rows_per_seq = int(torch.Size(lead_shape).numel()) // per_seq.shape[0]
            idx = per_seq.repeat_interleave(rows_per_seq).contiguous()
            self._row_cache[key] = idx
        return idx

    def segments(self, lead_shape: torch.Size, n_adapters: int):
        """The backend's row grouping of row_index(lead_shape) into n_adapters, planned once per forward."""
        if self.plan is None:
            return None
        key = (tuple(lead_shape), n_adapters)
        seg = self._row_cache.get(key)
        if seg is None:
            seg = self._row_cache[key] = self.plan(self.row_index(lead_shape), n_adapters)
        return seg


class LowRankAdapted(nn.Module):
    """A frozen base layer plus the per-row generated low-rank update.

    `backend` is a resolved backend name (`torch` or `triton`, ops.resolve_backend).
    """

    def __init__(self, base: nn.Module, spec: ModuleSpec, state: AdapterState, scale: float,
                 backend: str, deterministic: bool = False):
        super().__init__()
        self.base, self.spec, self.scale = base, spec, scale
        self.backend, self.deterministic = backend, deterministic
        self._op = op_for(backend)
        self._state = [state]  # a list, so the state is not registered as a submodule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)  # (..., d_out)
        # The shared state the model published for this forward (module docstring).
        state = self._state[0]
        weights = state.weights.get(self.spec.name) if state.enabled else None
        if weights is None:
            return y
        A, B = weights  # (U, r, d_in), (U, d_out, r), published in the compute dtype (no-op casts then)
        lead = x.shape[:-1]
        out = self._op(
            y.reshape(-1, self.spec.d_out),
            x.reshape(-1, self.spec.d_in).to(y.dtype),
            A.to(y.dtype), B.to(y.dtype),
            state.row_index(lead), self.scale,  # (N,) condition of each flattened row
            deterministic=self.deterministic,
            segments=state.segments(lead, A.shape[0]),  # shared by every layer of this forward
        )
        return out.view(y.shape)


def _matches(name: str, pattern: str) -> bool:
    if pattern.startswith("re:"):
        return re.fullmatch(pattern[3:], name) is not None
    return name == pattern or name.endswith("." + pattern)


def _layer_number(name: str, fallback: int) -> int:
    numbers = [int(p) for p in name.split(".") if p.isdigit()]
    return numbers[0] if numbers else fallback


def _n_blocks(body: nn.Module) -> int:
    conf = getattr(body, "config", None)
    return getattr(conf, "num_hidden_layers", None) or getattr(conf, "n_layer", 0)


def inject_adapters(body: nn.Module, target_modules: list[str], scale: float, backend: str,
                    deterministic: bool = False, layers: list[int] | None = None) -> tuple[AdapterState, list[ModuleSpec]]:
    """Wrap every module of `body` whose name matches a target (in `layers`, if given).

    `backend`: a resolved backend name. Returns the shared state and one spec per wrapped module.
    """
    keep = None
    if layers is not None:
        n = _n_blocks(body)
        bad = [i for i in layers if n and not -n <= i < n]
        if bad:
            raise ConfigError("adapter.layers", f"{bad} is outside this model's {n} blocks.",
                              f"use indices in 0..{n - 1}, or negative ones counting from the top.")
        keep = {i + n if i < 0 else i for i in layers}
    state = AdapterState(plan=planner_for(backend))
    specs: list[ModuleSpec] = []
    found = []
    for name, module in list(body.named_modules()):
        pattern = next((p for p in target_modules if _matches(name, p)), None)
        if pattern is None or isinstance(module, LowRankAdapted):
            continue
        dims = layer_dims(module)
        if dims is None:
            raise ConfigError("adapter.target_modules", f"'{name}' ({type(module).__name__}) is not a layer type "
                              "hyperscale can adapt (Linear, bitsandbytes 4-bit / 8-bit, Conv1D).",
                              "target its projections instead, or add its type to adapters/base_layers.py.")
        kind = pattern.removeprefix("re:")
        spec = ModuleSpec(name=name, kind=kind, layer=_layer_number(name, len(found)), d_in=dims[0], d_out=dims[1])
        if keep is None or spec.layer in keep:
            found.append((name, module, spec))
    if not found:
        sample = [n for n, m in body.named_modules() if layer_dims(m) is not None][:6]
        where = f" in blocks {sorted(keep)}" if keep is not None else ""
        raise ConfigError("adapter.target_modules", f"{target_modules} matched no module of this model{where}.",
                          f"use suffixes of its projection names, e.g. {sample}, and check adapter.layers.")
    for name, module, spec in found:
        parent_name, _, child = name.rpartition(".")
        parent = body.get_submodule(parent_name) if parent_name else body
        setattr(parent, child, LowRankAdapted(module, spec, state, scale, backend, deterministic))
        specs.append(spec)
    return state, specs
