"""The run's PNGs: the per-annotator plot shows exactly the annotators macro_f1 averages; the training curve
carries the majority-class reference; both fit their labels."""

from hyperscale.eval import plots
from hyperscale.rundir import RunDir

METRICS = {"adapter_kind": "hyper_lora", "majority_baseline": {"macro_f1": 0.35},
           "per_annotator": {"a": {"macro_f1": 0.9, "n": 12}, "b": {"macro_f1": 0.7, "n": 5},
                             "c": {"macro_f1": 0.0, "n": 2}}}
RECORDS = [{"step": 0, "split": "start"}, {"step": 5, "split": "train", "loss": 0.7},
           {"step": 10, "split": "train", "loss": None}, {"step": 10, "split": "eval", "macro_f1": 0.8}]


def test_run_plots_use_the_scored_annotators_and_the_majority_reference(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(plots, "per_annotator_f1", lambda per, path, base, note: seen.update(per=per, base=base,
                                                                                           note=note))
    monkeypatch.setattr(plots, "training_curves", lambda records, path, majority: seen.update(majority=majority))
    plots.run_plots(RunDir(tmp_path), METRICS, RECORDS, min_items=5)
    assert seen["per"] == {"hyper_lora": [0.9, 0.7]}  # c has 2 eval rows: not in macro_f1, not in the plot
    assert seen["base"] == seen["majority"] == 0.35 and "1 with fewer left out" in seen["note"]


def test_the_pngs_are_written(tmp_path):
    plots.run_plots(RunDir(tmp_path), METRICS, RECORDS, min_items=5)
    for name in ("training_curve.png", "per_annotator_f1.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
