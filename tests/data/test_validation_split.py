"""data.validation_fraction: a validation split carved from the train items, never touching eval."""

import pytest

from hyperscale.config import load_config
from hyperscale.data.config import DataConfig
from hyperscale.data.load import load_data
from hyperscale.errors import ConfigError


def _items(frame):
    return set(frame["item_id"])


@pytest.mark.parametrize("seed", [0, 3])
def test_validation_comes_from_train_items_only(seed):
    synth = {"n_items": 300, "n_annotators": 12, "annotators_per_item": 3}
    plain = load_data(DataConfig(source="synthetic", split_seed=seed, synthetic=synth))
    data = load_data(DataConfig(source="synthetic", split_seed=seed, validation_fraction=0.25, synthetic=synth))
    train, val, ev = _items(data.train), _items(data.validation), _items(data.eval)
    assert not train & val and not train & ev and not val & ev  # disjoint by item
    assert ev == _items(plain.eval) and data.eval.equals(plain.eval)  # the eval split is untouched
    assert train | val == _items(plain.train)  # validation items are former train items
    assert len(val) == round(0.25 * len(_items(plain.train)))
    # all of a validation item's annotator rows moved together
    assert len(data.train) + len(data.validation) == len(plain.train)
    assert data.report.notes["validation_items"] == len(val)


def test_no_validation_by_default_and_validation_scoring_needs_one():
    assert len(load_data(DataConfig(source="synthetic", synthetic={"n_items": 50})).validation) == 0
    with pytest.raises(ConfigError, match="eval.split"):
        load_config("configs/synthetic.yaml", ["eval.split=validation"])
    with pytest.raises(ConfigError, match="data.validation_fraction"):
        DataConfig(validation_fraction=1.0)
    cfg = load_config("configs/synthetic.yaml", ["eval.split=validation", "data.validation_fraction=0.2"])
    assert cfg.eval.split == "validation"
