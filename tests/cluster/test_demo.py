"""`make demo` on the real make target (tiny backbone, short budget): failed mid-run, run again it resumes from its
last checkpoint instead of starting over; run a third time it says the run is complete without starting Ray or
loading a model."""

import json
import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TINY = ("--set model.name_or_path=tiny-random-llama --set adapter.layers=null --set train.max_steps=6 "
        "--set train.save_every=2 --set train.warmup_steps=0 --set data.max_items=120 --set train.log_every=1 "
        "--set logging.wandb.mode=disabled")


def _make_demo(run_dir, fault=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    env.pop("HYPERSCALE_FAULT", None)
    if fault:
        env["HYPERSCALE_FAULT"] = fault
    out = subprocess.run(["make", "demo", f"RUN_DIR={run_dir}", f"ARGS={TINY}"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=1200)
    return out, None


def test_make_demo_resumes_an_interrupted_run_then_says_it_is_complete(tmp_path):
    run_dir = tmp_path / "demo"
    out, _ = _make_demo(run_dir, fault="raise:rank=0:step=5")
    assert out.returncode != 0
    assert "to resume it: hyperscale train configs/demo.yaml" in out.stderr and str(run_dir) in out.stderr
    assert sorted(p.name for p in run_dir.glob("checkpoint_0*")) == ["checkpoint_000002", "checkpoint_000004"]

    out, _ = _make_demo(run_dir)
    assert out.returncode == 0, out.stderr[-3000:]
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["checkpoint"] for r in records if r["split"] == "resume"] == ["checkpoint_000004"]
    assert [r["step"] for r in records if r["split"] == "train"] == [1, 2, 3, 4, 5, 6]
    finished = (run_dir / "eval.json").read_bytes()

    out, _ = _make_demo(run_dir)
    assert out.returncode == 0 and "is complete" in out.stdout
    assert (run_dir / "eval.json").read_bytes() == finished
    both = out.stdout + out.stderr
    assert "Ray" not in both and "compute dtype" not in both  # the config and eval.json only: no Ray, no model
