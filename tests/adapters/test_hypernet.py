"""The hypernetwork: generation for unique conditions only, the fallback, every condition kind."""

import pytest
import torch


from tests.helpers import make_batch, randomise_b, seeded_model, tiny_config


def test_generation_touches_only_unique_conditions():
    model = seeded_model(tiny_config())
    randomise_b(model)
    batch = make_batch(n=16)
    batch["cond_annotator"] = torch.tensor([7, 7, 3, 3, 3, 41] * 2 + [7, 3, 41, 41])
    seen = []
    model.lora.hypernet.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape)))
    out = model(batch)
    assert [s[0] for s in seen] == [3]  # one generation for U = 3 unique annotators, not 16 rows
    weights = model.state.weights
    assert all(A.shape[0] == 3 and B.shape[0] == 3 for A, B in weights.values())
    out["loss"].backward()
    grad = model.lora.hypernet.tables["annotator"].weight.grad
    touched = torch.nonzero(grad.abs().sum(1)).flatten().tolist()
    assert touched == [3, 7, 41]


def test_unknown_annotator_gets_mean_embedding():
    model = seeded_model(tiny_config())
    hn = model.lora.hypernet
    emb = hn.embed_conditions(torch.tensor([[-1], [5]]), None)
    torch.testing.assert_close(emb[0], hn.tables["annotator"].weight.mean(0))
    torch.testing.assert_close(emb[1], hn.tables["annotator"].weight[5])
    batch = make_batch()
    batch["cond_annotator"][0] = -1
    assert torch.isfinite(model(batch)["loss"])


@pytest.mark.parametrize("conditions,fields", [
    (["annotator"], ["annotator"]),
    (["task", "language"], ["task", "language"]),
    (["instance"], []),
    (["annotator", "instance"], ["annotator"]),
])
def test_every_condition_kind_trains(conditions, fields):
    cfg = tiny_config(f"adapter.conditions=[{','.join(conditions)}]", "data.synthetic.n_tasks=3",
                      "data.synthetic.n_languages=4")
    model = seeded_model(cfg)
    randomise_b(model)
    batch = make_batch(tasks=3, languages=4)
    out = model(batch)
    out["loss"].backward()
    hn = model.lora.hypernet
    for f in fields:
        assert hn.tables[f].weight.grad.abs().sum() > 0
    if "instance" in conditions:
        assert hn.instance_proj.weight.grad.abs().sum() > 0
        assert all(A.shape[0] == batch["input_ids"].shape[0] for A, _ in model.state.weights.values())
    # only the hypernetwork and the head train
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"lora", "head"}


def test_task_language_zero_shot_pair():
    """Hyper-X: a (task, language) pair never seen together still gets its own adapter."""
    cfg = tiny_config("adapter.conditions=[task,language]", "data.synthetic.n_tasks=2", "data.synthetic.n_languages=2")
    model = seeded_model(cfg, {"annotator": 5, "task": 2, "language": 2})
    randomise_b(model)
    hn = model.lora.hypernet
    pairs = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1]])
    weights = hn(hn.embed_conditions(pairs, None))
    A, B = next(iter(weights.values()))
    delta = torch.einsum("uor,uri->uoi", B, A)  # (4, d_out, d_in)
    assert min((delta[i] - delta[j]).abs().max() for i in range(4) for j in range(i + 1, 4)) > 0


def test_one_pattern_over_modules_of_two_shapes_gets_a_head_pair_per_shape():
    """`re:` patterns may match projections of different sizes (q 64->64 and v 64->32 in the tiny
    GQA Llama): they are grouped by shape instead of failing after the backbone loaded."""
    model = seeded_model(tiny_config(r"adapter.target_modules=['re:.*\.(q|v)_proj']"))
    hn = model.lora.hypernet
    assert sorted(hn.head_a) == ["q_v_proj_64x32", "q_v_proj_64x64"]
    randomise_b(model)
    batch = make_batch()
    model(batch)["loss"].backward()
    shapes = {name.rsplit(".", 1)[-1]: A.shape[1:] for name, (A, _) in model.state.weights.items()}
    assert shapes == {"q_proj": (4, 64), "v_proj": (4, 64)}
    assert all(hn.head_b[g].weight.grad.abs().sum() > 0 for g in hn.head_b)
