"""How much do annotators' base rates alone tell about their labels? (issue 11's pipa reading)

Usage: python scripts/experiments/annotator_prior.py CONFIG [--set key=value ...]
Loads the config's data exactly as training does (same split), and scores the eval rows' binary labels with two
priors fitted on the train rows: the pooled positive rate, and each annotator's own rate (shrunk towards the pooled
rate by 2 pseudo-rows; an annotator unseen in train gets the pooled rate). Prints both log-losses (nats per row):
their difference is the most any model could gain from who annotated if it used base rates only. It says nothing
about annotator x content interactions, which only a trained model can show.
"""

from __future__ import annotations

import sys

import numpy as np


def main() -> None:
    from hyperscale.config import load_config
    from hyperscale.data.load import load_data

    args = sys.argv[1:]
    overrides = [args[i + 1] for i in range(len(args)) if args[i] == "--set"]
    cfg = load_config(args[0], overrides)
    d = load_data(cfg.data)
    if len(d.labels) != 2:
        raise SystemExit(f"binary labels only; this config has {d.labels}")
    pos = d.labels[1]
    y = (d.eval["label"] == pos).to_numpy(float)
    pooled = float((d.train["label"] == pos).mean())
    rates = d.train.groupby("annotator")["label"].apply(lambda s: ((s == pos).sum() + 2 * pooled) / (len(s) + 2))
    per_annotator = d.eval["annotator"].map(rates).fillna(pooled).to_numpy(float)

    def log_loss(p: np.ndarray) -> float:
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))

    print(f"{cfg.data.source}: {len(d.train)} train rows, {len(d.eval)} eval rows, {d.train['annotator'].nunique()} "
          f"annotators (median {int(d.train['annotator'].value_counts().median())} train rows each)")
    print(f"positive class {pos!r}: pooled rate {pooled:.3f}; annotators' rates 10/50/90th percentile "
          + " / ".join(f"{q:.3f}" for q in np.quantile(rates, [0.1, 0.5, 0.9])))
    print(f"eval log-loss, pooled prior {log_loss(np.full_like(y, pooled)):.4f}; per-annotator prior "
          f"{log_loss(per_annotator):.4f}")


if __name__ == "__main__":
    main()
