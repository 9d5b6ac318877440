"""Evaluation of a model on the eval split: distributed inference, then eval.json's metrics.

Rows are split across ranks (rank r takes every world-th row) and gathered on
every rank, so each rank returns the same metrics. Under ZeRO-3 every forward
gathers parameters collectively, so every rank runs the same number of forwards
even when its share is empty.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

from hyperscale.data.batches import EncodedRows, collate
from hyperscale.eval.metrics import (majority_reference, majority_vote_metrics, per_annotator_nll,
                                     perspectivist_metrics, soft_label_metrics)

HEADLINE = ("macro_f1", "micro_f1", "accuracy", "pos_f1", "n_annotators", "n_examples",
            "completion_loss", "perplexity", "unparsed_fraction")  # the last three: sft (eval/sft.py)


@torch.no_grad()
def predict_probs(model, rows: EncodedRows, batch_size: int, pad_id: int, device, rank: int = 0,
                  world_size: int = 1) -> np.ndarray:
    """(n_rows, C) softmax of the logits for every row; rows split across ranks, gathered on all."""
    was_training = model.training
    model.eval()
    mine = np.arange(len(rows))[rank::world_size]
    probs = None
    n_batches = int(np.ceil(int(np.ceil(len(rows) / world_size)) / batch_size))
    for b in range(n_batches):
        chunk = mine[b * batch_size:(b + 1) * batch_size]
        if len(chunk) == 0:  # keep the collective forwards in step (ZeRO-3)
            model(collate(rows, mine[:1] if len(mine) else np.arange(1), pad_id, device))
            continue
        logits = model(collate(rows, chunk, pad_id, device))["logits"]
        if probs is None:
            probs = np.zeros((len(rows), logits.shape[-1]), dtype=np.float32)
        probs[chunk] = torch.softmax(logits.float(), -1).cpu().numpy()
    if world_size > 1:
        gathered = [None] * world_size
        dist.all_gather_object(gathered, (mine, probs[mine] if probs is not None else None))
        for idx, p in gathered:
            if p is not None:
                if probs is None:
                    probs = np.zeros((len(rows), p.shape[-1]), dtype=np.float32)
                probs[idx] = p
    model.train(was_training)
    return probs


class Evaluator:
    """Scores a model on the eval rows: per-annotator, soft-label and majority-vote metrics,
    beside the predict-the-training-majority reference."""

    def __init__(self, rows: EncodedRows, labels: list[str], train_majority: int, train_prior: np.ndarray,
                 cfg, pad_id: int, device, rank: int = 0, world_size: int = 1,
                 decision_rows: EncodedRows | None = None):
        self.rows, self.labels, self.cfg = rows, labels, cfg
        self.decision_rows = decision_rows  # eval.decision=validation: the validation rows the offsets come from
        self.train_majority, self.train_prior = train_majority, train_prior
        self.pad_id, self.device, self.rank, self.world_size = pad_id, device, rank, world_size
        self.last_probs: np.ndarray | None = None  # (n_rows, C) of the latest evaluate(): predictions.parquet
        self.last_pred: np.ndarray | None = None  # (n_rows,) its decided classes (eval.decision)

    def due(self, step: int) -> bool:
        """An evaluation during training (the final one always runs)."""
        every = self.cfg.train.eval_every
        return bool(every) and step % every == 0 and step != self.cfg.train.max_steps

    def evaluate(self, model) -> dict:
        rows, labels, m = self.rows, self.labels, self.cfg.eval.min_items_per_annotator
        probs = predict_probs(model, rows, self.cfg.eval.batch_size, self.pad_id, self.device, self.rank,
                              self.world_size)
        bad = int((~np.isfinite(probs)).any(1).sum())
        if bad:  # never report NaN as a result: argmax of NaN would still "predict" a class
            from hyperscale.training.nonfinite import TrainingDiverged

            raise TrainingDiverged(f"the model's outputs are not finite on {bad} of {len(rows)} eval rows, so there "
                                   f"is nothing to score. Fix: lower train.lr (now {self.cfg.train.lr:g}) or "
                                   f"compute in float32 (model.compute_dtype), and train again in a new --run-dir.")
        self.last_probs = probs
        preds, decision = self._decide(model, probs)
        self.last_pred = preds
        metrics = perspectivist_metrics(rows.labels, preds, rows.annotators, labels, m,
                                        majority_class=self.train_majority)
        if decision is not None:
            argmax = probs.argmax(1)
            plain = perspectivist_metrics(rows.labels, argmax, rows.annotators, labels, m,
                                          majority_class=self.train_majority)
            plain.update(majority_vote_metrics(rows.labels, argmax, rows.item_ids, len(labels), self.train_majority))
            metrics["argmax"] = {k: plain[k] for k in ("macro_f1", "micro_f1", "accuracy", "pos_f1",
                                                       "majority_vote_f1") if k in plain}
            metrics["decision"] = decision
        metrics.update(soft_label_metrics(rows.labels, probs, rows.item_ids, len(labels)))
        metrics.update(majority_vote_metrics(rows.labels, preds, rows.item_ids, len(labels), self.train_majority))
        ann_index = rows.conditions.get("annotator")
        known = set(rows.annotators[ann_index >= 0]) if ann_index is not None else set()
        for ann, nll in per_annotator_nll(rows.labels, probs, rows.annotators).items():
            metrics["per_annotator"][ann].update(nll=nll, known=ann in known)
        metrics["params_per_annotator"] = model.params_per_annotator()
        metrics["majority_baseline"] = majority_reference(rows.labels, rows.annotators, labels, self.train_majority,
                                                          m, item_ids=rows.item_ids, prior=self.train_prior)
        metrics["n_unknown_annotators"] = (int(len(np.unique(rows.annotators[ann_index < 0])))
                                           if ann_index is not None else 0)
        return metrics

    def _decide(self, model, probs: np.ndarray) -> tuple[np.ndarray, dict | None]:
        """The rows' labels under eval.decision, and what the decision was (None for argmax)."""
        if self.cfg.eval.decision != "validation":
            return probs.argmax(1), None
        from hyperscale.eval.decision import cross_fit, decide, fit_offsets

        rows, m = self.rows, self.cfg.eval.min_items_per_annotator
        if self.decision_rows is None:  # scoring the validation split itself: cross-fitted by item halves
            preds, fitted, _ = cross_fit(rows.labels, probs, rows.annotators, rows.item_ids, m, self.cfg.train.seed)
            # `offsets` (fitted on every validation row) only label new rows (`hyperscale predict`)
            return preds, {"rule": "validation", "fitted_on": "the other half of the scored validation items "
                           "(2-fold cross-fit by item)", "offsets_per_half": [f.tolist() for f in fitted],
                           "offsets": fit_offsets(rows.labels, probs, rows.annotators, m).tolist()}
        v = self.decision_rows
        v_probs = predict_probs(model, v, self.cfg.eval.batch_size, self.pad_id, self.device, self.rank,
                                self.world_size)
        offsets = fit_offsets(v.labels, v_probs, v.annotators, m)
        # The validation split's own scores (argmax: the offsets were fitted there), so a run scored on eval can be
        # compared with what selection saw without training it again.
        seen = perspectivist_metrics(v.labels, v_probs.argmax(1), v.annotators, self.labels, m,
                                     majority_class=self.train_majority)
        seen.update(soft_label_metrics(v.labels, v_probs, v.item_ids, len(self.labels)))
        return decide(probs, offsets), {"rule": "validation", "fitted_on": f"validation split ({len(v)} rows)",
                                        "offsets": offsets.tolist(),
                                        "validation_argmax": {k: seen[k] for k in ("macro_f1", "micro_f1", "soft_ce")}}

    def predictions(self):
        """predictions.parquet's table for the latest evaluate() (eval/report.py)."""
        from hyperscale.eval.report import predictions_frame

        return predictions_frame(self.rows, self.last_probs, self.labels, self.last_pred)


def headline(metrics: dict) -> dict:
    """The few metrics a metrics.jsonl eval record and the wandb summary carry."""
    return {k: metrics[k] for k in HEADLINE if k in metrics}
