"""Onboarding new annotators: only their new rows train, step 0 is the fallback, the rest stays bit-identical."""

import numpy as np
import pandas as pd
import pytest
import torch

from hyperscale.errors import ConfigError
from hyperscale.serve.onboard import onboard, split_first_k
from hyperscale.serve.run import load_run

from tests.helpers import make_run


def _frame(n_items=12, annotators=("new-a", "new-b", "a2")):
    rng = np.random.default_rng(0)
    words = ["apple", "river", "road", "green", "tiger", "house"]
    rows = [{"item_id": f"s{i}", "text": " ".join(rng.choice(words, 5)), "annotator": a, "label": str(int(i % 2 == 0)),
             "task": None, "language": None} for i in range(n_items) for a in annotators]
    return pd.DataFrame(rows)


def test_split_first_k_in_file_order():
    fit, held = split_first_k(_frame(), ["new-a", "new-b"], 4)
    assert fit.groupby("annotator").size().to_dict() == {"new-a": 4, "new-b": 4}
    assert fit[fit.annotator == "new-a"]["item_id"].tolist() == ["s0", "s1", "s2", "s3"]
    assert len(held) == 2 * 8 and "a2" not in set(held.annotator)


@pytest.mark.parametrize("kind", ["hyper_lora", "annotator_embedding", "multi_head", "per_annotator_lora"])
def test_onboarding_trains_only_new_rows(tmp_path, kind):
    make_run(tmp_path, kind)
    run = load_run(tmp_path)
    frame = _frame()
    start = onboard(load_run(tmp_path), frame, k=4, steps=0)
    # New rows start at the mean row, which is what the fallback uses: step 0 changes nothing.
    assert start["onboarded"]["per_annotator_macro_f1"] == start["fallback"]["per_annotator_macro_f1"]
    before = {n: p.detach().clone() for n, p in run.model.named_parameters()}
    result = onboard(run, frame, k=4, steps=15, lr=0.05)
    assert result["n_new_annotators"] == 2 and result["n_known_annotators_ignored"] == 1
    assert result["loss_last"] < result["loss_first"] - 0.05  # the 8 fitting rows are learnable
    assert run.vocab.ids("annotator")[-2:] == ["new-a", "new-b"]
    grown = {id(getattr(m, a)) for m, a in run.model.annotator_tables()}
    for name, p in run.model.named_parameters():
        old = before[name]
        if id(p) in grown:
            torch.testing.assert_close(p[: old.shape[0]], old, rtol=0, atol=0)  # old annotators untouched
            assert p.shape[0] == old.shape[0] + 2 and (p[old.shape[0]:] - old.mean(0)).abs().max() > 1e-4
        else:
            torch.testing.assert_close(p, old, rtol=0, atol=0)  # everything else frozen


def test_onboarding_refuses_shared_lora_and_k0(tmp_path):
    make_run(tmp_path, "shared_lora")
    with pytest.raises(ConfigError, match="no per-annotator parameters"):
        onboard(load_run(tmp_path), _frame(), k=4)
    with pytest.raises(ConfigError, match="--k"):
        onboard(load_run(tmp_path), _frame(), k=0)


def test_onboarding_a_causal_lm_run_fits_the_lm_loss(tmp_path):
    """Training a causal_lm run minimises the LM loss over the whole vocabulary; onboarding must fit
    the same loss, not a C-way cross-entropy over the verbalizer tokens."""
    import torch.nn.functional as F

    from hyperscale.data.batches import collate

    make_run(tmp_path, "hyper_lora", "model.task=causal_lm", "model.verbalizers=['no','yes']")
    run = load_run(tmp_path)
    fit, _ = split_first_k(_frame(), ["new-a", "new-b"], 4)
    rows = run.encode(fit)  # new annotators unknown: the fallback, which is where onboarding starts
    with torch.no_grad():
        out = run.model(collate(rows, np.arange(len(rows)), run.tokenizer.pad_token_id))
        c_way = F.cross_entropy(out["logits"], torch.tensor(rows.labels))
    assert abs(float(out["loss"]) - float(c_way)) > 0.1  # the two losses really differ here
    result = onboard(run, _frame(), k=4, steps=1)
    assert result["loss_first"] == pytest.approx(float(out["loss"]), rel=1e-5)


def test_onboarded_annotators_are_saved_and_predict_knows_them(tmp_path, monkeypatch):
    """D10: onboard did not save the new annotators (predict still treated them as unknown), and its
    messages pointed at the wrong fix."""
    import hyperscale
    from hyperscale.errors import DataError, RunDirError
    from hyperscale.serve import run as run_module
    from hyperscale.serve.predict import Predictor

    make_run(tmp_path / "run")
    rows = tmp_path / "new.csv"
    _frame().to_csv(rows, index=False)
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    result = hyperscale.onboard(tmp_path / "run", rows, k=4, steps=5)
    out = tmp_path / "run-onboarded"
    assert result["out"] == str(out) and (out / "onboard.json").exists()
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()} == before  # untouched
    long = Predictor.from_run(out).predict(["apple river road"], ["new-a", "new-b", "a2", "someone"])
    assert long.set_index("annotator")["known"].to_dict() == {"new-a": True, "new-b": True, "a2": True,
                                                               "someone": False}
    with pytest.raises(RunDirError, match="already exists"):
        hyperscale.onboard(tmp_path / "run", rows, k=4, steps=5)
    # a wrong --data path fails before the model loads, naming --data
    monkeypatch.setattr(run_module, "load_run", lambda *a: pytest.fail("loaded the model first"))
    with pytest.raises(DataError, match="--data .* is not a file"):
        hyperscale.onboard(tmp_path / "run", tmp_path / "nope.csv", out=tmp_path / "x")


def test_onboarding_only_known_annotators_says_so(tmp_path):
    from hyperscale.errors import DataError

    make_run(tmp_path)
    with pytest.raises(DataError, match="all 2 annotators in the file are already known.*predict"):
        onboard(load_run(tmp_path), _frame(annotators=("a1", "a2")), k=4)
    with pytest.raises(DataError, match="lower --k below 12"):
        onboard(load_run(tmp_path), _frame(), k=12)
