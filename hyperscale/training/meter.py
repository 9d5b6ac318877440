"""The step meter: running sums between logged steps, and the train record they become.

It owns the cadence (`should_log`) and the arithmetic of a train record in
metrics.jsonl. A non-finite micro-batch loss is counted, never averaged in: the
record's `loss` is the mean of the finite ones (null when there is none) and
`skipped_steps` says how many optimizer steps the non-finite policy skipped. Its
window (loss, micro-batches, rows, tokens, seconds since the last logged step) is
part of every checkpoint, so a resumed run logs the same numbers the uninterrupted
one would have.

Throughput as compute: `model_flops_per_token` (model.training_flops_per_token: the
frozen backbone's forward and input-gradient backward, the LoRA path's forward and
backward; its docstring has the formula) times tokens/s gives `achieved_flops_per_s`
(all workers) and `achieved_flops_per_s_per_worker`; on a GPU whose peak dense
throughput for the compute dtype is in PEAK_FLOPS, `mfu` is the per-worker achieved
FLOP/s over that peak (omitted elsewhere: a CPU has no such table here). Tokens are
real (attention-mask) tokens, so padding lowers MFU, as it lowers useful work.
"""

from __future__ import annotations

import math
import time

from hyperscale.training.distributed import all_reduce_sum

# Peak dense tensor-core FLOP/s per GPU by name fragment and compute dtype (vendor data
# sheets, SXM parts, no sparsity; float32 runs matmuls in TF32 only if enabled, so its
# entry is the plain FP32 peak). First match wins, so longer names come first.
PEAK_FLOPS = {
    "H200": {"bfloat16": 989e12, "float16": 989e12, "float32": 67e12},
    "H100": {"bfloat16": 989e12, "float16": 989e12, "float32": 67e12},
    "A100": {"bfloat16": 312e12, "float16": 312e12, "float32": 19.5e12},
    "L40S": {"bfloat16": 362e12, "float16": 362e12, "float32": 91.6e12},
    "A10G": {"bfloat16": 70e12, "float16": 70e12, "float32": 31.2e12},
    "L4": {"bfloat16": 121e12, "float16": 121e12, "float32": 30.3e12},
    "V100": {"float16": 125e12, "float32": 15.7e12},
}


def peak_flops(runtime: dict) -> float | None:
    """The peak FLOP/s of the run's GPU in its compute dtype, or None (a CPU, an unlisted GPU)."""
    gpu = runtime.get("gpu")
    if not gpu:
        return None
    for fragment, peaks in PEAK_FLOPS.items():
        if fragment in gpu:
            return peaks.get(runtime.get("compute_dtype"))
    return None


def new_window() -> dict:
    """loss: sum of the finite micro-batch losses (n_finite of n); skipped: optimizer steps skipped."""
    return {"loss": 0.0, "n": 0, "n_finite": 0, "samples": 0, "tokens": 0, "time": 0.0, "skipped": 0}


class StepMeter:
    def __init__(self, train_cfg, world_size: int, window: dict | None = None, flops_per_token: float | None = None,
                 peak: float | None = None):
        """`flops_per_token`: the model's training FLOPs per token; `peak`: one worker's peak FLOP/s, if known."""
        self.cfg, self.world_size = train_cfg, world_size
        self.flops_per_token, self.peak = flops_per_token, peak
        self.window = {**new_window(), **(window or {})}
        self._t0 = None
        self.step_losses: list[float] = []

    def begin_step(self) -> None:
        self._t0 = time.perf_counter()
        self.step_losses = []

    def add(self, loss: float, rows: int, tokens: int) -> None:
        """One micro-batch of this rank (a non-finite loss is counted, never summed)."""
        w = self.window
        self.step_losses.append(loss)
        if math.isfinite(loss):
            w["loss"] += loss
            w["n_finite"] += 1
        w["n"] += 1
        w["samples"] += rows
        w["tokens"] += tokens

    @property
    def step_finite(self) -> bool:
        return all(math.isfinite(x) for x in self.step_losses)

    @property
    def step_loss(self) -> float | None:
        return sum(self.step_losses) / len(self.step_losses) if self.step_finite and self.step_losses else None

    def end_step(self, skipped: bool) -> None:
        self.window["time"] += time.perf_counter() - self._t0
        self.window["skipped"] += int(skipped)

    @property
    def mean_loss(self) -> float | None:
        w = self.window
        return w["loss"] / w["n_finite"] if w["n_finite"] else None

    def should_log(self, step: int) -> bool:
        return step % self.cfg.log_every == 0 or step == self.cfg.max_steps

    def record(self, step: int, lr: float, epoch: int) -> dict:
        """The train record of the steps since the last one, and a fresh window (collective:
        ranks' batches differ in length, so every rank's rows and tokens are counted)."""
        w, world = self.window, self.world_size
        samples, tokens = all_reduce_sum([w["samples"], w["tokens"]], world)
        record = {"step": step, "split": "train", "loss": self.mean_loss, "lr": lr, "epoch": epoch,
                  "samples_per_s": samples / w["time"], "tokens_per_s": tokens / w["time"],
                  "samples_per_s_per_worker": samples / world / w["time"],
                  "tokens_per_s_per_worker": tokens / world / w["time"],
                  "world_size": world, "step_time_s": w["time"] / (w["n"] / self.cfg.grad_accum_steps),
                  "skipped_steps": w["skipped"]}
        if self.flops_per_token:
            per_worker = tokens / world / w["time"] * self.flops_per_token
            record.update(model_flops_per_token=self.flops_per_token, achieved_flops_per_s=per_worker * world,
                          achieved_flops_per_s_per_worker=per_worker)
            if self.peak:
                record["mfu"] = per_worker / self.peak
        self.window = new_window()
        return record
