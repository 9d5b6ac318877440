"""Building typed config dataclasses from YAML dicts and `--set key=value` strings.

YAML is only the serialised form of the dataclasses: this module walks the
dataclass fields, rejects unknown keys (suggesting the closest real one), coerces
and checks types, and lets each dataclass' `__post_init__` check ranges. Every
failure is a ConfigError that names the dotted key and the fix.

A run directory's config.yaml may end with a `runtime:` section (the resolved
kernel backend, device and library versions, written when the run started);
loading drops it, so that file can be passed back to `hyperscale train` as is.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from typing import Any

import yaml

from hyperscale.errors import ConfigError

RUNTIME_KEY = "runtime"  # written into a run's config.yaml for people; never read back


def _is_dataclass_type(tp) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(value: Any, tp, key: str):
    """Check `value` against the annotation `tp`, converting where YAML is loose (int -> float)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as e:
                errors.append(e)
        raise errors[0] if errors else ConfigError(key, f"got {value!r}")
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(key, f"got {value!r}, expected one of {list(choices)}.",
                              f"set {key} to one of {', '.join(map(str, choices))}.")
        return value
    if origin in (list, tuple):
        if isinstance(value, (str, int, float)) and origin is list:
            value = [value]  # `--set adapter.target_modules=q_proj` means a one-item list
        if not isinstance(value, (list, tuple)):
            raise ConfigError(key, f"expected a list, got {type(value).__name__} {value!r}.")
        (item_tp, *_) = typing.get_args(tp) or (Any,)
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(key, f"expected a mapping, got {value!r}.")
        _, val_tp = typing.get_args(tp) or (Any, Any)
        return {k: _coerce(v, val_tp, f"{key}.{k}") for k, v in value.items()}
    if _is_dataclass_type(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(key, f"expected a mapping of {tp.__name__} fields, got {value!r}.")
        return from_dict(tp, value, prefix=key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(key, f"expected true/false, got {value!r}.")
    if tp is float:
        if isinstance(value, str):
            value = _number(value, key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(key, f"{value!r} is not a finite number.", f"write a finite number, e.g. {key}=0.001.")
            return float(value)
        raise ConfigError(key, f"expected a number, got {value!r}.", f"write a number, e.g. {key}=0.001 or 3e-4.")
    if tp is int:
        if isinstance(value, str):
            value = _number(value, key, integer=True)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(key, f"expected an integer, got {value!r}.", f"write a whole number, e.g. {key}=100.")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(key, f"expected a string, got {value!r}.", f"quote it in YAML: {key}: \"{value}\".")
    return value


def _number(text: str, key: str, integer: bool = False):
    """A number written the way people write them, which YAML 1.1 leaves as a string:
    `3e-4` (no dot), `1E5`, `1_000`, ` 0.5 `; non-finite values are refused by the caller."""
    try:
        number = float(text.strip().replace("_", ""))
    except ValueError:
        if integer:
            raise ConfigError(key, f"expected an integer, got {text!r}.", f"write a whole number, e.g. {key}=100.") \
                from None
        raise ConfigError(key, f"expected a number, got {text!r}.", f"write a number, e.g. {key}=0.001 or 3e-4.") \
            from None
    return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number


def from_dict(cls, data: dict, prefix: str = ""):
    """Instantiate dataclass `cls` from a (possibly nested) dict, rejecting unknown keys."""
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    names = [f.name for f in fields]
    kwargs = {}
    for key, value in (data or {}).items():
        dotted = f"{prefix}.{key}" if prefix else key
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"did you mean '{prefix + '.' if prefix else ''}{close[0]}'?" if close else (
                f"valid keys here: {', '.join(names)}.")
            raise ConfigError(dotted, "unknown key.", hint)
        kwargs[key] = _coerce(value, hints[key], dotted)
    required = [f.name for f in fields if f.name not in kwargs and f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING]
    if required:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(where + required[0], "is required and missing.", f"set {where}{required[0]}.")
    return cls(**kwargs)


def to_dict(obj) -> dict:
    return dataclasses.asdict(obj)


def config_changes(old: dict, new: dict, prefix: str = "") -> dict[str, tuple]:
    """{dotted key: (old value, new value)} of every leaf where two config dicts differ."""
    out = {}
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out.update(config_changes(a, b, f"{prefix}{k}."))
        elif a != b:
            out[f"{prefix}{k}"] = (a, b)
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """`train.max_steps=50` -> (["train", "max_steps"], 50); the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(text, "an override must look like dotted.key=value.",
                          f"write --set {text}=VALUE.")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(text, "empty key in override.")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(key, f"cannot parse value {raw!r}: {e}") from e
    return key.split("."), value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Merge `--set` overrides into a raw config dict (before typing, so errors name the key)."""
    data = yaml.safe_load(yaml.safe_dump(data)) or {}  # deep copy through plain types
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(".".join(path), f"'{part}' is a value, not a section.")
            node = child
        node[path[-1]] = value
    return data


def build_config(data: dict, overrides: list[str] | None = None):
    """A validated RunConfig from a raw dict and `--set` overrides (a `runtime:` section is dropped)."""
    from hyperscale.config.schema import RunConfig

    data = {k: v for k, v in (data or {}).items() if k != RUNTIME_KEY}
    return from_dict(RunConfig, apply_overrides(data, overrides or []))


def load_config(path: str, overrides: list[str] | None = None):
    """Read YAML, apply `--set` overrides, and validate everything before any work starts."""
    return build_config(load_yaml(path), overrides)


def load_yaml(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except FileNotFoundError as e:
        raise ConfigError("CONFIG", f"file not found: {path}.", "pass the path of a YAML file, e.g. configs/demo.yaml.") from e
    except yaml.YAMLError as e:
        raise ConfigError("CONFIG", f"{path} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError("CONFIG", f"{path} must hold a mapping of sections (data:, model:, ...).")
    return data
