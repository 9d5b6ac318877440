"""Everything a run needs before its first step: data, vocabulary, a resume decision, rows, model.

The order is chosen so that expensive or irreversible work comes last:
  1. data and vocabulary (seconds), then the resume decision, so an incompatible
     checkpoint fails before the backbone loads;
  2. the backbone (the slow part), then the tokenised rows and the model;
  3. only then the run files (config.yaml with its `runtime:` section, vocab.json,
     labels.json): a refused resume leaves an existing run directory as it was.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hyperscale.adapters.kinds import get_kind
from hyperscale.config import RunConfig
from hyperscale.data.aggregate import label_distribution
from hyperscale.data.batches import EncodedRows, encode_rows
from hyperscale.data.load import load_data
from hyperscale.data.vocab import ConditionVocab
from hyperscale.rundir import RunDir, write_atomic
from hyperscale.training import checkpoint
from hyperscale.training.distributed import DistContext, decided_by_rank0, seed_everything


@dataclass
class Prepared:
    vocab: ConditionVocab
    labels: list[str]
    train_rows: EncodedRows
    eval_rows: EncodedRows  # the rows the run scores: the eval split, or the validation split (eval.split)
    train_majority: int  # class index the majority reference predicts
    train_prior: np.ndarray  # (C,) train label shares: the majority reference's soft prediction
    model: object  # PerspectivistModel, on ctx.device
    pad_id: int
    resume_from: Path | None  # the checkpoint to resume, already checked compatible
    tokenizer: object = None
    sft_data: dict = field(default_factory=dict)  # sft: rows truncated to model.max_length, per split (eval.json "sft_data")
    decision_rows: EncodedRows | None = None  # eval.decision=validation scoring the eval split: the validation rows


def subsample(frame, max_rows: int | None, seed: int):
    if max_rows is None or len(frame) <= max_rows:
        return frame
    return frame.sample(n=max_rows, random_state=seed).sort_index()


def prepare(cfg: RunConfig, run: RunDir, ctx: DistContext, store=None) -> Prepared:
    from hyperscale.backbones.load import load_backbone
    from hyperscale.model import build_model

    seed_everything(cfg.train.seed)
    # Rank 0 writes data_report.json and bad_rows.jsonl, before any DataError is raised.
    data = load_data(cfg.data, run_dir=str(run.path) if ctx.is_main else None, task=cfg.model.task)
    if ctx.is_main:
        print(data.report.summary(), flush=True)
    fields = data.condition_fields()
    vocab = data.condition_vocab()  # train ids only: eval-only annotators map to -1 (the fallback)
    # After the vocabulary: aggregated rows have no annotator, but eval rows keep theirs.
    train_frame = get_kind(cfg.adapter.kind).train_frame(data.train, data.labels, cfg)
    resume_from = checkpoint.resume_dir(run.path, store)
    if resume_from is not None:  # before the backbone loads: an incompatible checkpoint fails in seconds
        checkpoint.check_compatible(resume_from, cfg, vocab, data.labels, ctx.world_size)

    from hyperscale.backbones.dtype import resolve_compute_dtype

    rows = cfg.train.micro_batch_size * cfg.model.max_length
    backbone = load_backbone(cfg.model, device=ctx.device, rows=rows, choose_dtype=lambda shape: decided_by_rank0(
        lambda: resolve_compute_dtype(cfg.model, ctx.device, shape, rows), ctx.rank, ctx.world_size))
    if ctx.is_main:
        print(f"compute dtype: {backbone.dtype_choice.dtype} ({backbone.dtype_choice.reason})", flush=True)
    tok = backbone.tokenizer
    # eval.split=validation (tuning): the eval split is never encoded, so it cannot be scored.
    scored = data.validation if cfg.eval.split == "validation" else data.eval
    eval_frame = subsample(scored, cfg.eval.max_examples, cfg.train.seed)
    sft_data, decision_rows = {}, None
    if cfg.model.task == "sft":
        train_rows, eval_rows, sft_data = _encode_sft(cfg, tok, vocab, data, fields, train_frame, eval_frame)
        if ctx.is_main:
            data.report.notes["sft"] = sft_data
            data.report.save(str(run.path))
            print(f"sft: {sft_data['train_truncated_rows']} of {len(train_rows)} train rows and "
                  f"{sft_data['eval_truncated_rows']} of {len(eval_rows)} eval rows truncated to model.max_length="
                  f"{cfg.model.max_length} (data.overflow={cfg.data.overflow})", flush=True)
    else:
        template = cfg.model.prompt_template if cfg.model.task == "causal_lm" else None
        train_rows = encode_rows(train_frame, tok, vocab, data.labels, fields, cfg.model.max_length, template)
        eval_rows = encode_rows(eval_frame, tok, vocab, data.labels, fields, cfg.model.max_length, template)
        if cfg.eval.decision == "validation" and cfg.eval.split == "eval":  # offsets chosen there (eval/decision.py)
            decision_rows = encode_rows(data.validation, tok, vocab, data.labels, fields, cfg.model.max_length,
                                        template)

    seed_everything(cfg.train.seed)  # identical trainable init on every rank, whatever loading consumed
    model = build_model(cfg, {f: vocab.size(f) for f in fields}, data.labels, backbone, device=ctx.device)
    model.to(ctx.device)
    if ctx.is_main:
        run.path.mkdir(parents=True, exist_ok=True)
        cfg.save(run.config, runtime=model.runtime)
        vocab.save(run.vocab)
        write_atomic(run.labels, json.dumps(data.labels))
    known = train_rows.labels[train_rows.labels >= 0]  # sft rows may have no label (-1)
    return Prepared(vocab=vocab, labels=data.labels, train_rows=train_rows, eval_rows=eval_rows,
                    train_majority=int(np.bincount(known, minlength=max(1, len(data.labels))).argmax()),
                    train_prior=label_distribution(train_frame, data.labels), model=model, pad_id=tok.pad_token_id,
                    resume_from=resume_from, tokenizer=tok, sft_data=sft_data, decision_rows=decision_rows)


def _encode_sft(cfg: RunConfig, tok, vocab, data, fields, train_frame, eval_frame):
    """Train and eval rows as prompt + completion sequences, and what fitting them to max_length did."""
    from hyperscale.data.sft import encode_sft

    if cfg.adapter.aggregate_labels and "completion" in train_frame and train_frame["completion"].notna().any():
        from hyperscale.errors import ConfigError

        raise ConfigError("adapter.aggregate_labels", "is true, but these sft rows have their own completions: a "
                          "majority label has no completion text to train on.",
                          "set adapter.aggregate_labels=false, or train on verbalized labels (no completion column).")
    kw = {"max_length": cfg.model.max_length, "template": cfg.model.prompt_template,
          "verbalizers": cfg.model.verbalizers, "chat": cfg.data.messages_column is not None,
          "overflow": cfg.data.overflow}
    train_rows, train_fit = encode_sft(train_frame, tok, vocab, data.labels, fields, split="train", **kw)
    eval_rows, eval_fit = encode_sft(eval_frame, tok, vocab, data.labels, fields, split="eval", **kw)
    counts = {"overflow": cfg.data.overflow, "max_length": cfg.model.max_length,
              "train_truncated_rows": train_fit.n_truncated, "train_completion_cut_rows": train_fit.n_completion_cut,
              "eval_truncated_rows": eval_fit.n_truncated, "eval_completion_cut_rows": eval_fit.n_completion_cut,
              "train_longest_tokens": train_fit.max_tokens, "eval_longest_tokens": eval_fit.max_tokens,
              "empty_completion_rows": int(data.report.reasons.get("empty_completion", 0))}
    return train_rows, eval_rows, counts
