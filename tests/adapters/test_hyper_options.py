"""hyper_lora's options (adapter.hypernet.shared_base, condition_dropout, head_rank, condition_bias,
condition_head, head_lr_scale): shapes, a first forward equal to the frozen model, and gradients reaching what they should."""

import pytest
import torch

from tests.helpers import make_batch, seeded_model, tiny_config


def _randomise(model, std=0.05):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "head_b" in name or name.startswith("lora.shared.B"):
                p.normal_(0, std)


def test_shared_base_is_a_residual_stacked_at_rank_2r_and_starts_as_the_frozen_model():
    plain = seeded_model(tiny_config())
    model = seeded_model(tiny_config("adapter.hypernet.shared_base=true"))
    batch = make_batch(n=12)
    model.head.load_state_dict(plain.head.state_dict())
    torch.testing.assert_close(model(batch)["logits"], plain(batch)["logits"])  # B0 = B_gen = 0: the frozen model
    r = model.lora.hypernet.rank
    assert model.lora.out_rank == 2 * r
    for A, B in model.state.weights.values():  # (U, 2r, d_in), (U, d_out, 2r)
        assert A.shape[:2] == (len(torch.unique(batch["cond_annotator"])), 2 * r) and B.shape[2] == 2 * r
        assert not B.any()
    _randomise(model)
    model(batch)["loss"].backward()
    shared = model.lora.shared
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in [*shared.A, *shared.B])
    assert model.lora.hypernet.tables["annotator"].weight.grad.abs().sum() > 0
    # B A = B0 A0 + B_gen A_gen: the shared pair in the first r slots, the generated one unchanged after it
    name = shared.names[0]
    with torch.no_grad():
        model(batch)
        A, B = model.state.weights[name]
        model.lora.shared = None
        model(batch)
        A_gen, B_gen = model.state.weights[name]
        model.lora.shared = shared
        torch.testing.assert_close(B @ A, shared.B[0] @ shared.A[0] + B_gen @ A_gen)
        torch.testing.assert_close(A[:, :r], shared.A[0].expand(A.shape[0], -1, -1))


def test_condition_dropout_with_shared_base_trains_rows_as_a_shared_lora():
    model = seeded_model(tiny_config("adapter.hypernet.shared_base=true", "adapter.hypernet.condition_dropout=0.5"))
    _randomise(model)
    batch = make_batch(n=16)
    model.train()
    torch.manual_seed(0)
    weights, index = model.lora(batch)
    U = len(torch.unique(batch["cond_annotator"]))
    dropped = index == U  # the null slot
    assert 0 < int(dropped.sum()) < 16
    shared = model.lora.shared
    for name, (A, B) in weights.items():
        k = shared.names.index(name)
        # the null condition's update is exactly the shared pair's
        torch.testing.assert_close(B[U] @ A[U], shared.B[k][0] @ shared.A[k][0])
    model.eval()
    assert (model.lora(batch)[1] < U).all()  # eval: no dropout


def test_condition_bias_shifts_each_annotators_logits_and_trains_from_zero():
    plain = seeded_model(tiny_config())
    model = seeded_model(tiny_config("adapter.hypernet.condition_bias=true"))
    model.load_state_dict(plain.state_dict(), strict=False)
    batch = make_batch(n=16)
    torch.testing.assert_close(model(batch)["logits"], plain(batch)["logits"])  # W = 0 at init
    model(batch)["loss"].backward()
    W = model.lora.logit_bias.proj.weight  # (C, cond_width)
    assert W.grad.abs().sum() > 0  # the zero init still gets a gradient (its input, the table, is not zero)
    with torch.no_grad():
        W.normal_(0, 0.5)
        bias = model.logit_bias(batch)  # (B, C)
        diff = model(batch)["logits"] - plain(batch)["logits"]
    torch.testing.assert_close(diff, bias)
    same = batch["cond_annotator"][:, None] == batch["cond_annotator"][None, :]
    gap = (bias[:, None] - bias[None, :]).abs().sum(-1)  # rows of one annotator share a bias, others differ
    assert gap[same].max() < 1e-6 and gap[~same].min() > 1e-4
    # it adds no parameter per annotator
    assert model.params_per_annotator() == plain.params_per_annotator()


