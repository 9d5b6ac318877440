"""`hyperscale tune` on Ray Tune: trials scored on the validation split only, the choice retrained over seeds."""

import json

import numpy as np
import pandas as pd
import pytest

from hyperscale.config import load_config
from hyperscale.data.load import load_data
from hyperscale.errors import ConfigError
from hyperscale.experiments.tune import (
    DEFAULT_SPACE,
    grid_trials,
    parse_grid,
    sample_trials,
    select,
)

CONFIG = "configs/synthetic.yaml"
SHORT = ["data.synthetic.n_items=80", "data.synthetic.n_annotators=8", "train.max_steps=6", "train.warmup_steps=0",
         "train.micro_batch_size=16", "train.log_every=3", "eval.min_items_per_annotator=1", "train.progress_bar=false"]


def test_every_kind_gets_its_own_space_and_the_same_number_of_draws():
    hyper = sample_trials("hyper_lora", DEFAULT_SPACE, 5, seed=0)
    shared = sample_trials("shared_lora", DEFAULT_SPACE, 5, seed=0)
    assert len(hyper) == len(shared) == 5
    assert "train.annotator_lr_scale" in hyper[0] and "train.annotator_lr_scale" not in shared[0]
    assert all(3e-4 <= t["train.lr"] <= 3e-2 for t in hyper + shared)
    assert {t["adapter.hypernet.hidden_dim"] for t in hyper} <= {32, 64, 128}
    assert sample_trials("hyper_lora", DEFAULT_SPACE, 5, seed=0) == hyper  # recorded draws are reproducible
    grid = parse_grid(["train.lr=[0.001, 0.003]", "train.weight_decay=[0, 0.1]"])
    assert grid_trials(grid, None) == [{"train.lr": a, "train.weight_decay": b} for a in (0.001, 0.003) for b in (0, 0.1)]
    with pytest.raises(ConfigError, match="--set-grid"):
        parse_grid(["train.lr=0.001"])


def test_every_drawn_hyper_lora_setting_is_a_valid_config():
    from hyperscale.experiments.tune import _fmt

    draws = sample_trials("hyper_lora", DEFAULT_SPACE, 12, seed=1)
    assert None in {t["adapter.hypernet.head_rank"] for t in draws}  # "unset" is drawn and must survive --set
    for t in draws:
        cfg = load_config(CONFIG, [f"{k}={_fmt(v)}" for k, v in t.items()])
        h = cfg.adapter.hypernet
        assert (h.head_rank, h.hidden_dim, h.condition_dropout) == (t["adapter.hypernet.head_rank"],
                                                                   t["adapter.hypernet.hidden_dim"],
                                                                   t["adapter.hypernet.condition_dropout"])


def test_selection_by_validation_macro_f1_then_soft_ce():
    trials = [{"kind": "k", "trial": 0, "macro_f1": 0.7, "soft_ce": 0.6, "failed": 0},
              {"kind": "k", "trial": 1, "macro_f1": 0.7, "soft_ce": 0.5, "failed": 0},
              {"kind": "k", "trial": 2, "macro_f1": float("nan"), "soft_ce": float("nan"), "failed": 1},
              {"kind": "k", "trial": 3, "macro_f1": 0.6, "soft_ce": 0.1, "failed": 0}]
    assert select(trials)["trial"] == 1


@pytest.mark.slow
def test_tune_two_trials_then_compare_from_tune(tmp_path, monkeypatch):
    from hyperscale.experiments.tune import compare_from_tune, run_tune
    from hyperscale.training.distributed import _free_port

    # What an earlier in-process run leaves in the driver's environment, which Ray's workers inherit:
    # two concurrent trials must not both rendezvous on this one port.
    for key, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(_free_port())}.items():
        monkeypatch.setenv(key, value)
    out = run_tune(CONFIG, "hyper_lora,shared_lora", tmp_path / "tune", SHORT, trials=1, concurrency=2)
    assert json.loads((tmp_path / "tune" / "tune.json").read_text())["kinds"].keys() == {"hyper_lora", "shared_lora"}
    data = load_data(load_config(CONFIG, [*SHORT, "data.validation_fraction=0.2"]).data)
    val_items, eval_items = set(data.validation["item_id"]), set(data.eval["item_id"])
    for name, rec in out["kinds"].items():
        (trial,) = rec["trials"]
        assert trial["failed"] == 0 and 0 <= trial["macro_f1"] <= 1
        ev = json.loads((tmp_path / "tune" / name / "trial0" / "eval.json").read_text())
        assert ev["scored_split"] == "validation" and ev["macro_f1"] == pytest.approx(trial["macro_f1"])
        scored = set(pd.read_parquet(tmp_path / "tune" / name / "trial0" / "predictions.parquet")["item_id"])
        assert scored == val_items and not scored & eval_items  # the eval split was never scored
        chosen = load_config(rec["chosen_config"])
        assert chosen.eval.split == "eval" and chosen.adapter.kind == name and chosen.data.validation_fraction == 0.2
    summary = compare_from_tune(tmp_path / "tune", tmp_path / "compare", seeds=[0, 1], n_boot=50,
                                overrides=["eval.batch_size=32"])  # --set: on top of every kind's choice
    assert summary["scored_split"] == "eval" and [r["kind"] for r in summary["kinds"]] == ["hyper_lora", "shared_lora"]
    hyper = out["kinds"]["hyper_lora"]["chosen"]["setting"]
    saved = load_config(str(tmp_path / "compare" / "hyper_lora" / "seed1" / "config.yaml"))
    assert saved.train.lr == pytest.approx(hyper["train.lr"], rel=1e-3) and saved.train.seed == 1
    assert saved.eval.batch_size == 32
    scored = set(pd.read_parquet(tmp_path / "compare" / "shared_lora" / "seed0" / "predictions.parquet")["item_id"])
    assert scored == eval_items
    assert set(summary["bootstrap"]["metrics"]["macro_f1"]) == {"hyper_lora", "shared_lora"}


