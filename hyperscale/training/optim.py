"""AdamW whose per-annotator tables are updated lazily: only the entries a step's batch touched move.

Why. The annotator tables (`model.annotator_tables()`: the hypernetwork's annotator
embedding, per-annotator LoRA pairs, per-annotator heads) get a dense gradient
that is zero outside the few rows a batch used, and plain AdamW rewrites every
entry of the table, its two moments and its weight decay on every step: with
100,000 annotators the optimizer phase grew from 0.003 s to 0.185 s (issue 12)
although a 16-row batch touches 16 rows.

What "lazy" promises (TF's LazyAdam, torch's SparseAdam): an entry of a table and
its moments advance only on steps where that entry got a non-zero gradient, and
then exactly as AdamW would, with the entry's own step count in the bias
corrections (`state["entry_step"]`, a float32 tensor shaped like the table).
Consequences, by design: an untouched entry is bit-for-bit unchanged (no decoupled
weight decay, no momentum drift); when every entry gets a gradient on every step
the update equals AdamW's, bit for bit (tests/training/test_optim.py). An entry
whose gradient is exactly 0.0 counts as untouched (for example A of a
per-annotator LoRA while its B is still zero); AdamW would only have advanced its
step count there, since its moments stay zero.

How the touched entries are found: the non-zero entries of the gradient, after
DeepSpeed reduced it over workers and clipped it. That needs no bookkeeping of
which ids each micro-batch or worker saw, and it works on whatever tensor the
optimizer holds: the table itself (ZeRO stage 0) or DeepSpeed's flat fp32
partition of the group (ZeRO stages 1-3), where rows may be cut between workers;
stages 0 and 2 are tested, 1 and 3 were checked by hand. It costs one read of the
gradient instead of AdamW's ~10 passes over weights, gradient and moments; the
dense gradient itself (the embedding backward's zero fill, clipping's norm,
DeepSpeed's all-reduce flatten) stays O(table): measured in issue 12's notes, at
1M perspectives the optimizer phase fell 837 -> 194 ms, the whole step only
1299 -> 648 ms. That is why, at ZeRO 0-2, the tables no longer take this path: they
train from row gradients outside DeepSpeed (training/sparse_tables.py, with the same
per-entry update, `adamw_entries` below); this scan remains for ZeRO-3, which
partitions the tables, and for `build_engine(row_gradients=False)`.

The shared (non-table) groups are stepped by torch's AdamW unchanged.
"""

from __future__ import annotations

import torch

from hyperscale.training.engine import SkippableAdamW

LAZY = "lazy_rows"  # the param-group key that marks a group for lazy updates


class LazyTableAdamW(SkippableAdamW):
    """AdamW; param groups with `lazy_rows: True` are updated lazily (module docstring)."""

    def __init__(self, params, **kwargs):
        if kwargs.get("amsgrad") or kwargs.get("maximize"):
            raise ValueError("LazyTableAdamW supports neither amsgrad nor maximize")
        super().__init__(params, **kwargs)

    row_tables = None
    """The tables updated from row gradients outside DeepSpeed (training/sparse_tables.py), if any: their
    AdamW state rides in this optimizer's state_dict, which DeepSpeed saves and loads at ZeRO 0-2."""

    def state_dict(self) -> dict:
        out = super().state_dict()
        if self.row_tables is not None:
            out["row_tables"] = self.row_tables.state_dict()
        return out

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        rows = state_dict.pop("row_tables", None)
        if (rows is None) != (self.row_tables is None):
            raise ValueError("this optimizer state was saved with the condition tables "
                             f"{'outside' if rows is not None else 'inside'} DeepSpeed's optimizer "
                             f"(row gradients {'on' if rows is not None else 'off'}); resume with the same "
                             "distributed.zero_stage and train.table_optimizer")
        if rows is not None:
            self.row_tables.load_state_dict(rows)
        # torch keeps the saved groups' options; which groups are lazy is this run's choice.
        lazy = [bool(g.get(LAZY)) for g in self.param_groups]
        super().load_state_dict(state_dict)
        for group, flag in zip(self.param_groups, lazy):
            group[LAZY] = flag

    @torch.no_grad()
    def step(self, closure=None):
        if self.overflow:
            return None
        lazy = [g for g in self.param_groups if g.get(LAZY)]
        # torch's AdamW steps every parameter that has a gradient: hide the lazy ones from it.
        hidden = [(p, p.grad) for g in lazy for p in g["params"] if p.grad is not None]
        for p, _ in hidden:
            p.grad = None
        try:
            loss = super().step(closure)
        finally:
            for p, grad in hidden:
                p.grad = grad
        for group in lazy:
            for p in group["params"]:
                if p.grad is not None:
                    self._lazy_update(p, group)
        return loss

    def _lazy_update(self, p: torch.Tensor, group: dict) -> None:
        if p.grad.is_sparse or not p.is_contiguous():
            raise ValueError("LazyTableAdamW needs dense, contiguous table parameters and gradients")
        state = self.state[p]
        if "exp_avg" not in state:
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        if "step" not in state:
            # Steps on which the table had any gradient. torch's Adam expects the key in
            # every state it loads; the bias corrections use entry_step.
            state["step"] = torch.tensor(0.0)
        if "entry_step" not in state:
            # A state written by dense AdamW (a run resumed with train.table_optimizer changed
            # to lazy) carries one step count for the whole table.
            state["entry_step"] = torch.full_like(p, float(state["step"]), dtype=torch.float32)
        grad = p.grad.reshape(-1)
        # (K,) flat indices of the entries with a gradient: one O(N) read (13.6 ms at 6.4M entries,
        # one thread; block-wise min/max or ne(0).any() pre-tests measured no faster here).
        touched = grad.nonzero().squeeze(1)
        if touched.numel() == 0:
            return
        state["step"] += 1
        adamw_entries(p, state, touched, grad.index_select(0, touched), group)


def adamw_entries(p: torch.Tensor, state: dict, touched: torch.Tensor, g: torch.Tensor, group: dict) -> None:
    """One AdamW update of the entries `touched` (K,) (flat indices into `p`) with gradient `g` (K,).

    `state`: exp_avg, exp_avg_sq and entry_step shaped like `p` (the per-entry step counts).
    Shared by the lazy optimizer here (entries found by a scan of a dense gradient) and the
    row-gradient path (training/sparse_tables.py: entries of the rows a batch read)."""
    lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
    beta1, beta2 = group["betas"]
    flat = [t.view(-1) for t in (p, state["exp_avg"], state["exp_avg_sq"], state["entry_step"])]
    param, exp_avg, exp_avg_sq, steps = (t.index_select(0, touched) for t in flat)  # (K,) copies
    steps += 1
    # The same operations, in the same order and precision, as torch's single-tensor
    # AdamW (torch/optim/adam.py), with per-entry step counts: the bias corrections are
    # computed in float64 (torch: Python floats) and rounded to float32 where torch
    # rounds its Python scalars.
    if wd != 0:
        param.mul_(1 - lr * wd)
    exp_avg.lerp_(g, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    step64 = steps.double()
    step_size = (lr / (1 - beta1 ** step64)).to(param.dtype)  # (K,)
    bias_correction2_sqrt = (1 - beta2 ** step64).sqrt().to(param.dtype)  # (K,)
    denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
    param.addcdiv_(exp_avg * -step_size, denom)
    for dst, src in zip(flat, (param, exp_avg, exp_avg_sq, steps)):
        dst.index_copy_(0, touched, src)
