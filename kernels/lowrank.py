"""Triton kernels for the batched per-row low-rank update (contract: hyperscale/ops/reference.py).

    out[n] = base_out[n] + scale * B[idx[n]] @ (A[idx[n]] @ x[n])

    x (N, d_in)   A (U, r, d_in)   B (U, d_out, r)   idx (N,) int64   base_out (N, d_out)

Layout of the work. Rows are stably sorted by adapter once per forward
(`torch.argsort`, no host sync) and cut into *tiles*: runs of at most BLOCK_N
sorted rows that share one adapter. Every kernel reads rows through the sort
permutation `order`, so x, base_out and dy are never copied into sorted order,
and A[u] / B[u] are read straight from the stacked tensors: no per-row copy of
A or B exists. Because idx is per row, the per-sequence layout (idx constant
along a sequence) and the packed layout (idx changes mid-sequence) are the same
case. An adapter with no rows owns no tile.

Forward: `shrink` writes h = A[u] x per tile (fp32, in sorted order, kept for
backward), then `expand` computes base_out + scale * B[u] h and writes it in one
pass. That write goes to a *new* tensor, not in place into base_out: it moves
the same bytes as an in-place add (read base_out, write out), and in place would
(a) change base_out under callers that still hold it, unlike the torch
reference, and (b) break autograd whenever the op that produced base_out saved
its own output for backward (version-counter error) or base_out is a leaf.

Backward, with dy = d out:
    d base_out = dy                       (returned as is, no copy)
    dh  = scale * B[u]^T dy               (`shrink` with B read transposed via strides)
    dx  = A[u]^T dh                       (`expand` with A read transposed, no base)
    dA[u] = dh_u^T x_u,  dB[u] = scale * dy_u^T h_u   (`segment_outer`)
The per-adapter sums over rows happen inside `segment_outer`, two ways:
  * deterministic=True: one program per (adapter, column block) walks its
    adapter's sorted segment in a fixed order and stores once. Bit-identical
    run to run; parallelism is U x column blocks, so U=1 over many rows leaves
    most SMs idle.
  * deterministic=False (default): one program per (tile, column block) adds
    its partial product into an fp32 buffer with atomics. Parallel over rows
    for any U, but float addition order varies between runs.
Adapters with no rows get exactly zero gradient in both paths.

Precision: all products accumulate in fp32. fp32 inputs use IEEE dots (not
TF32) so they match torch's default fp32 matmul. h and dh are rounded to the
input dtype before they meet B / A / x, the same rounding points as the torch
reference.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

# Rows per tile. Each adapter's last tile is partly masked, so up to
# U * (BLOCK_N - 1) rows of work are wasted; per-instance adapters have
# segments of one sequence (a few hundred tokens), where 32 keeps that small.
# BLOCK_N is also the reduced dim of segment_outer's dot, which must be >= 16.
# At 32 rows sm_90 gets mma.sync m16n8k16, not wgmma (64-row tiles): fine for
# an op that is memory-bound while r << d.
BLOCK_N = 32
# Column blocks along d_in (shrink reduction) and d_out / d_in (expand output,
# segment_outer output). Not tuned on a GPU yet; see hyperscale/bench/kernels.py.
BLOCK_K = 64
BLOCK_D = 64


# ----------------------------------------------------------------------------- kernels


@triton.jit
def _dot(a, b, acc, PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    # The interpreter multiplies bf16 bit patterns in tl.dot
    # (triton-lang/triton#11584); fp32 operands give the same fp32-accumulated
    # result because a product of two bf16 values is exact in fp32.
    if UPCAST:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
    return tl.dot(a, b, acc, input_precision=PRECISION)


@triton.jit
def _shrink_kernel(
    x_ptr, stride_xn, stride_xk,  # rows read through `order`: (N, K)
    w_ptr, stride_wu, stride_wr, stride_wk,  # (U, R, K) as strides, so B^T works too
    h_ptr, stride_hn,  # (N, R) fp32, sorted row order
    order_ptr, tile_adapter_ptr, tile_lo_ptr, tile_hi_ptr,
    K, R, scale,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_R: tl.constexpr,
    PRECISION: tl.constexpr, UPCAST: tl.constexpr,
):
    """h[s, j] = scale * sum_k x[order[s], k] * w[u, j, k] for the rows s of one tile."""
    tile = tl.program_id(0)
    u = tl.load(tile_adapter_ptr + tile)
    if u < 0:  # tile table is sized for the worst case; the rest are padding
        return
    lo = tl.load(tile_lo_ptr + tile)
    hi = tl.load(tile_hi_ptr + tile)
    s = lo + tl.arange(0, BLOCK_N)
    s_mask = s < hi
    rows = tl.load(order_ptr + s, mask=s_mask, other=0)  # int64: row * stride can pass 2**31
    j = tl.arange(0, BLOCK_R)
    j_mask = j < R
    w_base = w_ptr + u.to(tl.int64) * stride_wu

    acc = tl.zeros((BLOCK_N, BLOCK_R), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        k = k0 + tl.arange(0, BLOCK_K)
        k_mask = k < K
        x = tl.load(x_ptr + rows[:, None] * stride_xn + k[None, :] * stride_xk,
                    mask=s_mask[:, None] & k_mask[None, :], other=0.0)  # (BLOCK_N, BLOCK_K)
        w_t = tl.load(w_base + k[:, None] * stride_wk + j[None, :] * stride_wr,
                      mask=k_mask[:, None] & j_mask[None, :], other=0.0)  # (BLOCK_K, BLOCK_R)
        acc = _dot(x, w_t, acc, PRECISION, UPCAST)
    tl.store(h_ptr + s[:, None] * stride_hn + j[None, :], acc * scale,
             mask=s_mask[:, None] & j_mask[None, :])


@triton.jit
def _expand_kernel(
    h_ptr, stride_hn,  # (N, R) fp32, sorted row order
    w_ptr, stride_wu, stride_wd, stride_wr,  # (U, D, R) as strides, so A^T works too
    base_ptr, stride_bn, stride_bd,  # rows read through `order`: (N, D); unused without HAS_BASE
    y_ptr, stride_yn, stride_yd,  # rows written through `order`: (N, D)
    order_ptr, tile_adapter_ptr, tile_lo_ptr, tile_hi_ptr,
    D, R, scale,
    HAS_BASE: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_R: tl.constexpr,
    PRECISION: tl.constexpr, UPCAST: tl.constexpr,
):
    """y[order[s], d] = base[order[s], d] + scale * sum_j h[s, j] * w[u, d, j]."""
    tile = tl.program_id(0)
    u = tl.load(tile_adapter_ptr + tile)
    if u < 0:
        return
    lo = tl.load(tile_lo_ptr + tile)
    hi = tl.load(tile_hi_ptr + tile)
    s = lo + tl.arange(0, BLOCK_N)
    s_mask = s < hi
    rows = tl.load(order_ptr + s, mask=s_mask, other=0)
    j = tl.arange(0, BLOCK_R)
    j_mask = j < R
    d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    d_mask = d < D

    w_t = tl.load(w_ptr + u.to(tl.int64) * stride_wu + j[:, None] * stride_wr + d[None, :] * stride_wd,
                  mask=j_mask[:, None] & d_mask[None, :], other=0.0)  # (BLOCK_R, BLOCK_D)
    h = tl.load(h_ptr + s[:, None] * stride_hn + j[None, :],
                mask=s_mask[:, None] & j_mask[None, :], other=0.0)  # (BLOCK_N, BLOCK_R) fp32
    # Round h to the input dtype before it meets w: the torch reference's h is
    # a matmul output in that dtype, and a bf16/fp16 dot runs on tensor cores.
    acc = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)
    acc = _dot(h.to(w_t.dtype), w_t, acc, PRECISION, UPCAST) * scale
    mask = s_mask[:, None] & d_mask[None, :]
    if HAS_BASE:
        base = tl.load(base_ptr + rows[:, None] * stride_bn + d[None, :] * stride_bd, mask=mask, other=0.0)
        acc += base.to(tl.float32)
    tl.store(y_ptr + rows[:, None] * stride_yn + d[None, :] * stride_yd,
             acc.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _segment_outer_kernel(
    p_ptr, stride_pn,  # (N, R) fp32, sorted row order
    q_ptr, stride_qn, stride_qd,  # rows read through `order`: (N, D)
    g_ptr, stride_gu, stride_gr, stride_gd,  # (U, R, D) as strides, so dB's (U, D, R) works too
    order_ptr, seg_lo_ptr, seg_hi_ptr, tile_adapter_ptr, tile_lo_ptr, tile_hi_ptr,
    D, R, scale,
    DETERMINISTIC: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_R: tl.constexpr,
    PRECISION: tl.constexpr, UPCAST: tl.constexpr,
):
    """g[u, j, d] = scale * sum over rows s of adapter u of p[s, j] * q[order[s], d].

    DETERMINISTIC: program 0-axis = adapter, loops its whole segment, plain store.
    Otherwise: program 0-axis = tile, atomically adds its part into fp32 g.
    """
    pid = tl.program_id(0)
    if DETERMINISTIC:
        u = pid
        lo = tl.load(seg_lo_ptr + pid)
        hi = tl.load(seg_hi_ptr + pid)
    else:
        u = tl.load(tile_adapter_ptr + pid)
        lo = tl.load(tile_lo_ptr + pid)
        hi = tl.load(tile_hi_ptr + pid)
    if u < 0:  # padding tile (atomic path only); kept outside the constexpr branch: a top-level early return
        return
    j = tl.arange(0, BLOCK_R)
    j_mask = j < R
    d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    d_mask = d < D

    acc = tl.zeros((BLOCK_R, BLOCK_D), dtype=tl.float32)
    for s0 in range(lo, hi, BLOCK_N):  # zero trips for an unused adapter: its gradient is 0
        s = s0 + tl.arange(0, BLOCK_N)
        s_mask = s < hi
        rows = tl.load(order_ptr + s, mask=s_mask, other=0)
        q = tl.load(q_ptr + rows[:, None] * stride_qn + d[None, :] * stride_qd,
                    mask=s_mask[:, None] & d_mask[None, :], other=0.0)  # (BLOCK_N, BLOCK_D)
        p_t = tl.load(p_ptr + s[None, :] * stride_pn + j[:, None],
                      mask=s_mask[None, :] & j_mask[:, None], other=0.0)  # (BLOCK_R, BLOCK_N) fp32
        acc = _dot(p_t.to(q.dtype), q, acc, PRECISION, UPCAST)
    acc = acc * scale
    g = g_ptr + u.to(tl.int64) * stride_gu + j[:, None] * stride_gr + d[None, :] * stride_gd
    mask = j_mask[:, None] & d_mask[None, :]
    if DETERMINISTIC:
        tl.store(g, acc.to(g_ptr.dtype.element_ty), mask=mask)
    else:
        tl.atomic_add(g, acc, mask=mask)


# ----------------------------------------------------------------------------- launchers


def _dot_flags(dtype: torch.dtype, device: torch.device) -> dict:
    """constexpr dot settings: IEEE for fp32 inputs; fp32 upcast where the interpreter lacks bf16 dots."""
    precision = "ieee" if dtype == torch.float32 else "tf32"  # ignored by bf16/fp16 dots
    upcast = device.type != "cuda" and dtype == torch.bfloat16  # CPU tensors only run interpreted
    return {"PRECISION": precision, "UPCAST": upcast}


def _block_r(r: int) -> int:
    return max(16, triton.next_power_of_2(r))  # r is the reduced dim of the expand dot: K >= 16


def build_tiles(idx: torch.Tensor, n_adapters: int, block_n: int = BLOCK_N) -> dict[str, torch.Tensor]:
    """Sort rows by adapter and cut each adapter's segment into tiles of <= block_n rows.

    Built on the device with no host sync: the tile table has a fixed worst-case
    length (each adapter with rows adds at most one partial tile) and padding
    tiles carry adapter -1.

    Returns order (N,) int64, seg_lo / seg_hi (U,) int32 sorted-row bounds of
    each adapter, and tile_adapter / tile_lo / tile_hi (T,) int32.
    """
    n_rows = idx.shape[0]
    device = idx.device
    order = torch.argsort(idx, stable=True)  # (N,)
    # scatter-add instead of bincount: bincount syncs to size its output, and an
    # out-of-range idx fails loudly here instead of being silently dropped.
    counts = torch.zeros(n_adapters, dtype=torch.int64, device=device)
    counts.index_add_(0, idx, torch.ones(idx.shape, dtype=torch.int64, device=device))
    seg_hi = counts.cumsum(0)  # (U,)
    seg_lo = seg_hi - counts
    tiles_per = (counts + block_n - 1) // block_n
    tile_hi_cum = tiles_per.cumsum(0)
    tile_first = tile_hi_cum - tiles_per
    n_tiles = min(n_rows, triton.cdiv(n_rows, block_n) + n_adapters)
    t = torch.arange(n_tiles, device=device)
    u = torch.searchsorted(tile_hi_cum, t, right=True)  # adapter owning tile t; U for padding
    valid = u < n_adapters
    u_c = u.clamp(max=n_adapters - 1)
    tile_lo = seg_lo[u_c] + (t - tile_first[u_c]) * block_n
    tile_hi = torch.minimum(tile_lo + block_n, seg_hi[u_c])
    as_i32 = lambda v: v.to(torch.int32).contiguous()
    return {
        "order": order,
        "seg_lo": as_i32(seg_lo),
        "seg_hi": as_i32(seg_hi),
        "tile_adapter": as_i32(torch.where(valid, u, -1)),
        "tile_lo": as_i32(tile_lo),
        "tile_hi": as_i32(tile_hi),
    }


def shrink(x, w, w_strides, tiles, r: int, scale: float) -> torch.Tensor:
    """h (N, r) fp32 in sorted row order; w_strides = (per adapter, per output j, per reduced k)."""
    n_rows, k_dim = x.shape
    h = torch.empty(n_rows, r, dtype=torch.float32, device=x.device)
    grid = (tiles["tile_adapter"].shape[0],)
    _shrink_kernel[grid](
        x, x.stride(0), x.stride(1),
        w, *w_strides,
        h, h.stride(0),
        tiles["order"], tiles["tile_adapter"], tiles["tile_lo"], tiles["tile_hi"],
        k_dim, r, scale,
        BLOCK_N=BLOCK_N, BLOCK_K=BLOCK_K, BLOCK_R=_block_r(r), **_dot_flags(x.dtype, x.device),
    )
    return h


def expand(h, w, w_strides, d_dim: int, tiles, scale: float, base=None, out_dtype=None) -> torch.Tensor:
    """y (N, d_dim) = base + scale * h w^T in original row order; w_strides = (adapter, d, j)."""
    n_rows, r = h.shape
    y = torch.empty(n_rows, d_dim, dtype=out_dtype or w.dtype, device=h.device)
    base_args = (base, base.stride(0), base.stride(1)) if base is not None else (y, 0, 0)
    grid = (tiles["tile_adapter"].shape[0], triton.cdiv(d_dim, BLOCK_D))
    _expand_kernel[grid](
        h, h.stride(0),
        w, *w_strides,
        *base_args,
        y, y.stride(0), y.stride(1),
        tiles["order"], tiles["tile_adapter"], tiles["tile_lo"], tiles["tile_hi"],
        d_dim, r, scale,
        HAS_BASE=base is not None,
        BLOCK_N=BLOCK_N, BLOCK_D=BLOCK_D, BLOCK_R=_block_r(r), **_dot_flags(w.dtype, w.device),
    )
    return y


def segment_outer(p, q, g, g_strides, tiles, scale: float, deterministic: bool) -> None:
    """g[u] = scale * p_u^T q_u for every adapter u (p sorted fp32 (N, r), q (N, D) via order).

    g_strides = (adapter, j, d). Deterministic: g in any dtype, fully written.
    Otherwise g must be fp32 and zero-filled (atomics add into it).
    """
    n_adapters = tiles["seg_lo"].shape[0]
    r, d_dim = p.shape[1], q.shape[1]
    n_programs = n_adapters if deterministic else tiles["tile_adapter"].shape[0]
    grid = (n_programs, triton.cdiv(d_dim, BLOCK_D))
    _segment_outer_kernel[grid](
        p, p.stride(0),
        q, q.stride(0), q.stride(1),
        g, *g_strides,
        tiles["order"], tiles["seg_lo"], tiles["seg_hi"],
        tiles["tile_adapter"], tiles["tile_lo"], tiles["tile_hi"],
        d_dim, r, scale,
        DETERMINISTIC=deterministic,
        BLOCK_N=BLOCK_N, BLOCK_D=BLOCK_D, BLOCK_R=_block_r(r), **_dot_flags(q.dtype, q.device),
    )


def _adapter_grad(p, q, like: torch.Tensor, transposed: bool, tiles, scale: float, deterministic: bool):
    """dA (like (U, r, D)) or, with transposed, dB (like (U, D, r)) from the segment sums."""
    g = like.new_empty(like.shape) if deterministic else torch.zeros(like.shape, dtype=torch.float32,
                                                                     device=like.device)
    strides = (g.stride(0), g.stride(2), g.stride(1)) if transposed else g.stride()
    segment_outer(p, q, g, strides, tiles, scale, deterministic)
    return g.to(like.dtype)


# ----------------------------------------------------------------------------- autograd


class TritonLowRankUpdate(torch.autograd.Function):
    """out = base_out + scale * B[idx] (A[idx] x) with the kernels above; see module docstring."""

    @staticmethod
    def forward(ctx, base_out, x, A, B, idx, scale: float, deterministic: bool, tiles=None):
        n_adapters, r = A.shape[:2]
        d_out = B.shape[1]
        if tiles is None:
            tiles = build_tiles(idx, n_adapters)
        elif tiles["seg_lo"].shape[0] != n_adapters or tiles["order"].shape[0] != x.shape[0]:
            raise ValueError("the tile table was built for another idx or number of adapters")
        # A[u] is (r, d_in): strides (adapter, j, k) as stored.
        h = shrink(x, A, A.stride(), tiles, r, 1.0)  # (N, r) fp32, sorted
        # B[u] is (d_out, r): strides (adapter, d, j) as stored.
        out = expand(h, B, B.stride(), d_out, tiles, scale, base=base_out, out_dtype=base_out.dtype)
        ctx.save_for_backward(x, A, B, h, *tiles.values())
        ctx.tile_keys = tuple(tiles)
        ctx.scale, ctx.deterministic = scale, deterministic
        return out

    @staticmethod
    def backward(ctx, d_out):
        x, A, B, h, *tile_tensors = ctx.saved_tensors
        tiles = dict(zip(ctx.tile_keys, tile_tensors))
        scale, deterministic = ctx.scale, ctx.deterministic
        r, d_in = A.shape[1], A.shape[2]
        dy = d_out if d_out.dtype == x.dtype else d_out.to(x.dtype)  # (N, d_out), any strides
        need_base, need_x, need_a, need_b = ctx.needs_input_grad[:4]

        dx = dA = dB = None
        if need_x or need_a:
            # dh[s, j] = scale * sum_d dy[s, d] B[u, d, j]: B read as (adapter, j, d).
            dh = shrink(dy, B, (B.stride(0), B.stride(2), B.stride(1)), tiles, r, scale)
            if need_x:
                # dx[n, i] = sum_j dh[n, j] A[u, j, i]: A read as (adapter, i, j).
                dx = expand(dh, A, (A.stride(0), A.stride(2), A.stride(1)), d_in, tiles, 1.0,
                            out_dtype=x.dtype)
            if need_a:
                dA = _adapter_grad(dh, x, A, False, tiles, 1.0, deterministic)  # (U, r, d_in)
        if need_b:
            dB = _adapter_grad(h, dy, B, True, tiles, scale, deterministic)  # (U, d_out, r)
        return (d_out if need_base else None), dx, dA, dB, None, None, None, None


def triton_lowrank_update(base_out, x, A, B, idx, scale: float, deterministic: bool = False, segments=None):
    """The op of the `triton` backend (hyperscale.ops.op_for("triton")).

    `segments`: build_tiles(idx, U) computed once for all layers of a forward (optional).
    """
    if x.shape[0] == 0:
        return base_out.clone()
    return TritonLowRankUpdate.apply(base_out, x, A, B, idx, float(scale), bool(deterministic), segments)
