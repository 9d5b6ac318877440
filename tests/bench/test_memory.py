"""The memory planner's arithmetic on a hand-computable model, its exact trainable counts, and its --measure path."""

import json
from pathlib import Path

import pytest

from hyperscale.bench import memory
from tests.helpers import tiny_config

# hidden 8, MLP 16, 2 blocks, 2 heads of 4 (1 KV head), vocab 10: per block q 8x8, k 8x4, v 8x4, o 8x8,
# gate / up 8x16, down 16x8 = 64 + 32 + 32 + 64 + 3 * 128 = 576 weights, plus two norms of 8.
SHAPE = memory.ModelShape(hidden=8, intermediate=16, layers=2, heads=2, kv_heads=1, head_dim=4, vocab=10)


def _plan(*overrides, workers=4, device="cpu"):
    cfg = tiny_config("adapter.kind=shared_lora", "adapter.rank=2", *overrides)
    return memory.predict(cfg, SHAPE, perspectives=10, workers=workers, batch=2, seq_len=3, device=device,
                          compute_dtype="float32")


def test_parameter_count_and_unquantized_weights():
    assert SHAPE.n_params() == 2 * (576 + 16) + 10 * 8 + 8
    plan = _plan()
    assert plan["bytes"]["weights"] == 4 * SHAPE.n_params()  # float32, replicated under ZeRO-2


def test_trainables_by_zero_stage():
    # shared_lora r=2 on q (8->8) and v (8->4) of both blocks: 2 * (2*(8+8) + 2*(8+4)) = 112, head (8+1)*2 = 18.
    t = 130
    z2 = _plan("distributed.zero_stage=2")
    assert z2["trainable_params"]["total"] == t
    b = z2["bytes"]
    assert (b["trainable"], b["master"], b["gradients"], b["optimizer"]) == (4 * t, 4 * t / 4, 4 * t / 4, 8 * t / 4)
    assert b["grad_buckets"] == 4 * t  # CPU: only the written part of DeepSpeed's bucket is resident
    assert _plan("distributed.zero_stage=2", device="gpu")["bytes"]["grad_buckets"] == 4 * memory.DS_REDUCE_BUCKET  # GPU: allocated whole
    b0 = _plan("distributed.zero_stage=0")["bytes"]
    assert (b0["master"], b0["gradients"], b0["optimizer"], b0["grad_buckets"]) == (0, 4 * t, 8 * t, 0)
    b3 = _plan("distributed.zero_stage=3")["bytes"]
    block = 576 * 4 + 2 * 8 * 4
    assert b3["weights"] == (2 * block + 10 * 8 * 4 + 8 * 4) / 4 + 2 * block
    assert b3["trainable"] == 4 * t / 4
    off = _plan("distributed.offload_optimizer=true")  # zero_stage=auto: 2 with offload
    assert off["bytes"]["optimizer"] == 0 and off["host_bytes"]["offloaded_optimizer"] == 12 * t / 4


def test_nf4_and_int8_bytes():
    # nf4: half a byte per weight, a uint8 absmax per 64, an fp32 per 256 absmax (double quantization)
    assert memory._quantized_bytes(16384, 128, "4bit", 4) == 8192 + 256 + 4
    assert memory._quantized_bytes(16384, 128, "8bit", 4) == 16384 + 4 * 128
    assert memory._quantized_bytes(100, 10, "none", 2) == 200


def test_activations_follow_the_lowest_adapted_block_and_checkpointing():
    full = _plan()["bytes"]["activations"]
    top = _plan("adapter.layers=[-1]")["bytes"]["activations"]
    ckpt = _plan("model.gradient_checkpointing=true")["bytes"]["activations"]
    per_block = 4 * 8 + 5 * 8 + 4 * 16  # norms, attention, MLP elements per token
    assert full - top == 6 * 4 * (per_block + 2 * 2)  # one block fewer, and its q and v A x (rank 2 each)
    assert ckpt < full


def test_meta_counts_match_a_built_model():
    from hyperscale.model import build_model

    for kind in ("hyper_lora", "per_annotator_lora", "shared_lora"):
        cfg = tiny_config(f"adapter.kind={kind}")
        shape = memory.shape_for(cfg, None)
        specs = memory.module_specs(cfg, shape)
        model = build_model(cfg, {"annotator": 7}, ["0", "1"])
        wrapped = sorted(n for n, m in model.body.named_modules() if type(m).__name__ == "LowRankAdapted")
        assert sorted(s.name for s in specs) == wrapped
        assert memory.trainable_count(cfg, shape, specs, 7)["total"] == model.n_trainable()


def test_llama_configs_and_the_70b_question(capsys):
    shape = memory.ModelShape.from_hf(json.loads(Path("configs/models/llama-3-8b.json").read_text()))
    assert shape.n_params() == 32 * (4096 * (4096 * 2 + 1024 * 2) + 3 * 4096 * 14336 + 2 * 4096) + 128256 * 4096 + 4096
    rc = memory.main(["configs/demo.yaml", "--model-config", "configs/models/llama-3-70b.json", "--workers", "8",
                      "--perspectives", "10000", "--set", "distributed.zero_stage=2", "--gpu-gib", "80",
                      "--set", "model.compute_dtype=bfloat16"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "fits on 80 GiB per device: yes" in out and "ZeRO stage 2" in out


def test_bad_model_config_is_refused(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text(json.dumps({"hidden_size": 8}))
    with pytest.raises(memory.ConfigError, match="lacks"):
        memory.shape_for(tiny_config(), str(bad))


def test_measure_on_the_tiny_model(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("data: {source: synthetic}\nmodel: {name_or_path: tiny-random-llama, max_length: 8, "
                   "compute_dtype: float32}\ntrain: {micro_batch_size: 2, progress_bar: false}\n")
    out = tmp_path / "plan.json"
    assert memory.main([str(cfg), "--measure", "--steps", "1", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    m = report["measured"]
    assert m["step_peak_bytes"] > 0 and m["built_bytes"] > 0 and m["n_trainable"] > 0
    assert report["plan"]["trainable_params"]["total"] == m["n_trainable"]
    assert report["prediction_error"] == pytest.approx(report["plan"]["total_bytes"] / m["step_peak_bytes"] - 1)
