"""`hyperscale onboard RUN_DIR --data FILE --k K [--field language]`: few-shot onboarding of new
annotators (or of new languages / tasks of a Hyper-X run).

For every annotator (every id of `--field`) in FILE that the run's vocabulary does not know:
  1. score their rows after the first k with the zero-shot fallback (index -1:
     mean embedding / mean head / mean LoRA, whatever the kind documents);
  2. extend the vocabulary and grow every annotator-indexed table by one row per
     new annotator, each initialised to the mean row, so step 0 predicts exactly
     what the fallback predicts;
  3. fit ONLY those new rows (every other parameter frozen; a gradient mask keeps
     the old rows of a grown table fixed) on the first k labels of each new
     annotator, full batch, Adam;
  4. score the same held-out rows again; `save_onboarded` writes a new run directory (the
     extended vocabulary, the grown tables, onboard.json) that predict serves.
The fit uses the model's own loss (its head's), the same as training.
What "their own parameters" are depends on the kind (model.annotator_tables()):
hyper_lora an embedding row (condition_dim numbers), annotator_embedding an
embedding row (H), multi_head a head (H*C + C), per_annotator_lora a LoRA pair.
shared_lora has none and is refused.
`--field task` / `--field language` onboard a new task or language of a hyper_lora run
conditioned on it: the grown table is the hypernetwork's embedding table of that field
(condition_dim numbers per new id), first k rows per new id, exactly as for annotators.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from hyperscale.data.batches import collate
from hyperscale.data.config import DataConfig
from hyperscale.data.rows import read_files
from hyperscale.data.vocab import CONDITION_FIELDS
from hyperscale.errors import ConfigError, DataError
from hyperscale.eval.decision import decide
from hyperscale.eval.metrics import macro_f1_present, perspectivist_metrics
from hyperscale.serve.run import LoadedRun


def read_rows(run: LoadedRun, path: str) -> pd.DataFrame:
    """Rows of FILE with the run's column settings (when it read files) and its class names."""
    data = run.cfg.data
    labels = list(run.labels) or None  # an sft run on free-text completions has no classes
    if data.source == "files":
        cfg = dataclasses.replace(data, train_files=[str(path)], eval_files=[], labels=labels)
    else:
        # a built-in or generated set's rows name their task / language in columns of those names
        cfg = DataConfig(source="files", train_files=[str(path)], labels=labels,
                         task_column="task" if "task" in run.fields else None,
                         language_column="language" if "language" in run.fields else None)
    # sft: rows keep their completion (or chat messages) column, read as training read it
    frame, report = read_files([str(path)], cfg, labels, task=run.cfg.model.task)
    report.check(cfg.max_bad_fraction)
    return frame


def split_first_k(frame: pd.DataFrame, new_ids: list[str], k: int,
                  field: str = "annotator") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per new id of `field`, its first k rows (file order) to fit on and the rest to score."""
    rows = frame[frame[field].astype(str).isin(new_ids)]
    position = rows.groupby(field, sort=False).cumcount()
    return rows[position < k], rows[position >= k]


def condition_tables(model: nn.Module, field: str = "annotator") -> list[tuple[nn.Module, str]]:
    """(module, attribute) of every parameter indexed by `field`'s ids on dim 0.

    annotator: whatever the kind lists (model.annotator_tables()); task / language: the
    hypernetwork's embedding table of that field (hyper_lora conditioned on it), else none."""
    if field not in CONDITION_FIELDS:
        raise ConfigError("--field", f"is {field!r}, must be one of {list(CONDITION_FIELDS)}.", "pick one of those.")
    if field == "annotator":
        return model.annotator_tables()
    tables = getattr(getattr(model.lora, "hypernet", None), "tables", {})
    return [(tables[field], "weight")] if field in tables else []


