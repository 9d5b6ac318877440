"""Injection: every supported base layer and architecture, the shared state the layers read, checkpointing."""

import pytest
import torch

from hyperscale.adapters.inject import LowRankAdapted

from tests.helpers import make_batch, randomise_b, seeded_model, tiny_config


@pytest.mark.parametrize("family,pattern,n_layers", [("llama", "q_proj", 2), ("bert", "query", 2), ("gpt2", "c_attn", 2)])
def test_injection_per_architecture(family, pattern, n_layers):
    cfg = tiny_config(family=family)
    model = seeded_model(cfg)
    wrapped = [m for m in model.body.modules() if isinstance(m, LowRankAdapted)]
    assert len([w for w in wrapped if w.spec.kind == pattern]) == n_layers
    randomise_b(model)
    batch = make_batch()
    out = model(batch)
    out["loss"].backward()
    assert all(p.grad is None for p in model.body.parameters())


def test_wrapped_layer_computes_base_plus_lowrank():
    model = seeded_model(tiny_config())
    randomise_b(model)
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

    model = seeded_model(tiny_config(f"model.quantization={mode}"))
    bnb_type = bnb.nn.Linear4bit if mode == "4bit" else bnb.nn.Linear8bitLt
    wrapped = [m for m in model.body.modules() if isinstance(m, LowRankAdapted)]
    assert wrapped and all(isinstance(m.base, bnb_type) for m in wrapped)
    randomise_b(model)
    out = model(make_batch())
    out["loss"].backward()
    assert model.lora.hypernet.head_b["q_proj"].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", ["hyper_lora", "shared_lora", "per_annotator_lora", "annotator_embedding",
                                  "multi_head"])
def test_gradient_checkpointing_sees_same_generated_weights(kind):
    grads = []
    for ckpt in (False, True):
        model = seeded_model(tiny_config(f"adapter.kind={kind}", f"model.gradient_checkpointing={str(ckpt).lower()}"))
        randomise_b(model)
        model.train()
        calls = []
        layer = next(m for m in model.body.modules() if isinstance(m, LowRankAdapted))
        layer.register_forward_hook(lambda *_: calls.append(1))
        out = model(make_batch())
        out["loss"].backward()
        assert len(calls) == (2 if ckpt else 1)  # checkpointing really recomputed the layer
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) >= 3
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-5, atol=1e-7, msg=name)


def test_adapter_layers_selects_blocks():
    model = seeded_model(tiny_config("adapter.layers=[-1]"))
    wrapped = [m.spec for m in model.body.modules() if isinstance(m, LowRankAdapted)]
    assert sorted((s.layer, s.kind) for s in wrapped) == [(1, "q_proj"), (1, "v_proj")]
    from hyperscale.errors import ConfigError

    with pytest.raises(ConfigError, match="adapter.layers"):
        seeded_model(tiny_config("adapter.layers=[7]"))


def test_row_grouping_is_planned_once_per_forward_and_shared(monkeypatch):
    """Every wrapped layer of one forward reuses one plan (per input lead shape); the next forward replans."""
    model = seeded_model(tiny_config())
    randomise_b(model)
    calls = []
    plan = model.state.plan
    model.state.plan = lambda idx, n: calls.append(tuple(idx.shape)) or plan(idx, n)
    batch = make_batch(n=6, seq=9, n_annotators=4)
    out = model(batch)
    out["loss"].backward()
    n_layers = len([m for m in model.body.modules() if isinstance(m, LowRankAdapted)])
    assert n_layers == 4 and calls == [(6 * 9,)]
    model(make_batch(n=6, seq=7, n_annotators=4))
    assert calls == [(6 * 9,), (6 * 7,)]
