"""The run-directory contract: atomic writes, strict JSON, metrics.jsonl damage vs a torn last line,
trainable weights (including a finished run written before the 0.2 layout)."""

import json
import math

import pytest
import torch

from hyperscale.errors import CheckpointError, RunDirError
from hyperscale.rundir import (RunDir, append_metrics, load_trainable, read_metrics, save_trainable, to_json,
                               trainable_state, truncate_metrics, write_atomic, write_json)

from tests.helpers import make_run, tiny_config


def test_write_atomic_replaces_whole_and_leaves_nothing_behind_on_failure(tmp_path):
    path = tmp_path / "eval.json"
    write_atomic(path, "old")

    with pytest.raises(TypeError):
        write_atomic(path, object())  # fails mid-write
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["eval.json"]
    write_atomic(path, b"new", fsync=True)
    assert path.read_bytes() == b"new"


def test_json_files_never_hold_nan(tmp_path):
    write_json(tmp_path / "x.json", {"macro_f1": float("nan"), "nested": [1.0, float("inf")], "n": 3})
    text = (tmp_path / "x.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"macro_f1": None, "nested": [1.0, None], "n": 3}
    assert to_json({"loss": math.nan}) == '{"loss": null}'


def test_metrics_reader_skips_only_a_torn_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    for step in (1, 2, 3):
        append_metrics(path, {"step": step, "split": "train", "loss": 0.5})
    with open(path, "a") as f:
        f.write('{"step": 4, "split": "tr')  # a crash mid-append
    assert [r["step"] for r in read_metrics(path)] == [1, 2, 3]
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], "garbage", *lines[1:3]]) + "\n")
    with pytest.raises(RunDirError, match=r"metrics.jsonl:2 is not a JSON record.*Fix"):
        read_metrics(path)


def test_truncate_keeps_the_log_of_one_run(tmp_path):
    path = tmp_path / "metrics.jsonl"
    for r in ({"step": 0, "split": "start"}, {"step": 2, "split": "train"}, {"step": 2, "split": "resume"},
              {"step": 4, "split": "train"}):
        append_metrics(path, r)
    with open(path, "a") as f:
        f.write('{"step": 5')
    truncate_metrics(path, 2)
    assert [(r["step"], r["split"]) for r in read_metrics(path)] == [(0, "start"), (2, "train")]


def test_trainable_weights_round_trip_strictly(tmp_path):
    model = make_run(tmp_path)
    run = RunDir(tmp_path)
    fresh = make_run(tmp_path / "other")
    load_trainable(fresh, run.trainable)
    for (n, p), (_, q) in zip(model.named_parameters(), fresh.named_parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=n)
    from hyperscale.model import build_model

    bigger = build_model(tiny_config(), {"annotator": 7}, ["0", "1"])
    with pytest.raises(CheckpointError, match="shape mismatch.*lora.hypernet.tables.annotator.weight"):
        load_trainable(bigger, run.trainable)


def test_weights_of_a_run_written_before_the_layout_change_still_load(tmp_path):
    """0.1 named the LoRA module `source`; a finished run of that version still serves."""
    model = make_run(tmp_path)
    old = {("source." + k[len("lora."):] if k.startswith("lora.") else k): v for k, v in trainable_state(model).items()}
    assert any(k.startswith("source.") for k in old)
    save_trainable(old, tmp_path / "old.safetensors")
    fresh = make_run(tmp_path / "other")
    load_trainable(fresh, tmp_path / "old.safetensors")
    torch.testing.assert_close(fresh.lora.hypernet.tables["annotator"].weight,
                               model.lora.hypernet.tables["annotator"].weight, rtol=0, atol=0)
