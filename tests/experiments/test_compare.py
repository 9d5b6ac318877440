"""`hyperscale compare`: kinds parsed and validated up front, identical configs but the kind, table and plots."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from hyperscale.errors import ConfigError
from hyperscale.eval.metrics import macro_f1_present
from hyperscale.experiments.compare import markdown_table, parse_kinds, run_compare

CONFIG = "configs/synthetic.yaml"


def _fake_predictions(score, n_items=30):
    """predictions.parquet of a run right on a `score` share of rows (3 annotators per item)."""
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 2, n_items * 3)
    right = rng.random(len(gold)) < score
    pred = np.where(right, gold, 1 - gold)
    p1 = np.where(pred == 1, 0.8, 0.2)
    return pd.DataFrame({"item_id": np.repeat([f"i{k}" for k in range(n_items)], 3),
                         "annotator": np.tile(["a0", "a1", "a2"], n_items), "gold": gold.astype(str),
                         "pred": pred.astype(str), "p_0": 1 - p1, "p_1": p1})


def _fake_trainer(seen):
    """Stands in for run_training: records the config, writes what a run writes, returns metrics."""

    def train(cfg, run_dir):
        seen.append(cfg)
        run_dir.mkdir(parents=True)
        with open(run_dir / "metrics.jsonl", "w") as f:
            for sps in (100.0, 300.0):
                f.write(json.dumps({"split": "train", "samples_per_s": sps}) + "\n")
        score = {"shared_lora": 0.6, "hyper_lora": 0.9}.get(cfg.adapter.kind, 0.7)
        _fake_predictions(score).to_parquet(run_dir / "predictions.parquet", index=False)
        return {"macro_f1": score, "micro_f1": score, "soft_ce": 0.5, "soft_manhattan": 0.4, "soft_jsd": 0.1,
                "majority_vote_f1": score, "trainable_params": 1000 if cfg.adapter.kind == "shared_lora" else 5000,
                "params_per_annotator": 0 if cfg.adapter.kind == "shared_lora" else 64,
                "adapter_kind": cfg.adapter.kind,
                "per_annotator": {"a0": {"macro_f1": score, "n": 9}, "a1": {"macro_f1": score - 0.1, "n": 7},
                                  "a2": {"macro_f1": 0.0, "n": 2}},  # a2: below min_items (5), left out
                "majority_baseline": {"macro_f1": 0.33, "micro_f1": 0.33, "soft_ce": 0.69}}

    return train


def test_compare_writes_json_table_and_plots(tmp_path):
    seen = []
    summary = run_compare(CONFIG, "shared_lora,hyper_lora,shared_lora+agg", tmp_path, ["train.max_steps=17", "train.warmup_steps=0"],
                          trainer=_fake_trainer(seen))
    # identical configs except the adapter kind (and aggregation for the pseudo-kind)
    dicts = [c.to_dict() for c in seen]
    for d in dicts:
        assert d["train"]["max_steps"] == 17
    assert [d["adapter"]["kind"] for d in dicts] == ["shared_lora", "hyper_lora", "shared_lora"]
    assert [d["adapter"]["aggregate_labels"] for d in dicts] == [False, False, True]
    strip = [{**d, "adapter": {k: v for k, v in d["adapter"].items() if k not in ("kind", "aggregate_labels")}}
             for d in dicts]
    assert strip[0] == strip[1] == strip[2]
    saved = json.loads((tmp_path / "compare.json").read_text())
    assert [r["kind"] for r in saved["kinds"]] == ["shared_lora", "hyper_lora", "shared_lora+agg"]
    assert saved["kinds"][0]["samples_per_s"] == pytest.approx(200.0)
    assert sorted(saved["kinds"][0]["per_annotator_macro_f1"]) == ["a0", "a1"]
    assert summary["majority_baseline"]["macro_f1"] == 0.33
    md = (tmp_path / "compare.md").read_text().split("\n\n")[0].splitlines()
    assert len(md) == 2 + 3 + 1 and md[-1].startswith("| majority class | 0.3300")
    boot = saved["bootstrap"]["metrics"]["micro_f1"]
    assert boot["hyper_lora"]["best_other"] == "shared_lora" and boot["hyper_lora"]["lo"] <= boot["hyper_lora"]["hi"]
    assert "vs best other" in (tmp_path / "compare.md").read_text()
    assert (tmp_path / "bootstrap_intervals.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| hyper_lora | 0.9000" in md[3] and "5,000" in md[3]
    for png in ("per_annotator_f1.png", "macro_f1_vs_params.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_validates_every_kind_before_training(tmp_path):
    seen = []
    with pytest.raises(ConfigError, match="--kinds"):
        run_compare(CONFIG, "hyper_lora,typo_lora", tmp_path, trainer=_fake_trainer(seen))
    with pytest.raises(ConfigError, match="adapter.rank"):
        run_compare(CONFIG, "hyper_lora,shared_lora", tmp_path, ["adapter.rank=0"], trainer=_fake_trainer(seen))
    assert seen == []  # nothing trained


def test_parse_kinds_and_table_formatting():
    assert [k for _, k, _ in parse_kinds("hyper_lora, shared_lora+agg")] == ["hyper_lora", "shared_lora"]
    with pytest.raises(ConfigError, match="twice"):
        parse_kinds("hyper_lora,hyper_lora")
    table = markdown_table([{"kind": "x", "macro_f1": float("nan"), "trainable_params": 12345}], None)
    assert "| x | - |" in table and "12,345" in table


def test_parse_seeds():
    from hyperscale.experiments.compare import parse_seeds

    assert parse_seeds(None) is None and parse_seeds("0, 1,2") == [0, 1, 2]
    for bad in ("0,x", "", "1,1"):
        with pytest.raises(ConfigError, match="--seeds"):
            parse_seeds(bad)


def test_compare_over_seeds_reports_mean_and_std(tmp_path):
    """Real training (tiny budget), two kinds x two seeds: sub runs per seed, mean ± std in the table."""
    short = ["data.synthetic.n_items=80", "data.synthetic.n_annotators=8", "train.max_steps=8", "train.warmup_steps=0",
             "train.micro_batch_size=16", "train.log_every=4", "eval.min_items_per_annotator=1",
             "train.progress_bar=false"]
    summary = run_compare(CONFIG, "shared_lora,hyper_lora", tmp_path, short, seeds=[0, 1])
    assert summary["seeds"] == [0, 1]
    for rec in summary["kinds"]:
        values = rec["per_seed"]["macro_f1"]
        assert len(values) == 2 and rec["macro_f1"] == pytest.approx(sum(values) / 2)
        assert rec["macro_f1_std"] == pytest.approx(abs(values[0] - values[1]) / 2 ** 0.5)
        for seed in (0, 1):
            saved = yaml.safe_load((tmp_path / rec["kind"] / f"seed{seed}" / "config.yaml").read_text())
            assert saved["train"]["seed"] == seed and saved["adapter"]["kind"] == rec["kind"]
            preds = pd.read_parquet(tmp_path / rec["kind"] / f"seed{seed}" / "predictions.parquet")
            assert list(preds.columns) == ["item_id", "annotator", "gold", "pred", "p_0", "p_1"]
            assert len(preds) == rec["n_examples"] and np.allclose(preds[["p_0", "p_1"]].sum(1), 1, atol=1e-5)
            ev = json.loads((tmp_path / rec["kind"] / f"seed{seed}" / "eval.json").read_text())
            assert ev["scored_split"] == "eval"
            micro = macro_f1_present(preds["gold"].astype(int).to_numpy(), preds["pred"].astype(int).to_numpy(), 2)
            assert micro == pytest.approx(ev["micro_f1"])  # the rows eval.json scored
    hyper = next(r for r in summary["kinds"] if r["kind"] == "hyper_lora")
    assert hyper["per_seed"]["soft_ce"][0] != hyper["per_seed"]["soft_ce"][1]  # the seed reached the init
    md = (tmp_path / "compare.md").read_text()
    assert " ± " in md and "| hyper_lora | " in md
    assert summary["bootstrap"]["metrics"]["macro_f1"]["hyper_lora"]["best_other"] == "shared_lora"
