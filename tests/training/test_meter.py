"""Model FLOPs per token and MFU in the train records."""

import pytest

from hyperscale.training.meter import StepMeter, peak_flops
from tests.helpers import seeded_model, tiny_config


def test_flops_per_token_counts_the_frozen_backbone_and_the_lora_path():
    cfg = tiny_config("adapter.rank=3")
    model = seeded_model(cfg)
    t = cfg.model.tiny
    hidden, layers = t.hidden_size, t.num_layers
    kv = hidden // t.num_heads * t.num_kv_heads
    per_layer = hidden * hidden * 2 + hidden * kv * 2 + 3 * hidden * t.intermediate_size + 2 * hidden  # attn, mlp, norms
    n_frozen = layers * per_layer + hidden  # + the final norm; the input embedding is a lookup
    lora = layers * 3 * ((hidden + hidden) + (hidden + kv))  # q and v: r * (d_in + d_out)
    assert model.flops_per_token == 4 * n_frozen + 6 * lora
    instance = seeded_model(tiny_config("adapter.conditions=[instance]"))
    assert instance.flops_per_token > 6 * n_frozen  # one more (encoding) forward


def test_records_carry_achieved_flops_and_mfu_only_with_a_known_peak():
    assert peak_flops({"gpu": "NVIDIA H100 80GB HBM3", "compute_dtype": "bfloat16"}) == 989e12
    assert peak_flops({"device": "cpu", "compute_dtype": "float32"}) is None
    assert peak_flops({"gpu": "Some Future GPU", "compute_dtype": "bfloat16"}) is None
    cfg = tiny_config("train.log_every=1").train
    for peak in (None, 1e12):
        meter = StepMeter(cfg, world_size=1, flops_per_token=1000, peak=peak)
        meter.begin_step()
        meter.add(0.5, rows=4, tokens=400)
        meter.end_step(skipped=False)
        r = meter.record(1, 1e-3, 0)
        assert r["achieved_flops_per_s"] == pytest.approx(r["tokens_per_s"] * 1000) and r["achieved_flops_per_s"] > 0
        assert ("mfu" in r) == (peak is not None)
        if peak:
            assert r["mfu"] == pytest.approx(r["achieved_flops_per_s_per_worker"] / peak)


def test_wandb_run_ids_follow_the_directory_not_just_its_name(tmp_path):
    """Every kind's `trial0` of a tune has the same folder name; concurrent trials with one wandb id failed
    ("run ID hs-trial0 is in use"). The id is stable for a directory (resume continues the wandb run)."""
    from hyperscale.training.logger import wandb_run_id

    a, b = tmp_path / "hyper_lora" / "trial0", tmp_path / "shared_lora" / "trial0"
    assert wandb_run_id(a) != wandb_run_id(b)
    assert wandb_run_id(a) == wandb_run_id(tmp_path / "hyper_lora" / ".." / "hyper_lora" / "trial0")
    assert wandb_run_id(a).startswith("hs-trial0-") and len(wandb_run_id(tmp_path / ("x" * 200))) <= 64
