"""`hyperscale config [KEY]`: every config key with its type, default and documentation.

The documentation is the string literal under each dataclass field (the schema's
own source), read with `ast`, so the text a user sees is the text a reader of the
code sees; there is no second copy to keep in step.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import textwrap
import typing

from hyperscale.errors import ConfigError


def field_docs(cls) -> dict[str, str]:
    """{field name: docstring} of a dataclass whose fields are each followed by a string literal."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
            docs[node.target.id] = inspect.cleandoc(nxt.value.value)
    return docs


def _type_name(tp) -> str:
    text = str(tp).replace("typing.", "")
    return getattr(tp, "__name__", text) if not typing.get_args(tp) else text


def describe(cls=None, prefix: str = "") -> list[dict]:
    """One record per leaf key: {key, type, default, doc}, in schema order."""
    from hyperscale.config.schema import RunConfig

    cls = cls or RunConfig
    hints, docs, out = typing.get_type_hints(cls), field_docs(cls), []
    for f in dataclasses.fields(cls):
        key, tp = f"{prefix}{f.name}", hints[f.name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            out += describe(tp, key + ".")
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        out.append({"key": key, "type": _type_name(tp), "default": default, "doc": docs.get(f.name, "")})
    return out


def render(key: str | None = None) -> str:
    """Text for `hyperscale config [KEY]`: every key under KEY (a section or a leaf)."""
    rows = describe()
    if key:
        chosen = [r for r in rows if r["key"] == key or r["key"].startswith(key + ".")]
        if not chosen:
            close = difflib.get_close_matches(key, [r["key"] for r in rows], n=1)
            raise ConfigError(key, "unknown key.", f"did you mean '{close[0]}'?" if close else
                              "run `hyperscale config` to list every key.")
        rows = chosen
    lines = []
    for r in rows:
        lines.append(f"{r['key']}  ({r['type']}, default {r['default']!r})")
        lines += ["    " + line for line in textwrap.wrap(" ".join(r["doc"].split()), 92)] or ["    (undocumented)"]
        if r["key"] == "adapter.kind":
            from hyperscale.adapters.kinds import registry

            lines += [f"      {name:<20} {kind.summary}" for name, kind in registry().items()]
    return "\n".join(lines)
