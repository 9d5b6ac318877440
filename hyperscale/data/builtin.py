"""Loaders for the built-in annotator-level sets, into the long format of rows.py.

ConvAbuse (Cercas Curry, Abercrombie, Rieser, EMNLP 2021; CC BY 4.0)
    The authors' train / valid / test files, one row per example with every annotator's
    one-hot `AnnotatorK_is_abuse.{1,0,-1,-2,-3}` answers. Intra-annotator repeats are
    kept as published: a cell such as "1, 0" is one annotator's two answers to the same
    example and becomes two rows (357 in all; the split files then hold exactly the
    12,768 annotations of ConvAbuseEMNLPfull.csv, with the same label counts).
    Item = conv_id + the four turn columns; the text is the four turns, one per line:
    "agent: <prev_agent>\\nuser: <prev_user>\\nagent: <agent>\\nuser: <user>".
    Two pairs of train examples have identical conv_id and turns (example_id 1201/1204
    and 3965/3967) and are therefore one item each, so the splits hold 4,183 items
    (the full CSV, whose turn texts differ slightly for those, groups into 4,185); the
    annotators who labelled both examples of a pair add 5 (item, annotator) repeats to
    the 357.
    The published splits are kept as they are although they overlap by two items: one
    test item (3 annotations) is also a train item and another is also a valid item;
    load_data reports this as notes["eval_items_also_in_train"].
    label_scheme "binary": not_abusive (is_abuse.1 and the ambiguous is_abuse.0) vs
    abusive (is_abuse.-1..-3). "five": the authors' scale, mildest first.

pipa_toxicity (Pachinger et al., NLPerspectives 2025; CC BY 4.0)
    A JSON list of Jigsaw comments; Annotators_not_toxic / Annotators_toxic list who
    chose which label (insult and hate are subsets of toxic and are not separate
    classes here). Item = the Jigsaw `Index`. No published disaggregated split, so
    load_data splits it by item with data.split_seed / data.eval_fraction.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from hyperscale.data.config import DataConfig
from hyperscale.data.report import BadRow, RowReport
from hyperscale.data.rows import COLUMNS, text_item_id
from hyperscale.errors import ConfigError, DataError

CONVABUSE_SCHEMES = {
    "binary": {"1": "not_abusive", "0": "not_abusive", "-1": "abusive", "-2": "abusive", "-3": "abusive"},
    "five": {"1": "not_abusive", "0": "ambiguous", "-1": "mildly_abusive", "-2": "strongly_abusive",
             "-3": "very_strongly_abusive"},
}
CONVABUSE_LABELS = {"binary": ["not_abusive", "abusive"],
                    "five": ["not_abusive", "ambiguous", "mildly_abusive", "strongly_abusive",
                             "very_strongly_abusive"]}
PIPA_LABELS = ["not_toxic", "toxic"]

_SCALE = ("1", "0", "-1", "-2", "-3")
_TURNS = ("prev_agent", "prev_user", "agent", "user")
_CONVABUSE_FILES = {"train": "ConvAbuseEMNLPtrain.csv", "valid": "ConvAbuseEMNLPvalid.csv",
                    "test": "ConvAbuseEMNLPtest.csv"}
_PIPA_FILE = "all_comments_disaggregated.json"


def data_root(cfg: DataConfig) -> Path:
    """data.root, else $HYPERSCALE_DATA_ROOT, else a `shared/data` above the cwd or the
    package, else the copy vendored in the repository's `datasets/` folder."""
    if cfg.root:
        root = Path(cfg.root)
        if not root.is_dir():
            raise ConfigError("data.root", f"{cfg.root!r} is not a directory.",
                              "point it at the folder holding convabuse/ and pipa_toxicity/.")
        return root
    env = os.environ.get("HYPERSCALE_DATA_ROOT")
    if env:
        if not Path(env).is_dir():
            raise ConfigError("data.root", f"$HYPERSCALE_DATA_ROOT={env!r} is not a directory.",
                              "fix the variable or set data.root.")
        return Path(env)
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for d in (start, *start.parents):
            if (d / "shared" / "data").is_dir():
                return d / "shared" / "data"
    vendored = Path(__file__).resolve().parents[2] / "datasets"
    if (vendored / "pipa_toxicity").is_dir():
        return vendored
    raise ConfigError("data.root", "no folder of built-in data sets was found (no shared/data above "
                      f"{Path.cwd()} or the package, no {vendored}).", "set data.root or $HYPERSCALE_DATA_ROOT.")


