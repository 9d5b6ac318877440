"""The step meter: running sums between logged steps, and the train record they become.

It owns the cadence (`should_log`) and the arithmetic of a train record in
metrics.jsonl. Its window (loss, micro-batches, rows, tokens, seconds since the
last logged step) is part of every checkpoint, so a resumed run logs the same
numbers the uninterrupted one would have.
"""

from __future__ import annotations

import time

from hyperscale.training.distributed import all_reduce_sum


def new_window() -> dict:
    return {"loss": 0.0, "n": 0, "samples": 0, "tokens": 0, "time": 0.0}


class StepMeter:
    def __init__(self, train_cfg, world_size: int, window: dict | None = None):
        self.cfg, self.world_size = train_cfg, world_size
        self.window = dict(window) if window else new_window()
        self._t0 = None

    def begin_step(self) -> None:
        self._t0 = time.perf_counter()

    def add(self, loss: float, rows: int, tokens: int) -> None:
        """One micro-batch of this rank."""
        w = self.window
        w["loss"] += loss
        w["n"] += 1
        w["samples"] += rows
        w["tokens"] += tokens

    def end_step(self) -> None:
        self.window["time"] += time.perf_counter() - self._t0

    @property
    def mean_loss(self) -> float:
        return self.window["loss"] / max(1, self.window["n"])

    def should_log(self, step: int) -> bool:
        return step % self.cfg.log_every == 0 or step == self.cfg.max_steps

    def record(self, step: int, lr: float, epoch: int) -> dict:
        """The train record of the steps since the last one, and a fresh window (collective:
        ranks' batches differ in length, so every rank's rows and tokens are counted)."""
        w, world = self.window, self.world_size
        samples, tokens = all_reduce_sum([w["samples"], w["tokens"]], world)
        record = {"step": step, "split": "train", "loss": w["loss"] / w["n"], "lr": lr, "epoch": epoch,
                  "samples_per_s": samples / w["time"], "tokens_per_s": tokens / w["time"],
                  "samples_per_s_per_worker": samples / world / w["time"],
                  "tokens_per_s_per_worker": tokens / world / w["time"],
                  "world_size": world, "step_time_s": w["time"] / (w["n"] / self.cfg.grad_accum_steps)}
        self.window = new_window()
        return record
