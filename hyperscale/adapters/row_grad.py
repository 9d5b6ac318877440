"""A row gather whose backward keeps the table's gradient as (ids, rows): O(rows touched), never O(table).

Why. A condition table (the hypernetwork's annotator embedding, per-annotator LoRA
factors, per-annotator heads) has one row per perspective; a batch reads a few of
them. Through plain indexing, autograd materialises a dense (n, ...) gradient that is
zero outside those rows, and everything downstream reads all of it: the zero fill,
DeepSpeed's flatten for its all-reduce, the norm for clipping, the optimizer. At
1,000,000 perspectives that was 40x the step of 16 (issue 12). When the training
engine attaches a `RowGradSink` to a table (training/sparse_tables.py), the gather
below sends the gradient of the rows it read to the sink instead, and the table's
`.grad` stays None; the engine's table optimizer reads the sink.

An unknown id (-1) reads the mean of all rows (adapters/fallback.py); its gradient
reaches every row equally, so the sink keeps it as one (...) vector (`mean_grad`),
spread over the rows only when it is used.
"""

from __future__ import annotations

import torch


class RowGradSink:
    """The gradient of one table, as the rows read: a list of ((K,) ids, (K, ...) rows) and the
    gradient of its mean row (unknown ids). Appended by backward, emptied by the optimizer."""

    def __init__(self, table: torch.Tensor):
        self.n_rows, self.row_shape = table.shape[0], tuple(table.shape[1:])
        self.parts: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.mean_grad: torch.Tensor | None = None  # (...) summed gradient of the mean row

    def add(self, ids: torch.Tensor, rows: torch.Tensor) -> None:
        self.parts.append((ids, rows))

    def add_mean(self, grad: torch.Tensor) -> None:
        self.mean_grad = grad if self.mean_grad is None else self.mean_grad + grad

    def clear(self) -> None:
        self.parts, self.mean_grad = [], None

    def coalesced(self) -> tuple[torch.Tensor, torch.Tensor]:
        """((U,) sorted unique ids, (U, ...) summed rows) of the known-id parts."""
        if not self.parts:
            return torch.zeros(0, dtype=torch.long), torch.zeros(0, *self.row_shape)
        ids = torch.cat([i for i, _ in self.parts])
        rows = torch.cat([r for _, r in self.parts])
        uniq, inverse = torch.unique(ids, return_inverse=True)
        summed = torch.zeros((uniq.numel(), *self.row_shape), dtype=rows.dtype, device=rows.device)
        return uniq, summed.index_add_(0, inverse, rows)


class _GatherRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, table, ids, sink):
        known = ids >= 0
        rows = table.index_select(0, ids.clamp(min=0))  # (N, ...)
        any_unknown = not bool(known.all())
        if any_unknown:
            mean = table.mean(0, keepdim=True).expand_as(rows)
            rows = torch.where(known.view(-1, *([1] * (rows.dim() - 1))), rows, mean)
        ctx.sink, ctx.any_unknown = sink, any_unknown
        ctx.save_for_backward(ids)
        return rows

    @staticmethod
    def backward(ctx, grad):
        (ids,) = ctx.saved_tensors
        if not ctx.any_unknown:
            ctx.sink.add(ids, grad)
            return None, None, None
        known = ids >= 0
        ctx.sink.add(ids[known], grad[known])
        ctx.sink.add_mean(grad[~known].sum(0) / ctx.sink.n_rows)  # d mean / d row = 1 / n for every row
        return None, None, None


def gather_rows_to_sink(table: torch.Tensor, ids: torch.Tensor, sink: RowGradSink) -> torch.Tensor:
    """Rows `ids` (N,) of `table` (n, ...) -> (N, ...), id -1 the mean row; the gradient goes to `sink`."""
    return _GatherRows.apply(table, ids, sink)
