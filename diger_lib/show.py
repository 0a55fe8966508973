"""What the teaching notebooks show inline: a user's history with titles, an item's semantic ID, one user's top-10
with the target marked. Small pandas tables; every function works without item text (titles become "item N")."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .data import Samples


def title(items: Mapping[str, Mapping[str, Any]] | None, item: int, width: int = 70) -> str:
    """An item's title from ``NAME.item.json`` (shortened), or ``item N`` when the dataset has no text."""
    t = str((items or {}).get(str(int(item)), {}).get("title") or f"item {int(item)}")
    return t if len(t) <= width else t[: width - 1] + "…"


def sid(item_ids: np.ndarray | None, item: int) -> str:
    """An item's semantic ID as the tuple of its codes, e.g. ``(183, 70, 232, 0)``."""
    return "" if item_ids is None else str(tuple(int(c) for c in np.asarray(item_ids)[int(item)]))


def user_history(samples: Samples, i: int, items=None, item_ids: np.ndarray | None = None) -> pd.DataFrame:
    """Sample ``i``'s history, oldest first, and the item it should predict (``target``)."""
    hist = [int(x) for x in samples.history[i, : int(samples.length[i])]]
    rows = [{"step": f"history {k + 1}", "item": it, "title": title(items, it)} for k, it in enumerate(hist)]
    rows.append({"step": "target (held out)", "item": int(samples.target[i]), "title": title(items, samples.target[i])})
    df = pd.DataFrame(rows)
    if item_ids is not None:
        df["semantic ID"] = [sid(item_ids, it) for it in df["item"]]
    return df


def recommendations(top: Sequence[int], target: int, items=None, item_ids: np.ndarray | None = None) -> pd.DataFrame:
    """A ranked list with titles, IDs and whether each entry is the held-out target."""
    rows = [{"rank": r + 1, "item": int(it), "title": title(items, it), "semantic ID": sid(item_ids, it),
             "hit": "✓ target" if int(it) == int(target) else ""} for r, it in enumerate(top) if int(it) >= 0]
    return pd.DataFrame(rows)


def sample_user(samples: Samples, seed: int = 0, min_length: int = 3) -> int:
    """A reproducible sample with a history of at least ``min_length`` items (any sample if none is that long)."""
    pool = np.flatnonzero(samples.length >= min_length)
    pool = pool if len(pool) else np.arange(len(samples))
    return int(np.random.default_rng(seed).choice(pool))
