"""The batched low-rank op (torch reference) against a float64 per-row loop, values and gradients."""

import pytest
import torch

from hyperscale.ops import lowrank_update, lowrank_update_rowloop, resolve_backend, torch_lowrank_update

# (N rows, d_in, d_out, r, U adapters): awkward, non-power-of-two shapes; U > used adapters too.
SHAPES = [(1, 5, 3, 1, 1), (37, 13, 11, 3, 5), (64, 24, 40, 8, 64), (50, 17, 9, 2, 7)]


def _inputs(N, d_in, d_out, r, U, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    mk = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).to(dtype).requires_grad_(True)
    idx = torch.randint(0, max(1, U - 1) if U > 2 else U, (N,), generator=g)  # leave an adapter unused
    return mk(N, d_out), mk(N, d_in), mk(U, r, d_in), mk(U, d_out, r), idx


@pytest.mark.parametrize("shape", SHAPES)
def test_matches_rowloop_float64(shape):
    base, x, A, B, idx = _inputs(*shape, torch.float64)
    out = torch_lowrank_update(base, x, A, B, idx, 0.75)
    ref_inputs = [t.detach().clone().requires_grad_(True) for t in (base, x, A, B)]
    ref = lowrank_update_rowloop(*ref_inputs, idx, 0.75)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    dy = torch.randn_like(out)
    grads = torch.autograd.grad(out, (base, x, A, B), dy)
    ref_grads = torch.autograd.grad(ref, ref_inputs, dy)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_gradcheck():
    base, x, A, B, idx = _inputs(23, 7, 6, 3, 4, torch.float64, seed=3)
    assert torch.autograd.gradcheck(lambda b, x, A, B: torch_lowrank_update(b, x, A, B, idx, 1.3), (base, x, A, B))


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_low_precision_close_to_float64(dtype, tol):
    # bf16 has an 8-bit mantissa (~4e-3 relative); two chained matmuls round twice.
    base, x, A, B, idx = _inputs(40, 19, 21, 4, 6, torch.float64, seed=1)
    ref = lowrank_update_rowloop(base, x, A, B, idx, 0.5)
    low = [t.detach().to(dtype) for t in (base, x, A, B)]
    out = torch_lowrank_update(*low, idx, 0.5).double()
    rel = (out - ref).norm() / ref.norm()
    assert rel < tol


def test_unused_adapters_get_zero_gradient():
    base, x, A, B, idx = _inputs(30, 6, 5, 2, 5, torch.float64)
    idx = torch.where(idx == 4, torch.zeros_like(idx), idx)  # adapter 4 unused
    out = torch_lowrank_update(base, x, A, B, idx, 1.0)
    dA, dB = torch.autograd.grad(out.sum(), (A, B))
    assert dA[4].abs().sum() == 0 and dB[4].abs().sum() == 0
    assert dA[:4].abs().sum() > 0


def test_auto_backend_is_torch_on_cpu():
    assert resolve_backend("auto", torch.device("cpu")) == "torch"
    with pytest.raises(ValueError):
        resolve_backend("cuda-magic", torch.device("cpu"))
    base, x, A, B, idx = _inputs(8, 4, 3, 2, 2, torch.float32)
    torch.testing.assert_close(lowrank_update(base, x, A, B, idx, 1.0), torch_lowrank_update(base, x, A, B, idx, 1.0))


def test_kernels_folder_is_not_the_pypi_kernels_package():
    """From the repo root our kernels/ folder is reachable as top-level `kernels`, the name of
    a PyPI package transformers and bitsandbytes probe for: both must see it as not installed."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    code = (
        "from transformers.utils.import_utils import is_kernels_available\n"
        "assert not is_kernels_available()\n"
        "try:\n    from kernels import get_kernel\nexcept ImportError:\n    print('absent')\n"
        "import hyperscale.kernels.lowrank\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "absent"


@pytest.mark.parametrize("counts", [[5, 5, 5], [1, 4, 2, 0], [9, 1, 1, 1, 1], [7]])
def test_one_hot_grid_and_loop_paths_match_rowloop(counts, monkeypatch):
    """The three ways the torch op computes (a one-hot layout while U * r is small, a (U, M) grid, a loop when
    the grid would be mostly padding) hold the float64 contract, and a plan made once is reused as is."""
    from hyperscale.ops import reference

    g = torch.Generator().manual_seed(5)
    idx = torch.cat([torch.full((c,), u) for u, c in enumerate(counts)])[torch.randperm(sum(counts), generator=g)]
    U, N = len(counts), sum(counts)
    base, x, A, B, _ = _inputs(N, 6, 5, 2, U, torch.float64)
    ref_inputs = [t.detach().clone().requires_grad_(True) for t in (base, x, A, B)]
    ref = lowrank_update_rowloop(*ref_inputs, idx, 0.5)
    dy = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    want = torch.autograd.grad(ref, ref_inputs, dy)
    for width, padding in ((10**9, 0.0), (0, 1e9), (0, 0.0)):  # one-hot; grid whenever possible; loop (U > 1)
        monkeypatch.setattr(reference, "ONE_HOT_WIDTH", width)
        monkeypatch.setattr(reference, "MAX_PADDING", padding)
        seg = reference.plan_segments(idx, U)
        out = torch_lowrank_update(base, x, A, B, idx, 0.5, seg)
        assert seg._grouping is None if width else seg.grouping.batched == (padding > 1 or U == 1)
        torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
        for got, w in zip(torch.autograd.grad(out, (base, x, A, B), dy), want):
            torch.testing.assert_close(got, w, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="planned for"):
        torch_lowrank_update(base[:-1], x[:-1], A, B, idx[:-1], 0.5, seg)
