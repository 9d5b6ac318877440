"""The data layer: perspectivist rows (text, annotator, label, [task, language]) from
files, built-in sets or a generator, checked, split by item, and mapped to indices."""

from hyperscale.data.config import DataConfig, SyntheticConfig
from hyperscale.data.load import PerspectivistData, load_data
from hyperscale.data.report import BadRow, RowReport
from hyperscale.data.vocab import ConditionVocab, LabelVocab

__all__ = ["BadRow", "ConditionVocab", "DataConfig", "LabelVocab", "PerspectivistData", "RowReport",
           "SyntheticConfig", "load_data"]
