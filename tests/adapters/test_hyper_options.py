"""hyper_lora's options (adapter.hypernet.shared_base, condition_dropout, head_rank): shapes, a first
forward equal to the frozen model, and gradients reaching what they should."""

import torch

from tests.helpers import make_batch, seeded_model, tiny_config


def _randomise(model, std=0.05):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "head_b" in name or name.startswith("lora.shared.B"):
                p.normal_(0, std)


def test_shared_base_adds_one_pair_trained_by_every_row():
    model = seeded_model(tiny_config("adapter.hypernet.shared_base=true"))
    batch = make_batch(n=12)
    model(batch)
    for A, B in model.state.weights.values():  # (U, r, d_in), (U, d_out, r); B = 0 at init
        assert A.shape[0] == B.shape[0] == len(torch.unique(batch["cond_annotator"])) and not B.any()
    _randomise(model)
    model(batch)["loss"].backward()
    shared = model.lora.shared
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in [*shared.A, *shared.B])
    assert model.lora.hypernet.tables["annotator"].weight.grad.abs().sum() > 0
    # an annotator's generated pair is the hypernetwork's plus the shared one
    name = model.lora.shared.names[0]
    with torch.no_grad():
        model.lora.shared = None
        model(batch)
        plain = model.state.weights[name][1]
        model.lora.shared = shared
        model(batch)
        torch.testing.assert_close(model.state.weights[name][1], plain + shared.B[0])


def test_head_rank_factors_the_heads_and_starts_at_the_frozen_model():
    full = seeded_model(tiny_config())
    small = seeded_model(tiny_config("adapter.hypernet.head_rank=8"))
    assert small.n_trainable() < full.n_trainable()
    batch = make_batch()
    small(batch)
    assert all(not B.any() for _, B in small.state.weights.values())  # first forward: no update
    small.head.load_state_dict(full.head.state_dict())
    torch.testing.assert_close(small(batch)["logits"], full(batch)["logits"])  # both: the frozen model + head
    _randomise(small)
    small(batch)["loss"].backward()
    for group in small.lora.hypernet.head_b.values():
        assert group[0].weight.grad.abs().sum() > 0 and group[1].weight.grad.abs().sum() > 0
    for group in small.lora.hypernet.head_a.values():
        assert group[0].weight.grad.abs().sum() > 0


def test_condition_dropout_trains_the_mean_condition_and_is_off_in_eval():
    plain = seeded_model(tiny_config())
    drop = seeded_model(tiny_config("adapter.hypernet.condition_dropout=0.5"))
    _randomise(plain)
    _randomise(drop)
    drop.load_state_dict(plain.state_dict())
    batch = make_batch(n=16)
    plain.eval()
    drop.eval()
    torch.testing.assert_close(drop(batch)["logits"], plain(batch)["logits"])  # eval: no dropout
    drop.train()
    plain.train()
    torch.manual_seed(0)
    drop(batch)["loss"].backward()
    plain(batch)["loss"].backward()
    table = "annotator"
    rows_plain = torch.nonzero(plain.lora.hypernet.tables[table].weight.grad.abs().sum(1)).numel()
    rows_drop = torch.nonzero(drop.lora.hypernet.tables[table].weight.grad.abs().sum(1)).numel()
    # the dropped rows use the table's mean row, whose gradient reaches all 50 rows
    assert rows_plain == len(torch.unique(batch["cond_annotator"])) and rows_drop == 50
