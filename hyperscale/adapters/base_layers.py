"""The frozen layer types an adapter can wrap: one ordered dispatcher chain (peft's `dispatch_*` style).

Every base-layer difference the rest of the code cares about reduces to two
questions, answered here and nowhere else:
  - `dims(module)`: its (d_in, d_out), for the A and B shapes of its adapter;
  - `dense(module)`: a plain nn.Linear holding the same weights, when the layer is
    a dense projection that quantization may replace (None for a layer that is
    already quantized, or that must keep its own class).
The chain is tried in order; the first type whose `matches` says yes wins, so a
more specific type (bitsandbytes' Linear4bit subclasses nn.Linear) comes before a
general one. To support a new base-layer type, add one `BaseLayerType` to
`BASE_LAYER_TYPES` (README, "How to add a backbone or base-layer type").
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class BaseLayerType:
    name: str
    matches: Callable[[nn.Module], bool]
    dims: Callable[[nn.Module], tuple[int, int]]  # (d_in, d_out)
    dense: Callable[[nn.Module], nn.Linear | None]  # same weights as a plain nn.Linear, or None


def _bnb_class(name: str):
    """bitsandbytes' layer class `name`, if bitsandbytes is loaded (a bnb layer cannot exist otherwise).
    Looked up without importing: the Ray driver and CPU-only heads never import bitsandbytes."""
    bnb = sys.modules.get("bitsandbytes")
    return getattr(bnb.nn, name) if bnb is not None else None


def _is_bnb(module: nn.Module, name: str) -> bool:
    cls = _bnb_class(name)
    return cls is not None and isinstance(module, cls)


def _linear_dims(module: nn.Linear) -> tuple[int, int]:
    return module.in_features, module.out_features


def _conv1d_dense(module: nn.Module) -> nn.Linear:
    """transformers' GPT-2 Conv1D stores weight as (d_in, d_out): the transpose of nn.Linear's."""
    d_in, d_out = module.weight.shape
    lin = nn.Linear(d_in, d_out, bias=module.bias is not None, device=module.weight.device,
                    dtype=module.weight.dtype)
    lin.weight.data = module.weight.data.t().contiguous()
    if module.bias is not None:
        lin.bias.data = module.bias.data
    return lin


BASE_LAYER_TYPES: tuple[BaseLayerType, ...] = (
    BaseLayerType("bnb_4bit", lambda m: _is_bnb(m, "Linear4bit"), _linear_dims, lambda m: None),
    BaseLayerType("bnb_8bit", lambda m: _is_bnb(m, "Linear8bitLt"), _linear_dims, lambda m: None),
    BaseLayerType("conv1d", lambda m: type(m).__name__ == "Conv1D" and hasattr(m, "nf"),
                  lambda m: tuple(m.weight.shape), _conv1d_dense),
    # Only an exact nn.Linear is replaced by quantization: subclasses (e.g. attention's
    # NonDynamicallyQuantizableLinear) may be read as their own class by their parent.
    BaseLayerType("linear", lambda m: isinstance(m, nn.Linear), _linear_dims,
                  lambda m: m if type(m) is nn.Linear else None),
)


def dispatch(module: nn.Module) -> BaseLayerType | None:
    """The first base-layer type that matches `module`, or None (not a projection we can adapt)."""
    return next((t for t in BASE_LAYER_TYPES if t.matches(module)), None)


def layer_dims(module: nn.Module) -> tuple[int, int] | None:
    kind = dispatch(module)
    return kind.dims(module) if kind is not None else None


def dense_linear(module: nn.Module) -> nn.Linear | None:
    kind = dispatch(module)
    return kind.dense(module) if kind is not None else None
