"""Generation from sft models: instance-conditioned (Hyperdecoders) and annotator_embedding runs decode
each row with its own adapter; a mixed batch equals each row alone and the uncached decode."""

import numpy as np
import pytest
import torch

from hyperscale.completion import prompt_encoding
from hyperscale.serve.generate import generate_tokens
from tests.sft.conftest import one_thread  # noqa: F401 (autouse: one torch thread, see there)
from tests.sft.test_sft_train import _model

PROMPTS = [[5, 6, 7, 8, 9], [11, 12], [13, 14, 15], [5, 6, 7, 8, 9]]


def _uncached_greedy(model, prompt, annotator, steps):
    """Ground truth: the whole sequence through the model every step, no cache, no padding; the instance
    vector pooled over the prompt alone, as training pools it."""
    ids = torch.tensor([prompt])
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "prompt_mask": torch.ones_like(ids),
             "cond_annotator": torch.tensor([annotator])}
    instance = (prompt_encoding(model, batch, batch["attention_mask"], torch.zeros_like(ids), 1)
                if model.uses_instance else None)
    weights, index = model.lora(batch, instance)
    seq = list(prompt)
    for _ in range(steps):
        x = torch.tensor([seq])
        model.state.publish(weights, index)
        hidden = model.body(input_ids=x, attention_mask=torch.ones_like(x), use_cache=False).last_hidden_state
        logits = model.head.token_logits(hidden[:, -1], batch, torch.tensor([0]))
        seq.append(int(logits.argmax(-1)))
    return seq[len(prompt):]


@pytest.mark.parametrize("kind,extra", [("hyper_lora", ("adapter.conditions=[instance]",)),
                                        ("annotator_embedding", ())], ids=["instance", "annotator_embedding"])
def test_sft_generation_per_row_equals_row_alone(kind, extra):
    model, _ = _model(kind, *extra)
    model.eval()
    if kind == "annotator_embedding":
        with torch.no_grad():
            model.head.annotator.weight.normal_(0, 3.0)  # zero at init: make the annotators' shifts visible
    annotators = torch.tensor([0, 1, 2, 0 if kind == "instance" else 1])
    with torch.no_grad():
        batch = generate_tokens(model, PROMPTS, {"annotator": annotators}, pad_id=0, eos_id=None, max_new_tokens=5)
        for b, prompt in enumerate(PROMPTS):
            alone = generate_tokens(model, [prompt], {"annotator": annotators[b:b + 1]}, 0, None, 5)[0]
            assert batch[b] == alone, b
            assert alone == _uncached_greedy(model, prompt, int(annotators[b]), 5), b
    if kind == "annotator_embedding":  # the same prompt, two annotators: their embeddings change the completion
        assert batch[0] != batch[3]
    assert np.mean([len(r) for r in batch]) == 5
