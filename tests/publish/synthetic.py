"""Small synthetic run contents (lists, id maps, catalogue) with known values."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.data import schema
from recsys.data.idmap import IdMap
from recsys.pipeline.artifacts import ListArrays


@dataclass
class Synthetic:
    users: IdMap
    items: IdMap
    lists: list[ListArrays]
    catalog: dict[str, np.ndarray]


def synthetic_run(n_users: int = 40, n_items: int = 25, n: int = 5, seed: int = 0, model: str = "als") -> Synthetic:
    """User lists with padding and one empty row, similar, together (c, l) and popular lists."""
    rng = np.random.default_rng(seed)
    users = IdMap([f"user-{u}" for u in range(n_users)])
    items = IdMap([f"item-{i}" for i in range(n_items)])

    def ranked(rows: int) -> tuple[np.ndarray, np.ndarray]:
        ids = np.argsort(rng.random((rows, n_items)), axis=1)[:, :n].astype(np.int32)
        scores = np.sort(rng.random((rows, n)).astype(np.float32), axis=1)[:, ::-1].copy()
        return ids, scores

    user_ids, user_scores = ranked(n_users)
    user_ids[1, 3:] = -1  # a short list
    user_scores[1, 3:] = -np.inf
    user_ids[2, :] = -1  # a user with nothing to recommend
    user_scores[2, :] = -np.inf
    sim_ids, sim_scores = ranked(n_items)
    tog_ids, confidence = ranked(n_items)
    lift = confidence * 3
    pop_ids, pop_scores = ranked(3)
    lists = [
        ListArrays("user", model, user_ids, user_scores),
        ListArrays("user", "popular", *ranked(n_users)),
        ListArrays("similar", model, sim_ids, sim_scores),
        ListArrays("together", None, tog_ids, confidence.copy(), extra={"c": confidence, "l": lift}),
        ListArrays("popular", None, pop_ids, pop_scores, labels=np.array(["", "books", "garden"])),
    ]
    prices = rng.uniform(1, 100, n_items).round(2)
    prices[0] = np.nan
    catalog = {
        schema.ITEM_ID: items.ids,
        schema.TITLE: np.array([f"Item número {i}" for i in range(n_items)]),
        schema.CATEGORY: np.where(np.arange(n_items) % 2 == 0, "books", "garden"),
        schema.PRICE: prices,
        schema.IN_STOCK: np.arange(n_items) % 5 != 0,
    }
    return Synthetic(users, items, lists, catalog)
