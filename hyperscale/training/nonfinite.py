"""The non-finite policy: a step whose loss or gradient is not finite on ANY rank is skipped by EVERY rank,
and too many in a row stop the run with an error instead of training on (or reporting) NaN.

How a step is skipped. The ranks agree first (one all-reduce of a flag at the
accumulation boundary), then the step goes through DeepSpeed's own overflow path
(the one fp16 loss scaling uses): no weight or optimizer moment moves, the LR
schedule stays where it was, `engine.was_step_applied()` is False, the gradients
are cleared.
  - ZeRO stages 1-3: DeepSpeed's step already refuses non-finite gradients (its
    global-norm check marks the step as overflow on every rank).
  - ZeRO stage 0 (a plain optimizer, no such check): the guard raises the
    optimizer's `overflow` flag (training/engine.py::SkippableAdamW).
Without this, a diverged run (lr 1e6: loss 0.64 -> 7.2e6 -> NaN) skipped every later
step silently, printed a normal summary and wrote eval.json full of NaN.
"""

from __future__ import annotations

import math

import torch

from hyperscale.errors import HyperscaleError
from hyperscale.training.distributed import all_reduce_sum


class TrainingDiverged(HyperscaleError):
    """Training stopped because its loss or gradients stayed non-finite (or the model's outputs are)."""


class NonFiniteGuard:
    def __init__(self, cfg, world_size: int, trainable: list[torch.nn.Parameter]):
        self.cfg, self.world_size, self.trainable = cfg, world_size, trainable
        self.in_a_row, self.last_finite = 0, None  # last_finite: (step, loss)
        self._bad = False

    def before_optimizer_step(self, engine, losses_finite: bool) -> None:
        """At the accumulation boundary, before engine.step() (collective): do all ranks have a finite step?"""
        bad = not losses_finite
        plain = self.cfg.distributed.zero_stage == 0
        if plain:  # ZeRO reduces gradients into its own buffers and checks them itself
            bad = bad or any(p.grad is not None and not bool(torch.isfinite(p.grad).all()) for p in self.trainable)
        self._bad = all_reduce_sum([float(bad)], self.world_size)[0] > 0
        if plain:
            engine.optimizer.overflow = self._bad

    def after_optimizer_step(self, engine, step: int, mean_loss: float | None) -> bool:
        """True if the step was skipped; raises TrainingDiverged after train.max_nonfinite_steps in a row."""
        skipped = self._bad or not engine.was_step_applied()
        if not skipped:
            self.in_a_row = 0
            if mean_loss is not None and math.isfinite(mean_loss):
                self.last_finite = (step, mean_loss)
            return False
        self.in_a_row += 1
        limit = self.cfg.train.max_nonfinite_steps
        if self.in_a_row >= limit:
            last = (f"the last finite loss was {self.last_finite[1]:.4g} at step {self.last_finite[0]}"
                    if self.last_finite else "no step had a finite loss")
            raise TrainingDiverged(
                f"training diverged: steps {step - limit + 1}..{step} had a non-finite loss or gradient on some "
                f"worker and were skipped ({limit} in a row, train.max_nonfinite_steps); {last}. Nothing of this "
                f"run's last {limit} steps was applied, and no eval.json was written. Fix: lower train.lr (now "
                f"{self.cfg.train.lr:g}), add train.warmup_steps, keep train.max_grad_norm > 0 (now "
                f"{self.cfg.train.max_grad_norm:g}), or compute in float32 (model.compute_dtype), and train again "
                f"in a new --run-dir (this one holds the settings that diverged, and refuses others).")
        return True
