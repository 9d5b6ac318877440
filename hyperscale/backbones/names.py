"""Backbone names, checked when the config is read (no torch, no transformers here)."""

from __future__ import annotations

import difflib
from pathlib import Path

from hyperscale.errors import ConfigError

EMBEDDED = "smollm2-135m"
TINY_PREFIX = "tiny-random-"
TINY_FAMILIES = ("llama", "bert", "gpt2")
BUILTIN_NAMES = (EMBEDDED, *(TINY_PREFIX + f for f in TINY_FAMILIES))


def check_name_or_path(name: str, gguf_file: str | None = None) -> None:
    """A built-in name or an existing local folder, checked before anything loads."""
    if name in BUILTIN_NAMES:
        return
    if name.startswith(TINY_PREFIX):
        raise ConfigError("model.name_or_path", f"unknown tiny model {name!r}.",
                          f"use one of {', '.join(n for n in BUILTIN_NAMES if n.startswith(TINY_PREFIX))}.")
    path = Path(name)
    if not path.is_dir():
        close = difflib.get_close_matches(name, BUILTIN_NAMES, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ConfigError("model.name_or_path", f"{name!r} is neither a built-in name nor a local model folder "
                          f"(models are never downloaded at run time).",
                          f"{hint}Built-in: {', '.join(BUILTIN_NAMES)}; or the path of a local Hugging Face "
                          f"model folder (with config.json).")
    if gguf_file is not None:
        if not (path / gguf_file).is_file():
            raise ConfigError("model.gguf_file", f"{gguf_file!r} is not a file in {name!r}.",
                              "name a .gguf file inside model.name_or_path, or unset model.gguf_file.")
    elif not (path / "config.json").is_file():
        raise ConfigError("model.name_or_path", f"{name!r} has no config.json: not a Hugging Face model folder.",
                          "point it at the folder save_pretrained() wrote, or set model.gguf_file for a GGUF model.")
