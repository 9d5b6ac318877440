"""Evaluation of an sft run (`model.task: sft`): completion loss, and labels parsed from generations.

eval.json of an sft run (field names are a README contract, docs/sft.md):
- `completion_loss`: mean NLL per completion token (the completion and its EOS, as in training)
  over all eval rows, `perplexity` = exp(completion_loss), `n_completion_tokens`;
- `per_annotator[a]`: `completion_loss`, `perplexity`, `n_tokens`, `n`, `known`, and with labels
  `macro_f1` / `accuracy` of the parsed generations;
- when the eval rows have labels (verbalized labels, or a label column beside the completions):
  each row's prompt is decoded greedily (eval.max_new_tokens, one batched decode of
  eval.batch_size rows, each row with its own adapter: serve/generate.py), parsed back to the
  label whose verbalizer the text starts with (data/sft.py parse_label), else `unparsed`, and the
  classification metrics users know are computed from it (`macro_f1`, `micro_f1`, `accuracy`,
  `pos_f1`, `majority_baseline`), with `unparsed_fraction`. An unparsed row is wrong for every class.
Rows are split across ranks and gathered on all, as in eval/evaluate.py.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist

from hyperscale.data.batches import EncodedRows, collate
from hyperscale.data.sft import UNPARSED, parse_label
from hyperscale.eval.metrics import majority_reference, perspectivist_metrics


def _gather(rank_rows: np.ndarray, values: dict[str, np.ndarray], n: int, world_size: int) -> dict[str, np.ndarray]:
    """Each rank's rows of `values` -> the full arrays on every rank."""
    if world_size == 1:
        return values
    gathered = [None] * world_size
    dist.all_gather_object(gathered, (rank_rows, {k: v[rank_rows] for k, v in values.items()}))
    out = {k: np.zeros(n, dtype=v.dtype) if v.dtype != object else np.empty(n, dtype=object)
           for k, v in values.items()}
    for idx, part in gathered:
        for k, v in part.items():
            out[k][idx] = v
    return out


@torch.no_grad()
def completion_nll(model, rows: EncodedRows, idx: np.ndarray, batch_size: int, pad_id: int,
                   device) -> tuple[np.ndarray, np.ndarray]:
    """(len(rows),) summed NLL of each row's completion tokens and their count (0 outside `idx`)."""
    nll = np.zeros(len(rows), dtype=np.float64)
    count = np.zeros(len(rows), dtype=np.int64)
    for start in range(0, len(idx), batch_size):
        chunk = idx[start:start + batch_size]
        out = model(collate(rows, chunk, pad_id, device))
        r = out["token_row"].cpu().numpy()
        nll[chunk] = np.bincount(r, weights=out["token_nll"].double().cpu().numpy(), minlength=len(chunk))
        count[chunk] = np.bincount(r, minlength=len(chunk))
    return nll, count


def generate_completions(model, rows: EncodedRows, idx: np.ndarray, batch_size: int, pad_id: int, eos_id: int,
                         max_new_tokens: int) -> dict[int, list[int]]:
    """Greedy completion token ids of rows `idx`, from each row's prompt, each row with its own adapter."""
    from hyperscale.serve.generate import generate_tokens

    out = {}
    for start in range(0, len(idx), batch_size):
        chunk = idx[start:start + batch_size]
        seqs = [rows.item_tokens[rows.row_item[i]] for i in chunk]
        prompts = [s[: rows.prompt_lens[rows.row_item[i]]] for s, i in zip(seqs, chunk)]
        conds = {f: torch.from_numpy(v[chunk]) for f, v in rows.conditions.items()}
        for i, toks in zip(chunk, generate_tokens(model, prompts, conds, pad_id, eos_id, max_new_tokens)):
            out[int(i)] = toks
    return out


