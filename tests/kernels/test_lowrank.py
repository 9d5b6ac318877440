"""Triton low-rank update vs the torch reference and a float64 row loop.

On CPU the kernels run in the Triton interpreter (tests/conftest.py sets
TRITON_INTERPRET=1), so shapes are small but deliberately awkward: nothing is
a power of two, N is not a multiple of the row tile (32), d_in / d_out / r
cross the column blocks (64) and r's pad to 16, adapters are unused, and idx
changes in the middle of a sequence.
"""

from __future__ import annotations

import pytest
import torch

from hyperscale.ops import LowRankUpdate, lowrank_update, lowrank_update_rowloop

# Per-dtype bound on max|got - want| / max(1, max|want|): errors are measured
# against each tensor's own scale because dA and dB are sums over a segment's
# rows and grow with it (values of ~10 in "crosses_blocks"), so a fixed atol
# would be too loose for the output and too tight for the adapter gradients.
# fp32: fp32 accumulation in a different order than torch's BLAS; ~3e-7
#   observed, 1e-5 leaves room without hiding a wrong row or adapter.
# fp16: inputs, h/dh and the result are each rounded to fp16 (ulp/value <=
#   2**-10 ~ 1e-3); 7.6e-4 observed (torch itself: 7.4e-4), 4e-3 is about
#   four ulps of the largest value.
# bf16: the same roundings with 8 mantissa bits (2**-7 ~ 7.8e-3); 1.1e-2
#   observed (torch itself: 7.1e-3), 3e-2 is about four ulps.
# A wrong row, adapter or scale gives errors of order 1 in every dtype.
TOLERANCES = {
    torch.float32: 1e-5,
    torch.float16: 4e-3,
    torch.bfloat16: 3e-2,
}
DTYPES = list(TOLERANCES)


def _packed_idx(lengths, conditions):
    """Rows of sequences packed back to back; each sequence has one condition."""
    return torch.cat([torch.full((n,), c, dtype=torch.int64) for n, c in zip(lengths, conditions)])


def _case(name, seed=0):
    """(N, U, d_in, d_out, r, idx) for each named awkward case."""
    g = torch.Generator().manual_seed(seed)
    if name == "single_row":
        return 1, 1, 13, 11, 3, torch.zeros(1, dtype=torch.int64)
    if name == "one_adapter_per_row":  # U == N, rows in shuffled adapter order
        return 37, 37, 13, 11, 3, torch.randperm(37, generator=g)
    if name == "rank_one":
        return 29, 4, 20, 17, 1, torch.randint(0, 4, (29,), generator=g)
    if name == "packed_mid_sequence":
        # 45 rows cut into 4 sequences; boundaries at rows 7, 26, 38 fall inside
        # row tiles, and condition 2 appears in two separate sequences.
        return 45, 6, 13, 11, 5, _packed_idx([7, 19, 12, 7], [2, 0, 5, 2])
    if name == "unused_adapters":  # U=9, only 1, 4 and 7 get rows
        return 33, 9, 19, 23, 6, torch.tensor([1, 4, 7])[torch.randint(0, 3, (33,), generator=g)]
    if name == "crosses_blocks":
        # > 1 row tile per adapter, d_in/d_out > one 64 column block, r pads to 32.
        return 70, 2, 67, 70, 17, torch.randint(0, 2, (70,), generator=g)
    raise KeyError(name)


CASES = ["single_row", "one_adapter_per_row", "rank_one", "packed_mid_sequence",
         "unused_adapters", "crosses_blocks"]


def _inputs(name, dtype, device="cpu", seed=0, strided=False):
    n, u, d_in, d_out, r, idx = _case(name, seed)
    g = torch.Generator().manual_seed(seed + 1)
    # Scaled so h and the update are of order 1, like a trained LoRA.
    x = torch.randn(n, d_in, generator=g)
    A = torch.randn(u, r, d_in, generator=g) / d_in ** 0.5
    B = torch.randn(u, d_out, r, generator=g) / r ** 0.5
    base = torch.randn(n, d_out, generator=g)
    dy = torch.randn(n, d_out, generator=g)
    if strided:  # column-major x and base_out: kernels must honour strides, not assume rows
        x, base = x.t().contiguous().t(), base.t().contiguous().t()
    leaves = [t.to(device=device, dtype=dtype).requires_grad_() for t in (base, x, A, B)]
    return leaves, idx.to(device), dy.to(device=device, dtype=dtype)


def _run(fn, leaves, idx, dy, scale, **kw):
    out = fn(*leaves, idx, scale, **kw)
    grads = torch.autograd.grad(out, leaves, dy)
    return [out.detach(), *grads]


def _float64_truth(leaves, idx, dy, scale):
    leaves64 = [t.detach().double().requires_grad_() for t in leaves]
    return _run(lowrank_update_rowloop, leaves64, idx, dy.double(), scale)


def _scaled_error(got, want) -> float:
    want = want.double()
    return ((got.double() - want).abs().max() / want.abs().max().clamp_min(1.0)).item() if want.numel() else 0.0


