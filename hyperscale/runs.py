"""`load_run(run_dir)`: rebuild a finished run's model for predict and onboard.

A run directory holds everything needed (worker.py writes it): config.yaml (the
resolved config), vocab.json (condition ids -> indices), labels.json (class
names, logit order) and model/trainable.safetensors (the trainable weights; the
frozen backbone is reloaded from its source). Loading is strict: a trainable
tensor missing, extra or of another shape is a CheckpointError naming it, since
a half-loaded adapter would silently predict like an untrained one.
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


@dataclass
class LoadedRun:
    run_dir: Path
    cfg: RunConfig
    vocab: ConditionVocab
    labels: list[str]
    model: torch.nn.Module  # PerspectivistModel, eval mode
    tokenizer: object

    @property
    def fields(self) -> list[str]:
        return self.vocab.fields

    def encode(self, frame: pd.DataFrame) -> EncodedRows:
        """Rows (item_id, text, annotator, label[, task, language]) -> EncodedRows with this run's vocab."""
        template = self.cfg.model.prompt_template if self.cfg.model.task == "causal_lm" else None
        return encode_rows(frame, self.tokenizer, self.vocab, self.labels, self.fields,
                           self.cfg.model.max_length, template)

    @torch.no_grad()
    def probabilities(self, rows: EncodedRows, batch_size: int | None = None) -> np.ndarray:
        """(n_rows, C) predicted class probabilities, one forward per batch of rows."""
        self.model.eval()
        bs = batch_size or self.cfg.eval.batch_size
        out = np.zeros((len(rows), len(self.labels)), dtype=np.float32)
        for start in range(0, len(rows), bs):
            idx = np.arange(start, min(start + bs, len(rows)))
            logits = self.model(collate(rows, idx, self.tokenizer.pad_token_id))["logits"]
            out[idx] = torch.softmax(logits.float(), -1).numpy()
        return out


def load_trainable(model: torch.nn.Module, path: Path) -> None:
    from safetensors.torch import load_file

    state = load_file(str(path))
    own = {n: p for n, p in model.named_parameters() if p.requires_grad}
    missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    bad = [n for n in set(own) & set(state) if own[n].shape != state[n].shape]
    if missing or extra or bad:
        raise CheckpointError(f"{path} does not match the model built from its config.yaml: missing {missing[:3]}, "
                              f"unexpected {extra[:3]}, shape mismatch {bad[:3]}. Was the run written by "
                              f"another hyperscale version, or its vocab.json edited?")
    with torch.no_grad():
        for name, p in own.items():
            p.copy_(state[name].to(p.dtype))


def load_run(run_dir: str | Path) -> LoadedRun:
    """Backbone + model from a run directory, trainable weights loaded, in eval mode on CPU."""
    run_dir = Path(run_dir)
    for need in ("config.yaml", "vocab.json", "labels.json", "model/trainable.safetensors"):
        if not (run_dir / need).exists():
            raise CheckpointError(f"{run_dir / need} is missing: {run_dir} is not a finished run directory.")
    cfg = load_config(str(run_dir / "config.yaml"))
    vocab = ConditionVocab.load(str(run_dir / "vocab.json"))
    labels = json.loads((run_dir / "labels.json").read_text())

    from hyperscale.backbones import load_backbone
    from hyperscale.model import build_model

    backbone = load_backbone(cfg.model)
    model = build_model(cfg, {f: vocab.size(f) for f in vocab.fields}, labels, backbone)
    load_trainable(model, run_dir / "model" / "trainable.safetensors")
    model.eval()
    return LoadedRun(run_dir=run_dir, cfg=cfg, vocab=vocab, labels=labels, model=model, tokenizer=backbone.tokenizer)
