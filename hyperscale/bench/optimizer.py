"""Optimizer step time against the number of perspectives: dense AdamW, lazy AdamW on a dense table gradient,
and lazy AdamW on row gradients (the default at ZeRO 0-2) for the annotator tables.

    python -m hyperscale.bench.optimizer [--perspectives 16,10000,100000,1000000] [--repeats 7] [--out DIR]

Builds hyper_lora on the tiny fp32 Llama (tests' sizes) with an annotator table of
N rows (N x adapter.hypernet.condition_dim), one DeepSpeed engine per
(N, mode): `dense` (train.table_optimizer=dense), `lazy_scan` (lazy, the table's dense
gradient scanned for touched entries: build_engine(row_gradients=False)) and `rows` (lazy
from row gradients, training/sparse_tables.py), and times `engine.step()` (clipping, optimizer, LR
schedule) after a backward of a 16-row batch with 16 distinct annotators, and the
whole step (forward + backward + step). Engines of one N run interleaved, the
first steps dropped, median and range over repeats; torch threads pinned
(--threads). `--clock cpu` times the process's CPU time instead of the wall clock:
on a machine other jobs load, a 1-thread step's CPU time is what it cost, its wall
time also counts the waits for a core. Writes optimizer.json and optimizer.png;
asserts no time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

MODES = ("dense", "lazy_scan", "rows")


def _engine(n: int, mode: str):
    from hyperscale.config import build_config
    from hyperscale.model import build_model
    from hyperscale.training.engine import build_engine

    cfg = build_config({"data": {"source": "synthetic"},
                        "model": {"name_or_path": "tiny-random-llama", "max_length": 32, "compute_dtype": "float32"},
                        "train": {"progress_bar": False}},
                       ["adapter.target_modules=[q_proj,v_proj]", "adapter.kind=hyper_lora",
                        "distributed.zero_stage=0",
                        f"train.table_optimizer={'dense' if mode == 'dense' else 'lazy'}"])
    torch.manual_seed(0)
    model = build_model(cfg, {"annotator": n}, ["0", "1"])
    engine, _, _ = build_engine(model, cfg, row_gradients=mode == "rows")
    return engine


def _batch(n_annotators: int, step: int) -> dict:
    g = torch.Generator().manual_seed(step)
    ids = torch.randint(10, 1000, (16, 32), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.randint(0, 2, (16,), generator=g),
            "cond_annotator": torch.randperm(n_annotators, generator=g)[:16] if n_annotators >= 16
            else torch.randint(0, n_annotators, (16,), generator=g)}


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def _step(engine, batch, clock=time.perf_counter) -> tuple[float, float]:
    """(optimizer seconds, whole step seconds)."""
    t0 = clock()
    engine.backward(engine(batch)["loss"])
    t1 = clock()
    engine.step()
    t2 = clock()
    return t2 - t1, t2 - t0


def run(perspectives: list[int], repeats: int, inner: int, warmup: int = 3, clock: str = "wall") -> list[dict]:
    from hyperscale.training.distributed import setup_distributed

    setup_distributed(use_gpu=False)
    rows = []
    for n in perspectives:
        engines = {m: _engine(n, m) for m in MODES}
        times = {m: ([], []) for m in MODES}
        step = 0
        for m in MODES:
            for _ in range(warmup):
                _step(engines[m], _batch(n, step))
                step += 1
        for r in range(repeats):
            for m in (MODES if r % 2 == 0 else MODES[::-1]):
                got = [_step(engines[m], _batch(n, step + i), CLOCKS[clock]) for i in range(inner)]
                times[m][0].append(statistics.median(g[0] for g in got))
                times[m][1].append(statistics.median(g[1] for g in got))
            step += inner
        for m in MODES:
            opt, whole = times[m]
            rows.append({"perspectives": n, "table_optimizer": m,
                         "optimizer_s": statistics.median(opt), "optimizer_s_range": [min(opt), max(opt)],
                         "step_s": statistics.median(whole), "step_s_range": [min(whole), max(whole)]})
            print(f"{n:>9,} {m:>9}  optimizer {1e3 * rows[-1]['optimizer_s']:8.2f} ms "
                  f"({1e3 * min(opt):.2f}-{1e3 * max(opt):.2f})  step {1e3 * rows[-1]['step_s']:8.2f} ms", flush=True)
        del engines
    return rows


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, title in ((axes[0], "optimizer_s", "optimizer phase (engine.step)"),
                           (axes[1], "step_s", "whole step (forward + backward + step)")):
        for m in MODES:
            sel = [r for r in rows if r["table_optimizer"] == m]
            ax.plot([r["perspectives"] for r in sel], [1e3 * r[key] for r in sel], marker="o",
                    label=m)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("perspectives (annotator table rows)")
        ax.set_ylabel("ms (median)")
        ax.set_title(title)
        ax.legend()
    fig.suptitle("hyper_lora, tiny fp32 Llama, 16 rows x 16 annotators per step")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--perspectives", default="16,10000,100000,1000000")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--inner", type=int, default=3, help="steps per repeat (their median is one sample)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    p.add_argument("--out", default="bench_optimizer")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    rows = run([int(x) for x in a.perspectives.split(",")], a.repeats, a.inner, clock=a.clock)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    from hyperscale.ops.backend import library_versions

    (out / "optimizer.json").write_text(json.dumps({"threads": a.threads, "clock": a.clock, "rows": rows,
                                                     "versions": library_versions()}, indent=1))
    plot(rows, out / "optimizer.png")
    print(f"wrote {out / 'optimizer.json'} and {out / 'optimizer.png'}")


if __name__ == "__main__":
    main()
