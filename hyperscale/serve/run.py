"""`load_run(run_dir)`: rebuild a finished run's model for predict and onboard.

A run directory holds everything needed (hyperscale/rundir.py names the files):
config.yaml (the resolved config), vocab.json (condition ids -> indices),
labels.json (class names, logit order) and model/trainable.safetensors (the
trainable weights; the frozen backbone is reloaded from its source). Loading is
strict (rundir.load_trainable): a half-loaded adapter would silently predict like
an untrained one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hyperscale.config import RunConfig, load_config
from hyperscale.data.batches import EncodedRows, collate, encode_rows
from hyperscale.data.vocab import ConditionVocab
from hyperscale.errors import CheckpointError
from hyperscale.rundir import RunDir, load_trainable


@dataclass
class LoadedRun:
    run_dir: Path
    cfg: RunConfig
    vocab: ConditionVocab
    labels: list[str]
    model: torch.nn.Module  # PerspectivistModel, eval mode
    tokenizer: object
    trainable_names: list[str]  # what training trained (onboarding freezes most of it, saving writes all of it)

    @property
    def decision_offsets(self):
        """eval.decision=validation: the (C,) log-probability offsets eval.json recorded (None: argmax)."""
        path = RunDir(self.run_dir).eval
        if self.cfg.eval.decision != "validation" or not path.exists():
            return None
        return json.loads(path.read_text()).get("decision", {}).get("offsets")

    def trainable_state(self) -> dict:
        params = dict(self.model.named_parameters())
        return {n: params[n].detach().cpu().contiguous() for n in self.trainable_names}

    @property
    def fields(self) -> list[str]:
        return self.vocab.fields

    def encode(self, frame: pd.DataFrame) -> EncodedRows:
        """Rows (item_id, text, annotator, label[, task, language]) -> EncodedRows with this run's vocab.

        An sft run's rows (with `completion`, or verbalized labels) are encoded as training encodes
        them: prompt + completion + EOS with its prompt length, so a batch carries the completion
        targets and the model's own loss (onboarding's) is the training loss."""
        m = self.cfg.model
        if m.task == "sft":
            from hyperscale.data.sft import encode_sft

            frame = frame if "label" in frame else frame.assign(label=None)
            rows, _ = encode_sft(frame, self.tokenizer, self.vocab, self.labels, self.fields, max_length=m.max_length,
                                 template=m.prompt_template, verbalizers=m.verbalizers,
                                 chat=self.cfg.data.messages_column is not None, overflow="truncate")
            return rows
        template = self.cfg.model.prompt_template if self.cfg.model.task == "causal_lm" else None
        return encode_rows(frame, self.tokenizer, self.vocab, self.labels, self.fields,
                           self.cfg.model.max_length, template)

    @torch.no_grad()
    def probabilities(self, rows: EncodedRows, batch_size: int | None = None) -> np.ndarray:
        """(n_rows, C) predicted class probabilities, one forward per batch of rows."""
        if self.cfg.model.task == "sft":
            from hyperscale.errors import ConfigError

            raise ConfigError("model.task", "this is an sft run: it completes prompts, it has no class probabilities.",
                              "use `hyperscale generate RUN_DIR --prompt ...` (Predictor.generate) instead.")
        self.model.eval()
        bs = batch_size or self.cfg.eval.batch_size
        out = np.zeros((len(rows), len(self.labels)), dtype=np.float32)
        for start in range(0, len(rows), bs):
            idx = np.arange(start, min(start + bs, len(rows)))
            logits = self.model(collate(rows, idx, self.tokenizer.pad_token_id))["logits"]
            out[idx] = torch.softmax(logits.float(), -1).numpy()
        return out


def load_run(run_dir: str | Path) -> LoadedRun:
    """Backbone + model from a run directory, trainable weights loaded, in eval mode on CPU."""
    run = RunDir(run_dir)
    for need in (run.config, run.vocab, run.labels, run.trainable):
        if not need.exists():
            raise CheckpointError(f"{need} is missing: {run.path} is not a finished run directory. Fix: pass the "
                                  f"folder a finished `hyperscale train` wrote (it holds eval.json), or finish this "
                                  f"run by re-running its train command with --run-dir {run.path}.")
    cfg = load_config(str(run.config))
    vocab = ConditionVocab.load(str(run.vocab))
    labels = json.loads(run.labels.read_text())

    from hyperscale.backbones.load import load_backbone
    from hyperscale.model import build_model

    backbone = load_backbone(cfg.model)
    model = build_model(cfg, {f: vocab.size(f) for f in vocab.fields}, labels, backbone)
    load_trainable(model, run.trainable)
    model.eval()
    return LoadedRun(run_dir=run.path, cfg=cfg, vocab=vocab, labels=labels, model=model, tokenizer=backbone.tokenizer,
                     trainable_names=[n for n, p in model.named_parameters() if p.requires_grad])
