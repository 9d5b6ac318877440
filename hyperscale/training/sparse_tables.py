"""Condition tables trained from row gradients, outside DeepSpeed's dense gradient path (ZeRO 0-2).

Why. A batch reads a few rows of each condition table (model.annotator_tables()), but
a dense table gradient made every step O(table): autograd's zero fill, DeepSpeed's
flatten for its all-reduce, clipping's norm, the optimizer's scan. On the tiny Llama a
step at 1,000,000 perspectives cost 39.6x the step at 16 (issue 12). Here:

  forward   the tables are read through adapters/fallback.gather_rows, which sends each
            table's gradient to its `row_grads` sink as (ids, rows) (adapters/row_grad.py);
            the table's `.grad` stays None.
  engine    the tables are not in DeepSpeed's optimizer (so never flattened, partitioned
            or zero-filled; they are replicated on every rank, like the weights of ZeRO 0-2);
            DeepSpeed's stage-0 all-reduce skips them.
  step      at the accumulation boundary, before DeepSpeed's step: the (ids, rows) of every
            micro-batch and rank are gathered and summed per id, then divided by the world
            size (DeepSpeed averages gradients the same way);
            clipping: the rows join the global norm (stage 0: engine.lean_stage0's clip sees
            them; stages 1-2: DeepSpeed's norm gets their sum of squares added) and are scaled by the
            same coefficient; a non-finite row marks the step as overflow (skipped everywhere);
            after DeepSpeed's step, if it was applied, the rows go through the same row-wise
            lazy AdamW as train.table_optimizer=lazy (training/optim.py::adamw_entries) at the
            table group's scheduled LR (lr x annotator_lr_scale x the schedule).

The entries updated are those of the rows the batches read whose gradient is not exactly 0.0,
the same set the dense-gradient scan finds (optim.py), so the two paths train the same numbers
(ZeRO 0-2 here, ZeRO-3 there); entries of unread rows do not move. An unknown id (-1, condition
dropout) reads the mean row, whose gradient reaches every row: then that table's gradient is
materialised densely for the step (O(table), only with condition dropout). The optimizer state
(moments and per-entry step counts) rides in the client optimizer's state_dict
(optim.LazyTableAdamW.row_tables), which DeepSpeed saves and restores. ZeRO-3 partitions every
parameter, tables included, so it keeps the dense-gradient lazy path.
"""

from __future__ import annotations

import math
import types

import torch
import torch.distributed as dist

from hyperscale.adapters.row_grad import RowGradSink
from hyperscale.training.optim import adamw_entries


