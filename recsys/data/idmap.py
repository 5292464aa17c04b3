"""Two-way maps between raw ids (strings, as the shop has them) and dense integer indices.

Integers are used everywhere inside (matrix rows and columns, model arrays); raw ids only
where data comes in and where lists go out.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd


class IdMap:
    """Ordered set of raw ids; index ``i`` is the ``i``-th id.

    ``ids`` is a numpy unicode array (never object dtype), so it saves to ``.npz`` without pickle.
    """

    __slots__ = ("_ids", "_index")

    def __init__(self, ids: Iterable[str] | np.ndarray | pd.Index) -> None:
        values = pd.Index(np.asarray(list(ids) if not isinstance(ids, (np.ndarray, pd.Index)) else ids).astype(str))
        if values.has_duplicates:
            dupes = values[values.duplicated()].unique()[:5].tolist()
            raise ValueError(f"duplicate ids in id map: {dupes}")
        self._index = values
        self._ids = np.asarray(values, dtype=str)

    @classmethod
    def from_values(cls, values: Iterable[str] | pd.Series | np.ndarray) -> IdMap:
        """Unique ids in order of first appearance."""
        return cls(pd.unique(pd.Series(values, dtype="string").astype(str)))

    @property
    def ids(self) -> np.ndarray:
        """Raw ids, shape (n,), unicode dtype."""
        return self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, raw_id: object) -> bool:
        return str(raw_id) in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdMap) and np.array_equal(self._ids, other._ids)

    def __repr__(self) -> str:
        return f"IdMap(n={len(self)})"

    def index_of(self, raw_id: str) -> int:
        """Index of one raw id; ``KeyError`` naming the id when unknown."""
        pos = self._index.get_indexer([str(raw_id)])[0]
        if pos < 0:
            raise KeyError(f"unknown id {raw_id!r}")
        return int(pos)

    def to_index(self, raw_ids: Iterable[str] | np.ndarray | pd.Series) -> np.ndarray:
        """Indices of many raw ids, shape (len(raw_ids),) int64; -1 where unknown."""
        values = np.asarray(raw_ids if isinstance(raw_ids, (np.ndarray, pd.Series)) else list(raw_ids)).astype(str)
        return self._index.get_indexer(values).astype(np.int64)

    def to_raw(self, indices: np.ndarray | Iterable[int]) -> np.ndarray:
        """Raw ids of many indices; any shape, unicode dtype. Negative indices give ``""``."""
        idx = np.asarray(indices, dtype=np.int64)
        out = self._ids[np.clip(idx, 0, max(len(self._ids) - 1, 0))] if len(self._ids) else np.full(idx.shape, "")
        return np.where(idx < 0, "", out)

    def extend(self, raw_ids: Iterable[str]) -> IdMap:
        """A new map with the unseen ``raw_ids`` appended; existing indices keep their place."""
        new = pd.Index(pd.unique(pd.Series(list(raw_ids) if not isinstance(raw_ids, (np.ndarray, pd.Series)) else raw_ids).astype(str)))
        return IdMap(self._index.append(new.difference(self._index, sort=False)))

    def save(self, path: str | Path) -> None:
        """Write to ``path`` (``.npz``), no pickle."""
        with open(path, "wb") as handle:
            np.savez(handle, ids=self._ids)

    @classmethod
    def load(cls, path: str | Path) -> IdMap:
        with np.load(path, allow_pickle=False) as data:
            return cls(data["ids"])
