"""The non-finite policy in one process: a diverged run stops with an error naming the step and the last finite
loss (no NaN in eval.json or metrics.jsonl), and a single non-finite step is skipped, counted, and survived.
The two-worker version (the NaN on one rank only) is in tests/cluster/test_distributed.py."""

import json

import pytest
import torch

from hyperscale.rundir import RunDir, load_trainable
from hyperscale.training import faults
from hyperscale.training.loop import run_training
from hyperscale.training.nonfinite import TrainingDiverged

from tests.helpers import tiny_config

SHORT = ["data.synthetic.n_items=60", "data.synthetic.n_annotators=6", "train.micro_batch_size=16",
         "train.log_every=1", "eval.min_items_per_annotator=1", "logging.wandb.mode=disabled",
         "train.warmup_steps=0"]


def _lines(run_dir):
    text = RunDir(run_dir).metrics.read_text()
    assert "NaN" not in text and "Infinity" not in text  # strict JSON, every line
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.parametrize("zero_stage", [2, 0])
def test_a_diverging_run_stops_with_the_step_and_the_last_finite_loss(tmp_path, zero_stage):
    cfg = tiny_config(*SHORT, "train.max_steps=30", "train.lr=1e6", "train.max_nonfinite_steps=3",
                      f"distributed.zero_stage={zero_stage}")
    with pytest.raises(TrainingDiverged) as e:
        run_training(cfg, tmp_path)
    msg = str(e.value)
    assert "3 in a row" in msg and "the last finite loss was" in msg and "Fix: lower train.lr (now 1e+06)" in msg
    assert not RunDir(tmp_path).eval.exists()
    train = [r for r in _lines(tmp_path) if r["split"] == "train"]
    assert train[0]["loss"] is not None and train[0]["skipped_steps"] == 0
    assert [r["loss"] for r in train[-2:]] == [None, None] and all(r["skipped_steps"] == 1 for r in train[-2:])


@pytest.mark.parametrize("zero_stage", [2, 0])
def test_one_nonfinite_step_is_skipped_and_the_run_goes_on(tmp_path, monkeypatch, zero_stage):
    monkeypatch.setenv(faults.ENV, "nan:rank=0:step=3")
    cfg = tiny_config(*SHORT, "train.max_steps=5", "train.save_every=1", "train.keep_checkpoints=0",
                      f"distributed.zero_stage={zero_stage}")
    metrics = run_training(cfg, tmp_path)
    train = {r["step"]: r for r in _lines(tmp_path) if r["split"] == "train"}
    assert [train[s]["skipped_steps"] for s in range(1, 6)] == [0, 0, 1, 0, 0]
    assert train[3]["loss"] is None and all(train[s]["loss"] is not None for s in (1, 2, 4, 5))
    assert metrics["macro_f1"] is not None and metrics["macro_f1"] == metrics["macro_f1"]  # a number, not NaN

    def weights(step):
        model = _fresh_model(cfg)
        load_trainable(model, tmp_path / f"checkpoint_{step:06d}" / "trainable.safetensors")
        return dict(model.named_parameters())

    w2, w3, w4 = weights(2), weights(3), weights(4)
    assert all(torch.equal(w2[n], w3[n]) for n in w2)  # the skipped step changed nothing
    assert train[2]["lr"] == train[3]["lr"] != train[4]["lr"]  # and the LR schedule waited
    assert any(not torch.equal(w3[n], w4[n]) for n in w3)  # the next one did


def _fresh_model(cfg):
    from hyperscale.model import build_model

    return build_model(cfg, {"annotator": 6}, ["0", "1"])
