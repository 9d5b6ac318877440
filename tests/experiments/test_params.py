"""The parameter-efficiency headline (issue 11): hyper_lora at 1,000 annotators, at every size its tune space
and options allow, trains <= 2% of per_annotator_lora's parameters and adds one table row per annotator."""

from hyperscale.experiments.params import param_budget


def test_hyper_lora_stays_under_two_percent_of_per_annotator_lora_at_1000_annotators():
    out = param_budget(1000)
    assert out["per_annotator_lora"]["trainable"] == 30_721_154  # 8 blocks x r(d_in + d_out), q and v, x 1000 + head
    assert out["per_annotator_lora"]["per_new_annotator"] == 2 * 8 * (576 + 576 + 576 + 192)
    hyper = {k: v for k, v in out.items() if k.startswith("hyper_lora")}
    assert len(hyper) >= 4
    for name, rec in hyper.items():
        assert rec["pct_of_per_annotator_lora"] <= 2.0, (name, rec)
        assert rec["per_new_annotator"] == 64  # one condition_dim row
    # the options cost what they should: the residual adds one shared LoRA (31,744 = shared_lora minus its head)
    # and the bias a 64 x 2 matrix
    assert (out["hyper_lora+residual+condition_bias"]["trainable"] - out["hyper_lora"]["trainable"]
            == out["shared_lora"]["trainable"] - (576 * 2 + 2) + 64 * 2)