NAMES = ["out", "d_base_out", "dx", "dA", "dB"]


@pytest.mark.parametrize("deterministic", [False, True], ids=["atomic", "deterministic"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize("case", CASES)
def test_matches_reference_and_float64(case, dtype, deterministic):
    tol = TOLERANCES[dtype]
    leaves, idx, dy = _inputs(case, dtype, strided=case == "packed_mid_sequence")
    scale = 0.75
    triton_res = _run(lowrank_update, leaves, idx, dy, scale, backend="triton", deterministic=deterministic)
    torch_res = _run(LowRankUpdate.apply, leaves, idx, dy, scale)
    truth = _float64_truth(leaves, idx, dy, scale)
    for name, got, ref, exact in zip(NAMES, triton_res, torch_res, truth):
        assert got.dtype == dtype and got.shape == exact.shape, name
        assert _scaled_error(got, exact) <= tol, (name, "vs float64", _scaled_error(got, exact))
        assert _scaled_error(got, ref) <= tol, (name, "vs torch", _scaled_error(got, ref))


def test_unused_adapters_get_exactly_zero_gradient():
    leaves, idx, dy = _inputs("unused_adapters", torch.float32)
    for deterministic in (False, True):
        _, _, _, dA, dB = _run(lowrank_update, leaves, idx, dy, 0.5, backend="triton", deterministic=deterministic)
        unused = torch.tensor([0, 2, 3, 5, 6, 8])
        assert torch.count_nonzero(dA[unused]) == 0 and torch.count_nonzero(dB[unused]) == 0
        assert torch.count_nonzero(dA[torch.tensor([1, 4, 7])]) > 0


def test_deterministic_is_bit_identical_across_runs():
    # Many rows per adapter so each segment sum spans several row tiles.
    leaves, idx, dy = _inputs("crosses_blocks", torch.bfloat16, seed=3)
    first = _run(lowrank_update, leaves, idx, dy, 1.5, backend="triton", deterministic=True)
    second = _run(lowrank_update, leaves, idx, dy, 1.5, backend="triton", deterministic=True)
    for name, a, b in zip(NAMES, first, second):
        assert torch.equal(a, b), name


def test_empty_batch_returns_base():
    leaves, idx, dy = _inputs("single_row", torch.float32)
    base, x, A, B = leaves
    out = lowrank_update(base[:0], x[:0], A, B, idx[:0], 1.0, backend="triton")
    assert out.shape == (0, base.shape[1])


def test_only_needed_gradients_are_computed():
    leaves, idx, dy = _inputs("rank_one", torch.float32)
    base, x, A, B = leaves
    frozen_x = x.detach()  # e.g. the first adapted layer's input, which needs no grad
    out = lowrank_update(base, frozen_x, A, B, idx, 2.0, backend="triton")
    dA, dB = torch.autograd.grad(out, (A, B), dy)
    ref = LowRankUpdate.apply(base, frozen_x, A, B, idx, 2.0)
    rA, rB = torch.autograd.grad(ref, (A, B), dy)
    torch.testing.assert_close(dA, rA, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(dB, rB, atol=1e-5, rtol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32], ids=str)
@pytest.mark.parametrize("n, u, d_in, d_out, r", [
    (4133, 7, 4096, 1031, 16),   # per-sequence sized segments, odd d_out
    (2049, 2049, 515, 771, 8),   # one adapter per row
    (8191, 1, 2048, 4096, 64),   # one adapter: segment reduction over every row
])
def test_gpu_large_shapes(n, u, d_in, d_out, r, dtype):
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(n, d_in, device="cuda", generator=g)
    A = torch.randn(u, r, d_in, device="cuda", generator=g) / d_in ** 0.5
    B = torch.randn(u, d_out, r, device="cuda", generator=g) / r ** 0.5
    base = torch.randn(n, d_out, device="cuda", generator=g)
    dy = torch.randn(n, d_out, device="cuda", generator=g).to(dtype)
    idx = torch.randint(0, u, (n,), device="cuda", generator=g)
    leaves = [t.to(dtype).requires_grad_() for t in (base, x, A, B)]
    ref = _run(LowRankUpdate.apply, leaves, idx, dy, 0.5)
    # Sums here run over up to 8191 rows (dB, dA) or 4096 columns, so errors
    # grow ~sqrt(len) beyond the CPU cases: compare relative to each tensor's scale.
    rel = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 4e-2}[dtype]
    for deterministic in (False, True):
        got = _run(lowrank_update, leaves, idx, dy, 0.5, backend="triton", deterministic=deterministic)
        for name, a, b in zip(NAMES, got, ref):
            err = (a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-6)
            assert err < rel, (name, deterministic, err.item())
    again = _run(lowrank_update, leaves, idx, dy, 0.5, backend="triton", deterministic=True)
    for name, a, b in zip(NAMES, again, got):
        assert torch.equal(a, b), name
