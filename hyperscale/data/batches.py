"""Rows -> tensors: tokenise each item once, batch rows with their condition ids.

A data set of annotations repeats each item's text once per annotator, so texts
are tokenised per unique item and rows point at them. The sampler shards every
epoch's permutation by rank so that no row is repeated or skipped in an epoch,
and its position is part of every checkpoint (exact resume).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from hyperscale.errors import CheckpointError, DataError


@dataclass
class EncodedRows:
    """One split, ready to batch. Row-level arrays are aligned with the source frame."""

    item_tokens: list[list[int]]  # token ids of each unique item
    row_item: np.ndarray  # (n_rows,) index into item_tokens
    labels: np.ndarray  # (n_rows,) class index
    conditions: dict[str, np.ndarray]  # field -> (n_rows,) condition index, -1 = unknown
    annotators: np.ndarray  # (n_rows,) raw annotator ids, for per-annotator metrics
    item_ids: np.ndarray  # (n_rows,) raw item ids
    # sft (data/sft.py): one sequence per row, prompt + completion + EOS, and its prompt's length
    prompt_lens: np.ndarray | None = None  # (n_sequences,)

    def __len__(self) -> int:
        return len(self.row_item)


def encode_rows(frame: pd.DataFrame, tokenizer, vocab, labels: list[str], fields: list[str],
                max_length: int, prompt_template: str | None = None) -> EncodedRows:
    """Tokenise the unique items of `frame` and map labels and condition ids to indices."""
    label_index = {name: i for i, name in enumerate(labels)}
    items = frame.drop_duplicates("item_id")[["item_id", "text"]]
    texts = items["text"].tolist()
    if prompt_template is not None:
        texts = [prompt_template.format(text=t) for t in texts]
        # Keep the end of a long prompt: the answer cue the LM head reads is there.
        tokenizer.truncation_side = "left"
    enc = tokenizer(texts, truncation=True, max_length=max_length, add_special_tokens=True)
    position = {item: i for i, item in enumerate(items["item_id"].tolist())}
    unknown_labels = sorted(set(frame["label"]) - set(label_index))
    if unknown_labels:
        raise DataError(f"label value(s) {unknown_labels[:5]} are not among this run's classes {labels}. "
                        f"Fix: map them to one of those classes (data.labels lists the classes a run accepts), "
                        f"or drop those rows.")
    conditions = {f: np.asarray(vocab.index(f, frame[f].astype(str).tolist()), dtype=np.int64) for f in fields}
    return EncodedRows(
        item_tokens=[list(ids) for ids in enc["input_ids"]],
        row_item=frame["item_id"].map(position).to_numpy(np.int64),
        labels=frame["label"].map(label_index).to_numpy(np.int64),
        conditions=conditions,
        annotators=frame["annotator"].astype(str).to_numpy(),
        item_ids=frame["item_id"].astype(str).to_numpy(),
    )


def collate(rows_data: EncodedRows, rows: np.ndarray, pad_id: int, device: torch.device | str = "cpu") -> dict:
    """Batch of rows -> padded tensors (right padding) with condition ids per row."""
    seqs = [rows_data.item_tokens[i] for i in rows_data.row_item[rows]]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for b, s in enumerate(seqs):
        ids[b, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[b, : len(s)] = 1
    batch = {"input_ids": ids, "attention_mask": mask, "labels": torch.from_numpy(rows_data.labels[rows])}
    if rows_data.prompt_lens is not None:  # sft: what the loss reads, what instance conditions pool
        prompt_lens = torch.from_numpy(rows_data.prompt_lens[rows_data.row_item[rows]])  # (B,)
        lengths = mask.sum(1)  # (B,)
        batch["lm_targets"], batch["prompt_mask"] = completion_targets(ids, prompt_lens, lengths)
    for field, values in rows_data.conditions.items():
        batch[f"cond_{field}"] = torch.from_numpy(values[rows])
    return {k: v.to(device) for k, v in batch.items()}


def completion_targets(ids: torch.Tensor, prompt_lens: torch.Tensor,
                       lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) right-padded sequences -> (B, T) next-token targets (token t + 1 where it is a completion
    token, -100 elsewhere: prompt, last token, padding) and the (B, T) prompt mask."""
    from hyperscale.data.sft import IGNORE

    pos = torch.arange(ids.shape[1])[None]  # (1, T)
    targets = torch.full_like(ids, IGNORE)
    targets[:, :-1] = ids[:, 1:]
    reads = (pos + 1 >= prompt_lens[:, None]) & (pos + 1 < lengths[:, None])  # next token is a completion token
    targets = torch.where(reads, targets, torch.full_like(targets, IGNORE))
    return targets, (pos < prompt_lens[:, None]).long()


class EpochSampler:
    """Row indices for one rank, epoch after epoch, with a resumable position.

    Each epoch is a permutation seeded by (seed, epoch). Rank r takes every
    world-th row of it, and every rank cuts its share into the same number of
    batches (`np.array_split`, so sizes differ by at most one and none is empty
    while there are at least as many rows per rank as batches): every row is
    seen exactly once per epoch and all ranks step in lockstep.
    """

    def __init__(self, n_rows: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        if n_rows < world_size:
            raise DataError(f"{n_rows} training rows cannot be shared by {world_size} workers (every worker needs "
                            f"at least one row per epoch). Fix: add training rows or lower distributed.num_workers.")
        self.n_rows, self.batch_size, self.seed = n_rows, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.batches_per_epoch = math.ceil(math.ceil(n_rows / world_size) / batch_size)
        self.epoch, self.position = 0, 0
        self._batches = None

    def _epoch_batches(self, epoch: int) -> list[np.ndarray]:
        perm = np.random.default_rng([self.seed, epoch]).permutation(self.n_rows)
        share = perm[self.rank :: self.world_size]
        return np.array_split(share, min(self.batches_per_epoch, len(share)))

    def next_batch(self) -> np.ndarray:
        if self._batches is None:
            self._batches = self._epoch_batches(self.epoch)
        if self.position >= len(self._batches):
            self.epoch, self.position = self.epoch + 1, 0
            self._batches = self._epoch_batches(self.epoch)
        batch = self._batches[self.position]
        self.position += 1
        return batch

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed,
                "n_rows": self.n_rows, "world_size": self.world_size}

    def load_state_dict(self, state: dict) -> None:
        if state["n_rows"] != self.n_rows or state["seed"] != self.seed:
            raise CheckpointError(f"the checkpoint's data position belongs to {state['n_rows']} training rows and "
                                  f"seed {state['seed']}, this run has {self.n_rows} rows and seed {self.seed}. "
                                  f"Fix: resume with the data and train.seed the run started with, or start a "
                                  f"new run directory.")
        self.epoch, self.position, self._batches = state["epoch"], state["position"], None