class SFTEvaluator:
    """Scores an sft model on the eval rows (the module docstring lists the fields)."""

    def __init__(self, rows: EncodedRows, labels: list[str], train_majority: int, cfg, tokenizer, device,
                 rank: int = 0, world_size: int = 1):
        self.rows, self.labels, self.cfg, self.tok = rows, labels, cfg, tokenizer
        self.train_majority, self.device, self.rank, self.world_size = train_majority, device, rank, world_size
        self.words = list(cfg.model.verbalizers or labels)
        self.last: dict[str, np.ndarray] | None = None  # per-row results of the latest evaluate(): predictions

    def due(self, step: int) -> bool:
        every = self.cfg.train.eval_every
        return bool(every) and step % every == 0 and step != self.cfg.train.max_steps

    @property
    def scores_labels(self) -> bool:
        return bool(self.labels) and bool((self.rows.labels >= 0).any())

    def evaluate(self, model) -> dict:
        rows, e = self.rows, self.cfg.eval
        was_training = model.training
        model.eval()
        mine = np.arange(len(rows))[self.rank::self.world_size]
        pad = self.tok.pad_token_id
        nll, count = completion_nll(model, rows, mine, e.batch_size, pad, self.device)
        values = {"nll": nll, "n_tokens": count}
        if self.scores_labels:
            labelled = mine[rows.labels[mine] >= 0]
            gen = generate_completions(model, rows, labelled, e.batch_size, pad, self.tok.eos_token_id,
                                       e.max_new_tokens)
            text = np.empty(len(rows), dtype=object)
            pred = np.full(len(rows), -1, dtype=np.int64)
            for i, toks in gen.items():
                text[i] = self.tok.decode(toks, skip_special_tokens=True)
                pred[i] = parse_label(text[i], self.words)
            values.update(generated=text, pred=pred)
        model.train(was_training)
        values = _gather(mine, values, len(rows), self.world_size)
        self.last = values
        return self._metrics(model, values)

    def _metrics(self, model, v: dict) -> dict:
        rows, m = self.rows, self.cfg.eval.min_items_per_annotator
        total, n_tok = float(v["nll"].sum()), int(v["n_tokens"].sum())
        loss = total / max(n_tok, 1)
        ann_index = rows.conditions.get("annotator")
        known = set(rows.annotators[ann_index >= 0]) if ann_index is not None else set()
        per = {}
        for ann in np.unique(rows.annotators):
            sel = rows.annotators == ann
            a_loss = float(v["nll"][sel].sum() / max(int(v["n_tokens"][sel].sum()), 1))
            per[str(ann)] = {"n": int(sel.sum()), "known": ann in known, "completion_loss": a_loss,
                             "perplexity": _exp(a_loss), "n_tokens": int(v["n_tokens"][sel].sum())}
        out = {"completion_loss": loss, "perplexity": _exp(loss), "n_completion_tokens": n_tok,
               "n_examples": len(rows), "per_annotator": per, "params_per_annotator": model.params_per_annotator(),
               "n_unknown_annotators": len(np.unique(rows.annotators[ann_index < 0]))
               if ann_index is not None else 0}
        if "pred" in v:
            sel = rows.labels >= 0
            C = len(self.labels)
            gold, pred, anns = rows.labels[sel], v["pred"][sel], rows.annotators[sel]
            pred_or_none = np.where(pred >= 0, pred, C)  # unparsed: an index no class has
            cls = perspectivist_metrics(gold, pred_or_none, anns, self.labels, m, majority_class=self.train_majority)
            for ann, rec in cls.pop("per_annotator").items():
                per[ann].update(macro_f1=rec["macro_f1"], accuracy=rec["accuracy"])
            cls["n_labelled_examples"] = cls.pop("n_examples")
            out.update(cls)
            out["n_unparsed"] = int((pred < 0).sum())
            out["unparsed_fraction"] = float((pred < 0).mean()) if len(pred) else float("nan")
            out["majority_baseline"] = majority_reference(gold, anns, self.labels, self.train_majority, m)
            out["label_words"] = self.words
        return out

    def predictions(self) -> pd.DataFrame:
        """predictions.parquet of an sft run: item_id, annotator, n_tokens, completion_loss, and with labels
        gold, generated (the greedy text) and pred (its parsed label, or 'unparsed')."""
        rows, v = self.rows, self.last
        frame = pd.DataFrame({"item_id": rows.item_ids, "annotator": rows.annotators, "n_tokens": v["n_tokens"],
                              "completion_loss": v["nll"] / np.maximum(v["n_tokens"], 1)})
        if "pred" in v:
            names = np.asarray(list(self.labels) + [UNPARSED], dtype=object)
            frame["gold"] = np.where(rows.labels >= 0, names[np.where(rows.labels >= 0, rows.labels, 0)], None)
            frame["generated"] = v["generated"]
            frame["pred"] = np.where(rows.labels >= 0, names[np.where(v["pred"] >= 0, v["pred"], len(self.labels))],
                                     None)
        return frame


def _exp(x: float) -> float:
    return math.exp(x) if x < 700 else float("inf")
