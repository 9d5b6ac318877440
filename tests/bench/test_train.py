"""`hyperscale bench train` on the tiny model: it runs, writes bench.json / bench.md / PNGs with every field, and its
batches and ratios are what they claim. Never asserts a time."""

import json

import pytest
import torch

from hyperscale.bench import train as bench
from hyperscale.errors import ConfigError

TINY_YAML = """
data: {source: synthetic}
model: {name_or_path: tiny-random-llama, max_length: 8, compute_dtype: float32}
adapter: {target_modules: [q_proj, v_proj], rank: 2}
train: {progress_bar: false}
"""


def test_bench_train_writes_every_output(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY_YAML)
    out = tmp_path / "out"
    rc = bench.main([str(cfg), "--out", str(out), "--batch", "4", "--rounds", "2", "--warmup", "0", "--threads", "1",
                     "--clock", "cpu",
                     "--sweep", "perspectives=16,64", "--sweep", "conditions=1,4"])
    assert rc == 0
    report = json.loads((out / "bench.json").read_text())
    env = report["environment"]
    assert env["kernel_backend"] in ("torch", "triton") and env["torch_threads"] == 1
    assert report["clock"] == "cpu" and "process_time" in report["timer"]
    assert {"torch", "transformers", "peft", "deepspeed"} <= set(env["versions"])
    base = {p["variant"]: p for p in report["points"] if p["group"] == "base"}
    assert set(base) == set(bench._variants())
    for p in base.values():
        assert p["rounds"] == 2 and len(p["step_times_s"]) == 2
        assert p["step"]["min"] <= p["step"]["median"] <= p["step"]["max"]
        for phase in ("hypernet", "forward", "backward", "optimizer"):
            assert p[phase]["median"] >= 0
        assert p["tokens_per_s"] == pytest.approx(p["samples_per_s"] * 8)
        assert p["n_trainable"] > 0
    # peft's LoRA and hyperscale's shared LoRA adapt the same modules at the same rank: same parameter count.
    assert base["peft_lora"]["n_trainable"] == base["shared_lora"]["n_trainable"]
    assert base["hyper_lora"]["hypernet"]["median"] > 0 and base["peft_lora"]["hypernet"]["median"] == 0
    vs = {(r["variant"], r["vs"]) for r in report["ratios"] if r["group"] == "base"}
    assert ("hyper_lora", "peft_lora") in vs and ("seed_loop", "frozen_base") in vs
    persp = {(p["variant"], p["setting"]["perspectives"]) for p in report["points"] if p["group"] == "perspectives"}
    assert persp == {("hyper_lora", 16), ("hyper_lora", 64), ("per_annotator_lora", 16), ("per_annotator_lora", 64)}
    names = [t["target"] for t in report["targets"]]
    assert len(names) == 6 and all(t["met"] in (True, False, None) for t in report["targets"])
    trainable = report["trainable_at_1000"]
    assert trainable["ratio"] == pytest.approx(trainable["hyper_lora"] / trainable["per_annotator_lora"])
    shapes = {r["model"]: r for r in report["trainable_at_1000_by_shape"]}
    assert set(shapes) == {"this config (tiny-random-llama)", "SmolLM2-135M", "Llama-3-8B"}
    assert shapes["this config (tiny-random-llama)"]["hyper_lora"] == trainable["hyper_lora"]  # counted == built
    # Llama-3-8B's q/v (4096 -> 4096 and 4096 -> 1024) at the config's rank: per_annotator_lora counted by hand.
    llama = shapes["Llama-3-8B"]
    rank = report["base"]["rank"]
    assert 0 <= llama["per_annotator_lora"] - 1000 * llama["adapted_modules"] // 2 * rank * (8192 + 5120) < 10**4  # head
    assert llama["ratio"] < shapes["this config (tiny-random-llama)"]["ratio"]
    md = (out / "bench.md").read_text()
    assert "## targets (issue 12)" in md and "| seed_loop |" in md and "sweep: conditions" in md
    for name in ("variants.png", "step_vs_perspectives.png", "step_vs_conditions.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("k", [1, 3, 8])
def test_batches_hold_exactly_k_distinct_conditions(k):
    s = bench.Setting(perspectives=100_000, conditions=k, seq_len=5, batch=8, rank=2)
    b = bench.make_batch(s, vocab_size=500, n_classes=2, seed=k, device="cpu")
    assert b["input_ids"].shape == (8, 5) and b["attention_mask"].all()
    assert torch.unique(b["cond_annotator"]).numel() == k
    assert int(b["cond_annotator"].max()) < 100_000


def test_paired_ratio_is_per_round():
    a = bench.Point("base", "a", None, times={"step": [2.0, 3.0, 10.0]})
    b = bench.Point("base", "b", None, times={"step": [1.0, 1.0, 10.0]})
    r = bench.paired_ratio(a, b)
    assert (r["median"], r["min"], r["max"], r["rounds"]) == (2.0, 1.0, 3.0, 3)


def test_bad_sweeps_and_conditions_are_refused():
    with pytest.raises(ConfigError, match="--sweep"):
        bench.parse_sweeps(["heads=1,2"])
    with pytest.raises(ConfigError, match="integers"):
        bench.parse_sweeps(["perspectives=a,b"])
    base = bench.Setting(perspectives=4, conditions=8, seq_len=4, batch=8, rank=2)
    with pytest.raises(ConfigError, match="conditions <= batch and <= perspectives"):
        bench.plan(base, {}, ["hyper_lora"])


def test_zero_stage_sweep_builds_each_stage_side_by_side(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY_YAML)
    out = tmp_path / "out"
    rc = bench.main([str(cfg), "--out", str(out), "--batch", "4", "--rounds", "1", "--warmup", "0", "--threads", "1",
                     "--variants", "hyper_lora,shared_lora,peft_lora", "--sweep", "zero_stage=0,2"])
    assert rc == 0
    report = json.loads((out / "bench.json").read_text())
    swept = {(p["variant"], p["setting"]["zero_stage"]) for p in report["points"] if p["group"] == "zero_stage"}
    assert swept == {(v, z) for v in ("hyper_lora", "shared_lora", "peft_lora") for z in (0, 2)}
    assert all(p["setting"]["zero_stage"] is None for p in report["points"] if p["group"] == "base")
    assert "sweep: zero_stage" in (out / "bench.md").read_text()
    with pytest.raises(ConfigError, match="ZeRO stages"):
        bench.parse_sweeps(["zero_stage=0,4"])
    # the engines really are at the swept stage (and the config's auto stage is 0 for one worker)
    from hyperscale.backbones.load import load_backbone
    from hyperscale.bench.variants import build_runner
    from hyperscale.config import load_config

    run_cfg = load_config(str(cfg))
    backbone = load_backbone(run_cfg.model)
    for stage, want in ((None, 0), (2, 2)):
        runner = build_runner("shared_lora", run_cfg, backbone, 16, 2, ["0", "1"], torch.device("cpu"), "cpu", stage)
        assert runner.engine.zero_optimization_stage() == want
