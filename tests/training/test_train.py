"""End-to-end training through the DeepSpeed worker (world size 1, CPU)."""

import json

import numpy as np
import pytest

from hyperscale.cli import main
from hyperscale.config import load_config
from hyperscale.data.synthetic import ceilings
from hyperscale.training.loop import run_training

from tests.helpers import tiny_config


def _train(cfg, run_dir):
    metrics = run_training(cfg, run_dir)
    log = [json.loads(line) for line in open(run_dir / "metrics.jsonl")]
    return metrics, [r for r in log if r["split"] == "train"]


def test_hyper_lora_beats_shared_lora_on_disagreeing_groups(tmp_path):
    """4 groups label by different trigger words. A perspective-blind model cannot
    exceed the analytic ceiling of 0.6875 mean per-annotator macro-F1; measured with
    configs/synthetic.yaml (600 steps): hyper_lora 0.970, shared_lora 0.648. The test
    asks for a 0.15 margin (half the measured gap) and hyper_lora above the blind
    ceiling, so it fails if per-annotator conditioning stops working, not on noise."""
    blind_ceiling = ceilings(4, 0.0)["blind"]
    assert blind_ceiling == pytest.approx(0.6875)
    results = {}
    for kind in ("hyper_lora", "shared_lora"):
        cfg = load_config("configs/synthetic.yaml", [f"adapter.kind={kind}", "train.progress_bar=false"])
        results[kind], _ = _train(cfg, tmp_path / kind)
    hyper, shared = results["hyper_lora"]["macro_f1"], results["shared_lora"]["macro_f1"]
    assert hyper >= shared + 0.15, (hyper, shared)
    assert hyper >= blind_ceiling + 0.1
    assert shared <= blind_ceiling + 0.05  # nobody beats the ceiling without perspectives
    # the run directory contract
    eval_json = json.loads((tmp_path / "hyper_lora" / "eval.json").read_text())
    for key in ("macro_f1", "micro_f1", "accuracy", "pos_f1", "n_annotators", "n_examples", "trainable_params",
                "per_annotator", "majority_baseline"):
        assert key in eval_json
    assert eval_json["n_annotators"] == 40 and eval_json["majority_baseline"]["pos_f1"] == 0.0
    assert (tmp_path / "hyper_lora" / "config.yaml").exists() and (tmp_path / "hyper_lora" / "vocab.json").exists()
    for png in ("training_curve.png", "per_annotator_f1.png"):
        assert (tmp_path / "hyper_lora" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"



@pytest.mark.parametrize("mode", ["4bit", "8bit"])
def test_quantized_backbone_trains(tmp_path, mode):
    """On a single-group synthetic set (everyone agrees, so the task is learnable), the
    training loss over the last 10 steps must be at least 0.1 nats below the first 10."""
    cfg = tiny_config(f"model.quantization={mode}", "data.synthetic.n_groups=1", "data.synthetic.n_annotators=10",
                      "data.synthetic.n_items=300", "train.max_steps=80", "train.lr=0.003", "train.log_every=1",
                      "train.micro_batch_size=16", "eval.max_examples=64")
    metrics, log = _train(cfg, tmp_path)
    losses = np.array([r["loss"] for r in log])
    assert len(losses) == 80
    assert losses[:10].mean() - losses[-10:].mean() > 0.1, losses
    assert metrics["trainable_params"] > 0


def test_metrics_log_has_throughput_and_lr(tmp_path):
    cfg = tiny_config("train.max_steps=6", "train.log_every=2", "train.grad_accum_steps=2",
                      "train.warmup_steps=2", "data.synthetic.n_items=100", "eval.max_examples=32")
    metrics, log = _train(cfg, tmp_path)
    assert [r["step"] for r in log] == [2, 4, 6]
    # the resolved kernel backend, device and versions: first metrics record, eval.json, config.yaml
    first = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert first["split"] == "start" and first["runtime"]["kernel_backend"] == "torch"
    assert json.loads((tmp_path / "eval.json").read_text())["runtime"] == first["runtime"] == metrics["runtime"]
    import yaml

    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["runtime"] == first["runtime"]
    for r in log:
        assert r["samples_per_s"] > 0 and r["tokens_per_s"] > r["samples_per_s"] and np.isfinite(r["loss"])
        # achieved FLOP/s = tokens/s x the model's training FLOPs per token; no MFU on a CPU (no peak known)
        assert r["model_flops_per_token"] > 0 and "mfu" not in r
        assert r["achieved_flops_per_s"] == pytest.approx(r["tokens_per_s"] * r["model_flops_per_token"])
    assert log[0]["lr"] > log[-1]["lr"]  # cosine decay after warm-up


def test_bad_rows_fail_with_report_and_nothing_lost(tmp_path):
    rows = ["text,annotator,label"] + [f"item number {i},a{i % 3},{i % 2}" for i in range(40)]
    rows += [",a1,0", "no annotator here,,1", "bad label,a2,"]  # 3 of 43 malformed (7% > 1%)
    path = tmp_path / "rows.csv"
    path.write_text("\n".join(rows) + "\n")
    run_dir = tmp_path / "run"
    rc = main(["train", "configs/synthetic.yaml", "--no-ray", "--set", "data.source=files", "--set", f"data.train_files=[{path}]",
               "--run-dir", str(run_dir)])
    assert rc == 2
    report = json.loads((run_dir / "data_report.json").read_text())
    assert report["n_bad"] == 3
    bad = [json.loads(line) for line in open(run_dir / "bad_rows.jsonl")]
    assert sorted(b["reason"] for b in bad) == ["missing_annotator", "missing_label", "missing_text"]


def test_causal_lm_task_trains_through_the_verbalizer(tmp_path):
    """Prompt -> one-token completion: the frozen LM head scores each label word's first
    token. The LM loss (full vocabulary) must fall by 0.3 nats over 60 steps and the run
    must evaluate through the verbalizer. (Measured: on this tiny random model the
    predictions stay on the majority class even after 150 steps at lr 1e-2: the frozen,
    random tied LM head is a hard target; the loss falls by learning the label words.)"""
    cfg = tiny_config("model.task=causal_lm", "model.verbalizers=['no','yes']", "data.synthetic.n_groups=1",
                      "data.synthetic.n_annotators=10", "data.synthetic.n_items=300", "train.max_steps=60",
                      "train.lr=0.003", "train.log_every=1", "train.micro_batch_size=16", "eval.max_examples=128",
                      "model.max_length=40")
    metrics, log = _train(cfg, tmp_path)
    losses = np.array([r["loss"] for r in log])
    assert losses[:10].mean() - losses[-10:].mean() > 0.3, losses
    per = metrics["per_annotator"].values()
    assert metrics["n_examples"] == 128 == sum(a["n"] for a in per)
    # eval.json's pooled accuracy is the row-weighted mean of the per-annotator ones
    assert metrics["accuracy"] == pytest.approx(sum(a["accuracy"] * a["n"] for a in per) / 128)


def test_only_the_newest_checkpoints_are_kept(tmp_path):
    """Every checkpoint used to be kept (60 of them, 163 MB, for a 300-step tiny run)."""
    cfg = tiny_config("train.max_steps=5", "train.save_every=1", "train.keep_checkpoints=2", "train.warmup_steps=0",
                      "data.synthetic.n_items=60", "eval.max_examples=16", "logging.wandb.mode=disabled")
    _train(cfg, tmp_path)
    assert sorted(p.name for p in tmp_path.glob("checkpoint_*")) == ["checkpoint_000004", "checkpoint_000005"]
