"""Small synthetic run contents (lists, id maps, catalogue) with known values."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from recsys.data import schema
from recsys.data.idmap import IdMap
from recsys.runs.lists import ListKind, RunList


@dataclass
class IndexList:
    """One list as index arrays (-1 padding): what the publisher must write, row by row."""

    kind: ListKind
    model: str | None
    ids: np.ndarray
    scores: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    labels: np.ndarray | None = None

    def run_list(self, users: IdMap, items: IdMap) -> RunList:
        keys = self.labels if self.labels is not None else (users if self.kind == "user" else items).ids
        return RunList.from_indices(self.kind, self.model, keys, self.ids, self.scores, items.ids, self.extra or None)


@dataclass
class Synthetic:
    users: IdMap
    items: IdMap
    arrays: list[IndexList]
    lists: list[RunList]
    catalog_arrays: dict[str, np.ndarray]
    catalog: pa.Table


def synthetic_run(n_users: int = 40, n_items: int = 25, n: int = 5, seed: int = 0, model: str = "als") -> Synthetic:
    """User lists with padding and one empty row, similar, together (confidence, lift) and popular lists."""
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
    arrays = [
        IndexList("user", model, user_ids, user_scores),
        IndexList("user", "popular", *ranked(n_users)),
        IndexList("similar", model, sim_ids, sim_scores),
        IndexList("together", None, tog_ids, confidence.copy(), extra={"confidence": confidence, "lift": lift}),
        IndexList("popular", None, pop_ids, pop_scores, labels=np.array(["", "books", "garden"])),
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
    return Synthetic(users, items, arrays, [a.run_list(users, items) for a in arrays], catalog, catalog_table(catalog))


def catalog_table(catalog: dict[str, np.ndarray]) -> pa.Table:
    """The catalogue arrays as the table the publisher takes (NaN price = null)."""
    return pa.table({k: pa.array(v, from_pandas=True) for k, v in catalog.items()})
