"""Fault injection for the fault-tolerance tests: a worker that dies, a save that breaks.

A Ray Train worker is a separate process that a test cannot patch, so faults are
requested through one environment variable, which the launcher forwards to every
worker:

    HYPERSCALE_FAULT="kill:rank=1:step=5"   rank 1 exits (os._exit) after optimizer step 5
    HYPERSCALE_FAULT="raise:rank=0:step=5"  rank 0 raises FaultInjected after step 5
    HYPERSCALE_FAULT="save:rank=0:step=4"   rank 0 raises half-way through the step-4 save
    HYPERSCALE_FAULT="nan:rank=1:step=3"    rank 1's loss of step 3 becomes NaN (the non-finite policy)

Each fault fires once per run directory: a marker file records that it fired, so
the restarted worker group (or the resumed job) runs on past it. Without the
variable every hook is a dictionary lookup and nothing else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENV = "HYPERSCALE_FAULT"
KINDS = ("kill", "raise", "save", "nan")


class FaultInjected(RuntimeError):
    """Raised by an injected fault; never raised in a run without HYPERSCALE_FAULT."""


@dataclass(frozen=True)
class Fault:
    kind: str
    rank: int
    step: int

    @property
    def tag(self) -> str:
        return f"{self.kind}-rank{self.rank}-step{self.step}"


def parse(spec: str | None) -> Fault | None:
    if not spec:
        return None
    kind, *parts = spec.split(":")
    fields = dict(p.split("=", 1) for p in parts)
    if kind not in KINDS or set(fields) != {"rank", "step"}:
        raise ValueError(f"{ENV}={spec!r}: expected KIND:rank=R:step=S with KIND in {KINDS}")
    return Fault(kind, int(fields["rank"]), int(fields["step"]))


def _arm(kind: str, rank: int, step: int, run_dir: Path) -> Fault | None:
    """The requested fault if it matches here and has not fired yet in this run directory."""
    fault = parse(os.environ.get(ENV))
    if fault is None or (fault.kind, fault.rank, fault.step) != (kind, rank, step):
        return None
    marker = Path(run_dir) / f".fault-{fault.tag}"
    if marker.exists():
        return None
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("fired\n")
    return fault


def after_step(rank: int, step: int, run_dir: Path) -> None:
    """Called by every rank after each optimizer step."""
    if _arm("kill", rank, step, run_dir):
        # A hard exit, like an OOM kill: no exception handler, no atexit, no cleanup.
        os._exit(13)
    if _arm("raise", rank, step, run_dir):
        raise FaultInjected(f"injected failure on rank {rank} after step {step}")


def during_save(rank: int, step: int, run_dir: Path) -> None:
    """Called by every rank between writing the engine state and the checkpoint's marker."""
    if _arm("save", rank, step, run_dir):
        raise FaultInjected(f"injected failure on rank {rank} half-way through the step-{step} save")


def on_loss(rank: int, step: int, run_dir: Path, loss):
    """Every micro-batch loss passes here: NaN (keeping the graph, so backward yields NaN gradients) when asked."""
    if _arm("nan", rank, step, run_dir):
        return loss * float("nan")
    return loss
