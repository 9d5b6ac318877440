"""`load_data(cfg)`: rows from any source -> checked, subsampled, split by item.

    source      rows from                                  eval rows from
    files       data.train_files (rows.py)                 data.eval_files, else an item split
    convabuse   the authors' train split (builtin.py)      their test (or valid) split
    pipa        the JSON list (builtin.py)                 an item split
    synthetic   synthetic.generate                         an item split

Every path ends in the same long frame (rows.COLUMNS; synthetic adds "group") and the
same RowReport, which is checked against data.max_bad_fraction and, with a run_dir,
saved there before anything is raised (so the bad rows are on disk to inspect).

With data.validation_fraction > 0 a validation split is carved, by item, out of the
train rows that remain once the eval split is set aside: validation items are train
items the model does not train on, never eval items, and the eval split is untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from hyperscale.data import builtin, synthetic
from hyperscale.data.config import DataConfig
from hyperscale.data.report import RowReport
from hyperscale.data.rows import read_files
from hyperscale.data.splits import split_by_item, subsample_items
from hyperscale.data.vocab import ConditionVocab
from hyperscale.errors import DataError


@dataclass(kw_only=True)
class PerspectivistData:
    """Train, eval and validation rows (no item split off from train in two of them), the class
    names, and what loading found. `validation` is empty unless data.validation_fraction > 0."""

    train: pd.DataFrame
    eval: pd.DataFrame
    validation: pd.DataFrame
    labels: list[str]  # class names; index i of a model's logits is labels[i]
    report: RowReport

    def condition_fields(self) -> list[str]:
        """"annotator", plus "task" / "language" when the rows carry them."""
        return ["annotator"] + [f for f in ("task", "language") if self.train[f].notna().any()]

    def condition_vocab(self) -> ConditionVocab:
        """Ids seen in train only: eval-only annotators map to -1 (the documented fallback)."""
        return ConditionVocab.from_frame(self.train, self.condition_fields())


def load_data(cfg: DataConfig, run_dir: str | None = None, task: str = "classification") -> PerspectivistData:
    """Load, check, subsample and split the rows named by `cfg`; see the module docstring.

    `task` sft (model.task): the frames also carry `completion` (None: the label's verbalizer is the
    completion, data/sft.py), and rows without a label are legal (labels is then [] when none has one).
    """
    seed = cfg.split_seed
    if cfg.source == "files":
        train, report = read_files(cfg.train_files, cfg, cfg.labels, task)
        labels = list(cfg.labels) if cfg.labels else sorted(train["label"].dropna().unique().tolist())
        if cfg.eval_files:
            eval_, eval_report = read_files(cfg.eval_files, cfg, labels or None, task)
            report.merge(eval_report)
    elif cfg.source == "convabuse":
        train, eval_, labels, report = builtin.load_convabuse(cfg)
    elif cfg.source == "pipa_toxicity":
        train, labels, report = builtin.load_pipa(cfg)
    else:
        train, labels, report = synthetic.generate(cfg.synthetic), list(synthetic.SYNTHETIC_LABELS), RowReport()
        report.n_rows = len(train)
        report.per_file["synthetic"] = {"n_rows": len(train), "n_bad": 0, "reasons": {}}
    if task == "sft" and cfg.source != "files":  # built-in sets and the generator: verbalized labels
        train = train.assign(completion=None)
        if cfg.source == "convabuse":
            eval_ = eval_.assign(completion=None)

    try:
        report.check(cfg.max_bad_fraction)
    finally:
        if run_dir is not None:
            report.save(run_dir)
    if len(train) == 0:
        raise DataError("no usable train rows. Fix: check data.train_files and the column settings.")

    has_eval = cfg.source == "convabuse" or (cfg.source == "files" and cfg.eval_files)
    if has_eval:
        train = subsample_items(train, cfg.max_items, seed)
        eval_ = subsample_items(eval_, cfg.max_items, seed)
    else:
        train, eval_ = split_by_item(subsample_items(train, cfg.max_items, seed), cfg.eval_fraction, seed)
    validation = train.iloc[:0]
    if cfg.validation_fraction > 0:
        # A third hash stream (seed + 2; the subsample uses seed + 1): the validation items
        # are not biased towards the items an eval split of the same seed would take.
        train, validation = split_by_item(train, cfg.validation_fraction, seed + 2)
    if len(set(labels)) < 2 and task != "sft":  # sft trains on completions; its labels only score parses
        raise DataError(f"the train rows hold only the label(s) {labels}: nothing to classify. Fix: check "
                        f"data.label_column, or list the classes in data.labels.")

    report.notes.update(_notes(train, "train") | _notes(eval_, "eval"))
    if len(validation):
        report.notes.update(_notes(validation, "validation"))
    report.notes["labels"] = list(labels)
    report.notes["labels_declared"] = bool(cfg.labels) or cfg.source != "files"
    # Only possible with given eval files / published splits (an item split never overlaps);
    # reported, not fixed, because the split is the authors' or the user's.
    report.notes["eval_items_also_in_train"] = len(set(eval_["item_id"]) & set(train["item_id"]))
    if run_dir is not None:
        report.save(run_dir)  # again, now with the notes about the final frames
    return PerspectivistData(train=train, eval=eval_, validation=validation, labels=labels, report=report)


def _notes(frame: pd.DataFrame, name: str) -> dict:
    counts = frame["label"].value_counts()
    per_pair = frame.groupby(["item_id", "annotator"], sort=False)["label"].nunique()
    return {f"{name}_rows": len(frame), f"{name}_items": int(frame["item_id"].nunique()),
            f"{name}_annotators": int(frame["annotator"].nunique()),
            f"{name}_repeated_item_annotator_pairs": int(frame.duplicated(["item_id", "annotator"]).sum()),
            f"{name}_contradicting_item_annotator_pairs": int((per_pair > 1).sum()),
            f"{name}_label_counts": {str(k): int(v) for k, v in counts.items()}}
