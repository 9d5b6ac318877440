"""The unknown-condition fallback, written once for every kind.

A condition id the run never saw in training (an annotator who only appears at
eval or serving time, an unseen task) has index -1. Every table indexed by a
condition (the hypernetwork's embedding tables, annotator_embedding's embedding,
multi_head's heads, per_annotator_lora's A and B) answers -1 with the mean of its
rows: the zero-shot estimate of "an annotator like the average one", and exactly
where onboarding starts a new annotator's row (serve/onboard.py).
"""

from __future__ import annotations

import torch


def gather_rows(table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Rows `ids` (N,) of a condition-indexed table (n, ...) -> (N, ...); id -1 gets the mean row.

    A table the training engine gave a `row_grads` sink (training/sparse_tables.py) sends its
    gradient there as (ids, rows) instead of a dense (n, ...) `.grad` (adapters/row_grad.py)."""
    sink = getattr(table, "row_grads", None)
    if sink is not None and table.requires_grad and torch.is_grad_enabled():
        from hyperscale.adapters.row_grad import gather_rows_to_sink

        return gather_rows_to_sink(table, ids, sink)
    rows = table[ids.clamp(min=0)]
    unknown = ids < 0
    if bool(unknown.any()):
        mean = table.mean(0, keepdim=True).expand_as(rows)
        rows = torch.where(unknown.view(-1, *([1] * (rows.dim() - 1))), mean, rows)
    return rows
