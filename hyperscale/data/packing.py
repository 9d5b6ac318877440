"""`train.packing`: a micro-batch's sft rows packed into as few sequences as fit in max_length.

Each row becomes a *segment* of a packed sequence: it keeps its own positions (0, 1, ... from
its first token), attends only to its own earlier tokens (the model builds a block-diagonal
causal mask from `segment_ids`, model.py), and keeps its own condition: the batch carries
one `cond_<field>` per segment and `segment_ids` maps every token to its segment, so the
adapter index is per token (the batched op takes any row -> condition map). The targets of a
segment's last token are -100 (the next token is another row's), so the packed loss is the
unpacked loss of the same rows: tests/sft/test_packing.py holds them equal.

Rows are placed first-fit in the sampler's order (deterministic, so resume is exact). A
padding tail, if any, is one more block that attends only to itself (no fully masked row,
which would make attention's softmax NaN).
"""

from __future__ import annotations

import numpy as np
import torch

from hyperscale.data.batches import EncodedRows, completion_targets


def first_fit(lengths: list[int], max_length: int) -> list[list[int]]:
    """Positions of `lengths` grouped into bins of total <= max_length, first fit in the given order."""
    bins: list[list[int]] = []
    room: list[int] = []
    for i, n in enumerate(lengths):
        for b, free in enumerate(room):
            if n <= free:
                bins[b].append(i)
                room[b] -= n
                break
        else:
            bins.append([i])
            room.append(max_length - n)
    return bins


def collate_packed(rows_data: EncodedRows, rows: np.ndarray, pad_id: int, max_length: int,
                   device: torch.device | str = "cpu") -> dict:
    """Rows -> a packed batch: (P, W) input_ids, attention_mask, position_ids, segment_ids, lm_targets,
    prompt_mask, and (S,) labels and cond_<field> per segment (S = len(rows), in `rows` order)."""
    seqs = [rows_data.item_tokens[i] for i in rows_data.row_item[rows]]
    prompt_lens = rows_data.prompt_lens[rows_data.row_item[rows]]
    bins = first_fit([len(s) for s in seqs], max_length)
    width = max(sum(len(seqs[i]) for i in b) for b in bins)
    shape = (len(bins), width)
    ids = torch.full(shape, pad_id, dtype=torch.long)
    mask = torch.zeros(shape, dtype=torch.long)
    positions = torch.zeros(shape, dtype=torch.long)
    segments = torch.full(shape, -1, dtype=torch.long)
    targets = torch.full(shape, -100, dtype=torch.long)
    prompt = torch.zeros(shape, dtype=torch.long)
    for p, members in enumerate(bins):
        start = 0
        for s in members:
            seq, n = seqs[s], len(seqs[s])
            one = torch.tensor(seq, dtype=torch.long)[None]
            t, pm = completion_targets(one, torch.tensor([prompt_lens[s]]), torch.tensor([n]))
            ids[p, start:start + n] = one[0]
            mask[p, start:start + n] = 1
            positions[p, start:start + n] = torch.arange(n)
            segments[p, start:start + n] = s
            targets[p, start:start + n] = t[0]
            prompt[p, start:start + n] = pm[0]
            start += n
        positions[p, start:] = torch.arange(width - start)  # the padding block counts on its own
    batch = {"input_ids": ids, "attention_mask": mask, "position_ids": positions, "segment_ids": segments,
             "lm_targets": targets, "prompt_mask": prompt, "labels": torch.from_numpy(rows_data.labels[rows])}
    for field, values in rows_data.conditions.items():
        batch[f"cond_{field}"] = torch.from_numpy(values[rows])
    return {k: v.to(device) for k, v in batch.items()}


def block_causal_mask(segment_ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(P, W) segment of each token (-1: padding) -> (P, 1, W, W) additive mask: 0 where query q may
    attend to key k (same segment, k <= q; padding attends to padding), the dtype's minimum elsewhere.
    An explicit 4D mask is what transformers passes through to sdpa and eager attention as it is."""
    W = segment_ids.shape[1]
    causal = torch.ones(W, W, dtype=torch.bool, device=segment_ids.device).tril()
    same = segment_ids[:, :, None] == segment_ids[:, None, :]  # (P, W, W)
    allowed = same & causal[None]
    out = torch.zeros(allowed.shape, dtype=dtype, device=segment_ids.device)
    out.masked_fill_(~allowed, torch.finfo(dtype).min)
    return out[:, None]
