"""train.packing: rows packed into max_length sequences give the unpacked loss and gradients (fp32)."""

import numpy as np
import pandas as pd
import pytest
import torch

from hyperscale.data.batches import collate
from hyperscale.data.packing import block_causal_mask, collate_packed, first_fit
from hyperscale.data.sft import encode_sft
from hyperscale.data.vocab import ConditionVocab
from tests.sft.test_sft_train import _model

TEXTS = ["the cat sat", "a much longer prompt than the others here", "hi", "one two", "x y z w", "short"]
FRAME = pd.DataFrame({"item_id": [f"i{i}" for i in range(6)], "annotator": ["a0", "a1", "a2", "a0", "a1", "a2"],
                      "text": TEXTS, "label": None,
                      "completion": [" on the mat", " yes indeed", " no", " maybe so", " ok", " fine then, bye"]})


def _rows(tok):
    vocab = ConditionVocab({"annotator": ["a0", "a1", "a2"]})
    rows, _ = encode_sft(FRAME, tok, vocab, [], ["annotator"], max_length=32, template="{text} =>",
                         verbalizers=None, chat=False, overflow="truncate")
    return rows


def test_first_fit_and_the_block_mask():
    assert first_fit([5, 4, 3, 2, 6], 8) == [[0, 2], [1, 3], [4]]
    seg = torch.tensor([[0, 0, 1, 1, 1, -1]])
    allowed = block_causal_mask(seg, torch.float32)[0, 0] == 0
    want = torch.tensor([[1, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0], [0, 0, 1, 1, 0, 0],
                         [0, 0, 1, 1, 1, 0], [0, 0, 0, 0, 0, 1]], dtype=torch.bool)
    assert torch.equal(allowed, want)


@pytest.mark.parametrize("kind,extra", [("hyper_lora", ()), ("per_annotator_lora", ()), ("annotator_embedding", ()),
                                        ("hyper_lora", ("adapter.conditions=[instance]",))],
                         ids=["hyper_lora", "per_annotator_lora", "annotator_embedding", "instance"])
def test_packed_loss_and_gradients_equal_unpacked(kind, extra):
    model, tok = _model(kind, *extra)
    if kind == "annotator_embedding":
        with torch.no_grad():
            model.head.annotator.weight.normal_(0, 0.5)  # zero at init: make the annotators differ
    rows = _rows(tok)
    order = np.array([3, 0, 5, 1, 4, 2])
    packed = collate_packed(rows, order, tok.pad_token_id, max_length=32)
    assert packed["input_ids"].shape[0] < len(order)  # several rows share a sequence
    assert packed["cond_annotator"].tolist() == rows.conditions["annotator"][order].tolist()
    grads, losses, per_row = [], [], []
    for batch in (collate(rows, order, tok.pad_token_id), packed):
        model.zero_grad()
        out = model(batch)
        out["loss"].backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        losses.append(out["loss"].item())
        per_row.append(np.bincount(out["token_row"].numpy(), weights=out["token_nll"].double().numpy()))
    assert losses[1] == pytest.approx(losses[0], abs=1e-5)
    np.testing.assert_allclose(per_row[1], per_row[0], rtol=1e-5, atol=1e-5)  # each row's own NLL too
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.slow
def test_packing_trains_end_to_end_with_the_same_losses(tmp_path):
    """A packed run logs the unpacked run's losses (same rows per step), through the DeepSpeed engine."""
    from hyperscale import api
    from tests.helpers import records, tiny_config

    base = ("model.task=sft", "model.prompt_template='{text} =>'", "train.max_steps=3", "train.log_every=1",
            "train.micro_batch_size=8", "data.synthetic.n_items=40", "data.synthetic.n_annotators=6",
            "eval.max_examples=8", "eval.max_new_tokens=2", "logging.wandb.mode=disabled", "model.max_length=64")
    for name, extra in (("plain", ()), ("packed", ("train.packing=true",))):
        api.train(tiny_config(*base, *extra), tmp_path / name, use_ray=False)
    plain, packed = records(tmp_path / "plain"), records(tmp_path / "packed")
    for step in (1, 2, 3):
        assert packed[step]["loss"] == pytest.approx(plain[step]["loss"], abs=1e-5), step
