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

Backends share this contract: `torch` (this file: a one-hot layout and plain
GEMMs while U * r is small, else rows grouped by condition into a (U, M) grid
and batched matmuls, or a loop over conditions when the segments are very
unequal; an explicit backward) and `triton`
(hyperscale.kernels.lowrank, fused shrink/expand kernels for CUDA), tested
against this one and against `lowrank_update_rowloop` in float64. Which backend
a model uses is decided once, when it is built (ops/backend.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


class Segments:
    """The row index of one forward and what the op derives from it; planned once, shared by every layer.

    Three ways to compute the update, chosen per call (LowRankUpdate.forward):
    - one-hot (U * r <= ONE_HOT_WIDTH): each row's r-vector h is placed in its
      condition's block of an (N, U * r) matrix, zeros elsewhere, so the op is six
      plain GEMMs against A and B stacked as (U * r, d): U times the FLOPs the
      update needs, but no gather, sort or per-condition call. Adding exact zeros
      changes no sum. Measured per layer (forward + backward, 1 thread, 16 rows of
      32 tokens, 12 conditions, r=2, CPU time): 3.3 ms at SmolLM2's 576x576 against
      6.3 (grid) and 4.1 (loop); 0.56 ms at the tiny Llama's 64x64 against 1.35 and 1.63.
    - grid / loop: `grouping` (computed on first use, then shared), below.
    """

    def __init__(self, idx: torch.Tensor, n_adapters: int):
        self.idx, self.n_rows, self.n_adapters = idx, idx.shape[0], n_adapters  # idx (N,)
        self._grouping: Grouping | None = None
        self._columns: dict[int, torch.Tensor] = {}

    @property
    def grouping(self) -> Grouping:
        if self._grouping is None:
            self._grouping = group_rows(self.idx, self.n_adapters)
        return self._grouping

    def columns(self, rank: int) -> torch.Tensor:
        """(N, r) column of each row's h in the (N, U * r) one-hot layout."""
        if rank not in self._columns:
            self._columns[rank] = (self.idx[:, None] * rank + torch.arange(rank, device=self.idx.device)).contiguous()
        return self._columns[rank]

    def check(self, n_rows: int, n_adapters: int) -> None:
        if (n_rows, n_adapters) != (self.n_rows, self.n_adapters):
            raise ValueError(f"segments were planned for {self.n_rows} rows and {self.n_adapters} adapters, "
                             f"the op got {n_rows} and {n_adapters}: plan them from this call's idx and A")


# Widest one-hot layout (U * r columns) the op uses; wider, the U-fold FLOPs outweigh
# the per-condition overhead it saves.
ONE_HOT_WIDTH = 64


@dataclass(frozen=True)
class Grouping:
    """How the rows of one forward group by condition (for U * r > ONE_HOT_WIDTH).

    Rows sorted by condition are laid out in a (U, M) grid, M = the largest
    condition's row count: condition u's rows fill the first counts[u] slots of
    row u of the grid, the rest is padding. With segments of similar size (the
    usual case: conditions are per sequence, so every segment is a multiple of
    the sequence length) the grid is dense and the op is two `bmm`s forward and
    four backward, whatever U. With very unequal segments the grid would be mostly
    padding, so the op loops over conditions instead (`batched` False).
    Measured on the tiny fp32 Llama, 16 rows x 16 annotators, 1 thread: the
    per-condition loop (6 small matmuls per condition per layer, each a Python
    call) made hyper_lora's step 1.47x shared_lora's (notes of issue 12).
    """

    n_rows: int
    n_adapters: int
    counts: list[int]  # U ints: rows of each condition
    order: torch.Tensor | None  # (N,) row order that groups rows by condition; None: already grouped (U == 1)
    width: int  # M, slots per condition in the grid
    gather: torch.Tensor | None  # (U*M,) row behind each slot (padding: row 0); None: the identity
    slot: torch.Tensor | None  # (N,) slot of each row (the inverse of gather); None: the identity
    padding: torch.Tensor | None  # (U, M, 1) bool, True on padding slots; None: no padding
    batched: bool  # grid path (bmm) or loop over conditions


# A grid with more than this many slots per real row runs the loop instead.
MAX_PADDING = 2.0


def plan_segments(idx: torch.Tensor, n_adapters: int) -> Segments:
    """The torch backend's plan for rows `idx` (N,) into `n_adapters` conditions (cheap: work is lazy)."""
    return Segments(idx, n_adapters)


def group_rows(idx: torch.Tensor, n_adapters: int) -> Grouping:
    """The grouping of rows `idx` (N,) into `n_adapters` conditions (one host sync: the counts)."""
    n_rows = idx.shape[0]
    if n_adapters == 1:
        return Grouping(n_rows, 1, [n_rows], None, n_rows, None, None, None, True)
    order = torch.argsort(idx, stable=True)  # (N,)
    counts_t = torch.bincount(idx, minlength=n_adapters)  # (U,)
    counts = counts_t.tolist()  # U ints; the one host sync per forward
    if len(counts) > n_adapters:
        raise ValueError(f"idx holds a condition >= {n_adapters}, the number of adapters")
    width = max(counts) if counts else 0
    if n_rows == 0 or n_adapters * width > MAX_PADDING * n_rows:
        return Grouping(n_rows, n_adapters, counts, order, width, None, None, None, False)
    positions = torch.arange(n_rows, device=idx.device)
    if n_adapters * width == n_rows:  # every condition has M rows: the grid is the sorted rows
        slot = torch.empty_like(order)
        slot[order] = positions
        return Grouping(n_rows, n_adapters, counts, order, width, order, slot, None, True)
    sorted_idx = idx.index_select(0, order)  # (N,)
    start = counts_t.cumsum(0) - counts_t  # (U,) first sorted row of each condition
    rank = positions - start.index_select(0, sorted_idx)  # (N,) position of each sorted row in its segment
    slot = torch.empty_like(order)
    slot[order] = sorted_idx * width + rank  # (N,) slot of each (unsorted) row
    gather = torch.zeros(n_adapters * width, dtype=torch.long, device=idx.device)
    gather[slot] = positions
    padding = torch.ones(n_adapters * width, dtype=torch.bool, device=idx.device)
    padding[slot] = False
    return Grouping(n_rows, n_adapters, counts, order, width, gather, slot, padding.view(n_adapters, width, 1), True)


def _grid(t: torch.Tensor, seg: Grouping) -> torch.Tensor:
    """(N, D) rows -> (U, M, D) grid (padding slots hold row 0; they are masked where it matters)."""
    rows = t if seg.gather is None else t.index_select(0, seg.gather)
    return rows.reshape(seg.n_adapters, seg.width, t.shape[1])


def _rows(grid: torch.Tensor, seg: Grouping) -> torch.Tensor:
    """(U, M, D) grid -> (N, D) rows in their original order (padding slots dropped)."""
    flat = grid.reshape(-1, grid.shape[-1])
    return flat if seg.slot is None else flat.index_select(0, seg.slot)


class LowRankUpdate(torch.autograd.Function):
    """Torch reference: rows grouped by condition (Segments), then per-condition matmuls.

    Matmuls run in the input dtype (fp32 accumulation inside the BLAS); the
    Triton kernels are tested against this function and against a float64
    per-row loop. `segments`: a plan_segments(idx, U) result to reuse (a model
    plans once per forward for all its layers); None plans here.
    """

    @staticmethod
    def forward(ctx, base_out, x, A, B, idx, scale: float, segments: Segments | None = None):
        plan = segments if segments is not None else plan_segments(idx, A.shape[0])
        plan.check(x.shape[0], A.shape[0])
        n_adapters, rank = A.shape[:2]
        ctx.scale, ctx.one_hot = scale, n_adapters * rank <= ONE_HOT_WIDTH
        if ctx.one_hot:
            cols = plan.columns(rank)  # (N, r)
            h_all = x @ A.reshape(n_adapters * rank, -1).t()  # (N, U r): every condition's h, for every row
            if n_adapters == 1:  # every row's block is the whole matrix (shared_lora)
                h = h_all
            else:
                h = x.new_zeros(h_all.shape).scatter_(1, cols, h_all.gather(1, cols))  # (N, U r): own block only
            y = h @ B.transpose(1, 2).reshape(n_adapters * rank, -1)  # (N, d_out)
            ctx.save_for_backward(x, A, B, h, cols)
            return torch.add(base_out, y.to(base_out.dtype), alpha=scale)
        seg = ctx.seg = plan.grouping
        if seg.batched:
            # Padding slots compute h and y from row 0 and are never read back (_rows);
            # backward zeroes their dy, so they add nothing to dA, dB or dx.
            x_grid = _grid(x, seg)  # (U, M, d_in)
            h = torch.bmm(x_grid, A.transpose(1, 2))  # (U, M, r)
            y = _rows(torch.bmm(h, B.transpose(1, 2)), seg)  # (N, d_out)
            ctx.save_for_backward(x_grid, A, B, h)
            return torch.add(base_out, y.to(base_out.dtype), alpha=scale)
        counts = seg.counts
        x_sorted = x.index_select(0, seg.order)  # (N, d_in)
        h_parts, y_parts = [], []
        for u, x_u in enumerate(x_sorted.split(counts)):
            if x_u.shape[0] == 0:
                continue
            h_u = x_u @ A[u].t()  # (n_u, r)
            h_parts.append(h_u)
            y_parts.append(h_u @ B[u].t())  # (n_u, d_out)
        out = base_out.clone()
        if y_parts:
            out.index_add_(0, seg.order, torch.cat(y_parts).to(out.dtype), alpha=scale)
        h_sorted = torch.cat(h_parts) if h_parts else x.new_zeros(0, A.shape[1])
        ctx.save_for_backward(x_sorted, A, B, h_sorted)
        return out

    @staticmethod
    def backward(ctx, d_out):
        need_base, need_x, need_a, need_b = ctx.needs_input_grad[:4]
        if ctx.one_hot:
            dx, dA, dB = _backward_one_hot(d_out, *ctx.saved_tensors, ctx.scale, need_x, need_a, need_b)
            return (d_out if need_base else None), dx, dA, dB, None, None, None
        x_saved, A, B, h_saved = ctx.saved_tensors
        seg, scale = ctx.seg, ctx.scale
        if seg.batched:
            dx, dA, dB = _backward_grid(d_out, x_saved, A, B, h_saved, seg, scale, need_x, need_a, need_b)
        else:
            dx, dA, dB = _backward_loop(d_out, x_saved, A, B, h_saved, seg, scale, need_x, need_a, need_b)
        return (d_out if need_base else None), dx, dA, dB, None, None, None


def _backward_one_hot(d_out, x, A, B, h, cols, scale: float, need_x, need_a, need_b):
    """Gradients of the one-hot layout; h (N, U r) is zero outside each row's own block."""
    n_adapters, rank, d_in = A.shape
    dy = d_out.to(x.dtype)  # (N, d_out)
    dA = dB = dx = None
    if need_b:
        dB = ((h.t() @ dy) * scale).view(n_adapters, rank, -1).transpose(1, 2)  # (U, d_out, r)
    if need_a or need_x:
        dh_all = (dy @ B.transpose(1, 2).reshape(n_adapters * rank, -1).t()) * scale  # (N, U r)
        if n_adapters == 1:
            dh = dh_all
        else:
            dh = torch.zeros_like(dh_all).scatter_(1, cols, dh_all.gather(1, cols))  # own block only
        if need_a:
            dA = (dh.t() @ x).view(n_adapters, rank, d_in)  # (U, r, d_in)
        if need_x:
            dx = dh @ A.reshape(n_adapters * rank, d_in)  # (N, d_in)
    return dx, dA, dB


def _backward_grid(d_out, x_grid, A, B, h, seg: Grouping, scale: float, need_x, need_a, need_b):
    dy = _grid(d_out.to(x_grid.dtype), seg)  # (U, M, d_out)
    if seg.padding is not None:
        dy = dy.masked_fill(seg.padding, 0)  # padding slots: no gradient anywhere
    dA = dB = dx = None
    if need_b:
        dB = torch.bmm(dy.transpose(1, 2), h) * scale  # (U, d_out, r)
    if need_a or need_x:
        dh = torch.bmm(dy, B) * scale  # (U, M, r)
        if need_a:
            dA = torch.bmm(dh.transpose(1, 2), x_grid)  # (U, r, d_in)
        if need_x:
            dx = _rows(torch.bmm(dh, A), seg)  # (N, d_in)
    return dx, dA, dB


def _backward_loop(d_out, x_sorted, A, B, h_sorted, seg: Grouping, scale: float, need_x, need_a, need_b):
    counts = seg.counts
    d_out_sorted = d_out.index_select(0, seg.order).to(x_sorted.dtype)  # (N, d_out)
    dA = torch.zeros_like(A) if need_a else None
    dB = torch.zeros_like(B) if need_b else None
    dx_parts = []
    lo = 0
    for u, n_u in enumerate(counts):
        hi = lo + n_u
        if lo == hi:
            continue
        dy_u, x_u, h_u = d_out_sorted[lo:hi], x_sorted[lo:hi], h_sorted[lo:hi]
        dh_u = (dy_u @ B[u]) * scale  # (n_u, r)
        if dB is not None:
            dB[u] = (dy_u.t() @ h_u) * scale  # (d_out, r)
        if dA is not None:
            dA[u] = dh_u.t() @ x_u  # (r, d_in)
        dx_parts.append(dh_u @ A[u])  # (n_u, d_in)
        lo = hi
    dx = None
    if need_x:
        dx = torch.zeros_like(x_sorted)
        if dx_parts:
            dx.index_copy_(0, seg.order, torch.cat(dx_parts))
    return dx, dA, dB


def torch_lowrank_update(base_out, x, A, B, idx, scale: float, segments: Segments | None = None):
    """The torch backend's op; `segments` (optional): plan_segments(idx, A.shape[0]), reused across layers."""
    return LowRankUpdate.apply(base_out, x, A, B, idx, scale, segments)


def lowrank_update_rowloop(base_out, x, A, B, idx, scale: float):
    """Slow per-row loop, the float64 ground truth in tests. Differentiable."""
    rows = [base_out[n] + scale * (B[idx[n]] @ (A[idx[n]] @ x[n])) for n in range(x.shape[0])]
    return torch.stack(rows) if rows else base_out.clone()
