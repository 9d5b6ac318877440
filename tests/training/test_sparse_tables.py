"""Row gradients for the condition tables (adapters/row_grad.py, training/sparse_tables.py): the same
training as the dense-gradient lazy path, with no dense table gradient anywhere."""

import os

import pytest
import torch

from hyperscale.adapters.fallback import gather_rows
from hyperscale.adapters.row_grad import RowGradSink
from hyperscale.training.engine import build_engine, uses_row_gradients
from tests.helpers import make_batch, tiny_config


def test_sink_holds_the_dense_gradient_as_rows_including_unknown_ids():
    torch.manual_seed(0)
    table = torch.randn(11, 3, 2, requires_grad=True)
    ids = torch.tensor([4, -1, 4, 0, 10, -1])
    upstream = torch.randn(6, 3, 2)
    (gather_rows(table, ids) * upstream).sum().backward()
    dense = table.grad.clone()

    table.grad = None
    table.row_grads = sink = RowGradSink(table)
    out = gather_rows(table, ids)
    assert torch.equal(out, gather_rows(table.detach(), ids))
    (out * upstream).sum().backward()
    assert table.grad is None
    uniq, rows = sink.coalesced()
    assert uniq.tolist() == [0, 4, 10]
    rebuilt = sink.mean_grad.expand(11, 3, 2).clone().index_add_(0, uniq, rows)
    torch.testing.assert_close(rebuilt, dense, rtol=1e-6, atol=1e-7)


def _engine(stage, rows, *extra, kind="hyper_lora", perturb=True):
    from hyperscale.model import build_model
    from hyperscale.training.distributed import setup_distributed

    setup_distributed(use_gpu=False)
    cfg = tiny_config(f"adapter.kind={kind}", f"distributed.zero_stage={stage}", "train.weight_decay=0.1",
                      "train.max_grad_norm=0.05", *extra)  # small enough that every step is clipped
    torch.manual_seed(0)
    model = build_model(cfg, {"annotator": 40}, ["0", "1"])
    if perturb:  # off the zero-initialised B, so every touched entry has a non-zero gradient
        with torch.no_grad():
            for p in model.trainable_parameters():
                p.add_(0.05 * torch.randn_like(p))
    engine, _, _ = build_engine(model, cfg, row_gradients=rows)
    return engine, model


def _trained(stage, rows, *extra, kind="hyper_lora", seeds=(0, 1, 2), rank=0, perturb=True):
    engine, model = _engine(stage, rows, *extra, kind=kind, perturb=perturb)
    tables = [getattr(m, a) for m, a in model.annotator_tables()]
    for s in seeds:
        engine.backward(engine(make_batch(n=4, n_annotators=3, seed=10 * s + rank))["loss"])
        if rows:
            assert all(t.grad is None for t in tables)  # the dense table gradient never exists
        engine.step()
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("stage,kind,extra", [
    (0, "hyper_lora", ()),
    (0, "per_annotator_lora", ()),
    (0, "hyper_lora", ("adapter.hypernet.condition_dropout=0.5",)),  # the mean row: a dense step
    pytest.param(2, "hyper_lora", (), marks=pytest.mark.slow),
    pytest.param(1, "multi_head", (), marks=pytest.mark.slow),
])
def test_row_gradients_train_like_the_dense_lazy_path(stage, kind, extra):
    assert uses_row_gradients(tiny_config(f"distributed.zero_stage={stage}"))
    assert not uses_row_gradients(tiny_config("distributed.zero_stage=3"))
    torch.manual_seed(1)
    dense = _trained(stage, False, *extra, kind=kind)
    torch.manual_seed(1)
    rows = _trained(stage, True, *extra, kind=kind)
    start = _engine(stage, False, *extra, kind=kind)[1]
    moved = 0
    for name, value in dense.items():
        torch.testing.assert_close(rows[name], value, rtol=0, atol=1e-6, msg=name)
        moved += not torch.equal(value, dict(start.named_parameters())[name].detach())
    assert moved == len(dense)  # every trainable tensor moved: the comparison is not vacuous


def test_entries_with_an_exactly_zero_gradient_stay_untouched_like_the_scan():
    """From the zero-initialised B head the first step's table gradient is exactly 0.0 in every read row: the
    scan (and ZeRO-3, which uses it) leaves those entries and their step counts alone, and so must the rows."""
    torch.manual_seed(1)
    dense = _trained(0, False, perturb=False)
    torch.manual_seed(1)
    rows = _trained(0, True, perturb=False)
    for name, value in dense.items():
        torch.testing.assert_close(rows[name], value, rtol=0, atol=1e-6, msg=name)


def test_a_nonfinite_row_gradient_skips_the_step():
    engine, model = _engine(0, True)
    table = model.lora.hypernet.tables["annotator"].weight
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    loss = engine(make_batch(n=4, n_annotators=3, seed=0))["loss"]
    engine.backward(loss)
    _, rows = table.row_grads.parts[0]
    rows[0, 0] = float("nan")
    engine.step()
    assert not engine.was_step_applied()
    for name, value in before.items():
        assert torch.equal(dict(model.named_parameters())[name].detach(), value), name
    assert table.row_grads.parts == []


def _two_ranks(rank, port, stage, rows, out):
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.manual_seed(1)
    got = _trained(stage, rows, rank=rank)
    if rank == 0:
        torch.save(got, out)


@pytest.mark.slow
@pytest.mark.parametrize("stage", [0, 2])
def test_two_gloo_ranks_gather_rows_like_deepspeed_reduces_dense_gradients(stage, tmp_path):
    import torch.multiprocessing as mp

    from hyperscale.training.distributed import _free_port

    results = {}
    for rows in (False, True):
        out = tmp_path / f"rows{rows}.pt"
        mp.spawn(_two_ranks, args=(_free_port(), stage, rows, str(out)), nprocs=2, join=True)
        results[rows] = torch.load(out)
    for name, value in results[False].items():
        torch.testing.assert_close(results[True][name], value, rtol=0, atol=1e-6, msg=name)
