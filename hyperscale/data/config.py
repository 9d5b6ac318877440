"""Configs of the data layer: where rows come from and how they are checked and split.

Both dataclasses are keyword-only and check themselves in ``__post_init__``, so a bad
value fails when the YAML is read, before any worker starts. Every error names the
dotted key (``data.eval_fraction``) and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from hyperscale.errors import ConfigError

SOURCES = ("files", "convabuse", "pipa_toxicity", "synthetic")
# ConvAbuse label schemes; see builtin.CONVABUSE_SCHEMES for the class names of each.
CONVABUSE_SCHEMES = ("binary", "five")
BUILTIN_EVAL_SPLITS = ("valid", "test")

# The generator has 8 trigger words; each group needs its own (see synthetic.py).
MAX_SYNTHETIC_GROUPS = 8
# 10..100,000 annotators is the range the product promises and the tests measure;
# the cap only guards against a typo (1e7 annotators would be ~1 GB of id strings).
MAX_SYNTHETIC_ANNOTATORS = 1_000_000


@dataclass(kw_only=True)
class SyntheticConfig:
    """A generated set whose annotator groups label by different rules (synthetic.py)."""

    n_annotators: int = 40
    """Number of annotators. At least 2 (and at least n_groups, so no group is empty): tests
    use small sets; the range the product targets is 10..100,000."""
    n_groups: int = 4
    """Annotator groups; group g labels "1" iff trigger word g is in the item. 1 group means
    everyone agrees (a control run where perspective-aware cannot beat perspective-blind)."""
    n_items: int = 2000
    """Distinct items (word sequences)."""
    annotators_per_item: int = 5
    """Annotators who label each item; every annotator gets at least one item, so n_items *
    annotators_per_item must be >= n_annotators."""
    label_noise: float = 0.0
    """Probability that an annotator's label is flipped, independently per (item, annotator)."""
    n_tasks: int = 0
    """If > 0, each item gets a task id "t0".."t{n-1}" and the rule shifts with it (Hyper-X style)."""
    n_languages: int = 0
    """If > 0, each item gets a language id "l0".."l{n-1}" and the rule shifts with it."""
    seed: int = 0
    """Seed of the generator; the same config always gives the same rows."""

    def __post_init__(self) -> None:
        p = "data.synthetic."
        if not 1 <= self.n_groups <= MAX_SYNTHETIC_GROUPS:
            raise ConfigError(p + "n_groups", f"is {self.n_groups}, must be in 1..{MAX_SYNTHETIC_GROUPS}.",
                              "use 1..8 groups (one trigger word each).")
        lo = max(2, self.n_groups)
        if not lo <= self.n_annotators <= MAX_SYNTHETIC_ANNOTATORS:
            raise ConfigError(p + "n_annotators",
                              f"is {self.n_annotators}, must be in {lo}..{MAX_SYNTHETIC_ANNOTATORS} "
                              f"(at least 2 and at least n_groups={self.n_groups}).",
                              "set a value in that range.")
        if self.n_items < 2:
            raise ConfigError(p + "n_items", f"is {self.n_items}, must be >= 2 (one train, one eval item).",
                              "set n_items >= 2.")
        if not 1 <= self.annotators_per_item <= self.n_annotators:
            raise ConfigError(p + "annotators_per_item",
                              f"is {self.annotators_per_item}, must be in 1..n_annotators={self.n_annotators}.",
                              "lower annotators_per_item or add annotators.")
        if self.n_items * self.annotators_per_item < self.n_annotators:
            raise ConfigError(p + "n_items",
                              f"n_items * annotators_per_item = {self.n_items * self.annotators_per_item} "
                              f"< n_annotators = {self.n_annotators}: some annotators would label nothing.",
                              f"raise n_items to at least {-(-self.n_annotators // self.annotators_per_item)}.")
        if not 0.0 <= self.label_noise < 0.5:
            raise ConfigError(p + "label_noise", f"is {self.label_noise}, must be in [0, 0.5).",
                              "0.5 would make labels pure noise; use a smaller value.")
        for key in ("n_tasks", "n_languages"):
            if getattr(self, key) < 0:
                raise ConfigError(p + key, f"is {getattr(self, key)}, must be >= 0.", "use 0 to leave it out.")


