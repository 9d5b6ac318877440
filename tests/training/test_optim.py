"""Lazy AdamW for the per-annotator tables: equal to AdamW where it must be, untouched rows untouched, exact resume."""

import pytest
import torch

from hyperscale.training.engine import build_engine, table_optimizer
from hyperscale.training.optim import LAZY, LazyTableAdamW
from tests.helpers import make_batch, tiny_config


def _pair(weight_decay, n=37, d=13, seed=0):
    torch.manual_seed(seed)
    w = torch.randn(n, d)
    dense_p, lazy_p = torch.nn.Parameter(w.clone()), torch.nn.Parameter(w.clone())
    dense = torch.optim.AdamW([dense_p], lr=1e-2, weight_decay=weight_decay)
    lazy = LazyTableAdamW([{"params": [lazy_p], LAZY: True}], lr=1e-2, weight_decay=weight_decay)
    return dense_p, dense, lazy_p, lazy


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_equals_adamw_bit_for_bit_when_every_row_is_touched(weight_decay):
    dense_p, dense, lazy_p, lazy = _pair(weight_decay)
    g = torch.Generator().manual_seed(1)
    for _ in range(25):
        grad = torch.randn(dense_p.shape, generator=g)
        dense_p.grad, lazy_p.grad = grad.clone(), grad.clone()
        dense.step()
        lazy.step()
    assert torch.equal(dense_p, lazy_p)
    for key in ("exp_avg", "exp_avg_sq"):
        assert torch.equal(dense.state[dense_p][key], lazy.state[lazy_p][key])
    assert torch.equal(lazy.state[lazy_p]["entry_step"], torch.full(dense_p.shape, 25.0))


def test_untouched_rows_stay_bit_identical_and_touched_rows_follow_their_own_adamw():
    """Lazy Adam's promise: each row is an AdamW of its own that steps only when its row got a gradient."""
    n, d, wd = 11, 5, 0.1
    torch.manual_seed(0)
    w = torch.randn(n, d)
    table = torch.nn.Parameter(w.clone())
    lazy = LazyTableAdamW([{"params": [table], LAZY: True}], lr=3e-2, weight_decay=wd)
    rows = [torch.nn.Parameter(w[i].clone()) for i in range(n)]
    per_row = [torch.optim.AdamW([r], lr=3e-2, weight_decay=wd) for r in rows]
    g = torch.Generator().manual_seed(2)
    for step in range(12):
        touched = torch.randperm(n, generator=g)[:3]
        grad = torch.zeros(n, d)
        grad[touched] = torch.randn(3, d, generator=g)
        before = {k: v.clone() for k, v in lazy.state[table].items()} if lazy.state[table] else None
        weights_before = table.detach().clone()
        table.grad = grad
        lazy.step()
        untouched = torch.ones(n, dtype=torch.bool)
        untouched[touched] = False
        assert torch.equal(table[untouched], weights_before[untouched])  # bit-identical
        if before is not None:
            for key in ("exp_avg", "exp_avg_sq", "entry_step"):
                assert torch.equal(lazy.state[table][key][untouched], before[key][untouched]), key
        for i in touched.tolist():
            rows[i].grad = grad[i].clone()
            per_row[i].step()
    want = torch.stack([r.detach() for r in rows])
    torch.testing.assert_close(table.detach(), want, rtol=1e-6, atol=1e-7)


def test_shared_groups_are_plain_adamw_and_dense_state_converts():
    torch.manual_seed(0)
    shared_w, table_w = torch.randn(4, 3), torch.randn(6, 3)
    ref_shared = torch.nn.Parameter(shared_w.clone())
    ref = torch.optim.AdamW([ref_shared], lr=1e-2)
    shared, table = torch.nn.Parameter(shared_w.clone()), torch.nn.Parameter(table_w.clone())
    opt = LazyTableAdamW([{"params": [shared]}, {"params": [table], LAZY: True}], lr=1e-2)
    for _ in range(3):
        grad = torch.randn(4, 3)
        ref_shared.grad, shared.grad, table.grad = grad.clone(), grad.clone(), torch.randn(6, 3)
        ref.step()
        opt.step()
    assert torch.equal(shared, ref_shared) and "entry_step" not in opt.state[shared]
    # A dense AdamW state (a run switched to lazy) continues from its step count.
    dense_p = torch.nn.Parameter(table_w.clone())
    dense = torch.optim.AdamW([dense_p], lr=1e-2)
    dense_p.grad = torch.ones(6, 3)
    dense.step()
    lazy = LazyTableAdamW([{"params": [dense_p], LAZY: True}], lr=1e-2)
    lazy.load_state_dict(dense.state_dict())
    dense_p.grad = torch.ones(6, 3)
    lazy.step()
    assert torch.equal(lazy.state[dense_p]["entry_step"], torch.full((6, 3), 2.0))


def test_offload_falls_back_to_dense_with_a_reason():
    mode, reason = table_optimizer(tiny_config("distributed.offload_optimizer=true", "distributed.zero_stage=2"))
    assert mode == "dense" and "DeepSpeedCPUAdam" in reason
    assert table_optimizer(tiny_config("train.table_optimizer=dense"))[0] == "dense"
    assert table_optimizer(tiny_config())[0] == "lazy"


def _engine(stage, mode, kind="hyper_lora"):
    from hyperscale.model import build_model
    from hyperscale.training.distributed import setup_distributed

    setup_distributed(use_gpu=False)
    cfg = tiny_config(f"adapter.kind={kind}", f"distributed.zero_stage={stage}", f"train.table_optimizer={mode}",
                      "train.weight_decay=0.1")
    torch.manual_seed(0)
    model = build_model(cfg, {"annotator": 40}, ["0", "1"])
    engine, _, _ = build_engine(model, cfg)
    return engine, model


def _train(engine, seeds):
    for s in seeds:
        engine.backward(engine(make_batch(n=4, n_annotators=3, seed=s))["loss"])  # annotators 0..2 only
        engine.step()


@pytest.mark.parametrize("stage", [0, pytest.param(2, marks=pytest.mark.slow)])
def test_engine_updates_only_touched_rows_and_resumes_exactly(stage, tmp_path):
    """Through the real DeepSpeed engine (ZeRO 0: our optimizer on the tables; ZeRO 2: on DeepSpeed's flat
    partition), with its clipping: rows no batch used never move; save -> load -> continue equals going on."""
    engine, model = _engine(stage, "lazy")
    assert model.runtime["table_optimizer"]["mode"] == "lazy"
    table = model.lora.hypernet.tables["annotator"].weight
    start = table.detach().clone()
    _train(engine, [0, 1])
    assert torch.equal(table[3:], start[3:]) and not torch.equal(table[:3], start[:3])
    engine.save_checkpoint(str(tmp_path), tag="t")
    _train(engine, [2, 3])
    want = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    resumed, model2 = _engine(stage, "lazy")
    resumed.load_checkpoint(str(tmp_path), tag="t", load_optimizer_states=True, load_lr_scheduler_states=True)
    _train(resumed, [2, 3])
    got = {n: p.detach() for n, p in model2.named_parameters() if p.requires_grad}
    assert want.keys() == got.keys()
    for name, value in want.items():
        assert torch.equal(got[name], value), name
