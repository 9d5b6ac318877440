"""Exact resume in one process (world size 1): interrupted saves, incomplete and incompatible checkpoints.

The Ray, two-worker versions of these are in test_distributed.py.
"""

import shutil

import pytest

from hyperscale.training import checkpoint, faults
from hyperscale.config import load_config
from hyperscale.errors import CheckpointError
from hyperscale.training.loop import run_training

from tests.helpers import records

pytestmark = pytest.mark.slow

BASE = ["train.max_steps=6", "train.warmup_steps=0", "train.log_every=1", "train.save_every=2",
        "train.progress_bar=false", "data.synthetic.n_items=120", "logging.wandb.mode=disabled"]


def cfg(*extra):
    return load_config("configs/synthetic.yaml", BASE + list(extra))


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("full")
    metrics = run_training(cfg(), run_dir)
    return run_dir, metrics


def test_interrupted_save_resumes_from_the_previous_complete_checkpoint(full_run, tmp_path, monkeypatch):
    full_dir, full_metrics = full_run
    run_dir = tmp_path / "run"
    monkeypatch.setenv(faults.ENV, "save:rank=0:step=4")
    with pytest.raises(faults.FaultInjected):
        run_training(cfg(), run_dir)
    # The step-4 save died after the engine state was written: it must not look complete.
    assert (run_dir / ".checkpoint_000004.partial" / "engine").is_dir()
    assert not (run_dir / "checkpoint_000004").exists()
    assert checkpoint.latest_complete(run_dir).name == "checkpoint_000002"

    metrics = run_training(cfg(), run_dir)
    resumed_at = records(run_dir, "resume")
    assert list(resumed_at) == [2] and resumed_at[2]["checkpoint"] == "checkpoint_000002"
    assert resumed_at[2]["runtime"]["kernel_backend"] == "torch"
    full, resumed = records(full_dir), records(run_dir)
    assert sorted(resumed) == list(range(1, 7))
    for step in range(1, 7):
        assert abs(resumed[step]["loss"] - full[step]["loss"]) <= 1e-6, step
        assert resumed[step]["lr"] == pytest.approx(full[step]["lr"], abs=1e-12)
        assert resumed[step]["epoch"] == full[step]["epoch"]
    for key in ("macro_f1", "micro_f1", "accuracy"):
        assert metrics[key] == full_metrics[key]


def test_truncated_file_makes_a_checkpoint_incomplete(full_run, tmp_path):
    full_dir, _ = full_run
    for name in ("checkpoint_000004", "checkpoint_000006"):
        shutil.copytree(full_dir / name, tmp_path / name)
    assert checkpoint.missing_files(tmp_path / "checkpoint_000006") == []
    # ZeRO 1-2 write *optim_states.pt; stage 0 (one worker's default) keeps the optimizer in *model_states.pt
    optim = sorted((tmp_path / "checkpoint_000006" / "engine").rglob("*_states.pt"))[-1]
    optim.write_bytes(optim.read_bytes()[:100])  # what a crash mid-copy leaves
    assert checkpoint.missing_files(tmp_path / "checkpoint_000006") == [str(optim.relative_to(tmp_path / "checkpoint_000006"))]
    assert checkpoint.latest_complete(tmp_path).name == "checkpoint_000004"
    (tmp_path / "checkpoint_000004" / checkpoint.MANIFEST).unlink()
    assert checkpoint.latest_complete(tmp_path) is None


def test_incompatible_checkpoint_names_the_mismatch_and_the_fix(full_run, tmp_path):
    full_dir, _ = full_run
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    shutil.copytree(full_dir / "checkpoint_000002", run_dir / "checkpoint_000002")
    with pytest.raises(CheckpointError) as e:
        run_training(cfg("adapter.rank=8"), run_dir)
    msg = str(e.value)
    assert "adapter.rank: 4 in the checkpoint, 8 now" in msg and "Fix:" in msg and "config.yaml" in msg

    with pytest.raises(CheckpointError) as e:
        run_training(cfg("data.synthetic.n_annotators=30"), run_dir)
    assert "is not a prefix" in str(e.value) and "Fix:" in str(e.value)

    with pytest.raises(CheckpointError, match="train.annotator_lr_scale: 10.0 in the checkpoint, 1.0 now"):
        run_training(cfg("train.annotator_lr_scale=1"), run_dir)

    # A checkpoint written before the package layout of 0.2 (format 2) is refused with the fix.
    state = run_dir / "checkpoint_000002" / checkpoint.STATE
    state.write_text(state.read_text().replace(f'"format": {checkpoint.FORMAT}', '"format": 2'))
    with pytest.raises(CheckpointError, match=f"has format 2; this version of hyperscale reads format "
                                              f"{checkpoint.FORMAT}.*Fix:.*new run directory"):
        run_training(cfg(), run_dir)
