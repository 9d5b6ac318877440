"""hyper_lora's warm start (adapter.hypernet.shared_warmup): the first share of the optimizer steps trains the
residual form's shared pair alone, then the hypernetwork learns deviations from it; in the model and in a real run."""

import pytest
import torch

from hyperscale.errors import ConfigError
from hyperscale.rundir import load_trainable
from hyperscale.training.loop import run_training
from tests.helpers import make_batch, seeded_model, tiny_config

WARM = ("adapter.hypernet.shared_base=true", "adapter.hypernet.shared_warmup=0.5", "train.max_steps=4")


def test_warmup_steps_put_every_training_row_on_the_shared_pair_and_later_steps_do_not():
    model = seeded_model(tiny_config(*WARM))
    assert model.lora.warmup_steps == 2  # 0.5 x 4 optimizer steps
    batch = make_batch(n=16)
    U = len(torch.unique(batch["cond_annotator"]))
    model.train()
    for step, warm in ((1, True), (2, True), (3, False), (4, False)):
        model.begin_step(step)
        _, index = model.lora(batch)
        assert bool((index == U).all()) is warm and bool((index < U).all()) is not warm, step
    model.begin_step(1)
    model.eval()
    assert (model.lora(batch)[1] < U).all()  # evaluation always reads each row's own condition


def test_a_warm_step_gives_the_hypernetwork_no_gradient_and_the_shared_pair_one():
    model = seeded_model(tiny_config(*WARM))
    with torch.no_grad():  # a trained-looking state: B heads and B0 off zero
        for name, p in model.named_parameters():
            if "head_b" in name or name.startswith("lora.shared.B"):
                p.normal_(0, 0.05)
    model.train()
    model.begin_step(1)
    model(make_batch(n=16))["loss"].backward()
    hyper = [p for p in model.lora.hypernet.parameters() if p.requires_grad]
    assert all(p.grad is None or not p.grad.any() for p in hyper)
    assert all(p.grad.abs().sum() > 0 for p in [*model.lora.shared.A, *model.lora.shared.B])
    model.zero_grad()
    model.begin_step(3)
    model(make_batch(n=16))["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in hyper)


def test_shared_warmup_needs_the_residual_form_and_a_share_below_one():
    with pytest.raises(ConfigError, match="shared_warmup.*shared_base=true"):
        tiny_config("adapter.hypernet.shared_warmup=0.3")
    with pytest.raises(ConfigError, match="shared_warmup"):
        tiny_config("adapter.hypernet.shared_base=true", "adapter.hypernet.shared_warmup=1.0")


def test_a_run_leaves_the_hypernetwork_at_its_init_through_the_warm_steps_then_trains_it(tmp_path):
    cfg = tiny_config(*WARM, "data.synthetic.n_items=60", "data.synthetic.n_annotators=6", "train.micro_batch_size=16",
                      "train.weight_decay=0", "train.warmup_steps=0", "train.save_every=1", "train.keep_checkpoints=0",
                      "distributed.zero_stage=0", "eval.min_items_per_annotator=1", "logging.wandb.mode=disabled")
    run_training(cfg, tmp_path)

    def weights(step):
        from hyperscale.model import build_model

        model = build_model(cfg, {"annotator": 6}, ["0", "1"])
        load_trainable(model, tmp_path / f"checkpoint_{step:06d}" / "trainable.safetensors")
        return dict(model.named_parameters())

    w1, w2, w3 = weights(1), weights(2), weights(3)
    hyper = [n for n in w1 if n.startswith("lora.hypernet.")]
    shared = [n for n in w1 if n.startswith("lora.shared.")]
    assert hyper and shared
    assert all(torch.equal(w1[n], w2[n]) for n in hyper)  # step 2 (warm) moved no hypernetwork weight
    assert all(not w2[n].any() for n in hyper if "head_b" in n)  # B_gen still zero: no deviation yet
    assert any(not torch.equal(w1[n], w2[n]) for n in shared)  # but trained the shared pair
    assert any(not torch.equal(w2[n], w3[n]) for n in hyper)  # step 3 trains the hypernetwork
