"""The driver side: what launch/train.py imports, config checks before scheduling, presets, uploads."""

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import tiny_config
from hyperscale.training import faults
from hyperscale.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("deepspeed", "bitsandbytes", "triton")


def test_driver_never_imports_deepspeed_bitsandbytes_or_triton():
    # Everything the driver touches: the entry point, the CLI, the launcher, and the
    # Ray Train classes it builds the trainer from (ray.train.torch imports torch).
    code = ("import sys, launch.train, hyperscale.cli, hyperscale.cluster, hyperscale.api, ray.train, ray.train.torch;"
            "from hyperscale.config import load_config;"
            "load_config('configs/synthetic.yaml', ['distributed.num_workers=2']);"
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_launch_rejects_a_bad_key_before_ray_starts():
    out = subprocess.run([sys.executable, "launch/train.py", "configs/synthetic.yaml", "--set", "distributed.num_workrs=2"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "distributed.num_workrs" in out.stderr
    assert "ray" not in out.stdout.lower()  # nothing was scheduled: no run directory, no Ray start


def test_zero3_with_4bit_backbone_or_causal_lm_is_rejected_with_the_fix():
    with pytest.raises(ConfigError) as e:
        tiny_config("distributed.zero_stage=3", "model.quantization=4bit")
    assert e.value.key == "distributed.zero_stage"
    assert "zero_stage=2" in str(e.value) and "quantization=none" in str(e.value)
    with pytest.raises(ConfigError, match="causal_lm"):
        tiny_config("distributed.zero_stage=3", "model.task=causal_lm")
    tiny_config("distributed.zero_stage=3", "model.quantization=none")  # unquantized classification is fine


def test_zero_stage_auto_is_0_for_one_worker_and_2_otherwise_or_the_presets():
    assert tiny_config().distributed.zero_stage == 0  # one worker: ZeRO would partition nothing
    assert tiny_config("distributed.num_workers=2").distributed.zero_stage == 2
    assert tiny_config("distributed.offload_optimizer=true").distributed.zero_stage == 2  # offload needs ZeRO
    assert tiny_config("distributed.zero_stage=2").distributed.zero_stage == 2  # an explicit stage is kept
    zero3 = tiny_config(f"distributed.deepspeed_config={ROOT / 'configs/deepspeed/zero3.json'}", "model.quantization=none")
    assert zero3.distributed.zero_stage == 3


def test_preset_must_agree_with_zero_stage_and_offload():
    with pytest.raises(ConfigError, match="distributed.zero_stage=3"):
        tiny_config(f"distributed.deepspeed_config={ROOT / 'configs/deepspeed/zero3.json'}", "distributed.zero_stage=2")
    with pytest.raises(ConfigError, match="offload_optimizer=true"):
        tiny_config(f"distributed.deepspeed_config={ROOT / 'configs/deepspeed/zero2_offload.json'}")
    with pytest.raises(ConfigError, match="does not exist"):
        tiny_config("distributed.deepspeed_config=configs/deepspeed/nope.json")
    with pytest.raises(ConfigError, match="ZeRO feature"):
        tiny_config("distributed.zero_stage=0", "distributed.offload_optimizer=true")


def test_job_upload_skips_run_outputs_and_environments():
    # What `ray job submit --working-dir .` would zip: Ray 2.60 reads .gitignore and .rayignore.
    from ray._private.runtime_env.packaging import get_excludes_from_ignore_files

    excludes = get_excludes_from_ignore_files(ROOT, include_gitignore=True, logger=logging.getLogger("test"))
    skipped = lambda p: any(e(ROOT / p) for e in excludes)  # noqa: E731
    for path in (".git", ".git/HEAD", ".venv", ".venv/bin/python", "runs", "runs/a/metrics.jsonl", "wandb",
                 "hyperscale.egg-info", "hyperscale/__pycache__"):
        assert skipped(path), path
    for path in ("hyperscale", "hyperscale/worker.py", "launch/train.py", "configs/deepspeed/zero3.json", "kernels",
                 "pyproject.toml"):
        assert not skipped(path), path


def test_fault_specs_parse_and_fire_once(tmp_path, monkeypatch):
    assert faults.parse("kill:rank=1:step=5") == faults.Fault("kill", 1, 5)
    with pytest.raises(ValueError):
        faults.parse("explode:rank=1")
    monkeypatch.setenv(faults.ENV, "raise:rank=0:step=3")
    faults.after_step(1, 3, tmp_path)  # another rank: nothing
    faults.after_step(0, 2, tmp_path)  # another step: nothing
    with pytest.raises(faults.FaultInjected):
        faults.after_step(0, 3, tmp_path)
    faults.after_step(0, 3, tmp_path)  # the restarted worker runs past it
