"""Loading a backbone: source -> dtype -> quantization -> frozen (see the package docstring)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hyperscale.adapters.base_layers import dense_linear
from hyperscale.backbones import embedded, tiny
from hyperscale.backbones.dtype import DtypeChoice, resolve_compute_dtype
from hyperscale.backbones.names import BUILTIN_NAMES, EMBEDDED, check_name_or_path

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
LM_TASKS = ("causal_lm", "sft")  # tasks that keep the frozen LM head
ENCODER_TYPES = {"bert", "roberta", "xlm-roberta", "distilbert", "deberta", "deberta-v2", "electra", "modernbert"}


@dataclass
class Backbone:
    body: nn.Module  # transformer without head: (B, T) ids -> (B, T, H) hidden states
    lm_head: nn.Module | None  # causal_lm and sft only: (B, H) -> (B, vocab), frozen
    tokenizer: object
    hidden_size: int
    is_encoder: bool
    n_params: int
    dtype_choice: DtypeChoice  # the compute dtype and why


def load_tokenizer(cfg):
    """`cfg`: the ModelConfig. Right padding: pooling reads the last real token at mask.sum() - 1."""
    from transformers import AutoTokenizer

    if cfg.name_or_path in BUILTIN_NAMES:
        tok = embedded.tokenizer()
    elif cfg.gguf_file:
        tok = AutoTokenizer.from_pretrained(cfg.name_or_path, gguf_file=cfg.gguf_file)
    else:
        tok = AutoTokenizer.from_pretrained(cfg.name_or_path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    return tok


def _local_model(cfg) -> nn.Module:
    from transformers import AutoModel, AutoModelForCausalLM

    auto = AutoModelForCausalLM if cfg.task in LM_TASKS else AutoModel
    kwargs = {"gguf_file": cfg.gguf_file} if cfg.gguf_file else {}
    return auto.from_pretrained(cfg.name_or_path, dtype=torch.float32, **kwargs)


def load_backbone(cfg, *, device="cpu", rows: int = 512, choose_dtype=None) -> Backbone:
    """Load, quantize and freeze the backbone described by `cfg` (the ModelConfig).

    `compute_dtype: auto` is resolved here, once the float32 weights are loaded and
    their shapes known (backbones/dtype.py; `rows`: rows per forward, for the probe).
    `choose_dtype(shape) -> DtypeChoice` replaces the local resolution (a multi-worker
    run decides on rank 0 and tells the others). The choice is `backbone.dtype_choice`.
    """
    check_name_or_path(cfg.name_or_path, cfg.gguf_file)
    tokenizer = load_tokenizer(cfg)
    if cfg.name_or_path.startswith(tiny.PREFIX):
        model = tiny.model(cfg, len(tokenizer))
    elif cfg.name_or_path == EMBEDDED:
        model = embedded.model(cfg.task)
    else:
        model = _local_model(cfg)
    if cfg.num_layers is not None:
        keep_first_blocks(model, cfg.num_layers)
    lm_head = None
    if cfg.task in LM_TASKS:
        lm_head = model.get_output_embeddings()
        body = model.base_model
    else:
        body = model
    model_type = getattr(body.config, "model_type", "")
    shape = probe_shape(body)
    choice = choose_dtype(shape) if choose_dtype else resolve_compute_dtype(cfg, device, shape, rows)
    dtype = DTYPES[choice.dtype]
    body.to(dtype)
    if lm_head is not None:
        lm_head.to(dtype)
    if cfg.quantization != "none":
        from hyperscale.backbones.quantize import quantize_body

        quantize_body(body, cfg.quantization, dtype)
    for p in list(body.parameters()) + (list(lm_head.parameters()) if lm_head is not None else []):
        p.requires_grad_(False)
    n_params = sum(_numel(p) for p in body.parameters())
    hidden = getattr(body.config, "hidden_size", None) or getattr(body.config, "n_embd")
    return Backbone(body=body, lm_head=lm_head, tokenizer=tokenizer, hidden_size=hidden,
                    is_encoder=model_type in ENCODER_TYPES, n_params=n_params, dtype_choice=choice)


def keep_first_blocks(model: nn.Module, n: int) -> None:
    """Cut `model` to its first `n` transformer blocks, in place (model.num_layers)."""
    from hyperscale.errors import ConfigError

    base = getattr(model, "base_model", model)
    for owner, attr in ((base, "layers"), (base, "h"), (getattr(base, "encoder", None), "layer")):
        blocks = getattr(owner, attr, None) if owner is not None else None
        if isinstance(blocks, nn.ModuleList):
            break
    else:
        raise ConfigError("model.num_layers", f"cannot find the block list of {type(base).__name__}.",
                          "unset model.num_layers for this backbone.")
    if n > len(blocks):
        raise ConfigError("model.num_layers", f"is {n}, but the backbone has {len(blocks)} blocks.",
                          f"use at most {len(blocks)}, or unset it.")
    setattr(owner, attr, nn.ModuleList(list(blocks)[:n]))
    for conf in {id(c): c for c in (model.config, base.config)}.values():
        for key in ("num_hidden_layers", "n_layer"):
            if hasattr(conf, key):
                setattr(conf, key, n)
        if getattr(conf, "layer_types", None):
            conf.layer_types = conf.layer_types[:n]


def probe_shape(body: nn.Module) -> tuple[int, int]:
    """(d_in, d_out) of the body's largest dense projection: what dominates a step's compute."""
    shapes = [lin.weight.shape[::-1] for m in body.modules() if (lin := dense_linear(m)) is not None]
    if not shapes:
        hidden = getattr(body.config, "hidden_size", None) or getattr(body.config, "n_embd")
        return hidden, hidden
    d_in, d_out = max(shapes, key=lambda s: s[0] * s[1])
    return int(d_in), int(d_out)


def _numel(p: torch.Tensor) -> int:
    """Logical parameter count (bitsandbytes 4-bit packs two weights per byte)."""
    shape = getattr(getattr(p, "quant_state", None), "shape", None)
    return int(torch.Size(shape).numel()) if shape is not None else p.numel()
