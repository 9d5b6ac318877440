"""The baseline adapter kinds: build, fallbacks for unknown annotators, the parameter bound, short training."""

import csv
import json

import pytest
import torch

from hyperscale.errors import ConfigError
from hyperscale.model import build_model
from hyperscale.adapters.lora import PerAnnotatorLoRA

from tests.helpers import make_batch, tiny_config

KINDS = ["hyper_lora", "shared_lora", "annotator_embedding", "multi_head", "per_annotator_lora"]
PER_ANNOTATOR_KINDS = ["hyper_lora", "annotator_embedding", "multi_head", "per_annotator_lora"]


def _model(kind, n_annotators=6, *overrides):
    torch.manual_seed(0)
    return build_model(tiny_config(f"adapter.kind={kind}", *overrides), {"annotator": n_annotators}, ["0", "1"])


def _perturb(model):
    """Give every trainable tensor values, so annotators (and adapters) differ."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.trainable_parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("kind", KINDS)
def test_kind_trains_and_survives_unknown_annotators(kind):
    model = _model(kind)
    _perturb(model)
    batch = make_batch(n=8, n_annotators=6)
    batch["cond_annotator"][:2] = -1
    out = model(batch)
    out["loss"].backward()
    assert torch.isfinite(out["loss"])
    assert {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad} <= {"lora", "head"}
    assert all(p.grad is None for p in model.body.parameters())  # the backbone stays frozen


@pytest.mark.parametrize("kind", PER_ANNOTATOR_KINDS)
def test_unknown_annotator_equals_mean_tables(kind):
    """Fallback for index -1: the model with every annotator table replaced by its mean row."""
    model = _model(kind)
    _perturb(model)
    batch = make_batch(n=4, n_annotators=6)
    batch["cond_annotator"][:] = -1
    unknown = model(batch)["logits"]
    with torch.no_grad():
        for module, attr in model.annotator_tables():
            p = getattr(module, attr)
            p.copy_(p.mean(0, keepdim=True).expand_as(p))
    batch["cond_annotator"][:] = 3  # any row now holds the mean
    torch.testing.assert_close(unknown, model(batch)["logits"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind,per", [("shared_lora", 0), ("annotator_embedding", 64), ("multi_head", 64 * 2 + 2),
                                      ("per_annotator_lora", 2 * 4 * (64 + 64) + 2 * 4 * (64 + 32))])
def test_parameters_added_per_annotator(kind, per):
    # tiny llama: hidden 64, 4 heads / 2 kv heads -> q_proj 64->64, v_proj 64->32; 2 layers, rank 4
    assert _model(kind).params_per_annotator() == per
    assert _model(kind, 7).n_trainable() - _model(kind, 6).n_trainable() == per


def test_per_annotator_lora_gathers_only_batch_annotators():
    model = _model("per_annotator_lora", 50)
    batch = make_batch(n=10, n_annotators=50)
    batch["cond_annotator"] = torch.tensor([7, 7, 3, 41, 3, -1, 7, 41, 3, 3])
    weights, index = model.lora(batch)
    assert all(A.shape[0] == 4 and B.shape[0] == 4 for A, B in weights.values())  # -1, 3, 7, 41
    A0 = model.lora.A[0]
    torch.testing.assert_close(weights[model.lora.names[0]][0][index[2]], A0[3])
    torch.testing.assert_close(weights[model.lora.names[0]][0][index[5]], A0.mean(0))


def test_per_annotator_lora_bound_refuses_before_allocating(monkeypatch):
    # 10^8 annotators x 1,792 parameters would be 179 G floats: allocating first would die, not raise.
    monkeypatch.setattr(PerAnnotatorLoRA, "__init__", lambda *a, **k: pytest.fail("allocated"))
    with pytest.raises(ConfigError) as err:
        build_model(tiny_config("adapter.kind=per_annotator_lora"), {"annotator": 10**8}, ["0", "1"])
    msg = str(err.value)
    need = 10**8 * 1792 + 65 * 2
    assert "adapter.max_trainable_params" in msg and f"{need:,}" in msg and "50,000,000" in msg
    assert "hyper_lora" in msg and "raise adapter.max_trainable_params" in msg


def test_per_annotator_lora_bound_is_exact():
    need = 6 * 1792 + 65 * 2
    assert _model("per_annotator_lora", 6, f"adapter.max_trainable_params={need}").n_trainable() == need
    with pytest.raises(ConfigError, match=f"{need:,}"):
        _model("per_annotator_lora", 6, f"adapter.max_trainable_params={need - 1}")


@pytest.mark.parametrize("kind", ["annotator_embedding", "multi_head"])
def test_head_baselines_refuse_causal_lm_in_the_config(kind):
    with pytest.raises(ConfigError, match="model.task=classification"):
        tiny_config(f"adapter.kind={kind}", "model.task=causal_lm")  # before any model is built


@pytest.mark.parametrize("kind", KINDS)
def test_every_trainable_parameter_gets_a_gradient(kind):
    """Nothing a kind registers as trainable may be cut off from the loss (B starts at zero, so
    the A side only gets a gradient once B has values: perturb first)."""
    model = _model(kind)
    _perturb(model)
    batch = make_batch(n=12, n_annotators=6)
    batch["cond_annotator"] = torch.arange(12) % 6  # every annotator in the batch: every table row used
    model(batch)["loss"].backward()
    dead = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)]
    assert dead == []
    assert all(p.grad is None for p in model.body.parameters())


def test_adding_a_kind_is_adding_one_file(tmp_path, monkeypatch):
    """A file in adapters/kinds/ defining KIND is picked up by the config, the model builder and compare."""
    from hyperscale.adapters import kinds
    from hyperscale.experiments.compare import parse_kinds

    (tmp_path / "rank_one_lora.py").write_text(
        "from hyperscale.adapters.kinds import AdapterKind\n\n\n"
        "class RankOne(AdapterKind):\n"
        "    name = 'rank_one_lora'\n"
        "    summary = 'a shared LoRA of rank 1 whatever adapter.rank says'\n"
        "\n"
        "    def build_lora(self, cfg, specs, condition_sizes, backbone, n_classes):\n"
        "        from hyperscale.adapters.lora import SharedLoRA\n\n"
        "        return SharedLoRA(specs, 1)\n\n\n"
        "KIND = RankOne()\n")
    monkeypatch.setattr(kinds, "__path__", [*kinds.__path__, str(tmp_path)])  # as if the file sat in kinds/
    monkeypatch.setattr(kinds, "_REGISTRY", None)
    assert kinds.kind_names()[-1] == "rank_one_lora"
    model = _model("rank_one_lora")
    assert {A.shape[1] for A in model.lora.A} == {1}
    assert [k for _, k, _ in parse_kinds("rank_one_lora,hyper_lora")] == ["rank_one_lora", "hyper_lora"]
    with pytest.raises(ConfigError, match="only hyper_lora takes conditions"):
        tiny_config("adapter.kind=rank_one_lora", "adapter.conditions=[task]", "data.synthetic.n_tasks=2")


SHORT = ["data.synthetic.n_items=80", "data.synthetic.n_annotators=8", "train.max_steps=6",
         "train.micro_batch_size=16", "train.log_every=3", "eval.min_items_per_annotator=1"]


@pytest.mark.parametrize("kind,extra", [(k, []) for k in KINDS] + [("shared_lora", ["adapter.aggregate_labels=true"])])
def test_each_kind_runs_end_to_end(tmp_path, kind, extra):
    from hyperscale.training.loop import run_training

    cfg = tiny_config(f"adapter.kind={kind}", *SHORT, *extra)
    metrics = run_training(cfg, tmp_path)
    saved = json.loads((tmp_path / "eval.json").read_text())
    for key in ("macro_f1", "soft_ce", "soft_manhattan", "soft_jsd", "majority_vote_f1", "params_per_annotator"):
        assert key in saved and saved[key] == pytest.approx(metrics[key])
    assert "soft_ce" in saved["majority_baseline"]
    rows = list(csv.DictReader(open(tmp_path / "per_annotator.csv")))
    assert len(rows) == saved["n_annotators_total"] and all(r["known"] == "True" for r in rows)


def test_param_groups_split_tables_from_shared_weights():
    model = _model("multi_head")
    groups = model.param_groups(1e-3, 10.0)
    assert [g["lr"] for g in groups] == [1e-3, 1e-2]
    tables = {id(getattr(m, a)) for m, a in model.annotator_tables()}
    assert {id(p) for p in groups[1]["params"]} == tables
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.trainable_parameters())  # each exactly once
    assert len(_model("shared_lora").param_groups(1e-3, 10.0)) == 1  # no tables, one group


def test_engine_steps_annotator_tables_at_scaled_lr():
    """Adam's first step moves every parameter with a gradient by ~lr (sign of the gradient),
    so through the real DeepSpeed engine: table rows move ~10x the shared head bias."""
    from hyperscale.training.distributed import setup_distributed
    from hyperscale.training.engine import build_engine

    setup_distributed(use_gpu=False)
    cfg = tiny_config("adapter.kind=annotator_embedding", "train.lr=0.001", "train.annotator_lr_scale=10",
                      "train.warmup_steps=0", "train.lr_schedule=constant", "train.max_grad_norm=0")
    torch.manual_seed(0)
    model = build_model(cfg, {"annotator": 6}, ["0", "1"])
    engine, _, _ = build_engine(model, cfg)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    batch = make_batch(n=8, n_annotators=6)
    batch["cond_annotator"] = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    engine.backward(engine(batch)["loss"])
    engine.step()
    table = (model.head.annotator.weight - before["head.annotator.weight"]).abs()
    bias = (model.head.out.bias - before["head.out.bias"]).abs()
    torch.testing.assert_close(table[:4].max(), torch.tensor(1e-2), rtol=0.05, atol=0)
    assert table[4:].max() == 0  # annotators 4, 5 had no rows and no Adam history
    torch.testing.assert_close(bias.max(), torch.tensor(1e-3), rtol=0.05, atol=0)
