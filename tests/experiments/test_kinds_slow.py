"""Slow: perspective-aware kinds vs shared_lora on rule-disagreeing synthetic data, and few-shot onboarding.

Why these margins. On configs/synthetic.yaml (4 groups, no label noise) no
perspective-blind predictor can exceed a mean per-annotator macro-F1 of 0.6875 in
the population limit (hyperscale.data.synthetic.ceilings). A kind scoring
>= 0.6875 + 0.05 has therefore used the annotator: 0.05 is ~3 standard errors of the
mean over the 40 eval annotators (~20 eval rows each). Runs are seeded, so the
margins guard against regressions and numeric drift across platforms, not against
run-to-run noise.

Measured at this budget (600 steps, batch 32, lr 3e-3, annotator_lr_scale 10, all
kinds identical; `hyperscale compare configs/synthetic.yaml`, 95 s on 2 idle cores):
hyper_lora 0.970, multi_head 0.903, annotator_embedding 0.890, per_annotator_lora
0.768, shared_lora 0.648. Every perspective-aware kind clears the blind ceiling and
beats shared_lora by at least 0.10 (per_annotator_lora has the least: each of its
40 LoRAs trains alone on ~80 rows); the margins below are about half the measured
gaps.
Over seeds 0, 1, 2 (`--seeds 0,1,2`): hyper_lora 0.951 +- 0.039, multi_head 0.901 +- 0.009,
annotator_embedding 0.849 +- 0.048 (worst seed 0.796), per_annotator_lora 0.768 +- 0.007,
shared_lora 0.653 +- 0.004: the margins hold on every seed; the test runs seed 0.

History: at 300 steps, lr 1e-3, no table lr scale and a tanh head,
annotator_embedding measured 0.614 = shared_lora. Two changes closed it: the head's
GELU (see heads.AnnotatorEmbeddingHead) and train.annotator_lr_scale.

Onboarding: the mean-embedding fallback is a perspective-blind guess for a new
annotator, so it is bounded by the same 0.6875; 16 labels identify which of 4
rules the newcomer follows, so the gain must be at least 0.10.
"""

import json

import pytest

from hyperscale.config import load_config
from hyperscale.data import synthetic
from hyperscale.data.config import SyntheticConfig

pytestmark = pytest.mark.slow

BLIND = synthetic.ceilings(4)["blind"]  # 0.6875
MARGIN = 0.05


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    from hyperscale.experiments.compare import run_compare

    out = tmp_path_factory.mktemp("compare")
    kinds = "shared_lora,hyper_lora,annotator_embedding,multi_head,per_annotator_lora"
    summary = run_compare("configs/synthetic.yaml", kinds, out, ["train.progress_bar=false"])
    return {r["kind"]: r for r in summary["kinds"]}


def test_shared_lora_stays_under_the_blind_ceiling(compared):
    assert compared["shared_lora"]["macro_f1"] <= BLIND + 0.02


def test_hyper_lora_beats_blind_ceiling(compared):
    assert compared["hyper_lora"]["macro_f1"] >= BLIND + MARGIN, compared["hyper_lora"]["macro_f1"]
    assert compared["hyper_lora"]["macro_f1"] >= compared["shared_lora"]["macro_f1"] + 0.20


@pytest.mark.parametrize("kind,margin", [
    ("per_annotator_lora", 0.06),  # measured +0.120
    ("multi_head", 0.12),  # measured +0.255
    ("annotator_embedding", 0.12),  # measured +0.242
])
def test_baseline_beats_shared_lora(compared, kind, margin):
    assert compared[kind]["macro_f1"] >= compared["shared_lora"]["macro_f1"] + margin, compared[kind]["macro_f1"]
    assert compared[kind]["macro_f1"] >= BLIND + MARGIN / 2  # past what no blind model can reach
    assert compared[kind]["macro_f1"] < compared["hyper_lora"]["macro_f1"]  # the product's claim at equal budget


def test_onboarding_beats_mean_embedding_fallback(tmp_path):
    from hyperscale.serve.onboard import onboard, read_rows
    from hyperscale.serve.run import load_run
    from hyperscale.training.loop import run_training

    frame = synthetic.generate(SyntheticConfig(n_annotators=40, n_groups=4, n_items=800, annotators_per_item=5))
    new = sorted(frame["annotator"].unique())[:8]  # 8 annotators the run never sees
    cols = ["item_id", "text", "annotator", "label"]
    frame[~frame["annotator"].isin(new)][cols].to_csv(tmp_path / "train.csv", index=False)
    frame[frame["annotator"].isin(new)][cols].to_csv(tmp_path / "new.csv", index=False)
    cfg = load_config("configs/synthetic.yaml", [
        "data.source=files", f"data.train_files=[{tmp_path / 'train.csv'}]", "data.item_column=item_id",
        "data.labels=['0','1']", "train.progress_bar=false"])
    run_training(cfg, tmp_path / "run")
    run = load_run(tmp_path / "run")
    result = onboard(run, read_rows(run, tmp_path / "new.csv"), k=16, steps=100, lr=0.05)
    (tmp_path / "onboard.json").write_text(json.dumps(result))
    assert result["n_new_annotators"] == 8 and result["n_scored_rows"] > 8 * 50
    assert result["macro_f1_fallback"] <= BLIND + MARGIN
    assert result["macro_f1_onboarded"] >= result["macro_f1_fallback"] + 0.10, (
        result["macro_f1_fallback"], result["macro_f1_onboarded"])
