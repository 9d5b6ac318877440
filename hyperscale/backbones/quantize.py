"""Quantization after loading, the same for every backbone source (peft's dispatch_bnb_4bit style).

Each dense projection of the body (what adapters/base_layers.py calls `dense`:
nn.Linear, GPT-2's Conv1D) becomes a bitsandbytes `Linear4bit` (NF4) or
`Linear8bitLt` holding the same weights.
"""

from __future__ import annotations

import torch
from torch import nn

from hyperscale.adapters.base_layers import dense_linear


def _quantize_4bit(lin: nn.Linear, dtype: torch.dtype) -> nn.Module:
    import bitsandbytes as bnb

    q = bnb.nn.Linear4bit(lin.in_features, lin.out_features, bias=lin.bias is not None,
                          compute_dtype=dtype, quant_type="nf4", quant_storage=torch.uint8)
    q.weight = bnb.nn.Params4bit(lin.weight.data.to(dtype).contiguous(), requires_grad=False, quant_type="nf4")
    if lin.bias is not None:
        q.bias = nn.Parameter(lin.bias.data.to(dtype), requires_grad=False)
    return q.to(lin.weight.device)  # moving a Params4bit is what quantizes it


def _quantize_8bit(lin: nn.Linear, dtype: torch.dtype) -> nn.Module:
    import bitsandbytes as bnb

    q = bnb.nn.Linear8bitLt(lin.in_features, lin.out_features, bias=lin.bias is not None,
                            has_fp16_weights=False, threshold=0.0)
    q.weight = bnb.nn.Int8Params(lin.weight.data.to(dtype).contiguous(), requires_grad=False, has_fp16_weights=False)
    if lin.bias is not None:
        q.bias = nn.Parameter(lin.bias.data.to(dtype), requires_grad=False)
    return q.to(lin.weight.device)


QUANTIZERS = {"4bit": _quantize_4bit, "8bit": _quantize_8bit}


def quantize_body(body: nn.Module, mode: str, dtype: torch.dtype) -> int:
    """Replace every dense projection of `body` by its bitsandbytes counterpart; returns how many."""
    quantize = QUANTIZERS[mode]
    targets = [(name, dense) for name, mod in body.named_modules() if (dense := dense_linear(mod)) is not None]
    for name, dense in targets:
        parent_name, _, child = name.rpartition(".")
        parent = body.get_submodule(parent_name) if parent_name else body
        setattr(parent, child, quantize(dense, dtype))
    return len(targets)
