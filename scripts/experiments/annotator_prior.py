"""How much do annotators' base rates alone tell about their labels? (issue 11's pipa reading)

Usage: python scripts/experiments/annotator_prior.py CONFIG [--set key=value ...]
Loads the config's data exactly as training does (same split), and scores the eval rows' binary labels with two
priors fitted on the train rows: the pooled positive rate, and each annotator's own rate (shrunk towards the pooled
rate by 2 pseudo-rows; an annotator unseen in train gets the pooled rate). Prints both log-losses (nats per row):
their difference is the most any model could gain from who annotated if it used base rates only.

A second pair reads who annotated *given the item*: each row is scored from its item's other annotators' labels
(their majority: negative, tied or positive; rows of items with no other annotator are left out), once with a pooled
P(label | others' majority) and once with each annotator's own table (each cell shrunk towards the pooled one by 2
pseudo-rows), both fitted on the train rows. Their difference is how much an annotator's identity says about their
label once the item's consensus is known: the per-annotator signal a perspective-aware model can add over a
perspective-blind one that predicted the consensus perfectly. It uses other annotators' labels of the eval items,
which no model sees, so it is a diagnostic of the data, not a model.
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
    consensus_gain(d.train, d.eval, pos)


def others_majority(rows, pos: str):
    """Each row's item's other annotators' majority (0 negative, 1 tied, 2 positive); -1 where there is no other."""
    y = (rows["label"] == pos).astype(int)
    n = rows.groupby("item_id")["label"].transform("size") - 1
    k = y.groupby(rows["item_id"]).transform("sum") - y
    return np.where(n == 0, -1, np.sign(2 * k - n) + 1).astype(int), y.to_numpy()


def consensus_gain(train, eval_, pos: str) -> None:
    """Log-loss of eval rows from P(label | others' majority): pooled, then per annotator (module docstring)."""
    cell_tr, y_tr = others_majority(train, pos)
    cell_ev, y_ev = others_majority(eval_, pos)
    keep_tr, keep_ev = cell_tr >= 0, cell_ev >= 0
    pooled = {c: (y_tr[keep_tr & (cell_tr == c)].sum() + 1) / ((keep_tr & (cell_tr == c)).sum() + 2) for c in range(3)}
    tab = {}
    for (a, c), yy in zip(zip(train["annotator"][keep_tr], cell_tr[keep_tr]), y_tr[keep_tr]):
        tab.setdefault((a, c), []).append(yy)
    ann = eval_["annotator"].to_numpy()[keep_ev]
    cells, y = cell_ev[keep_ev], y_ev[keep_ev]
    p_pool = np.array([pooled[c] for c in cells])
    p_ann = np.array([(sum(tab.get((a, c), [])) + 2 * pooled[c]) / (len(tab.get((a, c), [])) + 2)
                      for a, c in zip(ann, cells)])

    def log_loss(p: np.ndarray) -> float:
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))

    print(f"given the item's other annotators ({int(keep_ev.sum())} of {len(keep_ev)} eval rows have one): "
          f"P(positive | others negative / tied / positive) = " + " / ".join(f"{pooled[c]:.3f}" for c in range(3)))
    print(f"eval log-loss, pooled P(label | others) {log_loss(p_pool):.4f}; per-annotator P(label | others) "
          f"{log_loss(p_ann):.4f}")


if __name__ == "__main__":
    main()