class RowGradTables:
    """The condition tables of one model, their sinks, their lazy AdamW state, and the engine hooks."""

    def __init__(self, tables: list[torch.nn.Parameter], lr: float, weight_decay: float, lr_factor):
        """`lr`: the tables' base LR (train.lr x annotator_lr_scale); `lr_factor(step)`: the schedule."""
        self.tables = tables
        for t in tables:
            if not t.is_contiguous():
                raise ValueError("row-gradient tables must be contiguous")
            t.row_grads = RowGradSink(t)
        self.base_lr, self.lr_factor = lr, lr_factor
        # torch.optim.AdamW's defaults, as LazyTableAdamW's table group has them.
        self.group = {"lr": lr, "weight_decay": weight_decay, "eps": 1e-8, "betas": (0.9, 0.999)}
        self.state: list[dict] = [{} for _ in tables]
        self.rows: list[tuple[torch.Tensor, torch.Tensor]] = []  # per table, after reduce(): (K,), (K, ...)
        self.total_norm: torch.Tensor | None = None  # stages 1-2: DeepSpeed's norm with the rows added
        self.clipped = False  # stages 1-2: the rows were scaled by this step's clip coefficient

    # -- the gradient ---------------------------------------------------------------------

    def reduce(self, world_size: int) -> None:
        """Every micro-batch's and rank's (ids, rows) -> per table (sorted unique ids, averaged rows)."""
        self.rows = []
        for t in self.tables:
            sink: RowGradSink = t.row_grads
            ids, rows = sink.coalesced()
            rows = rows.to(t.device)
            ids = ids.to(t.device)
            mean = sink.mean_grad
            if world_size > 1:
                ids, rows, mean = _gather_sum(ids, rows, mean, sink.row_shape, t)
            if mean is not None:
                # The mean row's gradient reaches every row: this step the table's gradient is dense.
                dense = mean.to(rows.dtype).expand(sink.n_rows, *sink.row_shape).clone()
                dense.index_add_(0, ids, rows)
                ids, rows = torch.arange(sink.n_rows, device=t.device), dense
            if world_size > 1:
                rows = rows / world_size
            self.rows.append((ids, rows))

    def sum_of_squares(self) -> torch.Tensor:
        total = torch.zeros((), dtype=torch.float32)
        for _, rows in self.rows:
            total = total + rows.detach().float().pow(2).sum()
        return total

    def finite(self) -> bool:
        return bool(torch.isfinite(self.sum_of_squares()))

    def clear(self) -> None:
        for t in self.tables:
            t.row_grads.clear()
        self.rows, self.total_norm, self.clipped = [], None, False

    # -- the update -----------------------------------------------------------------------

    @torch.no_grad()
    def update(self, lr: float) -> None:
        group = dict(self.group, lr=lr)
        for t, state, (ids, rows) in zip(self.tables, self.state, self.rows):
            if ids.numel() == 0:
                continue
            per_row = math.prod(t.shape[1:])
            touched = (ids[:, None] * per_row + torch.arange(per_row, device=ids.device)).reshape(-1)  # (K*per_row,)
            g = rows.reshape(-1).to(t.dtype)
            # Entries whose gradient is exactly 0.0 count as untouched, as in the dense-gradient scan
            # (optim.py): both paths, and so ZeRO 0-2 and ZeRO-3, train the same numbers.
            keep = g.nonzero().squeeze(1)
            if keep.numel() == 0:
                continue
            if "exp_avg" not in state:
                state["exp_avg"] = torch.zeros_like(t)
                state["exp_avg_sq"] = torch.zeros_like(t)
                state["entry_step"] = torch.zeros_like(t, dtype=torch.float32)
                state["step"] = torch.tensor(0.0)
            state["step"] += 1
            adamw_entries(t, state, touched.index_select(0, keep), g.index_select(0, keep), group)

    def state_dict(self) -> dict:
        return {"shapes": [list(t.shape) for t in self.tables], "state": self.state}

    def load_state_dict(self, saved: dict) -> None:
        shapes = [list(t.shape) for t in self.tables]
        if saved["shapes"] != shapes:
            raise ValueError(f"saved row-gradient tables have shapes {saved['shapes']}, this model's {shapes}")
        self.state = [{k: (v.to(t.device) if torch.is_tensor(v) and k != "step" else v) for k, v in s.items()}
                      for t, s in zip(self.tables, saved["state"])]

    def clip_holders(self) -> list[torch.Tensor]:
        """Tensors whose .grad is this step's gathered rows: a clip over them reads and scales the rows."""
        holders = []
        for _, rows in self.rows:
            if rows.numel():
                h = torch.empty_like(rows)
                h.grad = rows
                holders.append(h)
        return holders

    # -- the engine -----------------------------------------------------------------------

    def install(self, engine, scheduler, zero_stage: int, world_size: int) -> None:
        """Hook the tables into `engine.step` and DeepSpeed's clipping (instance attributes only)."""
        tables = self
        ds_step, client = engine.step, _client_optimizer(engine, zero_stage)

        def step(self, *args, **kwargs):
            if not self.is_gradient_accumulation_boundary():
                return ds_step(*args, **kwargs)
            tables.reduce(world_size)
            lr = tables.base_lr * tables.lr_factor(scheduler.last_epoch)  # LambdaLR's own formula, before it steps
            skip = not tables.finite()  # the rows are identical on every rank now: every rank agrees
            was = getattr(client, "overflow", False)
            if skip and zero_stage == 0:
                client.overflow = True  # SkippableAdamW's skip (stages 1-2: the norm below is non-finite)
            try:
                out = ds_step(*args, **kwargs)
                if self.was_step_applied() and not skip:
                    tables.update(lr)
            finally:
                if zero_stage == 0:
                    client.overflow = was
                tables.clear()
            return out

        engine.step = types.MethodType(step, engine)
        # Stage 0 reduces every requires_grad parameter and zero-fills missing gradients first: hide the tables.
        ds_allreduce = engine.allreduce_gradients

        def allreduce_gradients(self, *args, **kwargs):
            flags = [t.requires_grad for t in tables.tables]
            for t in tables.tables:
                t.requires_grad_(False)
            try:
                return ds_allreduce(*args, **kwargs)
            finally:
                for t, f in zip(tables.tables, flags):
                    t.requires_grad_(f)

        engine.allreduce_gradients = types.MethodType(allreduce_gradients, engine)
        if zero_stage > 0:  # stage 0 clips the rows with the trainable parameters (engine.lean_stage0)
            zero = engine.optimizer
            ds_norm, ds_unscale = zero.scaled_global_norm, zero.unscale_and_clip_grads

            def scaled_global_norm(self, norm_type=2):
                norm = ds_norm(norm_type)
                # DeepSpeed's -1 marks a non-finite norm; kept, so the step is skipped as before.
                if bool(norm >= 0):
                    norm = (norm.float() ** 2 + tables.sum_of_squares().to(norm.device)).sqrt()
                tables.total_norm = norm
                return norm

            def unscale_and_clip_grads(self, grad_groups_flat, total_norm):
                # Called once per parameter group: the rows are scaled with the first.
                extra = [] if tables.clipped else [rows for _, rows in tables.rows if rows.numel()]
                tables.clipped = True
                ds_unscale(grad_groups_flat + extra, total_norm)

            zero.scaled_global_norm = types.MethodType(scaled_global_norm, zero)
            zero.unscale_and_clip_grads = types.MethodType(unscale_and_clip_grads, zero)


