"""Run-directory integrity: nothing in an existing run is written before compatibility is decided, a run of
other settings is refused with the differing keys, a finished run's own command exits at once, a larger
max_steps extends it (its results kept), an unwritable run directory is refused at start."""

import json

import pytest

import hyperscale
from hyperscale.errors import RunDirError
from hyperscale.rundir import RunDir
from hyperscale.training import run_state

from tests.helpers import tiny_config

SHORT = ["data.synthetic.n_items=60", "data.synthetic.n_annotators=6", "train.micro_batch_size=16",
         "train.log_every=1", "eval.min_items_per_annotator=1", "logging.wandb.mode=disabled"]


def _finished_looking_run(path, cfg, step=None):
    """The files a finished run leaves that the decision reads (config.yaml, eval.json), without training."""
    run = RunDir(path)
    run.path.mkdir(parents=True, exist_ok=True)
    cfg.save(run.config, runtime={"kernel_backend": "torch"})
    run.eval.write_text(json.dumps({"step": step or cfg.train.max_steps, "macro_f1": 0.5, "n_examples": 10,
                                    "n_annotators": 2}))
    (run.path / "metrics.jsonl").write_text('{"step": 0, "split": "start"}\n')
    return {p.name: p.read_bytes() for p in run.path.iterdir()}


def _unchanged(path, before):
    assert {p.name: p.read_bytes() for p in RunDir(path).path.iterdir()} == before


def test_refused_resume_leaves_the_run_untouched(tmp_path):
    """D3 and D4: another adapter rank, or a 'compatible' lr / data change, used to overwrite config.yaml
    (and re-evaluate old weights on new data, replacing eval.json)."""
    cfg = tiny_config(*SHORT, "train.max_steps=4")
    before = _finished_looking_run(tmp_path, cfg)
    for change in (["adapter.rank=8"], ["train.lr=0.1", "data.synthetic.label_noise=0.3"]):
        with pytest.raises(RunDirError) as e:
            hyperscale.train(tiny_config(*SHORT, "train.max_steps=4", *change), tmp_path, use_ray=False)
        msg = str(e.value)
        for key in (c.split("=")[0] for c in change):
            assert key in msg, (key, msg)
        assert "Nothing was changed" in msg and "Fix:" in msg and "--run-dir" in msg
        _unchanged(tmp_path, before)


def test_a_finished_run_of_the_same_command_is_complete(tmp_path, capsys, monkeypatch):
    from hyperscale.data import load

    cfg = tiny_config(*SHORT, "train.max_steps=4")
    before = _finished_looking_run(tmp_path, cfg)
    monkeypatch.setattr(load, "load_data", lambda *a, **k: pytest.fail("loaded the data of a complete run"))
    metrics = hyperscale.train(tiny_config(*SHORT, "train.max_steps=4", "train.log_every=2"), tmp_path,
                               use_ray=False)  # a cadence key may differ
    assert metrics["macro_f1"] == 0.5 and "is complete" in capsys.readouterr().out
    _unchanged(tmp_path, before)
    with pytest.raises(RunDirError, match="train.max_steps: 4 in the run, 3 now"):
        hyperscale.train(tiny_config(*SHORT, "train.max_steps=3"), tmp_path, use_ray=False)


def test_a_larger_max_steps_extends_a_finished_run_and_keeps_its_results(tmp_path):
    first = hyperscale.train(tiny_config(*SHORT, "train.max_steps=4"), tmp_path, use_ray=False)
    run = RunDir(tmp_path)
    old_eval = run.eval.read_bytes()
    metrics = hyperscale.train(tiny_config(*SHORT, "train.max_steps=6"), tmp_path, use_ray=False)
    kept = tmp_path / "results_step000004"
    assert (kept / "eval.json").read_bytes() == old_eval and (kept / "per_annotator.csv").exists()
    assert metrics["step"] == 6 and first["step"] == 4
    records = [json.loads(line) for line in run.metrics.read_text().splitlines()]
    assert [r["step"] for r in records if r["split"] == "train"] == [1, 2, 3, 4, 5, 6]
    assert [r["checkpoint"] for r in records if r["split"] == "resume"] == ["checkpoint_000004"]


def test_an_unwritable_run_directory_is_refused_at_start(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(RunDirError, match="cannot write the run directory .*Fix: pass a --run-dir"):
        hyperscale.train(tiny_config(*SHORT, "train.max_steps=2"), blocker / "run", use_ray=False)


def test_cadence_keys_may_differ_and_results_keys_may_not(tmp_path):
    cfg = tiny_config(*SHORT, "train.max_steps=4")
    _finished_looking_run(tmp_path, cfg)
    RunDir(tmp_path).eval.unlink()  # unfinished: resumable
    for free in ("train.save_every=2", "distributed.max_failures=3", "train.keep_checkpoints=1", "eval.batch_size=7"):
        assert run_state.inspect(tmp_path, tiny_config(*SHORT, "train.max_steps=4", free)).kind == "resume"
    for bound in ("eval.min_items_per_annotator=3", "distributed.num_workers=2", "train.seed=1", "model.max_length=16"):
        with pytest.raises(RunDirError, match=bound.split("=")[0]):
            run_state.inspect(tmp_path, tiny_config(*SHORT, "train.max_steps=4", bound))
