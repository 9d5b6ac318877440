"""Ray Train + DeepSpeed with 2 CPU workers: exact resume, a killed worker, a broken save, ZeRO-3.

Each run is the real path `launch/train.py` takes (hyperscale.cluster.launch):
Ray places 2 workers, each runs hyperscale.training.loop.run_training with gloo. Faults
come from HYPERSCALE_FAULT (see hyperscale/training/faults.py), forwarded to the workers.
"""

import json

import pytest

from hyperscale.training import checkpoint, faults
from hyperscale.config import load_config
from hyperscale.cluster import launch

from tests.helpers import records

pytestmark = pytest.mark.slow

BASE = ["distributed.num_workers=2", "train.max_steps=6", "train.warmup_steps=0", "train.log_every=1",
        "train.save_every=2", "train.progress_bar=false", "data.synthetic.n_items=120", "logging.wandb.mode=disabled"]
STEPS = range(1, 7)


def cfg(*extra):
    return load_config("configs/synthetic.yaml", BASE + list(extra))


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def full_run(ray_local, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("full") / "run"
    return run_dir, launch(cfg(), run_dir)


def assert_same_run(run_dir, metrics, full_run, tol=1e-6):
    full_dir, full_metrics = full_run
    full, got = records(full_dir), records(run_dir)
    assert sorted(got) == list(STEPS)
    for step in STEPS:
        assert abs(got[step]["loss"] - full[step]["loss"]) <= tol, (step, got[step]["loss"], full[step]["loss"])
        assert got[step]["epoch"] == full[step]["epoch"]
    for key in ("macro_f1", "micro_f1", "accuracy"):
        assert metrics[key] == pytest.approx(full_metrics[key], abs=tol), key


def test_two_workers_shard_the_data_and_log_both(full_run):
    run_dir, metrics = full_run
    rec = records(run_dir)
    assert all(r["world_size"] == 2 for r in rec.values())
    assert rec[1]["samples_per_s"] == pytest.approx(2 * rec[1]["samples_per_s_per_worker"])
    assert sorted(p.name for p in run_dir.glob("checkpoint_0*")) == ["checkpoint_000002", "checkpoint_000004",
                                                                     "checkpoint_000006"]
    manifest = json.loads((run_dir / "checkpoint_000006" / checkpoint.MANIFEST).read_text())
    assert {"rng_rank0.pt", "rng_rank1.pt", "sampler_rank0.json", "sampler_rank1.json"} <= set(manifest["files"])
    assert (run_dir / "eval.json").exists() and (run_dir / "config.yaml").exists()
    assert metrics["n_examples"] > 0


def test_job_killed_then_resubmitted_resumes_exactly(full_run, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    monkeypatch.setenv(faults.ENV, "kill:rank=1:step=5")
    with pytest.raises(Exception):  # max_failures=0: the job fails
        launch(cfg(), run_dir)
    assert checkpoint.latest_complete(run_dir).name == "checkpoint_000004"
    assert max(records(run_dir)) == 5  # step 5 ran and was logged before the kill
    metrics = launch(cfg(), run_dir)  # the same command again
    assert list(records(run_dir, "resume")) == [4]
    assert_same_run(run_dir, metrics, full_run)


@pytest.mark.parametrize("fault", ["kill:rank=1:step=3", "save:rank=1:step=4"], ids=["killed_worker", "broken_save"])
def test_group_restarts_from_the_last_complete_checkpoint(full_run, tmp_path, monkeypatch, fault):
    """Rank 1 killed at step 3, or its save at step 4 broken half-way: with max_failures=1
    Ray restarts the group from the checkpoint of step 2 and the run ends as the full one."""
    run_dir = tmp_path / "run"
    monkeypatch.setenv(faults.ENV, fault)
    metrics = launch(cfg("distributed.max_failures=1"), run_dir)
    assert list(records(run_dir, "resume")) == [2]
    assert_same_run(run_dir, metrics, full_run)


def test_zero3_partitions_resumes_and_gathers_like_zero2(full_run, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    run_dir = tmp_path / "run"
    monkeypatch.setenv(faults.ENV, "kill:rank=0:step=3")
    metrics = launch(cfg("distributed.zero_stage=3", "distributed.deepspeed_config=configs/deepspeed/zero3.json",
                         "distributed.max_failures=1"), run_dir)
    assert list(records(run_dir, "resume")) == [2]
    assert metrics["trainable_params"] == full_run[1]["trainable_params"] > 0  # counted in full, not per partition
    # Same math as ZeRO-2, other reduction order: equal to float32 rounding.
    assert_same_run(run_dir, metrics, full_run, tol=1e-4)
    z3, z2 = load_file(str(run_dir / "model/trainable.safetensors")), load_file(str(full_run[0] / "model/trainable.safetensors"))
    assert z3.keys() == z2.keys()
    for name in z2:
        assert z3[name].shape == z2[name].shape, name  # gathered, not a 1/2 slice or an empty partition
        assert (z3[name] - z2[name]).abs().max() <= 1e-4, name


def test_a_nonfinite_loss_on_one_rank_is_skipped_by_both(full_run, tmp_path, monkeypatch):
    """Rank 1's loss of step 3 is NaN, rank 0's is finite: both ranks skip step 3 together (or the ZeRO
    shards would diverge, or the group would hang), the run goes on, and nothing is NaN."""
    monkeypatch.setenv(faults.ENV, "nan:rank=1:step=3")
    run_dir = tmp_path / "run"
    metrics = launch(cfg("train.save_every=1", "train.keep_checkpoints=0"), run_dir)
    rec = records(run_dir)
    assert [rec[s]["skipped_steps"] for s in STEPS] == [0, 0, 1, 0, 0, 0]
    full_dir, _ = full_run
    full = records(full_dir)
    assert all(abs(rec[s]["loss"] - full[s]["loss"]) <= 1e-6 for s in (1, 2))  # identical before the fault
    assert "NaN" not in (run_dir / "metrics.jsonl").read_text() and metrics["macro_f1"] == metrics["macro_f1"]
    from safetensors.torch import load_file

    w2, w3 = (load_file(str(run_dir / f"checkpoint_00000{s}" / "trainable.safetensors")) for s in (2, 3))
    assert all((w2[n] == w3[n]).all() for n in w2)  # the skipped step changed no weight on any rank
