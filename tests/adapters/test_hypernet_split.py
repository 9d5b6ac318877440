"""The hypernetwork's split first Linear (condition part + module part, broadcast-added, one trunk pass
for every group) against the plain maths: [condition ; module] through the whole trunk, group by group."""

import pytest
import torch

from hyperscale.adapters.hypernet import HyperNetwork
from hyperscale.adapters.inject import ModuleSpec
from hyperscale.config import HypernetConfig


def _specs():
    # q: 3 layers of 24 -> 24, v: 3 of 24 -> 10 (GQA-like), and one pattern over two shapes.
    out = [ModuleSpec(f"l{i}.q", "q_proj", i, 24, 24) for i in (0, 2, 5)]
    out += [ModuleSpec(f"l{i}.v", "v_proj", i, 24, 10) for i in (5, 0, 2)]
    out += [ModuleSpec("l1.o", "re:.*o", 1, 24, 24), ModuleSpec("l3.o", "re:.*o", 3, 10, 24)]
    return out


def _reference(net: HyperNetwork, cond: torch.Tensor) -> dict:
    """The unfused maths: per group, the concatenated input through the trunk and its heads."""
    U, r, out = cond.shape[0], net.rank, {}
    for k, group in enumerate(net.group_names):
        members = net._groups[group]
        layers = torch.tensor([s.layer for s in members])
        module = torch.cat([net.layer_emb(layers), net.kind_emb.weight[k].expand(len(members), -1)], dim=-1)
        inp = torch.cat([cond[:, None, :].expand(U, len(members), -1), module[None].expand(U, -1, -1)], dim=-1)
        h = net.trunk(inp)
        d_in, d_out = members[0].d_in, members[0].d_out
        A = net.head_a[group](h).view(U, len(members), r, d_in).transpose(0, 1)
        B = net.head_b[group](h).view(U, len(members), d_out, r).transpose(0, 1)
        for j, spec in enumerate(members):
            out[spec.name] = (A[j], B[j])
    return out


@pytest.mark.parametrize("layers,head_rank", [(1, None), (2, None), (1, 3)])
def test_split_first_linear_equals_the_concatenated_trunk(layers, head_rank):
    torch.manual_seed(0)
    cfg = HypernetConfig(condition_dim=7, module_dim=5, hidden_dim=19, num_hidden_layers=layers, head_rank=head_rank)
    net = HyperNetwork(cfg, _specs(), rank=3, categorical={"annotator": 13, "task": 4})
    with torch.no_grad():  # B's head starts at zero: give it values so B is compared too
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    ids = torch.tensor([[0, 1], [12, 3], [5, 0], [-1, 2]])  # (U, F), one unknown annotator
    got_cond = net.embed_conditions(ids, None)
    got = net(got_cond)
    grads_got = torch.autograd.grad(sum((A.sin().sum() + B.cos().sum()) for A, B in got.values()),
                                    list(net.parameters()))
    want = _reference(net, net.embed_conditions(ids, None))
    grads_want = torch.autograd.grad(sum((A.sin().sum() + B.cos().sum()) for A, B in want.values()),
                                     list(net.parameters()))
    assert got.keys() == want.keys() and len(got) == len(_specs())
    for name in want:
        for g, w in zip(got[name], want[name]):
            assert g.shape == w.shape
            torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6, msg=name)
    for (name, _), g, w in zip(net.named_parameters(), grads_got, grads_want):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6, msg=name)
    assert not any(k.startswith("_module") for k in net.state_dict())  # cached indices are not weights
