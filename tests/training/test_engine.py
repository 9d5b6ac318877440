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


def test_lean_stage0_trains_like_deepspeeds_own_stage0_path(monkeypatch):
    """engine.lean_stage0 (one worker: no reduce; torch's clip over the trainable parameters; zero_grad of
    those only) against DeepSpeed's own stage-0 steps: the same weights after clipped, decayed steps, a
    trainable parameter without a gradient included (the reduce's zero fill: weight decay still moves it)."""
    import types

    from hyperscale.model import build_model
    from hyperscale.training import engine as engine_mod
    from hyperscale.training.distributed import setup_distributed
    from tests.helpers import make_batch

    setup_distributed(use_gpu=False)

    def trained(lean: bool, kind: str):
        cfg = tiny_config(f"adapter.kind={kind}", "distributed.zero_stage=0", "train.weight_decay=0.1",
                          "train.max_grad_norm=0.05")  # small enough that every step is clipped
        torch.manual_seed(0)
        model = build_model(cfg, {"annotator": 40}, ["0", "1"])
        model.unused = torch.nn.Parameter(torch.ones(3))  # trainable, never in the loss
        with torch.no_grad():
            for p in model.trainable_parameters():
                p.add_(0.05 * torch.randn_like(p))
        start = model.unused.detach().clone()
        if not lean:
            monkeypatch.setattr(engine_mod, "lean_stage0", lambda *a, **k: None)
        # Dense table gradients on both sides: the row-gradient path is held to the dense one at stage 0
        # (test_sparse_tables.py), whose clip is lean_stage0's.
        engine, _, _ = engine_mod.build_engine(model, cfg, row_gradients=False)
        monkeypatch.undo()
        assert isinstance(engine.clip_fp32_gradients, types.MethodType)
        assert ("clip_fp32_gradients" in vars(engine)) == lean and engine.enable_backward_allreduce != lean
        for s in range(3):
            engine.backward(engine(make_batch(n=4, n_annotators=3, seed=s))["loss"])
            engine.step()
            assert all(p.grad is None for p in model.parameters())  # zero_grad reached every gradient
        return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}, start

    for kind in ("hyper_lora", "shared_lora"):
        (ds, _), (lean, start) = trained(False, kind), trained(True, kind)
        # decayed from the zero-filled gradient, as DeepSpeed's path does
        assert lean["unused"].abs().lt(start.abs()).all()
        for name, value in ds.items():
            torch.testing.assert_close(lean[name], value, rtol=0, atol=1e-6, msg=name)
