"""Benchmark of the batched per-row low-rank update: loop vs gather+bmm vs Triton.

    hyperscale bench kernels [--quick] [--out bench_kernels.json]
    python -m hyperscale.bench.kernels --quick

Implementations (all compute out = base_out + scale * B[idx] (A[idx] x)):
  loop         the torch reference: rows sorted by condition, two matmuls per unique adapter
  gather_bmm   per-sequence layout only: A[cond_of_seq], B[cond_of_seq] gathered, torch.bmm
  gather_rows  any layout: A[idx], B[idx] gathered per row, torch.bmm (skipped when the
               gathered copies would pass --gather-limit-gb)
  triton       hyperscale.kernels.lowrank, atomics in the adapter-gradient reduction
  triton_det   the same with deterministic=True (fixed-order segment reduction)

For each case and pass (fwd, fwd+bwd) it reports the median time, the bytes the
op must move at the least (every input read once, every output written once;
intermediates of size N x r ignored), the achieved bytes/s, and that over the
device-to-device copy bandwidth measured in the same run (the roofline: the op
is memory-bound for r << d). It prints a table, writes JSON and never asserts
a time. Without CUDA it runs on CPU with Triton in the interpreter: those
numbers only rank the torch paths against each other.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass

# Llama-3-8B: hidden 4096, MLP 14336; q/o and gate/up/down cover these three.
FULL_DIMS = ((4096, 4096), (4096, 14336), (14336, 4096))
FULL_RANKS = (8, 16, 64)
FULL_TOKENS = (4096, 16384)
FULL_ADAPTERS = (1, 8, 64)
# --quick: a GPU smoke set; on CPU a tiny set the interpreter finishes in seconds.
QUICK_GPU = dict(dims=((4096, 4096), (4096, 14336)), ranks=(16,), tokens=(4096,), adapters=(1, 64))
QUICK_CPU = dict(dims=((40, 24),), ranks=(4,), tokens=(120,), adapters=(1, 5))
LAYOUTS = ("per_sequence", "packed")
IMPLS = ("loop", "gather_bmm", "gather_rows", "triton", "triton_det")


@dataclass(frozen=True)
class Case:
    tokens: int  # N rows
    d_in: int
    d_out: int
    rank: int
    adapters: int  # U unique conditions in the batch
    layout: str  # per_sequence: idx constant per equal-length sequence; packed: arbitrary runs


def _cases(dims, ranks, tokens, adapters, layouts) -> list[Case]:
    return [Case(n, d_in, d_out, r, u, lay)
            for (d_in, d_out) in dims for r in ranks for n in tokens for u in adapters for lay in layouts
            if u <= n]


def _n_sequences(case: Case) -> int:
    # At least one sequence per adapter; sequences of <= 1024 tokens otherwise.
    return max(case.adapters, -(-case.tokens // 1024))


def _make_inputs(case: Case, dtype, device, seed=0):
    import torch

    g = torch.Generator(device="cpu").manual_seed(seed)
    n, u = case.tokens, case.adapters
    n_seq = _n_sequences(case)
    if case.layout == "per_sequence":
        seq_len = n // n_seq
        seq_cond = torch.arange(n_seq) % u
        idx = seq_cond.repeat_interleave(seq_len)
        idx = torch.cat([idx, idx.new_full((n - idx.numel(),), seq_cond[-1].item())])  # ragged tail
    else:
        # Packed: random sequence lengths, boundaries anywhere, conditions shuffled.
        cuts = torch.randperm(n - 1, generator=g)[: n_seq - 1].add(1).sort().values
        lengths = torch.diff(torch.cat([torch.tensor([0]), cuts, torch.tensor([n])]))
        seq_cond = torch.cat([torch.arange(u), torch.randint(0, u, (n_seq - u,), generator=g)])
        seq_cond = seq_cond[torch.randperm(n_seq, generator=g)]
        idx = seq_cond.repeat_interleave(lengths)
        seq_len = None

    def rand(*shape, fan=1):
        return (torch.randn(*shape, generator=g) / fan ** 0.5).to(device=device, dtype=dtype)

    tensors = dict(base_out=rand(n, case.d_out), x=rand(n, case.d_in),
                   A=rand(u, case.rank, case.d_in, fan=case.d_in), B=rand(u, case.d_out, case.rank, fan=case.rank),
                   dy=rand(n, case.d_out))
    return tensors, idx.to(device), seq_cond.to(device), seq_len


def _impl_fn(name: str, case: Case, seq_cond, seq_len, scale: float):
    """(fn(base_out, x, A, B, idx) -> out, or None with the reason it does not apply)."""
    import torch

    from hyperscale.ops import torch_lowrank_update

    if name == "loop":
        return (lambda base, x, A, B, idx: torch_lowrank_update(base, x, A, B, idx, scale)), None
    if name == "gather_bmm":
        if case.layout != "per_sequence" or case.tokens % _n_sequences(case):
            return None, "needs equal-length sequences with one condition each"

        def gather_bmm(base, x, A, B, idx):
            n_seq = seq_cond.shape[0]
            xs = x.view(n_seq, seq_len, case.d_in)
            h = torch.bmm(xs, A[seq_cond].transpose(1, 2))  # (S, T, r)
            y = torch.bmm(h, B[seq_cond].transpose(1, 2))  # (S, T, d_out)
            return base + scale * y.view(case.tokens, case.d_out)

        return gather_bmm, None
    if name == "gather_rows":
        def gather_rows(base, x, A, B, idx):
            h = torch.bmm(A[idx], x.unsqueeze(2))  # (N, r, 1): per-row copy of A
            y = torch.bmm(B[idx], h).squeeze(2)  # (N, d_out)
            return base + scale * y

        return gather_rows, None
    if name in ("triton", "triton_det"):
        from hyperscale.kernels.lowrank import triton_lowrank_update

        det = name == "triton_det"
        return (lambda base, x, A, B, idx: triton_lowrank_update(base, x, A, B, idx, scale, deterministic=det)), None
    raise ValueError(f"unknown implementation {name!r}; choose from {IMPLS}")


def _min_bytes(case: Case, elem: int, backward: bool) -> int:
    """Fewest bytes the op must move: inputs read once, outputs written once."""
    rows_in, rows_out = case.tokens * case.d_in, case.tokens * case.d_out
    weights = case.adapters * case.rank * (case.d_in + case.d_out)
    fwd = rows_in + 2 * rows_out + weights  # read x, base_out, A, B; write out
    if not backward:
        return elem * fwd
    # backward: read dy, x, A, B; write dx, dA, dB (d base_out = dy moves nothing)
    return elem * (fwd + rows_out + 2 * rows_in + 2 * weights)


class _Timer:
    """Median wall time in ms: triton's do_bench on CUDA (flushes L2 between
    reps, so a memory-bound op is not timed from cache), perf_counter on CPU.

    On CPU the Triton paths run interpreted (~0.1-0.2 s a call, meaningless as
    a speed), so they get one untimed-warm-up-free call to keep --quick fast.
    """

    def __init__(self, cuda: bool, warmup: int, reps: int):
        self.cuda, self.warmup, self.reps = cuda, warmup, reps
        self.label = ("triton.testing.do_bench median (ms budgets warmup=%d rep=%d)" % (warmup, reps) if cuda
                      else "time.perf_counter median (warmup=%d calls, reps=%d calls; "
                           "triton interpreter: 1 call)" % (warmup, reps))

    def __call__(self, fn, interpreted: bool = False) -> list[float]:
        """Per-rep times in ms; callers report the median (and the min, which
        resists other processes sharing a CPU)."""
        if self.cuda:
            from triton.testing import do_bench

            return [float(t) for t in do_bench(fn, warmup=self.warmup, rep=self.reps, return_mode="all")]
        warmup, reps = (0, 1) if interpreted else (self.warmup, self.reps)
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        return times


def _copy_bandwidth(device, timer: _Timer, n_bytes: int) -> float:
    """Device-to-device copy bandwidth in GB/s (read + write counted)."""
    import torch

    src = torch.empty(n_bytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    ms = statistics.median(timer(lambda: dst.copy_(src)))
    return 2 * n_bytes / (ms * 1e-3) / 1e9


def _run_case(case, impls, dtype, device, timer, scale, gather_limit_gb, roofline_gbps):
    import torch

    tensors, idx, seq_cond, seq_len = _make_inputs(case, dtype, device)
    elem = tensors["x"].element_size()
    dy = tensors.pop("dy")
    leaves = [tensors[k].requires_grad_() for k in ("base_out", "x", "A", "B")]
    # Every path's forward is checked against the loop (the torch reference) so
    # a fast wrong kernel cannot hide in the table.
    loop_fn, _ = _impl_fn("loop", case, seq_cond, seq_len, scale)
    with torch.no_grad():
        reference = loop_fn(*leaves, idx).float()
    rows = []
    for name in impls:
        fn, skip = _impl_fn(name, case, seq_cond, seq_len, scale)
        if name == "gather_rows" and skip is None:
            gathered_gb = case.tokens * case.rank * (case.d_in + case.d_out) * elem / 1e9
            if gathered_gb > gather_limit_gb:
                skip = f"per-row copies of A and B would take {gathered_gb:.1f} GB > --gather-limit-gb"
        check = None
        if skip is None:
            with torch.no_grad():
                out = fn(*leaves, idx).float()  # also the first (compiling) call on CUDA
            check = ((out - reference).abs().max() / reference.abs().max().clamp_min(1.0)).item()
        for pass_name, backward in (("fwd", False), ("fwd+bwd", True)):
            row = {"case": asdict(case), "impl": name, "pass": pass_name, "median_ms": None, "min_ms": None,
                   "reps": 0, "min_bytes": None, "achieved_GBps": None, "roofline_ratio": None,
                   "max_scaled_err_vs_loop": check, "skipped": skip}
            if skip is None:
                if backward:
                    def step(fn=fn):
                        out = fn(*leaves, idx)
                        torch.autograd.grad(out, leaves, dy)
                else:
                    def step(fn=fn):
                        with torch.no_grad():
                            fn(*leaves, idx)
                times = timer(step, interpreted=name.startswith("triton"))
                ms = statistics.median(times)
                n_bytes = _min_bytes(case, elem, backward)
                gbps = n_bytes / (ms * 1e-3) / 1e9
                row.update(median_ms=ms, min_ms=min(times), reps=len(times), min_bytes=n_bytes,
                           achieved_GBps=gbps, roofline_ratio=gbps / roofline_gbps)
            rows.append(row)
    return rows


def _print_table(report) -> None:
    print(f"# {report['device']} | {report['dtype']} | timer: {report['timer']}")
    print(f"# roofline: device-to-device copy {report['copy_bandwidth_GBps']:.1f} GB/s"
          + ("" if report["cuda"] else "  (CPU + Triton interpreter: compare torch paths only; ratios, not times)"))
    head = (f"{'layout':<13}{'N':>6}{'d_in':>6}{'d_out':>6}{'r':>4}{'U':>4}  {'impl':<12}{'pass':<8}"
            f"{'ms':>10}{'min ms':>10}{'GB/s':>9}{'x roof':>8}{'err':>9}")
    print(head)
    print("-" * len(head))
    for row in report["results"]:
        c = row["case"]
        lead = (f"{c['layout']:<13}{c['tokens']:>6}{c['d_in']:>6}{c['d_out']:>6}{c['rank']:>4}{c['adapters']:>4}  "
                f"{row['impl']:<12}{row['pass']:<8}")
        if row["skipped"]:
            print(lead + f"  skipped: {row['skipped']}")
        else:
            print(lead + f"{row['median_ms']:>10.3f}{row['min_ms']:>10.3f}{row['achieved_GBps']:>9.1f}{row['roofline_ratio']:>8.3f}"
                  f"{row['max_scaled_err_vs_loop']:>9.1e}")


def _parse(argv):
    p = argparse.ArgumentParser(prog="hyperscale bench kernels", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small shape set (the only sensible one on CPU)")
    p.add_argument("--out", default="bench_kernels.json", help="JSON report path (default: %(default)s)")
    p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"))
    p.add_argument("--impls", nargs="+", default=list(IMPLS), choices=IMPLS)
    p.add_argument("--layouts", nargs="+", default=list(LAYOUTS), choices=LAYOUTS)
    p.add_argument("--tokens", nargs="+", type=int, help="override N values")
    p.add_argument("--ranks", nargs="+", type=int, help="override r values")
    p.add_argument("--adapters", nargs="+", type=int, help="override U values")
    p.add_argument("--scale", type=float, default=2.0)
    p.add_argument("--gather-limit-gb", type=float, default=4.0,
                   help="skip gather_rows when its per-row copies of A and B would exceed this")
    p.add_argument("--warmup", type=int, help="CUDA: ms of warm-up (default 25); CPU: calls (default 2)")
    p.add_argument("--reps", type=int, help="CUDA: ms of timed reps (default 100); CPU: calls (default 7)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    import torch

    cuda = torch.cuda.is_available()
    if not cuda:
        # Triton reads this when kernels are decorated, i.e. on first import of
        # hyperscale.kernels.lowrank, which happens later in this function.
        os.environ.setdefault("TRITON_INTERPRET", "1")
    device = torch.device("cuda" if cuda else "cpu")
    dtype = getattr(torch, args.dtype)
    shapes = (QUICK_GPU if cuda else QUICK_CPU) if args.quick else dict(
        dims=FULL_DIMS, ranks=FULL_RANKS, tokens=FULL_TOKENS, adapters=FULL_ADAPTERS)
    shapes = {**shapes, **{k: tuple(v) for k, v in (("ranks", args.ranks), ("tokens", args.tokens),
                                                    ("adapters", args.adapters)) if v}}
    cases = _cases(shapes["dims"], shapes["ranks"], shapes["tokens"], shapes["adapters"], args.layouts)
    timer = _Timer(cuda, args.warmup if args.warmup is not None else (25 if cuda else 2),
                   args.reps if args.reps is not None else (100 if cuda else 7))
    copy_gbps = _copy_bandwidth(device, timer, (1 << 30) if cuda else (64 << 20))
    import triton  # after TRITON_INTERPRET is settled

    report = dict(
        device=torch.cuda.get_device_name() if cuda else f"cpu ({platform.processor() or platform.machine()})",
        cuda=cuda, triton_mode="compiled" if cuda else "interpreter (TRITON_INTERPRET=1)",
        torch=torch.__version__, triton=triton.__version__, dtype=args.dtype, scale=args.scale,
        timer=timer.label, copy_bandwidth_GBps=copy_gbps,
        bytes_model="fwd: x + base_out + out + A + B; fwd+bwd adds dy, x, dx, A, B, dA, dB (elements x dtype size)",
        results=[],
    )
    # On CPU, one intra-op thread: these tiny ops gain nothing from threads, and
    # on a shared box a descheduled worker thread adds tens of ms to a 0.2 ms op.
    threads = torch.get_num_threads()
    if not cuda:
        torch.set_num_threads(1)
    try:
        for case in cases:
            report["results"].extend(_run_case(case, args.impls, dtype, device, timer, args.scale,
                                               args.gather_limit_gb, copy_gbps))
            if cuda:
                torch.cuda.empty_cache()
    finally:
        torch.set_num_threads(threads)
    _print_table(report)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
