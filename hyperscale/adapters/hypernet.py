"""The hypernetwork: (condition, module) -> LoRA A and B.

It generalises three methods (DESIGN.md):
- perspectivist hypernetwork LoRA (Ignatev, Paperno, Poesio 2025): an annotator
  embedding concatenated with a per-module embedding, fed to an MLP whose heads
  emit A and B for every target module, the B head zero-initialised so the first
  update is zero;
- Hyper-X (Üstün et al. 2022): task, language and layer embeddings concatenated,
  so an unseen task-language pair still gets an adapter;
- Hyperdecoders (Ivison & Peters 2022): the condition is the mean-pooled
  encoding of the input itself, so every instance gets its own adapter.

A condition is any mix of categorical ids and an instance vector; its embedding
is the concatenation of one table row per categorical field and a projection of
the instance vector. The MLP trunk is shared across modules; each module group
(the modules one target pattern matched, split further by shape when a pattern
such as `re:.*proj` matches projections of different sizes) has its own pair of
output heads, because its (d_in, d_out) differ. Only the U unique conditions of a
batch go through the MLP, so cost does not depend on how many perspectives exist.
"""

from __future__ import annotations

import itertools
import math
import re

import torch
import torch.nn.functional as F
from torch import nn

from hyperscale.adapters.fallback import gather_rows
from hyperscale.adapters.inject import ModuleSpec
from hyperscale.config import HypernetConfig