def grow_annotator_tables(model: nn.Module, n_new: int, field: str = "annotator") -> list[tuple[nn.Parameter, int]]:
    """Append n_new rows (each = the table's mean row) to every table of `field` (condition_tables);
    returns (param, n_old)."""
    grown = []
    for module, attr in condition_tables(model, field):
        old = getattr(module, attr)
        mean = old.detach().mean(0, keepdim=True)
        new = nn.Parameter(torch.cat([old.detach(), mean.expand(n_new, *old.shape[1:])], 0))
        setattr(module, attr, new)
        if isinstance(module, nn.Embedding):
            module.num_embeddings = new.shape[0]
        grown.append((new, old.shape[0]))
    return grown


def _freeze_all_but_new_rows(model: nn.Module, grown: list[tuple[nn.Parameter, int]]) -> list[nn.Parameter]:
    for p in model.parameters():
        p.requires_grad_(False)
    params = []
    for p, n_old in grown:
        p.requires_grad_(True)
        mask = torch.zeros(p.shape[0], *([1] * (p.dim() - 1)), dtype=p.dtype)
        mask[n_old:] = 1.0
        p.register_hook(lambda g, m=mask: g * m)  # old rows get exactly zero gradient
        params.append(p)
    return params


def fit_new_rows(run: LoadedRun, params: list[nn.Parameter], frame: pd.DataFrame, steps: int, lr: float,
                 batch_size: int = 64, seed: int = 0) -> list[float]:
    """Adam on the new rows only; returns the loss per step. Dropout stays off (eval mode).

    The loss is the model's own (its head's): the same as training, so a causal_lm
    run is fitted with the LM loss over the whole vocabulary, not a C-way one."""
    rows = run.encode(frame)
    opt = torch.optim.Adam(params, lr=lr)  # no weight decay: old rows must stay bit-identical
    gen = np.random.default_rng(seed)
    run.model.eval()
    losses = []
    for _ in range(steps):
        idx = np.arange(len(rows)) if len(rows) <= batch_size else gen.choice(len(rows), batch_size, replace=False)
        batch = collate(rows, idx, run.tokenizer.pad_token_id)
        loss = run.model(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def _scores(run: LoadedRun, frame: pd.DataFrame) -> tuple[dict, np.ndarray]:
    rows = run.encode(frame)
    preds = decide(run.probabilities(rows), run.decision_offsets)  # the run's decision rule (eval.decision)
    n_classes = len(run.labels)
    per = {str(a): macro_f1_present(rows.labels[rows.annotators == a], preds[rows.annotators == a], n_classes)
           for a in np.unique(rows.annotators)}
    overall = perspectivist_metrics(rows.labels, preds, rows.annotators, run.labels, min_items=1)
    overall.pop("per_annotator")
    return {"per_annotator_macro_f1": per, **overall}, preds


def _classification_score(run: LoadedRun, frame: pd.DataFrame) -> tuple[dict, dict]:
    summary, _ = _scores(run, frame)
    return summary, summary["per_annotator_macro_f1"]


def onboard(run: LoadedRun, frame: pd.DataFrame, k: int, steps: int = 100, lr: float = 0.05, seed: int = 0,
            field: str = "annotator", score=None) -> dict:
    """Onboard every id of `field` in `frame` unknown to `run`; see the module docstring. Mutates run.model/vocab.

    `score(run, rows) -> (summary dict, {annotator: value})` replaces the classification scoring
    (per-annotator macro-F1 of the run's decided class, eval.decision) for runs judged otherwise, e.g. by
    the exact match of generated completions; the result then carries `score_fallback` / `score_onboarded` (the mean of
    its per-annotator values) and no `macro_f1_*` keys."""
    if k < 1:
        raise ConfigError("--k", f"is {k}: onboarding needs at least one label per new {field}.", "use --k 1 or more.")
    if not condition_tables(run.model, field):
        if field == "annotator":
            raise ConfigError("adapter.kind", f"{run.cfg.adapter.kind} has no per-annotator parameters to fit.",
                              "onboard a run of hyper_lora, annotator_embedding, multi_head or per_annotator_lora.")
        raise ConfigError("--field", f"this run ({run.cfg.adapter.kind}, adapter.conditions="
                          f"{run.cfg.adapter.conditions}) has no {field} embedding to grow.",
                          f"onboard a {field} on a hyper_lora run whose adapter.conditions include {field}.")
    if field not in frame.columns or frame[field].isna().any():
        raise DataError(f"the rows have no {field} id for every row (column {field!r}). Fix: give every row its "
                        f"{field} (data.{field}_column names the column in your files).")
    known = set(run.vocab.ids(field))
    seen = list(dict.fromkeys(frame[field].astype(str)))
    new_ids = [a for a in seen if a not in known]
    if not new_ids:
        raise DataError(f"all {len(seen)} {field}s in the file are already known to this run: nothing to onboard. "
                        f"Fix: onboard {field}s the run has not seen (`hyperscale predict` already serves the "
                        f"known ones).")
    fit, held = split_first_k(frame, new_ids, k, field)
    scored = sorted(set(held["annotator"].astype(str)))
    if not scored:
        most = int(frame[frame[field].astype(str).isin(new_ids)].groupby(field).size().max())
        raise DataError(f"no new {field} has more than k={k} rows (the most is {most}), so none can be scored on "
                        f"rows it was not fitted on ({len(new_ids)} new, {len(seen) - len(new_ids)} already known). "
                        f"Fix: lower --k below {most}, or give the new {field} ids more rows.")
    custom = score is not None
    score = score or _classification_score
    torch.manual_seed(seed)
    before, per_before = score(run, held)  # ids unknown to the vocab: the zero-shot fallback
    run.vocab.extend(field, new_ids)
    grown = grow_annotator_tables(run.model, len(new_ids), field)
    params = _freeze_all_but_new_rows(run.model, grown)
    t0 = time.perf_counter()
    losses = fit_new_rows(run, params, fit, steps, lr, seed=seed)
    fit_s = time.perf_counter() - t0
    after, per_after = score(run, held)
    gain = {a: per_after[a] - per_before[a] for a in scored}
    mean_before, mean_after = (float(np.mean([per[a] for a in scored])) for per in (per_before, per_after))
    return {
        "adapter_kind": run.cfg.adapter.kind, "field": field, "new_ids": new_ids, "k": k, "steps": steps, "lr": lr,
        "n_new_ids": len(new_ids), "n_new_annotators": len(new_ids), "n_known_annotators_ignored": len(seen) - len(new_ids),
        "n_scored_annotators": len(scored), "n_fit_rows": len(fit), "n_scored_rows": len(held),
        "params_per_annotator": int(sum(p[0].numel() for p, _ in grown)),
        "fallback": before, "onboarded": after,
        **({"score_fallback": mean_before, "score_onboarded": mean_after} if custom else
           {"macro_f1_fallback": mean_before, "macro_f1_onboarded": mean_after}),
        "per_annotator_gain": gain, "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None, "fit_s": fit_s,
    }


def save_onboarded(run: LoadedRun, out_dir, result: dict) -> Path:
    """A new run directory that serves the onboarded annotators too: the run's config and labels,
    the extended vocabulary, the grown weights, onboard.json. Written to a temporary folder and
    renamed, so it is complete or absent; an existing folder is never overwritten."""
    import os
    import shutil
    import tempfile

    from hyperscale.rundir import RunDir, save_trainable, write_json

    out = check_out_free(out_dir)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        new = RunDir(tmp)
        shutil.copy2(run.run_dir / "config.yaml", new.config)
        shutil.copy2(run.run_dir / "labels.json", new.labels)
        run.vocab.save(new.vocab)
        save_trainable(run.trainable_state(), new.trainable)
        write_json(new.path / "onboard.json", {**result, "source_run": str(run.run_dir)})
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def check_out_free(out_dir) -> Path:
    """The output folder of onboarding, refused if it exists (checked before the model loads, and again at the end)."""
    from hyperscale.errors import RunDirError

    out = Path(out_dir)
    if out.exists():
        raise RunDirError(f"{out} already exists; onboarding never overwrites a folder. Fix: pass another --out, or "
                          f"delete {out}.")
    return out
