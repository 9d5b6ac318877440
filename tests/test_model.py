"""Hypernetwork, injection and model assembly on tiny random backbones."""

import pytest
import torch

from hyperscale.backbones import load_backbone
from hyperscale.inject import LowRankAdapted
from hyperscale.model import build_model

from tests.helpers import make_batch, tiny_config


def _model(cfg, sizes=None, labels=("0", "1")):
    torch.manual_seed(0)
    return build_model(cfg, sizes or {"annotator": 50, "task": 3, "language": 4}, list(labels))


def _randomise_b(model, std=0.05):
    """B heads start at zero; give them values so the adapters change the output."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "head_b" in name or name.startswith("source.B"):
                p.normal_(0, std)


def test_first_forward_equals_frozen_model():
    model = _model(tiny_config())
    batch = make_batch()
    adapted = model(batch)["logits"]
    model.state.enabled = False
    frozen = model(batch)["logits"]
    torch.testing.assert_close(adapted, frozen, rtol=0, atol=0)
    model.state.enabled = True
    _randomise_b(model)
    assert (model(batch)["logits"] - frozen).abs().max() > 1e-4


def test_generation_touches_only_unique_conditions():
    model = _model(tiny_config())
    _randomise_b(model)
    batch = make_batch(n=16)
    batch["cond_annotator"] = torch.tensor([7, 7, 3, 3, 3, 41] * 2 + [7, 3, 41, 41])
    seen = []
    model.source.hypernet.trunk.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape)))
    out = model(batch)
    n_kinds = 2  # q_proj, v_proj
    assert [s[0] for s in seen] == [3] * n_kinds  # U = 3 unique annotators, not 16 rows
    weights = model.state.weights
    assert all(A.shape[0] == 3 and B.shape[0] == 3 for A, B in weights.values())
    out["loss"].backward()
    grad = model.source.hypernet.tables["annotator"].weight.grad
    touched = torch.nonzero(grad.abs().sum(1)).flatten().tolist()
    assert touched == [3, 7, 41]


def test_unknown_annotator_gets_mean_embedding():
    model = _model(tiny_config())
    hn = model.source.hypernet
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
    model = _model(cfg)
    _randomise_b(model)
    batch = make_batch(tasks=3, languages=4)
    out = model(batch)
    out["loss"].backward()
    hn = model.source.hypernet
    for f in fields:
        assert hn.tables[f].weight.grad.abs().sum() > 0
    if "instance" in conditions:
        assert hn.instance_proj.weight.grad.abs().sum() > 0
        assert all(A.shape[0] == batch["input_ids"].shape[0] for A, _ in model.state.weights.values())
    # only the hypernetwork and the head train
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"source", "head"}


def test_task_language_zero_shot_pair():
    """Hyper-X: a (task, language) pair never seen together still gets its own adapter."""
    cfg = tiny_config("adapter.conditions=[task,language]", "data.synthetic.n_tasks=2", "data.synthetic.n_languages=2")
    model = _model(cfg, {"annotator": 5, "task": 2, "language": 2})
    _randomise_b(model)
    hn = model.source.hypernet
    pairs = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1]])
    weights = hn(hn.embed_conditions(pairs, None))
    A, B = next(iter(weights.values()))
    delta = torch.einsum("uor,uri->uoi", B, A)  # (4, d_out, d_in)
    assert min((delta[i] - delta[j]).abs().max() for i in range(4) for j in range(i + 1, 4)) > 0


@pytest.mark.parametrize("family,pattern,n_layers", [("llama", "q_proj", 2), ("bert", "query", 2), ("gpt2", "c_attn", 2)])
def test_injection_per_architecture(family, pattern, n_layers):
    cfg = tiny_config(family=family)
    model = _model(cfg)
    wrapped = [m for m in model.body.modules() if isinstance(m, LowRankAdapted)]
    assert len([w for w in wrapped if w.spec.kind == pattern]) == n_layers
    _randomise_b(model)
    batch = make_batch()
    out = model(batch)
    out["loss"].backward()
    assert all(p.grad is None for p in model.body.parameters())


def test_wrapped_layer_computes_base_plus_lowrank():
    model = _model(tiny_config())
    _randomise_b(model)
    batch = make_batch(n=4)
    model(batch)
    layer = next(m for m in model.body.modules() if isinstance(m, LowRankAdapted))
    x = torch.randn(4, 3, layer.spec.d_in)
    y = layer(x)
    A, B = model.state.weights[layer.spec.name]
    idx = model.state.seq_index
    manual = layer.base(x) + layer.scale * torch.einsum("bor,bri,bti->bto", B[idx], A[idx], x)
    torch.testing.assert_close(y, manual, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["4bit", "8bit"])
def test_quantized_backbone_wraps_bnb_layers(mode):
    import bitsandbytes as bnb

    model = _model(tiny_config(f"model.quantization={mode}"))
    bnb_type = bnb.nn.Linear4bit if mode == "4bit" else bnb.nn.Linear8bitLt
    wrapped = [m for m in model.body.modules() if isinstance(m, LowRankAdapted)]
    assert wrapped and all(isinstance(m.base, bnb_type) for m in wrapped)
    _randomise_b(model)
    out = model(make_batch())
    out["loss"].backward()
    assert model.source.hypernet.head_b["q_proj"].weight.grad.abs().sum() > 0


def test_gradient_checkpointing_sees_same_generated_weights():
    grads = []
    for ckpt in (False, True):
        model = _model(tiny_config(f"model.gradient_checkpointing={str(ckpt).lower()}"))
        _randomise_b(model)
        model.train()
        calls = []
        layer = next(m for m in model.body.modules() if isinstance(m, LowRankAdapted))
        layer.register_forward_hook(lambda *_: calls.append(1))
        out = model(make_batch())
        out["loss"].backward()
        assert len(calls) == (2 if ckpt else 1)  # checkpointing really recomputed the layer
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 5
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-5, atol=1e-7, msg=name)


def test_backbone_is_frozen_and_counted():
    bb = load_backbone(tiny_config().model)
    assert all(not p.requires_grad for p in bb.body.parameters())
    assert bb.n_params == sum(p.numel() for p in bb.body.parameters())


def test_adapter_layers_selects_blocks():
    model = _model(tiny_config("adapter.layers=[-1]"))
    wrapped = [m.spec for m in model.body.modules() if isinstance(m, LowRankAdapted)]
    assert sorted((s.layer, s.kind) for s in wrapped) == [(1, "q_proj"), (1, "v_proj")]
    from hyperscale.errors import ConfigError

    with pytest.raises(ConfigError, match="adapter.layers"):
        _model(tiny_config("adapter.layers=[7]"))