class HyperNetwork(nn.Module):
    def __init__(self, cfg: HypernetConfig, specs: list[ModuleSpec], rank: int,
                 categorical: dict[str, int], instance_in: int | None = None):
        """`categorical`: field -> vocabulary size; `instance_in`: width of the instance vector, if used."""
        super().__init__()
        if not categorical and instance_in is None:
            raise ValueError("a hypernetwork needs at least one condition")
        self.rank = rank
        self.fields = list(categorical)
        self.tables = nn.ModuleDict({f: nn.Embedding(n, cfg.condition_dim) for f, n in categorical.items()})
        for table in self.tables.values():
            nn.init.normal_(table.weight, std=1.0)
        self.instance_proj = nn.Linear(instance_in, cfg.instance_dim) if instance_in else None
        cond_width = len(self.fields) * cfg.condition_dim + (cfg.instance_dim if instance_in else 0)
        self.cond_width = cond_width

        self._groups = module_groups(specs)  # group name -> its specs, by layer
        self.group_names = list(self._groups)
        n_layers = max(s.layer for s in specs) + 1
        self.layer_emb = nn.Embedding(n_layers, cfg.module_dim)
        self.kind_emb = nn.Embedding(len(self.group_names), cfg.module_dim)
        # Every adapted module's (layer, group) index, in group order, built once (not per forward).
        members = [(s.layer, k) for k, g in enumerate(self.group_names) for s in self._groups[g]]
        self.register_buffer("_module_layer", torch.tensor([m[0] for m in members]), persistent=False)  # (L,)
        self.register_buffer("_module_group", torch.tensor([m[1] for m in members]), persistent=False)  # (L,)

        trunk, width = [], cond_width + 2 * cfg.module_dim
        for _ in range(cfg.num_hidden_layers):
            trunk += [nn.Linear(width, cfg.hidden_dim), nn.GELU(), nn.Dropout(cfg.dropout)]
            width = cfg.hidden_dim
        self.trunk = nn.Sequential(*trunk)

        self.head_a, self.head_b = nn.ModuleDict(), nn.ModuleDict()
        k = cfg.head_rank
        for group, members in self._groups.items():
            d_in, d_out = members[0].d_in, members[0].d_out
            head_a = nn.Linear(k or cfg.hidden_dim, rank * d_in)
            # A starts like LoRA's kaiming-uniform A (bias ~ U(+-1/sqrt(d_in))) with a
            # condition-dependent part of the same size, so B's first gradients are
            # of LoRA's usual magnitude whatever the hidden width.
            bound = 1.0 / math.sqrt(d_in)
            nn.init.uniform_(head_a.bias, -bound, bound)
            nn.init.normal_(head_a.weight, std=bound / math.sqrt(k or cfg.hidden_dim))
            head_b = nn.Linear(k or cfg.hidden_dim, d_out * rank)
            nn.init.zeros_(head_b.weight)  # B = 0: the first forward equals the frozen model
            nn.init.zeros_(head_b.bias)
            if k:  # adapter.hypernet.head_rank: hidden -> k -> r*d (a bottleneck, no bias, unit-variance init)
                head_a = nn.Sequential(_bottleneck(cfg.hidden_dim, k), head_a)
                head_b = nn.Sequential(_bottleneck(cfg.hidden_dim, k), head_b)
            self.head_a[group], self.head_b[group] = head_a, head_b

    def head_parameters(self) -> list[nn.Parameter]:
        """The A/B output heads' parameters (adapter.hypernet.head_lr_scale sets their learning rate)."""
        return [*self.head_a.parameters(), *self.head_b.parameters()]

    def embed_conditions(self, categorical: torch.Tensor | None, instance: torch.Tensor | None) -> torch.Tensor:
        """(U, F) categorical ids (-1 = unknown) and (U, instance_in) vectors -> (U, cond_width).

        An unknown id (an annotator never seen in training) gets the mean of its
        table: the shared fallback (adapters/fallback.py).
        """
        parts = [self.embed_categorical(categorical)] if self.fields else []
        if self.instance_proj is not None:
            parts.append(self.instance_proj(instance))
        return torch.cat(parts, dim=-1)

    def embed_categorical(self, categorical: torch.Tensor) -> torch.Tensor:
        """(N, F) categorical ids (-1 = unknown: the table's mean row) -> (N, F * condition_dim)."""
        return torch.cat([gather_rows(self.tables[f].weight, categorical[:, j]) for j, f in enumerate(self.fields)],
                         dim=-1)

    def forward(self, cond: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """(U, cond_width) -> {module name: (A (U, r, d_in), B (U, d_out, r))}.

        The trunk's input is [condition ; module embedding] for each of the U x L (condition,
        module) pairs. Its first Linear is split into its condition and module columns, each
        applied once (U rows and L rows) and broadcast-added: the U x L pre-activations without
        a U x L x width input, and one trunk pass for all groups (was one per group, and a
        torch.tensor of layer indices per group per forward). Same maths as the concatenated
        input up to float summation order (tests/adapters/test_hypernet_split.py).
        """
        U, r = cond.shape[0], self.rank
        module = torch.cat([self.layer_emb(self._module_layer), self.kind_emb(self._module_group)], dim=-1)  # (L, 2md)
        first, w = self.trunk[0], self.cond_width  # num_hidden_layers >= 1 (config checks)
        # Module-major (L, U, hidden): each group is a contiguous slice, and its heads emit
        # (L_k, U, r*d) in the layout A and B are handed out in (no transpose + copy per group).
        h = (F.linear(module, first.weight[:, w:])[:, None, :]  # (L, 1, hidden)
             + F.linear(cond, first.weight[:, :w], first.bias)[None])  # (1, U, hidden) -> (L, U, hidden)
        for layer in itertools.islice(self.trunk, 1, None):
            h = layer(h)
        weights, start = {}, 0
        for group in self.group_names:
            members = self._groups[group]
            n, d_in, d_out = len(members), members[0].d_in, members[0].d_out
            hg = h[start:start + n]  # (L_k, U, hidden)
            start += n
            A = self.head_a[group](hg).view(n, U, r, d_in)  # (L_k, U, r, d_in)
            B = self.head_b[group](hg).view(n, U, d_out, r)  # (L_k, U, d_out, r)
            # unbind: one backward (a stack) for the group, not a zero-filled (L_k, ...) per module
            for spec, A_j, B_j in zip(members, A.unbind(0), B.unbind(0)):
                weights[spec.name] = (A_j, B_j)
        return weights


def _bottleneck(width: int, k: int) -> nn.Linear:
    """hidden -> k without bias, initialised so its outputs keep the trunk's scale."""
    lin = nn.Linear(width, k, bias=False)
    nn.init.normal_(lin.weight, std=1.0 / math.sqrt(width))
    return lin


def module_groups(specs: list[ModuleSpec]) -> dict[str, list[ModuleSpec]]:
    """Adapted modules grouped by (target pattern, shape); each group gets its own A and B heads.

    A group is named after its pattern (`q_proj`), with the shape appended only when
    one pattern matched modules of several shapes (`re:.*proj` on q and v of a GQA
    model: `_proj_64x64`, `_proj_64x32`); characters a module name cannot hold become `_`.
    """
    shapes: dict[str, set] = {}
    for s in specs:
        shapes.setdefault(s.kind, set()).add((s.d_in, s.d_out))
    groups: dict[str, list[ModuleSpec]] = {}
    for s in sorted(specs, key=lambda s: (s.kind, s.d_in, s.d_out, s.layer)):
        name = s.kind if len(shapes[s.kind]) == 1 else f"{s.kind}_{s.d_in}x{s.d_out}"
        groups.setdefault(re.sub(r"[^0-9A-Za-z]+", "_", name).strip("_"), []).append(s)
    return groups
