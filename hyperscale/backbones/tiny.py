"""Random-initialised tiny models (`tiny-random-{llama,bert,gpt2}`) with the real SmolLM2 tokenizer, for tests."""

from __future__ import annotations

import torch

from hyperscale.backbones.names import TINY_FAMILIES as FAMILIES
from hyperscale.backbones.names import TINY_PREFIX as PREFIX
from hyperscale.errors import ConfigError



def model(cfg, vocab_size: int) -> torch.nn.Module:
    """`cfg`: the ModelConfig (its `tiny` section sizes the model)."""
    from transformers import AutoModel, AutoModelForCausalLM, BertConfig, GPT2Config, LlamaConfig

    t = cfg.tiny
    family = cfg.name_or_path.removeprefix(PREFIX)
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
                          f"use one of {', '.join(PREFIX + f for f in FAMILIES)}.")
    torch.manual_seed(t.seed)
    if cfg.task in ("causal_lm", "sft"):
        if family == "bert":
            raise ConfigError("model.task", f"{cfg.task} needs a decoder; tiny-random-bert is an encoder.",
                              "use tiny-random-llama or tiny-random-gpt2.")
        return AutoModelForCausalLM.from_config(conf)
    return AutoModel.from_config(conf)
