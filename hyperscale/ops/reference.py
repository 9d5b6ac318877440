"""The batched per-row low-rank update, written once for every adapter kind.

Every wrapped layer computes, for each row n of its flattened input,

    out[n] = base_out[n] + scale * B[idx[n]] @ (A[idx[n]] @ x[n])

with shapes

    x         (N, d_in)        rows = tokens of all sequences, flattened
    A         (U, r, d_in)     one generated "shrink" matrix per unique condition
    B         (U, d_out, r)    one generated "expand" matrix per unique condition
    idx       (N,) int64       condition of each row, in [0, U)
    base_out  (N, d_out)       the frozen base layer's output

The gradients the training step needs are dx, dA[u], dB[u] for every unique u
(A and B are *generated*, so unlike multi-LoRA serving there is no fixed adapter
set to accumulate into) and d base_out = dy.

Backends share this contract: `torch` (this file: sort rows by condition, one
pair of matmuls per unique condition, an explicit backward) and `triton`
(hyperscale.kernels.lowrank, fused shrink/expand kernels for CUDA), tested
against this one and against `lowrank_update_rowloop` in float64. Which backend
a model uses is decided once, when it is built (ops/backend.py).
"""

from __future__ import annotations

import torch


def _segments(idx: torch.Tensor, n_adapters: int) -> tuple[torch.Tensor, list[int]]:
    """Row order that groups rows by condition, and each condition's row count."""
    order = torch.argsort(idx, stable=True)  # (N,)
    counts = torch.bincount(idx, minlength=n_adapters).tolist()  # U ints; one host sync
    return order, counts


class LowRankUpdate(torch.autograd.Function):
    """Torch reference: rows sorted into per-condition segments, two matmuls each.

    Matmuls run in the input dtype (fp32 accumulation inside the BLAS); the
    Triton kernels are tested against this function and against a float64
    per-row loop.
    """

    @staticmethod
    def forward(ctx, base_out, x, A, B, idx, scale: float):
        n_adapters = A.shape[0]
        order, counts = _segments(idx, n_adapters)
        x_sorted = x.index_select(0, order)  # (N, d_in)
        h_parts, y_parts = [], []
        for u, x_u in enumerate(x_sorted.split(counts)):
            if x_u.shape[0] == 0:
                continue
            h_u = x_u @ A[u].t()  # (n_u, r)
            h_parts.append(h_u)
            y_parts.append(h_u @ B[u].t())  # (n_u, d_out)
        out = base_out.clone()
        if y_parts:
            out.index_add_(0, order, torch.cat(y_parts).to(out.dtype), alpha=scale)
        h_sorted = torch.cat(h_parts) if h_parts else x.new_zeros(0, A.shape[1])
        ctx.save_for_backward(x_sorted, A, B, order, h_sorted)
        ctx.counts, ctx.scale = counts, scale
        return out

    @staticmethod
    def backward(ctx, d_out):
        x_sorted, A, B, order, h_sorted = ctx.saved_tensors
        counts, scale = ctx.counts, ctx.scale
        d_out_sorted = d_out.index_select(0, order).to(x_sorted.dtype)  # (N, d_out)
        dA = torch.zeros_like(A) if ctx.needs_input_grad[2] else None
        dB = torch.zeros_like(B) if ctx.needs_input_grad[3] else None
        dx_parts = []
        bounds = torch.tensor([0] + counts).cumsum(0).tolist()
        for u in range(len(counts)):
            lo, hi = bounds[u], bounds[u + 1]
            if lo == hi:
                continue
            dy_u, x_u, h_u = d_out_sorted[lo:hi], x_sorted[lo:hi], h_sorted[lo:hi]
            dh_u = (dy_u @ B[u]) * scale  # (n_u, r)
            if dB is not None:
                dB[u] = (dy_u.t() @ h_u) * scale  # (d_out, r)
            if dA is not None:
                dA[u] = dh_u.t() @ x_u  # (r, d_in)
            dx_parts.append(dh_u @ A[u])  # (n_u, d_in)
        dx = None
        if ctx.needs_input_grad[1]:
            dx = torch.zeros_like(x_sorted)
            if dx_parts:
                dx.index_copy_(0, order, torch.cat(dx_parts))
        d_base = d_out if ctx.needs_input_grad[0] else None
        return d_base, dx, dA, dB, None, None


def torch_lowrank_update(base_out, x, A, B, idx, scale: float):
    return LowRankUpdate.apply(base_out, x, A, B, idx, scale)


def lowrank_update_rowloop(base_out, x, A, B, idx, scale: float):
    """Slow per-row loop, the float64 ground truth in tests. Differentiable."""
    rows = [base_out[n] + scale * (B[idx[n]] @ (A[idx[n]] @ x[n])) for n in range(x.shape[0])]
    return torch.stack(rows) if rows else base_out.clone()
