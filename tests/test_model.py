"""Model assembly: the first forward is the frozen model, and the module with the Triton backend
matches the module with the torch reference (outputs and every trainable gradient)."""

import pytest
import torch


from tests.helpers import make_batch, randomise_b, seeded_model, tiny_config


def test_first_forward_equals_frozenseeded_model():
    model = seeded_model(tiny_config())
    batch = make_batch()
    adapted = model(batch)["logits"]
    model.state.enabled = False
    frozen = model(batch)["logits"]
    torch.testing.assert_close(adapted, frozen, rtol=0, atol=0)
    model.state.enabled = True
    randomise_b(model)
    assert (model(batch)["logits"] - frozen).abs().max() > 1e-4


def test_kernel_backend_is_resolved_once_and_recorded():
    model = seeded_model(tiny_config())  # adapter.kernel=auto on CPU
    layers = [m for m in model.body.modules() if hasattr(m, "backend")]
    assert layers and {m.backend for m in layers} == {"torch"}
    assert model.runtime["kernel_backend"] == "torch" and model.runtime["device"] == "cpu"
    assert model.runtime["versions"]["torch"] == torch.__version__


@pytest.mark.parametrize("kind,conditions", [("hyper_lora", "[annotator]"), ("hyper_lora", "[annotator,instance]"),
                                             ("per_annotator_lora", "[annotator]")])
def test_triton_module_matches_torch_module(kind, conditions):
    """Liger-style module parity: the library's own builder with adapter.kernel=triton (the
    interpreter on CPU) against adapter.kernel=torch, same init, same batch: logits and the
    gradient of every trainable parameter."""
    out = {}
    for kernel in ("torch", "triton"):
        model = seeded_model(tiny_config(f"adapter.kind={kind}", f"adapter.conditions={conditions}",
                                   f"adapter.kernel={kernel}"))
        assert {m.backend for m in model.body.modules() if hasattr(m, "backend")} == {kernel}
        randomise_b(model)
        batch = make_batch(n=6, seq=7, n_annotators=5)
        result = model(batch)
        result["loss"].backward()
        out[kernel] = (result["logits"].detach(), {n: p.grad for n, p in model.named_parameters() if p.requires_grad})
    (ref_logits, ref_grads), (tri_logits, tri_grads) = out["torch"], out["triton"]
    torch.testing.assert_close(tri_logits, ref_logits, rtol=1e-5, atol=1e-6)
    assert ref_grads.keys() == tri_grads.keys()
    for name, g in ref_grads.items():
        assert g is not None and tri_grads[name] is not None, name
        torch.testing.assert_close(tri_grads[name], g, rtol=1e-4, atol=1e-6, msg=name)
    assert sum(float(g.abs().sum()) for g in ref_grads.values()) > 0