def _need(path: Path) -> Path:
    if not path.is_file():
        raise DataError(f"built-in data file {str(path)!r} is missing. Fix: set data.root (or "
                        f"$HYPERSCALE_DATA_ROOT) to the folder holding the built-in sets.")
    return path


def convabuse_split(path: Path, scheme: str) -> tuple[pd.DataFrame, RowReport]:
    """One authors' split file -> long rows (one per annotator answer, repeats kept)."""
    src = pd.read_csv(_need(path), dtype=str, keep_default_na=False)
    mapping = CONVABUSE_SCHEMES[scheme]
    texts = ["\n".join(f"{role.split('_')[-1]}: {turn}" for role, turn in zip(_TURNS, turns))
             for turns in zip(*(src[c] for c in _TURNS))]
    keys = ["\x1f".join(k) for k in zip(src["conv_id"], *(src[c] for c in _TURNS))]
    items = text_item_id(keys)
    annotators = sorted({c.split("_is_abuse")[0] for c in src.columns if "_is_abuse." in c},
                        key=lambda a: int(a.removeprefix("Annotator")))
    out, bad = {c: [] for c in COLUMNS}, []
    for ann in annotators:
        cols = [src[f"{ann}_is_abuse.{k}"].tolist() for k in _SCALE]
        for i, cells in enumerate(zip(*cols)):
            if not any(cells):
                continue  # this annotator did not label this example
            answers = [[v.strip() for v in c.split(",")] for c in cells]
            n_rep = {len(a) for a in answers}
            for r in range(max(n_rep)):
                one_hot = [a[r] if r < len(a) else "" for a in answers]
                if len(n_rep) != 1 or one_hot.count("1") != 1 or one_hot.count("0") != 4:
                    bad.append(BadRow(file=str(path), row=i + 1, reason="invalid_one_hot",
                                      raw={"annotator": ann, "is_abuse": list(cells)}))
                    continue
                for c, v in zip(COLUMNS, (items[i], texts[i], ann, mapping[_SCALE[one_hot.index("1")]],
                                          None, None, str(path), i + 1)):
                    out[c].append(v)
    report = RowReport()
    report.add_file(str(path), len(out["label"]) + len(bad), bad)
    return _frame(out), report


def load_convabuse(cfg: DataConfig) -> tuple[pd.DataFrame, pd.DataFrame, list[str], RowReport]:
    """(train, eval, labels, report); eval is the authors' test (or valid) split."""
    folder = data_root(cfg) / "convabuse"
    scheme = cfg.label_scheme or "binary"
    train, report = convabuse_split(folder / _CONVABUSE_FILES["train"], scheme)
    eval_, eval_report = convabuse_split(folder / _CONVABUSE_FILES[cfg.eval_split], scheme)
    report.merge(eval_report)
    report.notes["repeated_item_annotator_pairs"] = int(
        train.duplicated(["item_id", "annotator"]).sum() + eval_.duplicated(["item_id", "annotator"]).sum())
    return train, eval_, list(CONVABUSE_LABELS[scheme]), report


def load_pipa(cfg: DataConfig) -> tuple[pd.DataFrame, list[str], RowReport]:
    """(all rows, labels, report); the caller splits by item."""
    path = _need(data_root(cfg) / "pipa_toxicity" / _PIPA_FILE)
    with open(path, encoding="utf-8") as f:
        comments = json.load(f)
    out, bad = {c: [] for c in COLUMNS}, []
    for i, c in enumerate(comments):
        text = c.get("Comment")
        if not isinstance(text, str) or not text.strip():
            bad.append(BadRow(file=str(path), row=i + 1, reason="missing_text", raw={"Index": c.get("Index")}))
            continue
        for label, key in (("not_toxic", "Annotators_not_toxic"), ("toxic", "Annotators_toxic")):
            for ann in c.get(key) or []:
                for col, v in zip(COLUMNS, (str(c["Index"]), text, str(ann), label, None, None, str(path), i + 1)):
                    out[col].append(v)
    report = RowReport()
    # n_rows counts annotations (the unit everything else counts), plus unusable comments.
    report.add_file(str(path), len(out["label"]) + len(bad), bad)
    return _frame(out), list(PIPA_LABELS), report


def _frame(out: dict[str, list]) -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(out[c], dtype=object) for c in COLUMNS})
    frame["source_row"] = frame["source_row"].astype("int64")
    return frame
