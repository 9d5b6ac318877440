"""What rank 0 tells people while a run goes: metrics.jsonl, wandb, a throughput line, a progress bar.

Every logged step becomes one JSON object in `metrics.jsonl` (the run directory
contract), one wandb log call (rank 0 only; offline unless a key is set, so a
run never blocks on the network), and one printed line, which is what
`ray job logs -f` shows:

    step 20/300 | loss 0.6123 | lr 9.9e-04 | 310.2 samples/s (155.1/worker) | 3180 tokens/s (1590/worker) | 0.0021 TFLOP/s | 2 workers

(with `(MFU x%)` after the FLOP/s on a GPU whose peak is known, training/meter.py).

A live progress bar is drawn only on a terminal: in a log file (ray job logs, CI)
its redraws are noise, and the per-log-step line already shows progress.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from hyperscale.config import RunConfig
from hyperscale.rundir import RunDir, append_metrics


def wandb_mode(cfg: RunConfig) -> str:
    """offline / online / disabled. An explicit logging.wandb.mode wins; `auto` takes
    WANDB_MODE from the environment, else online with WANDB_API_KEY, else offline."""
    mode = cfg.logging.wandb.mode
    if mode != "auto":
        return mode
    env = os.environ.get("WANDB_MODE")
    if env in ("offline", "online", "disabled"):
        return env
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


def wandb_run_id(run_dir) -> str:
    """The wandb run id of a run directory: fixed by the directory, so a resumed run (a Ray restart or a
    re-submitted job) continues the same wandb run; its name for reading, a hash of the full path so two
    directories with one name (every kind's `trial0` of a tune, `runs/a/demo` and `runs/b/demo`) never
    share an id (wandb refuses a second live run with an id in use)."""
    path = Path(run_dir).resolve()
    name = "".join(c if c.isalnum() else "-" for c in path.name)[-48:]
    return f"hs-{name}-{hashlib.blake2b(str(path).encode(), digest_size=4).hexdigest()}"


class RunLog:
    """Rank 0's outputs per logged step; on other ranks every method does nothing."""

    def __init__(self, cfg: RunConfig, run_dir: Path, enabled: bool, resumed_step: int = 0):
        self.path = RunDir(run_dir).metrics
        self.enabled, self.max_steps = enabled, cfg.train.max_steps
        self.wandb = self.bar = None
        if enabled and cfg.train.progress_bar and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=cfg.train.max_steps, initial=resumed_step, desc="train", unit="step",
                            dynamic_ncols=True)
        if enabled and wandb_mode(cfg) != "disabled":
            import wandb

            w = cfg.logging.wandb
            self.wandb = wandb.init(project=w.project, entity=w.entity, dir=str(run_dir), mode=wandb_mode(cfg),
                                    id=wandb_run_id(run_dir), resume="allow", config=cfg.to_dict(),
                                    # a worker restarted in the same process left its run open
                                    reinit="finish_previous",
                                    settings=wandb.Settings(silent=True, console="off"))
            if resumed_step:
                self.wandb.summary["resumed_from_step"] = resumed_step

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        append_metrics(self.path, record)
        if self.wandb is not None:
            split = record.get("split", "train")
            self.wandb.log({f"{split}/{k}": v for k, v in record.items()
                            if k not in ("step", "split") and isinstance(v, (int, float))}, step=record["step"])
        if record.get("split") == "train":
            # Not print(): Ray Train patches it to log twice (stdout and its logger).
            sys.stdout.write(throughput_line(record, self.max_steps) + "\n")
            sys.stdout.flush()

    def progress(self, loss: float | None) -> None:
        """One optimizer step done (the bar, if any)."""
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss="-" if loss is None else f"{loss:.4f}")

    def finish(self, summary: dict | None = None) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.wandb is not None:
            for k, v in (summary or {}).items():
                if isinstance(v, (int, float, str)):
                    self.wandb.summary[k] = v
            self.wandb.finish()
            self.wandb = None


def throughput_line(r: dict, max_steps: int) -> str:
    workers = r.get("world_size", 1)
    loss = "-" if r["loss"] is None else f"{r['loss']:.4f}"
    skipped = f" | {r['skipped_steps']} skipped (non-finite)" if r.get("skipped_steps") else ""
    return (f"step {r['step']}/{max_steps} | loss {loss} | lr {r['lr']:.2e} | "
            f"{r['samples_per_s']:.1f} samples/s ({r['samples_per_s_per_worker']:.1f}/worker) | "
            f"{r['tokens_per_s']:.0f} tokens/s ({r['tokens_per_s_per_worker']:.0f}/worker){_flops(r)} | {workers} workers"
            f"{skipped}")


def _flops(r: dict) -> str:
    """` | 1.2 TFLOP/s (MFU 31.0%)`: achieved model FLOP/s, all workers; MFU where the peak is known."""
    if not r.get("achieved_flops_per_s"):
        return ""
    mfu = f" (MFU {100 * r['mfu']:.1f}%)" if r.get("mfu") is not None else ""
    return f" | {r['achieved_flops_per_s'] / 1e12:.3g} TFLOP/s{mfu}"
