"""Generation with a generated adapter per row: a mixed batch equals each row alone, and the KV-cache
decode equals recomputing the whole sequence every step."""

import pytest
import torch

from hyperscale.errors import ConfigError, DataError
from hyperscale.serve.generate import generate_tokens
from tests.helpers import make_run, randomise_b, seeded_model, tiny_config

CAUSAL = ("model.task=causal_lm", "model.verbalizers=[low,high]")
PROMPTS = [[5, 6, 7, 8, 9], [11, 12], [13, 14, 15], [5, 6, 7, 8, 9]]


def _model(kind="hyper_lora"):
    model = seeded_model(tiny_config(f"adapter.kind={kind}", *CAUSAL), {"annotator": 5})
    randomise_b(model, 0.5)
    return model


def _no_cache_greedy(model, prompt, annotator, steps):
    """The slow ground truth: the whole sequence through the model at every step, no cache, no padding."""
    seq = list(prompt)
    batch = {"cond_annotator": torch.tensor([annotator])}
    for _ in range(steps):
        ids = torch.tensor([seq])
        batch.update(input_ids=ids, attention_mask=torch.ones_like(ids))
        weights, index = model.lora(batch, None)
        model.state.publish(weights, index)
        hidden = model.body(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).last_hidden_state
        seq.append(int(model.head.lm_head(hidden[:, -1]).argmax(-1)))
    return seq[len(prompt):]


@pytest.mark.parametrize("kind", ["hyper_lora", "per_annotator_lora"])
def test_mixed_batch_equals_each_row_alone_and_the_uncached_decode(kind):
    model = _model(kind)
    annotators = torch.tensor([0, 1, 2, 3])
    batch = generate_tokens(model, PROMPTS, {"annotator": annotators}, pad_id=0, eos_id=None, max_new_tokens=6)
    for b, prompt in enumerate(PROMPTS):
        alone = generate_tokens(model, [prompt], {"annotator": annotators[b:b + 1]}, 0, None, 6)[0]
        assert batch[b] == alone
        assert alone == _no_cache_greedy(model, prompt, int(annotators[b]), 6)
    # the same prompt from two annotators: their adapters make the completions differ
    assert batch[0] != batch[3]


def test_eos_cuts_each_row_and_sampling_is_seeded():
    model = _model()
    first = generate_tokens(model, PROMPTS[:1], {"annotator": torch.tensor([0])}, 0, None, 4)[0]
    eos = first[1]  # pretend the second generated token ends the sequence
    cut = generate_tokens(model, PROMPTS[:1], {"annotator": torch.tensor([0])}, 0, eos, 4)[0]
    assert cut == first[: first.index(eos) + 1]
    conds = {"annotator": torch.tensor([0, 1, 2, 3])}
    a = generate_tokens(model, PROMPTS, conds, 0, None, 5, do_sample=True, temperature=0.8, top_p=0.9, seed=7)
    b = generate_tokens(model, PROMPTS, conds, 0, None, 5, do_sample=True, temperature=0.8, top_p=0.9, seed=7)
    assert a == b and all(len(r) == 5 for r in a)


def test_refusals():
    model = seeded_model(tiny_config(), {"annotator": 5})  # classification: no LM head
    with pytest.raises(ConfigError, match="model.task"):
        generate_tokens(model, PROMPTS[:1], {"annotator": torch.tensor([0])}, 0, None, 3)
    with pytest.raises(DataError, match="max_new_tokens"):
        generate_tokens(_model(), PROMPTS[:1], {"annotator": torch.tensor([0])}, 0, None, 0)


def test_predictor_generate_flags_unknown_annotators(tmp_path):
    from hyperscale.serve.predict import Predictor

    make_run(tmp_path, "hyper_lora", *CAUSAL)
    predictor = Predictor.from_run(tmp_path)
    known = predictor.annotators[:2]
    out = predictor.generate(["a text", "another one"], [*known, "nobody"], max_new_tokens=3)
    assert len(out) == 6 and list(out["annotator"][:3]) == [*known, "nobody"]
    assert list(out["known"][:3]) == [True, True, False]
    assert (out["n_tokens"] >= 1).all() and out["completion"].map(lambda c: isinstance(c, str)).all()
