"""The step meter: running sums between logged steps, and the train record they become.

It owns the cadence (`should_log`) and the arithmetic of a train record in
metrics.jsonl. A non-finite micro-batch loss is counted, never averaged in: the
record's `loss` is the mean of the finite ones (null when there is none) and
`skipped_steps` says how many optimizer steps the non-finite policy skipped. Its
window (loss, micro-batches, rows, tokens, seconds since the last logged step) is
part of every checkpoint, so a resumed run logs the same numbers the uninterrupted
one would have.
"""

from __future__ import annotations

import math
import time

from hyperscale.training.distributed import all_reduce_sum


def new_window() -> dict:
    """loss: sum of the finite micro-batch losses (n_finite of n); skipped: optimizer steps skipped."""
    return {"loss": 0.0, "n": 0, "n_finite": 0, "samples": 0, "tokens": 0, "time": 0.0, "skipped": 0}


class StepMeter:
    def __init__(self, train_cfg, world_size: int, window: dict | None = None):
        self.cfg, self.world_size = train_cfg, world_size
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
        self.window = new_window()
        return record
