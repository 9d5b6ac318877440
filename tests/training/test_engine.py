"""The DeepSpeed engine: presets keep their knobs, the run owns batch and clipping; no compiler on the CPU path."""

import json
from pathlib import Path

import torch

from hyperscale.training.engine import build_engine, deepspeed_config

from tests.helpers import make_batch, tiny_config

ROOT = Path(__file__).resolve().parents[2]


def test_preset_keeps_its_knobs_and_takes_batch_and_clipping_from_train():
    preset = ROOT / "configs/deepspeed/zero2.json"
    cfg = tiny_config(f"distributed.deepspeed_config={preset}", "distributed.zero_stage=2",
                      "train.micro_batch_size=7", "train.grad_accum_steps=3", "train.max_grad_norm=0.25")
    ds = deepspeed_config(cfg)
    assert (ds["train_micro_batch_size_per_gpu"], ds["gradient_accumulation_steps"], ds["gradient_clipping"]) == (7, 3, 0.25)
    assert ds["zero_optimization"]["stage"] == 2
    assert ds["zero_optimization"]["reduce_bucket_size"] == json.loads(preset.read_text())[
        "zero_optimization"]["reduce_bucket_size"]
    off = deepspeed_config(tiny_config(f"distributed.deepspeed_config={ROOT / 'configs/deepspeed/zero2_offload.json'}",
                                       "distributed.offload_optimizer=true"))
    assert off["zero_optimization"]["offload_optimizer"] == {"device": "cpu", "pin_memory": False}


def test_building_the_engine_on_cpu_compiles_nothing(monkeypatch):
    """DeepSpeed used to g++-compile its shared-memory all-reduce op (minutes on 2 cores) on a machine's first
    run, for CPU inference that training never calls."""
    from deepspeed.ops.op_builder.cpu import ShareMemCommBuilder

    from hyperscale.model import build_model
    from hyperscale.training.distributed import setup_distributed

    monkeypatch.setattr(ShareMemCommBuilder, "load", lambda *a, **k: (_ for _ in ()).throw(AssertionError("compiled")))
    setup_distributed(use_gpu=False)
    cfg = tiny_config()
    torch.manual_seed(0)
    engine, _, _ = build_engine(build_model(cfg, {"annotator": 3}, ["0", "1"]), cfg)
    engine.backward(engine(make_batch(n=4))["loss"])
    engine.step()
    assert engine.was_step_applied()