def _client_optimizer(engine, zero_stage: int):
    """The optimizer hyperscale built (stage 0: the engine's; stages 1-2: the one ZeRO wraps)."""
    return engine.optimizer if zero_stage == 0 else engine.optimizer.optimizer


def _gather_sum(ids, rows, mean, row_shape, table):
    """All ranks' (ids, rows) concatenated and summed per id; the mean-row gradients summed."""
    world = dist.get_world_size()
    # NCCL moves only CUDA tensors; gloo's all_gather, CPU ones.
    dev = table.device if dist.get_backend() == "nccl" else torch.device("cpu")
    counts = [torch.zeros(1, dtype=torch.long, device=dev) for _ in range(world)]
    dist.all_gather(counts, torch.tensor([ids.numel()], dtype=torch.long, device=dev))
    width = max(int(c) for c in counts)
    pad_ids = torch.full((width,), -1, dtype=torch.long, device=dev)
    pad_ids[: ids.numel()] = ids.to(dev)
    pad_rows = torch.zeros((width, *row_shape), dtype=rows.dtype, device=dev)
    pad_rows[: ids.numel()] = rows.to(dev)
    all_ids = [torch.empty_like(pad_ids) for _ in range(world)]
    all_rows = [torch.empty_like(pad_rows) for _ in range(world)]
    dist.all_gather(all_ids, pad_ids)
    dist.all_gather(all_rows, pad_rows)
    ids = torch.cat([i[: int(c)] for i, c in zip(all_ids, counts)])
    rows = torch.cat([r[: int(c)] for r, c in zip(all_rows, counts)])
    uniq, inverse = torch.unique(ids, return_inverse=True)
    summed = torch.zeros((uniq.numel(), *row_shape), dtype=rows.dtype, device=dev).index_add_(0, inverse, rows)
    # Whether any rank read the mean row: one small all-reduce (a flag and the summed gradient).
    flagged = torch.zeros(1 + math.prod(row_shape), dtype=torch.float32, device=dev)
    if mean is not None:
        flagged[0] = 1
        flagged[1:] = mean.detach().float().reshape(-1).to(dev)
    dist.all_reduce(flagged)
    mean = flagged[1:].view(row_shape).to(rows.dtype).to(table.device) if flagged[0] > 0 else None
    return uniq.to(table.device), summed.to(table.device), mean
