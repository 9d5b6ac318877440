"""A finished run's results on disk: eval.json, per_annotator.csv, predictions.parquet and the two PNG plots.

predictions.parquet has one row per scored (item, annotator) row, in the scored
split's order: `item_id`, `annotator`, `gold` and `pred` (class names; `pred` is the run's
decision, eval.decision), and `p_<class>` (the model's probability of each class). The paired bootstrap of
`hyperscale compare` (experiments/stats.py) resamples these rows by item.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from hyperscale.eval.metrics import write_per_annotator_csv
from hyperscale.eval.plots import run_plots
from hyperscale.rundir import RunDir, read_metrics, write_json

PREDICTIONS = "predictions.parquet"


def predictions_frame(rows, probs: np.ndarray, labels: list[str], pred: np.ndarray | None = None) -> pd.DataFrame:
    """`rows` (EncodedRows), their (n_rows, C) probabilities and predicted class indices (default: the
    argmax; eval.decision=validation passes its own) -> predictions.parquet's table."""
    probs = np.asarray(probs, dtype=np.float32)
    names = np.asarray(labels, dtype=object)
    pred = probs.argmax(1) if pred is None else np.asarray(pred)
    frame = pd.DataFrame({"item_id": rows.item_ids, "annotator": rows.annotators, "gold": names[rows.labels],
                          "pred": names[pred]})
    for c, label in enumerate(labels):
        frame[f"p_{label}"] = probs[:, c]
    return frame


def write_results(run: RunDir, metrics: dict, min_items: int, predictions: pd.DataFrame | None = None) -> None:
    if predictions is not None:
        from hyperscale.rundir import write_atomic

        buf = io.BytesIO()
        predictions.to_parquet(buf, index=False)
        write_atomic(run.path / PREDICTIONS, buf.getvalue())
    write_json(run.eval, metrics)
    write_per_annotator_csv(run.per_annotator, metrics["per_annotator"])
    run_plots(run, metrics, read_metrics(run.metrics) if run.metrics.exists() else [], min_items)


def summary_text(metrics: dict, run_dir) -> str:
    """The end-of-run table people read: the model beside the majority-class reference."""
    base = metrics.get("majority_baseline", {})
    rows = [("macro_f1", "mean per-annotator macro-F1"), ("micro_f1", "macro-F1 over all pairs"),
            ("pos_f1", "F1 of the minority class"), ("accuracy", "accuracy")]
    scored = f"{metrics['n_annotators']} annotators scored, " if "n_annotators" in metrics else ""
    lines = [(f"\nevaluation ({metrics['n_examples']} rows, {scored}"
              f"{metrics.get('trainable_params', 0):,} trainable params)"),
             f"{'metric':<10} {'model':>8} {'majority':>9}  meaning"]
    if "completion_loss" in metrics:  # sft (eval/sft.py)
        rows = [("completion_loss", "mean NLL per completion token"), ("perplexity", "exp(completion_loss)"),
                *rows, ("unparsed_fraction", "generations parsed to no label")]
    for key, meaning in rows:
        if key in metrics:
            lines.append(f"{key:<10} {_num(metrics[key]):>8} {_num(base.get(key)):>9}  {meaning}")
    if "decision" in metrics:  # eval.decision=validation: the F1s above use class offsets chosen on validation
        d, plain = metrics["decision"], metrics.get("argmax", {})
        lines.append(f"decision: log-probability offsets {[round(o, 3) for o in d['offsets']]} fitted on "
                     f"{d['fitted_on']}; with argmax instead: macro_f1 {_num(plain.get('macro_f1'))}, micro_f1 "
                     f"{_num(plain.get('micro_f1'))}")
    lines.append(f"run directory: {run_dir}  (eval.json, metrics.jsonl, config.yaml)")
    return "\n".join(lines)


def _num(value) -> str:
    return "-" if value is None or value != value else f"{value:.4f}"