def test_a_stopped_trial_is_never_chosen():
    trials = [{"kind": "k", "trial": 0, "macro_f1": 0.9, "soft_ce": 0.1, "failed": 0, "stopped_at_step": 4},
              {"kind": "k", "trial": 1, "macro_f1": 0.6, "soft_ce": 0.5, "failed": 0}]
    assert select(trials)["trial"] == 1


@pytest.mark.slow
def test_asha_reports_validation_mid_run_and_chooses_a_full_trial(tmp_path):
    """--scheduler asha: each trial reports validation every max_steps/4 steps from inside the loop (Ray Tune's
    result.json holds one line per report); a stopped trial is marked and never chosen; the chosen config keeps
    neither the rungs nor the validation scoring."""
    from hyperscale.experiments.tune import run_tune

    short = [*SHORT, "train.max_steps=8"]
    out = run_tune(CONFIG, "shared_lora", tmp_path / "tune", short, grid={"train.lr": [3e-3, 1e-7, 1e-7, 1e-7]},
                   concurrency=1, scheduler="asha")
    assert out["scheduler"].startswith("ASHA")
    rec = out["kinds"]["shared_lora"]
    assert len(rec["trials"]) == 4 and not rec["chosen"].get("stopped_at_step")
    for t in rec["trials"]:
        assert t.get("stopped_at_step") in (None, 2, 4, 6)
    # measured: the lr-1e-7 trials scored 0.393 against 0.439 and were stopped at steps 2, 2 and 4
    assert any(t.get("stopped_at_step") for t in rec["trials"])
    reports = [len((p / "result.json").read_text().splitlines())
               for p in (tmp_path / "tune" / "ray_tune" / "trials_shared_lora").iterdir() if (p / "result.json").exists()]
    assert max(reports) == 4  # steps 2, 4, 6 from the loop's hook, then the final report at step 8
    chosen = load_config(rec["chosen_config"])
    assert chosen.train.eval_every == 0 and chosen.eval.split == "eval"
    with pytest.raises(ConfigError, match="scheduler"):
        run_tune(CONFIG, "shared_lora", tmp_path / "t2", short, trials=1, scheduler="hyperband")


def test_trial_seeds_are_checked_before_any_trial(tmp_path):
    from hyperscale.experiments.tune import run_tune

    with pytest.raises(ConfigError, match="--trial-seeds"):
        run_tune(CONFIG, "shared_lora", tmp_path / "t", SHORT, trials=1, trial_seeds=[0, 0])
    with pytest.raises(ConfigError, match="--trial-seeds.*asha"):
        run_tune(CONFIG, "shared_lora", tmp_path / "t", SHORT, trials=1, trial_seeds=[0, 1], scheduler="asha")


def test_the_drawn_hyper_lora_settings_keep_the_residual_form_and_draw_the_bias():
    draws = sample_trials("hyper_lora", DEFAULT_SPACE, 12, seed=0)
    assert all(t["adapter.hypernet.shared_base"] is True and t["adapter.hypernet.shared_lr_scale"] == 4.0
               for t in draws)
    assert {t["adapter.hypernet.condition_bias"] for t in draws} == {False, True}
    assert all(0.03 <= t["adapter.hypernet.head_lr_scale"] <= 1.0 for t in draws)


@pytest.mark.slow
def test_a_trial_of_two_seeds_scores_their_mean(tmp_path):
    from hyperscale.experiments.tune import run_tune

    out = run_tune(CONFIG, "shared_lora", tmp_path / "tune", [*SHORT, "eval.decision=validation"], trials=1,
                   concurrency=1, trial_seeds=[0, 1])
    (trial,) = out["kinds"]["shared_lora"]["trials"]
    seeds = [json.loads((tmp_path / "tune" / "shared_lora" / "trial0" / f"seed{s}" / "eval.json").read_text())
             for s in (0, 1)]
    assert [e["scored_split"] for e in seeds] == ["validation", "validation"]
    assert "cross-fit" in seeds[0]["decision"]["fitted_on"]
    assert trial["macro_f1"] == pytest.approx(np.mean([e["macro_f1"] for e in seeds]))
    assert trial["soft_ce"] == pytest.approx(np.mean([e["soft_ce"] for e in seeds]))
    assert trial["per_seed_macro_f1"] == pytest.approx([e["macro_f1"] for e in seeds])
    assert out["trial_seeds"] == [0, 1] and "trial seeds" in out["selection"]
    chosen = load_config(out["kinds"]["shared_lora"]["chosen_config"])
    assert chosen.eval.split == "eval" and chosen.eval.decision == "validation"
