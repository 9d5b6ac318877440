"""End-to-end training-step benchmark: hyperscale's kinds against peft, the frozen base and the seed loop.

    hyperscale bench train CONFIG [--quick] [--out DIR] [--sweep KEY=V1,V2 ...] [--set KEY=VALUE ...]

Times real optimizer steps (forward, backward, optimizer step) of the variants in
hyperscale/bench/variants.py, all built in ONE process on copies of one loaded
backbone, through the same model builder and DeepSpeed engine as training.
Timing is interleaved: each round runs one step of every point of a group
(round-robin), the first `--warmup` rounds are dropped, and the report gives the
median and the min-max over the remaining rounds. Ratios are taken per round (a
and b timed seconds apart) and then summarised, so a shared, noisy machine
shifts both sides of a ratio alike.

Groups: `base` (every variant at the base setting) and one per sweep key:
  perspectives  vocabulary size (hyper_lora, per_annotator_lora)
  conditions    distinct conditions in a batch (hyper_lora, shared_lora, per_annotator_lora, seed_loop)
  seq_len, batch, rank   (hyper_lora, shared_lora, peft_lora, frozen_base)
  workers       the real training path (hyperscale.api.train through Ray, N workers), read
                from metrics.jsonl: it cannot be interleaved with in-process steps.
Batches are synthetic: random token ids of the given length (no padding), labels
drawn at random, condition ids drawn so the batch has exactly k distinct ones.

Writes DIR/bench.json (environment included), DIR/bench.md and PNG plots; never
asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from hyperscale.errors import ConfigError

SWEEP_KEYS = ("perspectives", "conditions", "seq_len", "batch", "rank", "zero_stage", "workers")
SWEEP_VARIANTS = {
    "perspectives": ("hyper_lora", "per_annotator_lora"),
    "conditions": ("hyper_lora", "shared_lora", "per_annotator_lora", "seed_loop"),
    "seq_len": ("hyper_lora", "shared_lora", "peft_lora", "frozen_base"),
    "batch": ("hyper_lora", "shared_lora", "peft_lora", "frozen_base"),
    "rank": ("hyper_lora", "shared_lora", "peft_lora", "frozen_base"),
    "zero_stage": ("hyper_lora", "shared_lora", "peft_lora"),  # peft's loop has no stage: the reference
}
QUICK_SWEEPS = {"perspectives": [16, 1000, 100_000], "conditions": [1, 4, 16]}
FULL_SWEEPS = {"perspectives": [16, 1000, 10_000, 100_000, 1_000_000], "conditions": [1, 2, 4, 8, 16],
               "seq_len": [32, 64, 128], "batch": [4, 8, 16, 32], "rank": [2, 8, 32]}
PHASES = ("step", "hypernet", "forward", "backward", "optimizer")
TARGETS_BATCH = 16  # the targets are stated for 16-row batches


@dataclass(frozen=True)
class Setting:
    perspectives: int  # condition vocabulary size (rows of the annotator table)
    conditions: int  # distinct conditions in each batch
    seq_len: int  # tokens per row
    batch: int  # rows per micro-batch (= per optimizer step)
    rank: int
    zero_stage: int | None = None  # DeepSpeed ZeRO stage of hyperscale's variants (None: the config's)

    def label(self) -> str:
        stage = "" if self.zero_stage is None else f" z={self.zero_stage}"
        return f"P={self.perspectives} k={self.conditions} T={self.seq_len} B={self.batch} r={self.rank}{stage}"


@dataclass
class Point:
    group: str
    variant: str
    setting: Setting
    runner: object = None
    skipped: str | None = None
    times: dict = None  # phase -> [seconds per timed round]
    memory: dict = None


# ---------------------------------------------------------------- batches and memory

def make_batch(setting: Setting, vocab_size: int, n_classes: int, seed: int, device) -> dict:
    """Random token ids (T of them, no padding) and exactly `conditions` distinct condition ids."""
    import torch

    g = torch.Generator().manual_seed(seed)
    b, k = setting.batch, setting.conditions
    distinct = torch.randperm(setting.perspectives, generator=g)[:k]  # (k,)
    rows = torch.cat([torch.arange(k), torch.randint(0, k, (b - k,), generator=g)])[torch.randperm(b, generator=g)]
    batch = {"input_ids": torch.randint(10, vocab_size, (b, setting.seq_len), generator=g),
             "attention_mask": torch.ones(b, setting.seq_len, dtype=torch.long),
             "labels": torch.randint(0, n_classes, (b,), generator=g),
             "cond_annotator": distinct[rows]}
    return {k: v.to(device) for k, v in batch.items()}


class Memory:
    """Resident memory of this process: RSS on CPU (peak reset via /proc/self/clear_refs), allocator on CUDA."""

    def __init__(self, device):
        self.cuda = device.type == "cuda"
        self.method = ("torch.cuda.memory_allocated / max_memory_allocated" if self.cuda else
                       "VmRSS / VmHWM of /proc/self/status, peak reset by writing 5 to /proc/self/clear_refs")
        if not self.cuda:
            try:
                Path("/proc/self/clear_refs").write_text("5")
            except OSError:
                self.method = "unavailable (no /proc/self/clear_refs): memory not measured"

    def _status(self, key: str) -> int | None:
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None

    def current(self) -> int | None:
        if self.cuda:
            import torch

            return torch.cuda.memory_allocated()
        return self._status("VmRSS")

    def reset_peak(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
        elif not self.method.startswith("unavailable"):
            Path("/proc/self/clear_refs").write_text("5")

    def peak(self) -> int | None:
        if self.cuda:
            import torch

            return torch.cuda.max_memory_allocated()
        return self._status("VmHWM")


# ---------------------------------------------------------------- plan and timing

def parse_sweeps(items: list[str]) -> dict[str, list[int]]:
    sweeps = {}
    for item in items:
        key, _, values = item.partition("=")
        if key not in SWEEP_KEYS or not values:
            raise ConfigError("--sweep", f"{item!r} is not KEY=V1,V2 with KEY one of {', '.join(SWEEP_KEYS)}.",
                              "e.g. --sweep perspectives=16,1000,100000 --sweep conditions=1,4,16")
        try:
            sweeps[key] = [int(float(v)) for v in values.split(",")]
        except ValueError as e:
            raise ConfigError("--sweep", f"{item!r}: values must be integers.", "e.g. perspectives=16,1000") from e
        if key == "zero_stage":
            if any(v not in (0, 1, 2, 3) for v in sweeps[key]):
                raise ConfigError("--sweep", f"{item!r}: ZeRO stages are 0, 1, 2 and 3.", "e.g. zero_stage=0,2")
        elif any(v < 1 for v in sweeps[key]):
            raise ConfigError("--sweep", f"{item!r}: values must be >= 1.")
    return sweeps


def plan(base: Setting, sweeps: dict[str, list[int]], variants: list[str]) -> list[Point]:
    """The points of every group: `base` (all variants) and one group per in-process sweep key."""
    if base.conditions > base.batch or base.conditions > base.perspectives:
        raise ConfigError("--conditions", f"{base.conditions} distinct conditions per batch with batch "
                          f"{base.batch} and {base.perspectives} perspectives.",
                          "choose conditions <= batch and <= perspectives.")
    points = [Point("base", v, base) for v in variants]
    for key, values in sweeps.items():
        if key == "workers":
            continue
        for value in values:
            s = replace(base, **{key: value})
            if s.conditions > s.batch or s.conditions > s.perspectives:
                continue  # k distinct conditions need k rows and k perspectives
            points += [Point(key, v, s) for v in SWEEP_VARIANTS[key] if v in variants]
    return points


def _summary(values: list[float]) -> dict:
    if not values:
        return {"median": None, "min": None, "max": None, "q1": None, "q3": None}
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "q1": q[0], "q3": q[2]}


def run_group(points: list[Point], rounds: int, warmup: int, batch_for, log) -> None:
    """Round-robin: each round one step of every (built) point; warm-up rounds dropped."""
    live = [p for p in points if p.skipped is None]
    for p in live:
        p.times = {ph: [] for ph in (*PHASES, "loss")}
        p.memory.setdefault("step_peak_delta_bytes", [])
    for r in range(warmup + rounds):
        t0 = time.perf_counter()
        for p in live:
            batch = batch_for(p.setting, r)
            mem = p.memory["_meter"]
            mem.reset_peak()
            before = mem.current()
            phases = p.runner.step(batch)
            peak = mem.peak()
            if r >= warmup:
                for ph, v in phases.items():
                    p.times[ph].append(v)
                if peak is not None and before is not None:
                    p.memory["step_peak_delta_bytes"].append(max(0, peak - before))
        tag = "warm-up" if r < warmup else "timed"
        log(f"[{points[0].group}] round {r + 1}/{warmup + rounds} ({tag}) {time.perf_counter() - t0:.1f}s: "
            + "  ".join(f"{p.variant}@{_short(p)} {_last(p)}" for p in live))


def _last(p: Point) -> str:
    return f"{p.times['step'][-1]:.3f}s" if p.times["step"] else "-"


def _short(p: Point) -> str:
    s = p.setting
    return {"perspectives": f"P{s.perspectives}", "conditions": f"k{s.conditions}", "seq_len": f"T{s.seq_len}",
            "batch": f"B{s.batch}", "rank": f"r{s.rank}", "zero_stage": f"z{s.zero_stage}"}.get(p.group, "base")


def paired_ratio(a: Point, b: Point) -> dict | None:
    """Per-round step-time ratio a / b (same rounds), summarised; None when either is missing."""
    if a is None or b is None or not a.times or not b.times:
        return None
    ratios = [x / y for x, y in zip(a.times["step"], b.times["step"]) if y > 0]
    return {**_summary(ratios), "rounds": len(ratios)} if ratios else None


# ---------------------------------------------------------------- building

class RunnerCache:
    """Built variants keyed by (variant, perspectives, rank): settings that only change the batch
    (conditions, seq_len, batch) share one model; runners no later group needs are released."""

    def __init__(self, cfg, backbone, labels, device, memory: Memory, log, clock: str = "wall"):
        self.cfg, self.backbone, self.labels, self.device, self.clock = cfg, backbone, labels, device, clock
        self.memory, self.log = memory, log
        self.runners: dict[tuple, object] = {}
        self.resident: dict[tuple, int | None] = {}
        self.errors: dict[tuple, str] = {}

    @staticmethod
    def key(p: Point) -> tuple:
        return p.variant, p.setting.perspectives, p.setting.rank, p.setting.zero_stage

    def get(self, p: Point, first_batch: dict):
        from hyperscale.bench.variants import build_runner

        k = self.key(p)
        if k in self.errors:
            return None, self.errors[k]
        if k not in self.runners:
            import gc

            gc.collect()
            before = self.memory.current()
            t0 = time.perf_counter()
            try:
                runner = build_runner(p.variant, self.cfg, self.backbone, p.setting.perspectives, p.setting.rank,
                                      self.labels, self.device, self.clock, p.setting.zero_stage)
            except ConfigError as e:
                self.errors[k] = str(e)
                self.log(f"  {p.variant} at P={p.setting.perspectives} r={p.setting.rank}: skipped ({e})")
                return None, self.errors[k]
            runner.step(first_batch)  # allocates gradients and optimizer state (an extra, untimed warm-up)
            after = self.memory.current()
            self.runners[k] = runner
            self.resident[k] = after - before if after is not None and before is not None else None
            self.log(f"  built {p.variant} at P={p.setting.perspectives} r={p.setting.rank} "
                     f"({runner.n_trainable:,} trainable) in {time.perf_counter() - t0:.1f}s")
        return self.runners[k], None

    def keep_only(self, keys: set) -> None:
        import gc

        for k in [k for k in self.runners if k not in keys]:
            del self.runners[k]
        gc.collect()


def trainable_at(cache: RunnerCache, perspectives: int, rank: int) -> dict:
    """Trainable parameters of hyper_lora and per_annotator_lora at `perspectives` (models built, not timed)."""
    import gc

    from hyperscale.bench.variants import variant_config
    from hyperscale.config import build_config
    from hyperscale.config.parse import to_dict
    from hyperscale.model import build_model

    out = {}
    for variant in ("hyper_lora", "per_annotator_lora"):
        runner = cache.runners.get((variant, perspectives, rank))
        if runner is not None:
            out[variant] = runner.n_trainable
            continue
        import copy

        # Only counted, so per_annotator_lora's size bound is lifted for it.
        vcfg = build_config(to_dict(variant_config(cache.cfg, variant, rank)),
                            ["adapter.max_trainable_params=1000000000000"])
        model = build_model(vcfg, {"annotator": perspectives}, cache.labels, copy.deepcopy(cache.backbone))
        out[variant] = model.n_trainable()
        del model
        gc.collect()
    out["ratio"] = out["hyper_lora"] / out["per_annotator_lora"]
    return out


REAL_SHAPES = {"SmolLM2-135M": "smollm2-135m", "Llama-3-8B": "configs/models/llama-3-8b.json"}


def trainable_at_shapes(cfg, perspectives: int = 1000) -> list[dict]:
    """hyper_lora vs per_annotator_lora trainable parameters at `perspectives` on real models' shapes.

    The ratio is set by shapes, not by code: per_annotator_lora holds annotators x r x (d_in + d_out)
    per adapted module, the hypernetwork ~hidden_dim x r x (d_in + d_out) per module group (its heads)
    plus one condition_dim row per annotator, so a 64-wide test model, where r x d is small next to
    the hypernetwork's hidden width, cannot show the 2% that real widths give. Counted on the meta
    device with the run config's adapter settings (targets, rank, layers, hypernet sizes); nothing loads.
    """
    from pathlib import Path

    from hyperscale.bench.memory import (
        ModelShape,
        module_specs,
        shape_for,
        trainable_count,
    )
    from hyperscale.bench.variants import variant_config
    from hyperscale.config import build_config
    from hyperscale.config.parse import to_dict

    shapes = {f"this config ({cfg.model.name_or_path})": shape_for(cfg, None)}
    root = Path(__file__).resolve().parents[2]
    for label, source in REAL_SHAPES.items():
        if source == cfg.model.name_or_path:
            continue
        if source.endswith(".json"):
            path = root / source
            if not path.is_file():
                continue
            shapes[label] = ModelShape.from_hf(json.loads(path.read_text()), source)
        else:
            shapes[label] = shape_for(build_config(to_dict(cfg), [f"model.name_or_path={source}"]), None)
    rows = []
    for label, shape in shapes.items():
        rec = {"model": label, "hidden": shape.hidden, "layers": shape.layers}
        for variant in ("hyper_lora", "per_annotator_lora"):
            vcfg = variant_config(cfg, variant, cfg.adapter.rank)
            specs = module_specs(vcfg, shape)
            rec[variant] = trainable_count(vcfg, shape, specs, perspectives)["total"]
            rec["adapted_modules"] = len(specs)
        rec["ratio"] = rec["hyper_lora"] / rec["per_annotator_lora"]
        rows.append(rec)
    return rows


# ---------------------------------------------------------------- workers (the real training path)

def run_workers(cfg, values: list[int], out: Path, steps: int, log) -> list[dict]:
    """`hyperscale.api.train` through Ray with N workers for each N; throughput from metrics.jsonl.

    The first logged window (half the steps, incl. the first step's warm-up) is dropped;
    the second window's numbers are reported. Not interleaved: one run after another.
    """
    from hyperscale.api import train
    from hyperscale.config import build_config
    from hyperscale.config.parse import to_dict

    rows = []
    half = max(1, steps // 2)
    for n in values:
        run_dir = out / f"workers-{n}"
        wcfg = build_config(to_dict(cfg), [f"distributed.num_workers={n}", f"train.max_steps={2 * half}",
                                           f"train.log_every={half}", "train.save_every=0", "train.eval_every=0",
                                           "train.progress_bar=false", "eval.max_examples=16",
                                           "logging.wandb.mode=disabled"])
        log(f"[workers] {n} worker(s) through Ray: {2 * half} steps -> {run_dir}")
        t0 = time.perf_counter()
        row = {"workers": n, "run_dir": str(run_dir), "steps": 2 * half, "micro_batch": wcfg.train.micro_batch_size}
        try:
            train(wcfg, run_dir, use_ray=True)
            recs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
            last = [r for r in recs if r.get("split") == "train"][-1]
            row.update({k: last.get(k) for k in ("samples_per_s", "tokens_per_s", "samples_per_s_per_worker",
                                                 "tokens_per_s_per_worker", "step_time_s", "world_size")})
        except Exception as e:  # noqa: BLE001 -- a failed Ray run is reported in the table, not fatal to the rest
            row["error"] = f"{type(e).__name__}: {e}"
        row["wall_s"] = time.perf_counter() - t0
        rows.append(row)
    return rows


# ---------------------------------------------------------------- report

def _point_json(p: Point, cache: RunnerCache) -> dict:
    d = {"group": p.group, "variant": p.variant, "setting": asdict(p.setting), "skipped": p.skipped}
    if p.skipped or not p.times:
        return d
    s = p.setting
    step = _summary(p.times["step"])
    d.update({ph: _summary(p.times[ph]) for ph in PHASES})
    d.update(rounds=len(p.times["step"]), step_times_s=p.times["step"],
             samples_per_s=s.batch / step["median"], tokens_per_s=s.batch * s.seq_len / step["median"],
             n_trainable=p.runner.n_trainable, final_loss=p.times["loss"][-1],
             resident_delta_bytes=cache.resident.get(RunnerCache.key(p)),
             step_peak_delta_bytes=_summary(p.memory.get("step_peak_delta_bytes", []))["median"])
    return d


def ratios(points: list[Point]) -> list[dict]:
    """Every point against peft_lora and frozen_base of the same group and setting (paired by round)."""
    by = {(p.group, p.variant, p.setting): p for p in points if p.times}
    out = []
    for p in points:
        if not p.times:
            continue
        for ref in ("peft_lora", "frozen_base"):
            r = paired_ratio(p, by.get((p.group, ref, p.setting)))
            if r is not None and ref != p.variant:
                out.append({"group": p.group, "setting": asdict(p.setting), "variant": p.variant, "vs": ref, **r})
    return out


def targets(points: list[Point], trainable: dict | None) -> list[dict]:
    """The issue's targets, each met / not met / not measured, with the number and where it came from."""
    by = {(p.group, p.variant, p.setting): p for p in points if p.times}

    def find(group, variant, **kw):
        for (g, v, s), p in by.items():
            if g == group and v == variant and all(getattr(s, k) == val for k, val in kw.items()):
                return p
        return None

    def target(name, a, b, op, bound, where):
        r = paired_ratio(a, b)
        value = r["median"] if r else None
        met = None if value is None else (value <= bound if op == "<=" else value >= bound)
        return {"target": name, "bound": f"{op} {bound}", "value": value, "min": r and r["min"],
                "max": r and r["max"], "met": met, "where": where if r else "not measured"}

    out = [target("hyper_lora / shared_lora", find("base", "hyper_lora"), find("base", "shared_lora"), "<=", 1.15,
                  "base group, paired per round"),
           target("shared_lora / peft_lora", find("base", "shared_lora"), find("base", "peft_lora"), "<=", 1.05,
                  "base group, paired per round")]
    seed = hyper = None
    for group in ("base", "conditions"):
        seed = find(group, "seed_loop", conditions=16, batch=TARGETS_BATCH)
        hyper = find(group, "hyper_lora", conditions=16, batch=TARGETS_BATCH)
        if seed and hyper:
            break
    out.append(target("seed_loop / hyper_lora at 16 distinct in 16 rows", seed, hyper, ">=", 3.0,
                      f"{group} group, paired per round"))
    low = find("perspectives", "hyper_lora", perspectives=16)
    for n, bound in ((100_000, 1.05), (1_000_000, 1.10)):
        out.append(target(f"hyper_lora step at {n:,} / at 16 perspectives", find("perspectives", "hyper_lora",
                          perspectives=n), low, "<=", bound, "perspectives group, paired per round"))
    if trainable:
        ratio = trainable["ratio"]
        out.append({"target": "trainable params hyper_lora / per_annotator_lora at 1,000 annotators",
                    "bound": "<= 0.02", "value": ratio, "min": None, "max": None, "met": ratio <= 0.02,
                    "where": f"{trainable['hyper_lora']:,} / {trainable['per_annotator_lora']:,} parameters"})
    return out


def _ms(x) -> str:
    return "-" if x is None else f"{1e3 * x:.0f}"


def _mb(x) -> str:
    return "-" if x is None else f"{x / 2**20:.1f}"


def markdown(report: dict) -> str:
    env = report["environment"]
    lines = [f"# hyperscale bench train: {report['config']}", "",
             (f"{env['device']} | compute dtype {env['compute_dtype']} | kernel backend {env['kernel_backend']} | "
              f"torch threads {env['torch_threads']} | {env['cpu'].get('model', '')} ({', '.join(env['cpu'].get('flags', []))})"), "",
             (f"Clock: {report['timer']}. "
              f"Interleaved rounds: {report['warmup']} warm-up round(s) dropped, {report['rounds']} timed; times are "
              f"medians [min-max] in ms; ratios are per-round ratios (median [min-max]). {report['note']}"
              + (" samples/s and tokens/s are per second of this process's CPU time." if report.get("clock") == "cpu"
                 else "")), ""]
    refs = {(r["group"], r["variant"], json.dumps(r["setting"], sort_keys=True), r["vs"]): r for r in report["ratios"]}

    def ratio_cell(p, vs):
        r = refs.get((p["group"], p["variant"], json.dumps(p["setting"], sort_keys=True), vs))
        return "-" if r is None else f"{r['median']:.2f} [{r['min']:.2f}-{r['max']:.2f}]"

    for group in report["groups"]:
        rows = [p for p in report["points"] if p["group"] == group]
        if not rows:
            continue
        s0 = rows[0]["setting"]
        title = ("base: " + ", ".join(f"{k}={v}" for k, v in s0.items())) if group == "base" else f"sweep: {group}"
        lines += [f"## {title}", "",
                  (f"| variant | {group if group != 'base' else 'setting'} | step ms | hypernet | backbone fwd | "
                   "backward | optimizer | samples/s | tokens/s | step peak MB | resident MB | trainable | x peft | "
                   "x floor |"),
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for p in rows:
            val = "base" if group == "base" else p["setting"][group]
            if p.get("skipped"):
                lines.append(f"| {p['variant']} | {val} | skipped: {p['skipped'][:120]} |" + " |" * 11)
                continue
            st = p["step"]
            lines.append(
                f"| {p['variant']} | {val} | {_ms(st['median'])} [{_ms(st['min'])}-{_ms(st['max'])}] | "
                f"{_ms(p['hypernet']['median'])} | {_ms(p['forward']['median'])} | {_ms(p['backward']['median'])} | "
                f"{_ms(p['optimizer']['median'])} | {p['samples_per_s']:.1f} | {p['tokens_per_s']:.0f} | "
                f"{_mb(p['step_peak_delta_bytes'])} | {_mb(p['resident_delta_bytes'])} | {p['n_trainable']:,} | "
                f"{ratio_cell(p, 'peft_lora')} | {ratio_cell(p, 'frozen_base')} |")
        lines.append("")
    if report.get("workers"):
        lines += ["## workers (real training path through Ray; not interleaved)", "",
                  "| workers | samples/s | tokens/s | per worker tokens/s | step s | note |", "|---|---|---|---|---|---|"]
        for w in report["workers"]:
            if "error" in w:
                lines.append(f"| {w['workers']} | - | - | - | - | {w['error'][:160]} |")
            else:
                lines.append(f"| {w['workers']} | {w['samples_per_s']:.2f} | {w['tokens_per_s']:.0f} | "
                             f"{w['tokens_per_s_per_worker']:.0f} | {w['step_time_s']:.3f} | {w['run_dir']} |")
        lines.append("")
    lines += ["## targets (issue 12)", "", "| target | bound | measured | met |", "|---|---|---|---|"]
    for t in report["targets"]:
        if t["value"] is None:
            lines.append(f"| {t['target']} | {t['bound']} | not measured | - |")
            continue
        span = f" [{t['min']:.2f}-{t['max']:.2f}]" if t["min"] is not None else ""
        lines.append(f"| {t['target']} | {t['bound']} | {t['value']:.3g}{span} ({t['where']}) | "
                     f"{'met' if t['met'] else 'NOT met'} |")
    if report.get("trainable_at_1000_by_shape"):
        lines += ["", ("Trainable parameters at 1,000 annotators by model shape (this config's adapter settings, "
                  "counted on the meta device). per_annotator_lora grows as annotators x r x (d_in + d_out) per "
                  "adapted module, the hypernetwork as its hidden width x r x (d_in + d_out) per module group "
                  "plus one embedding row per annotator: the 2% target is a property of real widths, which a "
                  "64-wide test model does not have."), "",
                  "| model shape | hidden | adapted modules | hyper_lora | per_annotator_lora | ratio |",
                  "|---|---|---|---|---|---|"]
        for r in report["trainable_at_1000_by_shape"]:
            lines.append(f"| {r['model']} | {r['hidden']} | {r['adapted_modules']} | {r['hyper_lora']:,} | "
                         f"{r['per_annotator_lora']:,} | {100 * r['ratio']:.2f}% |")
    lines += ["", ("Phases: hypernet = the LoRA module's forward (generating / gathering A and B; peft's LoRA runs "
              "inside the backbone and is counted there), backbone fwd = the rest of the forward (body with the "
              "low-rank updates, pooling, head, loss), backward, optimizer = engine.step (DeepSpeed) or clip + "
              "AdamW.step (peft). step peak MB = peak resident memory during a step above what was resident before "
              "it; resident MB = memory the variant added when built and first stepped (weights copy, trainables, "
              "gradients, optimizer state)."), ""]
    if report.get("plots"):
        lines += ["Plots: " + ", ".join(report["plots"]), ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- CLI

def _parse(argv):
    p = argparse.ArgumentParser(prog="hyperscale bench train", description=__doc__.split("\n")[0])
    p.add_argument("config", help="YAML run config, e.g. configs/demo.yaml (model, adapter, train settings)")
    p.add_argument("--quick", action="store_true", help="a few minutes on 2 CPU cores: sweeps perspectives "
                   f"{QUICK_SWEEPS['perspectives']} and conditions {QUICK_SWEEPS['conditions']}, 5 timed rounds")
    p.add_argument("--out", default="bench-train", help="output folder (default: %(default)s)")
    p.add_argument("--sweep", action="append", default=[], metavar="KEY=V1,V2",
                   help=f"sweep one of {', '.join(SWEEP_KEYS)} (repeatable; replaces the default sweeps)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set adapter.rank=8 (repeatable)")
    p.add_argument("--variants", default=",".join(_variants()), help="comma-separated (default: all)")
    p.add_argument("--perspectives", type=int, default=16, help="base vocabulary size (default: %(default)s)")
    p.add_argument("--batch", type=int, help="base rows per step (default: 16, the issue's targets' batch)")
    p.add_argument("--conditions", type=int, help="base distinct conditions per batch (default: = batch)")
    p.add_argument("--seq-len", type=int, help="base tokens per row (default: model.max_length)")
    p.add_argument("--rounds", type=int, help="timed rounds (default: 5 with --quick, else 9)")
    p.add_argument("--warmup", type=int, help="warm-up rounds dropped (default: 1 with --quick, else 2)")
    p.add_argument("--threads", type=int, help="torch threads (default: the CPUs this process may use)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall: perf_counter (default); cpu: this process's CPU time, for a CPU shared with other "
                        "jobs (use with --threads 1: it then measures compute, not waiting for a core)")
    p.add_argument("--worker-steps", type=int, default=6, help="optimizer steps per workers=N run (default: 6)")
    return p.parse_args(argv)


def _variants():
    from hyperscale.bench.variants import VARIANTS

    return VARIANTS


def _load_note() -> str:
    """What the load at the start says about the times (recorded, never assumed)."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    cpus = os.cpu_count() or 1
    side = "the ratios come from steps timed side by side in the same rounds."
    if load is not None and load > 0.5 * cpus:
        return (f"The machine was loaded when this started (1-minute load average {load:.1f} on {cpus} CPUs): "
                f"absolute times are noisy; {side}")
    return f"Ratios: {side}"


def _environment(device, runtime: dict, threads: int, dtype_reason: str) -> dict:
    import torch

    from hyperscale.backbones.dtype import cpu_description
    from hyperscale.ops.backend import library_versions

    return {"device": torch.cuda.get_device_name() if device.type == "cuda" else f"cpu ({platform.machine()})",
            "kernel_backend": runtime.get("kernel_backend"), "compute_dtype": runtime.get("compute_dtype"),
            "compute_dtype_reason": dtype_reason, "torch_threads": threads, "cpu": cpu_description(),
            "cpus_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
            "versions": {**library_versions(), "hyperscale": _hyperscale_version()}, "platform": platform.platform(),
            "runtime": {k: v for k, v in runtime.items() if k not in ("versions", "cpu")}}


def _hyperscale_version() -> str:
    from hyperscale import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    from hyperscale.config import load_config

    cfg = load_config(args.config, args.overrides)  # every key checked before anything loads
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in variants if v not in _variants()]
    if bad:
        raise ConfigError("--variants", f"unknown variant(s) {bad}.", f"choose from {', '.join(_variants())}.")
    sweeps = parse_sweeps(args.sweep) if args.sweep else dict(QUICK_SWEEPS if args.quick else FULL_SWEEPS)
    batch = args.batch or TARGETS_BATCH
    base = Setting(perspectives=args.perspectives, conditions=args.conditions or min(batch, args.perspectives),
                   seq_len=args.seq_len or cfg.model.max_length, batch=batch, rank=cfg.adapter.rank)
    points = plan(base, sweeps, variants)
    rounds = args.rounds or (5 if args.quick else 9)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        print(msg, flush=True)

    import torch

    from hyperscale.backbones.load import load_backbone
    from hyperscale.training.distributed import setup_distributed

    threads = args.threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    torch.set_num_threads(threads)
    ctx = setup_distributed(cfg.distributed.use_gpu)
    t_start = time.perf_counter()
    log(f"loading {cfg.model.name_or_path} ({cfg.model.quantization}) once; every variant gets a copy")
    backbone = load_backbone(cfg.model, device=ctx.device, rows=base.batch * base.seq_len)
    dtype = backbone.dtype_choice
    log(f"compute dtype: {dtype.dtype} ({dtype.reason}); torch threads: {threads}")
    labels = ["0", "1"]
    vocab_size = len(backbone.tokenizer)
    memory = Memory(ctx.device)
    import deepspeed  # noqa: F401 -- imported before any build, so no variant's memory counts the libraries
    import peft  # noqa: F401
    if args.clock == "cpu" and ctx.device.type == "cuda":
        raise ConfigError("--clock", "cpu times this process's CPU, not GPU kernels.", "use --clock wall on a GPU.")
    cache = RunnerCache(cfg, backbone, labels, ctx.device, memory, log, args.clock)

    def batch_for(setting: Setting, r: int) -> dict:
        # The same batch for every variant of a setting in a round; a new one each round.
        return make_batch(setting, vocab_size, len(labels), seed=1000 * r + hash(setting) % 997, device=ctx.device)

    groups = list(dict.fromkeys(p.group for p in points))

    def write_report(done: list[str], trainable: dict | None, workers: list[dict]) -> dict:
        """bench.json / bench.md / plots of the groups done so far (rewritten after each group)."""
        finished = [p for p in points if p.group in done]
        runtime = next((p.runner.runtime for p in finished if p.runner is not None and p.runner.runtime), {})
        report = {"config": args.config, "overrides": args.overrides, "quick": args.quick,
                  "base": asdict(base), "sweeps": sweeps, "variants": variants, "groups": done,
                  "groups_planned": groups, "rounds": rounds, "warmup": warmup,
                  "clock": args.clock,
                  "timer": ("time.process_time (CPU time of this process)" if args.clock == "cpu" else
                            "time.perf_counter (torch.cuda.synchronize first on CUDA)")
                           + " around engine(batch) / engine.backward / engine.step; hypernet by forward hooks on "
                             "the LoRA module",
                  "memory_method": memory.method,
                  "note": _load_note(),
                  "environment": _environment(ctx.device, runtime, threads, dtype.reason),
                  "points": [_point_json(p, cache) for p in finished], "ratios": ratios(finished),
                  "trainable_at_1000": trainable, "trainable_at_1000_by_shape": by_shape,
                  "targets": targets(finished, trainable), "workers": workers,
                  "wall_s": time.perf_counter() - t_start}
        from hyperscale.bench.plots import train_plots

        report["plots"] = [str(p) for p in train_plots(report, out)]
        (out / "bench.json").write_text(json.dumps(report, indent=1))
        (out / "bench.md").write_text(markdown(report))
        return report

    trainable = trainable_at(cache, 1000, base.rank)
    by_shape = trainable_at_shapes(cache.cfg, 1000)
    for i, group in enumerate(groups):
        members = [p for p in points if p.group == group]
        log(f"[{group}] building {len({RunnerCache.key(p) for p in members})} variant model(s)")
        for p in members:
            p.memory = {"_meter": memory}
            p.runner, p.skipped = cache.get(p, batch_for(p.setting, -1))
        run_group(members, rounds, warmup, batch_for, log)
        later = {RunnerCache.key(p) for p in points if p.group in groups[i + 1:]}
        cache.keep_only(later)
        write_report(groups[: i + 1], trainable, [])
        log(f"[{group}] done; {out / 'bench.md'} updated")
    workers = run_workers(cfg, sweeps["workers"], out, args.worker_steps, log) if "workers" in sweeps else []
    report = write_report(groups, trainable, workers)
    print(markdown(report))
    log(f"wrote {out / 'bench.json'}, {out / 'bench.md'} and {len(report['plots'])} plot(s) "
        f"in {report['wall_s']:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
