"""Onboarding a new language (or task) of a Hyper-X run: only the new rows of that embedding table train."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from hyperscale.errors import ConfigError, DataError
from hyperscale.serve.onboard import condition_tables, onboard
from hyperscale.serve.run import load_run
from tests.helpers import ANNOTATORS, make_run, tiny_config

LANGS = ["l0", "l1"]


def _language_run(tmp_path):
    """A finished-run folder of hyper_lora conditioned on [annotator, language], perturbed weights."""
    from hyperscale.data.vocab import ConditionVocab
    from hyperscale.model import build_model
    from hyperscale.rundir import RunDir, save_trainable, trainable_state

    cfg = tiny_config("adapter.kind=hyper_lora", "adapter.conditions=[annotator,language]",
                      "data.synthetic.n_languages=2")
    run = RunDir(tmp_path)
    run.path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = build_model(cfg, {"annotator": len(ANNOTATORS), "language": len(LANGS)}, ["0", "1"])
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.trainable_parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    cfg.save(run.config, runtime=model.runtime)
    ConditionVocab({"annotator": ANNOTATORS, "language": LANGS}).save(run.vocab)
    run.labels.write_text(json.dumps(["0", "1"]))
    save_trainable(trainable_state(model), run.trainable)


def _frame(languages=("l7", "l8", "l1"), n_items=12):
    rng = np.random.default_rng(0)
    words = ["apple", "river", "road", "green", "tiger", "house"]
    rows = [{"item_id": f"{lang}-s{i}", "text": " ".join(rng.choice(words, 5)), "annotator": ANNOTATORS[i % 3],
             "label": str(int((i + j) % 2 == 0)), "task": None, "language": lang}
            for j, lang in enumerate(languages) for i in range(n_items)]
    return pd.DataFrame(rows)


def test_onboarding_a_language_grows_only_the_language_table(tmp_path):
    _language_run(tmp_path)
    start = onboard(load_run(tmp_path), _frame(), k=4, steps=0, field="language")
    # the new language rows start at the table's mean row, the unknown-language fallback: step 0 changes nothing
    assert start["onboarded"]["per_annotator_macro_f1"] == start["fallback"]["per_annotator_macro_f1"]
    run = load_run(tmp_path)
    before = {n: p.detach().clone() for n, p in run.model.named_parameters()}
    result = onboard(run, _frame(), k=4, steps=15, lr=0.05, field="language")
    assert result["field"] == "language" and result["new_ids"] == ["l7", "l8"] and result["n_fit_rows"] == 8
    assert result["n_known_annotators_ignored"] == 1  # l1 is known
    assert result["loss_last"] < result["loss_first"] - 0.05
    assert run.vocab.ids("language") == ["l0", "l1", "l7", "l8"] and run.vocab.ids("annotator") == ANNOTATORS
    (table, attr), = condition_tables(run.model, "language")
    grown = getattr(table, attr)
    for name, p in run.model.named_parameters():
        old = before[name]
        if p is grown:
            assert p.shape[0] == 4 and table.num_embeddings == 4
            torch.testing.assert_close(p[:2], old, rtol=0, atol=0)  # the trained languages are untouched
            assert (p[2:] - old.mean(0)).abs().max() > 1e-4
        else:
            torch.testing.assert_close(p, old, rtol=0, atol=0)  # annotator table, trunk, heads: frozen


def test_onboarding_a_field_the_run_is_not_conditioned_on_is_refused(tmp_path):
    make_run(tmp_path)  # hyper_lora on [annotator] only
    with pytest.raises(ConfigError, match="no language embedding to grow"):
        onboard(load_run(tmp_path), _frame(), k=4, field="language")
    with pytest.raises(ConfigError, match="--field"):
        onboard(load_run(tmp_path), _frame(), k=4, field="dialect")


def test_onboarding_a_language_needs_the_column_and_new_ids(tmp_path):
    _language_run(tmp_path)
    with pytest.raises(DataError, match="no language id for every row"):
        onboard(load_run(tmp_path), _frame().assign(language=None), k=4, field="language")
    with pytest.raises(DataError, match="all 2 languages in the file are already known"):
        onboard(load_run(tmp_path), _frame(languages=("l0", "l1")), k=4, field="language")


def test_a_custom_score_replaces_macro_f1(tmp_path):
    _language_run(tmp_path)

    def score(run, rows):  # any per-annotator number, e.g. exact match of generated completions
        return {"n": len(rows)}, {a: float(len(rows[rows.annotator == a])) for a in rows.annotator.unique()}

    result = onboard(load_run(tmp_path), _frame(), k=4, steps=1, field="language", score=score)
    assert result["score_fallback"] == result["score_onboarded"] == pytest.approx(16 / 3)
    assert "macro_f1_onboarded" not in result and result["fallback"] == {"n": 16}


@pytest.mark.slow  # three model loads and two onboardings: the unit tests above cover the logic
def test_api_and_cli_onboard_a_language_from_a_file(tmp_path, capsys):
    import hyperscale
    from hyperscale.cli import main

    _language_run(tmp_path / "run")
    rows = tmp_path / "new.csv"
    _frame().to_csv(rows, index=False)
    result = hyperscale.onboard(tmp_path / "run", rows, k=4, steps=3, field="language")
    assert result["new_ids"] == ["l7", "l8"] and load_run(result["out"]).vocab.ids("language")[-2:] == ["l7", "l8"]
    assert main(["onboard", str(tmp_path / "run"), "--data", str(rows), "--k", "4", "--steps", "2",
                 "--field", "language", "--out", str(tmp_path / "cli")]) == 0
    assert "onboarded 2 new languages on k=4" in capsys.readouterr().out
