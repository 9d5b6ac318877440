"""The sft forward (`model.task: sft`): every completion token read by the frozen LM head.

One forward, top to bottom (PerspectivistModel.forward hands sft batches here):
  1. (instance conditions only) the frozen body, adapters off, mean-pooled over each row's
     PROMPT tokens (never its completion, which would leak the answer);
  2. the LoRA module turns the rows' conditions into A, B and each row's index; a packed
     batch (data/packing.py) has several rows per sequence, so the index becomes per token
     (a (P * W,) index: the AdapterState's row_index passes an index with one entry per
     flattened token through unchanged, and the batched op takes any row -> condition map);
  3. the body with each row's own positions and, when packed, a block-diagonal causal mask;
  4. the head's `completion`: the LM head at every position whose next token is a completion
     token, cross-entropy against it, mean over those tokens (prompt and padding masked).
"""

from __future__ import annotations

import torch


def token_rows(batch: dict) -> torch.Tensor:
    """(B, T) row of each token: its segment when packed (-1 on padding), else its sequence."""
    if "segment_ids" in batch:
        return batch["segment_ids"]
    B, T = batch["input_ids"].shape
    return torch.arange(B, device=batch["input_ids"].device)[:, None].expand(B, T)


def body_mask(model, batch: dict) -> torch.Tensor:
    """The body's attention mask: the (B, T) padding mask, or a packed batch's block-diagonal 4D mask."""
    if "segment_ids" not in batch:
        return batch["attention_mask"]
    from hyperscale.data.packing import block_causal_mask

    return block_causal_mask(batch["segment_ids"], model.state.compute_dtype or torch.float32)


def prompt_encoding(model, batch: dict, mask: torch.Tensor, rows: torch.Tensor, n_rows: int) -> torch.Tensor:
    """(n_rows, H) mean of the frozen body's hidden states (adapters off) over each row's prompt tokens."""
    model.state.enabled = False
    try:
        with torch.no_grad():
            hidden = model.body(input_ids=batch["input_ids"], attention_mask=mask,
                                position_ids=batch.get("position_ids"), use_cache=False).last_hidden_state
    finally:
        model.state.enabled = True
    sel = batch["prompt_mask"].bool() & (rows >= 0)  # (B, T)
    h, r = hidden[sel].float(), rows[sel]  # (N, H), (N,)
    total = torch.zeros(n_rows, h.shape[-1], dtype=h.dtype, device=h.device).index_add_(0, r, h)
    count = torch.zeros(n_rows, dtype=h.dtype, device=h.device).index_add_(0, r, torch.ones_like(r, dtype=h.dtype))
    return total / count.clamp(min=1.0)[:, None]


def forward_completion(model, batch: dict) -> dict:
    """-> {"loss": mean NLL over completion tokens, "token_nll" (N,), "token_row" (N,) row of each}."""
    rows = token_rows(batch)  # (B, T)
    n_rows = batch["labels"].shape[0]  # rows: sequences, or segments when packed
    mask = body_mask(model, batch)
    packed = "segment_ids" in batch
    instance = prompt_encoding(model, batch, mask, rows, n_rows) if model.uses_instance else None
    conditions = {k: v for k, v in batch.items() if k.startswith("cond_")}
    # The LoRA module sees one entry per row (kinds size their index by input_ids' rows).
    row_batch = {**conditions, "input_ids": batch["input_ids"].new_zeros(n_rows, 1)} if packed else batch
    weights, index = model.lora(row_batch, instance)  # index (n_rows,)
    if packed:
        index = index[rows.clamp(min=0)].reshape(-1)  # (P * W,) condition of each token; padding takes row 0's
    model.state.publish(weights, index)
    hidden = model.body(input_ids=batch["input_ids"], attention_mask=mask, position_ids=batch.get("position_ids"),
                        use_cache=False).last_hidden_state  # (B, T, H)
    return model.head.completion(hidden, batch, rows)
