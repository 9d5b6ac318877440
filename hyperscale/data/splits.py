"""Item-level splits and subsamples, deterministic per seed.

Perspectivist rows share items: if an item's labels from annotator A were in train and
its labels from annotator B in eval, the model would have seen the eval text. So
everything here works on item ids, never on rows.

Items are ordered by a keyed hash of their id (pandas' siphash with the seed as key),
not by position: the same item lands on the same side whatever the file order, and
adding rows for new items does not move old ones.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hyperscale.errors import DataError


def _item_order(item_ids: np.ndarray, seed: int) -> np.ndarray:
    """The unique item ids, sorted by a seed-keyed hash (ties broken by the id itself)."""
    key = f"{seed & 0xFFFFFFFFFFFFFFFF:016x}"  # hash_array wants exactly 16 characters
    h = pd.util.hash_array(item_ids.astype(object), hash_key=key, categorize=False)
    order = np.lexsort((item_ids.astype(str), h))
    return item_ids[order]


def split_by_item(frame: pd.DataFrame, eval_fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, eval): round(eval_fraction * n_items) items (at least 1, at most n-1) go to eval."""
    items = frame["item_id"].unique()
    if len(items) < 2:
        raise DataError(f"only {len(items)} distinct item(s): cannot split into train and eval by item. "
                        f"Fix: add items, or give data.eval_files.")
    n_eval = min(max(int(round(eval_fraction * len(items))), 1), len(items) - 1)
    eval_items = _item_order(np.asarray(items), seed)[:n_eval]
    in_eval = frame["item_id"].isin(set(eval_items)).to_numpy()
    return frame[~in_eval].reset_index(drop=True), frame[in_eval].reset_index(drop=True)


def subsample_items(frame: pd.DataFrame, max_items: int | None, seed: int) -> pd.DataFrame:
    """All rows of at most `max_items` items, the same ones for the same seed."""
    if max_items is None:
        return frame
    items = frame["item_id"].unique()
    if len(items) <= max_items:
        return frame
    # A different stream than the split (seed + 1), so the kept items are not biased
    # towards either side of the split.
    keep = set(_item_order(np.asarray(items), seed + 1)[:max_items])
    return frame[frame["item_id"].isin(keep).to_numpy()].reset_index(drop=True)