@dataclass(kw_only=True)
class DataConfig:
    """Where the perspectivist rows come from and how they are validated and split."""

    source: str = "synthetic"
    """`files` (train_files / eval_files), a built-in set (`convabuse`, `pipa_toxicity`), or
    `synthetic` (generated from `synthetic`). The default is synthetic so that a bare
    DataConfig() is valid without any file on disk."""
    train_files: list[str] = field(default_factory=list)
    """CSV / JSONL / Parquet files with one row per (item, annotator) label; the format is
    taken from the extension (.csv, .json/.jsonl, .parquet)."""
    eval_files: list[str] = field(default_factory=list)
    """Held-out files; when empty, eval items are split off the train rows by item."""
    text_column: str = "text"
    """Column holding the text in the files."""
    annotator_column: str = "annotator"
    """Column holding the annotator id."""
    label_column: str = "label"
    """Column holding the label."""
    item_column: str | None = None
    """Column naming the item; unset: the item is identified by its text."""
    completion_column: str = "completion"
    """model.task=sft: column holding each row's completion (the text after the prompt). A frame
    without it takes ' ' + the label's verbalizer as the completion (model.verbalizers, default
    the label names); its label column is then required. An empty completion is a malformed row
    (`empty_completion`)."""
    messages_column: str | None = None
    """model.task=sft: column holding chat messages, a list of {role, content} (or its JSON). The
    last message must be the assistant's and is the completion; the rest is rendered with the
    tokenizer's chat template (add_generation_prompt). Unset: plain prompt_template rows."""
    overflow: Literal["truncate", "refuse"] = "truncate"
    """model.task=sft: a prompt + completion longer than model.max_length. `truncate` keeps the
    completion and cuts the prompt from the left (a completion longer than max_length alone is
    cut at the right, after one prompt token); truncated rows are counted in data_report.json and
    eval.json. `refuse` stops with a DataError naming how many rows are too long."""
    task_column: str | None = None
    """Optional task-id column (a Hyper-X condition)."""
    language_column: str | None = None
    """Optional language-id column (a Hyper-X condition)."""
    labels: list[str] | None = None
    """Class names, in logit order. Unset: the sorted label values seen in the train rows.
    When given, any other value is a malformed row (`unknown_label`)."""
    eval_fraction: float = 0.2
    """Fraction of items held out for eval when there are no eval files (split by item)."""
    validation_fraction: float = 0.0
    """Fraction of the TRAIN items held out as a validation split (by item, after the eval
    split is set aside, so no validation item is an eval item), for choosing settings
    (`hyperscale tune`) without looking at the eval split; `eval.split: validation` scores
    it. 0 keeps every train item for training (no validation split)."""
    split_seed: int = 0
    """Seed of the item split and of the max_items subsample."""
    max_bad_fraction: float = 0.01
    """Largest fraction of malformed rows tolerated per file before loading fails."""
    max_items: int | None = None
    """Keep only this many items (a deterministic subsample, for quick runs); unset keeps all."""
    label_scheme: str | None = None
    """ConvAbuse only: `binary` (not_abusive / abusive; is_abuse.-1..-3 are abusive,
    is_abuse.0 "ambiguous" joins not_abusive) or `five` (the authors' 5-way scale). Unset
    means binary. Other sources reject it."""
    eval_split: str = "test"
    """Built-in sets with published splits (ConvAbuse): which one is the eval split."""
    root: str | None = None
    """Folder holding the built-in sets. Unset: $HYPERSCALE_DATA_ROOT, else the first
    `shared/data` found walking up from the current directory or the package, else the
    copy in the repository's datasets/ folder."""
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    """The generator of `source: synthetic`."""

    def __post_init__(self) -> None:
        if isinstance(self.synthetic, dict):  # tolerated so tests and notebooks can pass dicts
            self.synthetic = SyntheticConfig(**self.synthetic)
        if self.source not in SOURCES:
            raise ConfigError("data.source", f"is {self.source!r}, must be one of {list(SOURCES)}.",
                              "pick one of those.")
        if self.source == "files" and not self.train_files:
            raise ConfigError("data.train_files", "is empty but data.source is 'files'.",
                              "list your CSV/JSONL/Parquet files, or set data.source to a built-in set.")
        if self.source != "files" and (self.train_files or self.eval_files):
            key = "data.train_files" if self.train_files else "data.eval_files"
            raise ConfigError(key, f"is set but data.source is {self.source!r}, which brings its own rows.",
                              "set data.source: files, or remove the file list.")
        for key in ("text_column", "annotator_column", "label_column"):
            if not getattr(self, key):
                raise ConfigError(f"data.{key}", "is empty.", "name the column in your files.")
        named = [c for c in (self.text_column, self.annotator_column, self.label_column, self.item_column,
                             self.task_column, self.language_column, self.messages_column) if c]
        if len(set(named)) != len(named):
            raise ConfigError("data.text_column", f"two roles share one column: {named}.",
                              "give text, annotator, label, item, task and language distinct columns.")
        if self.labels is not None:
            if len(self.labels) < 2 or len(set(self.labels)) != len(self.labels):
                raise ConfigError("data.labels", f"is {self.labels}: needs >= 2 distinct class names.",
                                  "list every class once, or leave it unset to infer from the data.")
            if self.source in ("convabuse", "pipa_toxicity", "synthetic"):
                raise ConfigError("data.labels", f"is set but data.source={self.source!r} fixes its classes.",
                                  "remove data.labels (use data.label_scheme for ConvAbuse).")
        if not self.completion_column:
            raise ConfigError("data.completion_column", "is empty.", "name the completion column (default 'completion').")
        if self.overflow not in ("truncate", "refuse"):
            raise ConfigError("data.overflow", f"is {self.overflow!r}, must be 'truncate' or 'refuse'.")
        if not 0.0 < self.eval_fraction < 1.0:
            raise ConfigError("data.eval_fraction", f"is {self.eval_fraction}, must be in (0, 1).",
                              "use e.g. 0.2, or give data.eval_files.")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ConfigError("data.validation_fraction", f"is {self.validation_fraction}, must be in [0, 1).",
                              "use e.g. 0.2 to hold out a fifth of the train items, or 0 for none.")
        if not 0.0 <= self.max_bad_fraction < 1.0:
            raise ConfigError("data.max_bad_fraction", f"is {self.max_bad_fraction}, must be in [0, 1).",
                              "use 0 to reject any malformed row, e.g. 0.01 to tolerate 1%.")
        if self.max_items is not None and self.max_items < 2:
            raise ConfigError("data.max_items", f"is {self.max_items}, must be >= 2 or unset.",
                              "unset it to keep every item.")
        if self.label_scheme is not None:
            if self.source != "convabuse":
                raise ConfigError("data.label_scheme", f"only applies to data.source=convabuse, "
                                  f"not {self.source!r}.", "remove it.")
            if self.label_scheme not in CONVABUSE_SCHEMES:
                raise ConfigError("data.label_scheme", f"is {self.label_scheme!r}, must be one of "
                                  f"{list(CONVABUSE_SCHEMES)}.", "use 'binary' or 'five'.")
        if self.eval_split not in BUILTIN_EVAL_SPLITS:
            raise ConfigError("data.eval_split", f"is {self.eval_split!r}, must be one of "
                              f"{list(BUILTIN_EVAL_SPLITS)}.", "use 'test' (reporting) or 'valid' (tuning).")