def test_condition_head_is_a_conditioned_gelu_branch_that_starts_perspective_blind():
    import torch.nn.functional as F

    model = seeded_model(tiny_config("adapter.hypernet.condition_head=8"))
    branch = model.lora.branch
    batch = make_batch(n=16)
    ids = batch["cond_annotator"]
    out = model(batch)
    # E = 0: every row's branch output is the perspective-blind out(gelu(D pooled + b))
    pooled = torch.randn(16, branch.dense.in_features)
    blind = branch.out(F.gelu(branch.dense(pooled)))
    torch.testing.assert_close(model.branch_logits(batch, pooled), blind)
    out["loss"].backward()
    assert branch.cond.weight.grad.abs().sum() > 0  # the zero init gets a gradient (its input, the table, is not 0)
    table = model.lora.hypernet.tables["annotator"].weight
    model.zero_grad()
    with torch.no_grad():
        branch.cond.weight.normal_(0, 0.5)
    logits = model.branch_logits(batch, pooled)
    e = table[ids]  # (B, condition_dim): the hypernetwork's own embedding, no table of its own
    torch.testing.assert_close(logits, branch.out(F.gelu(branch.dense(pooled) + e @ branch.cond.weight.t())))
    # the branch's logits are added to the head's: removing it recovers head + nothing else
    with torch.no_grad():
        full = model(batch)["logits"]
        model.lora.branch = None
        bare = model(batch)["logits"]
        model.lora.branch = branch
    assert (full - bare).abs().max() > 1e-4
    # the branch alone (pooled given, no LoRA involved) carries a gradient into the annotator table
    logits.sum().backward()
    assert table.grad[ids].abs().sum() > 0
    # no parameter per annotator; its shared size is (hidden + cond_width + C) x width + width + C
    plain = seeded_model(tiny_config())
    assert model.params_per_annotator() == plain.params_per_annotator()
    H, w, C = branch.dense.in_features, 8, branch.out.out_features
    assert model.n_trainable() - plain.n_trainable() == (H + 64 + C) * w + w + C


def test_condition_head_refuses_what_it_cannot_do():
    from hyperscale.errors import ConfigError
    from hyperscale.serve.export import refusal

    with pytest.raises(ConfigError, match="condition_head"):
        tiny_config("adapter.hypernet.condition_head=0")
    with pytest.raises(ConfigError, match="condition_head"):
        tiny_config("adapter.hypernet.condition_head=8", "model.task=causal_lm", "model.verbalizers=[bad,good]")
    assert "condition_head" in refusal(tiny_config("adapter.hypernet.condition_head=8"))
    assert refusal(tiny_config()) is None


def test_head_lr_scale_puts_the_ab_heads_in_their_own_group():
    model = seeded_model(tiny_config("adapter.hypernet.head_lr_scale=3", "train.annotator_lr_scale=5"))
    groups = model.param_groups(0.01, 5.0)
    heads = {id(p) for p in model.lora.hypernet.head_parameters()}
    table = model.lora.hypernet.tables["annotator"].weight
    by_lr = {g["lr"]: {id(p) for p in g["params"]} for g in groups}
    assert set(by_lr) == {0.01, 0.03, 0.05}
    assert by_lr[0.03] == heads and by_lr[0.05] == {id(table)}
    assert sum(len(g["params"]) for g in groups) == len(model.trainable_parameters())


def test_shared_lr_scale_puts_the_shared_pair_and_the_classifier_head_in_their_own_group():
    model = seeded_model(tiny_config("adapter.hypernet.shared_base=true", "adapter.hypernet.shared_lr_scale=4",
                                     "adapter.hypernet.head_lr_scale=0.5"))
    by_lr = {g["lr"]: {id(p) for p in g["params"]} for g in model.param_groups(0.01, 5.0)}
    blind = {id(p) for p in [*model.lora.shared.parameters(), *model.head.parameters()] if p.requires_grad}
    assert set(by_lr) == {0.01, 0.04, 0.005, 0.05}
    assert by_lr[0.04] == blind and blind
    assert by_lr[0.005] == {id(p) for p in model.lora.hypernet.head_parameters()}
    trunk = {id(p) for n, p in model.lora.hypernet.named_parameters() if n.startswith("trunk")}
    assert trunk and trunk <= by_lr[0.01]  # the hypernetwork's trunk stays at train.lr
    assert sum(len(g["params"]) for g in model.param_groups(0.01, 5.0)) == len(model.trainable_parameters())
    from hyperscale.errors import ConfigError

    with pytest.raises(ConfigError, match="shared_lr_scale.*shared_base=true"):
        tiny_config("adapter.hypernet.shared_lr_scale=4")


def test_new_options_refuse_what_they_cannot_do():
    from hyperscale.errors import ConfigError

    with pytest.raises(ConfigError, match="head_lr_scale"):
        tiny_config("adapter.hypernet.head_lr_scale=0")
    with pytest.raises(ConfigError, match="condition_bias"):
        tiny_config("adapter.hypernet.condition_bias=true", "model.task=causal_lm", "model.verbalizers=[bad,good]")


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
