"""The training data every model receives: matrices sharing one pair of id maps."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.data import schema
from recsys.data.idmap import IdMap
from recsys.data.matrix import (
    Weighting,
    build_baskets,
    build_last_times,
    build_ratings,
    build_user_items,
    encode_columns,
    item_trending,
)


@dataclass
class Dataset:
    """Aligned training data.

    Attributes:
        user_items: CSR matrix of shape (n_users, n_items), float32 implicit weights.
        users: raw user id <-> row index.
        items: raw item id <-> column index. Includes catalogue items nobody interacted with
            (their columns are empty), so content models can recommend them.
        ratings: CSR (n_users, n_items) float32 explicit ratings, or None.
        baskets: CSR (n_baskets, n_items) binary, items bought or viewed together, or None.
        catalog: DataFrame with one row per item index (0..n_items-1, same order as ``items``)
            and the catalogue columns (title, description, category, price, in_stock), or None.
        trending: (n_items,) float32 decayed recent weight per item, or None.
        last_times: CSR (n_users, n_items) float64, unix seconds of each pair's latest event
            (for time-aware models and features), or None without timestamps.
    """

    user_items: sp.csr_matrix
    users: IdMap
    items: IdMap
    ratings: sp.csr_matrix | None = None
    baskets: sp.csr_matrix | None = None
    catalog: pd.DataFrame | None = None
    trending: np.ndarray | None = None
    last_times: sp.csr_matrix | None = None
    info: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        expected = (len(self.users), len(self.items))
        if self.user_items.shape != expected:
            raise ValueError(f"user_items has shape {self.user_items.shape}, id maps say {expected}")
        if self.ratings is not None and self.ratings.shape != expected:
            raise ValueError(f"ratings has shape {self.ratings.shape}, id maps say {expected}")
        if self.baskets is not None and self.baskets.shape[1] != len(self.items):
            raise ValueError(f"baskets has {self.baskets.shape[1]} item columns, id map has {len(self.items)}")
        if self.catalog is not None and len(self.catalog) != len(self.items):
            raise ValueError(f"catalog has {len(self.catalog)} rows, id map has {len(self.items)} items")

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @classmethod
    def from_matrix(cls, user_items: sp.spmatrix) -> Dataset:
        """Wrap a bare matrix; raw ids are the indices as strings."""
        matrix = sp.csr_matrix(user_items, dtype=np.float32)
        return cls(
            user_items=matrix,
            users=IdMap(np.arange(matrix.shape[0]).astype(str)),
            items=IdMap(np.arange(matrix.shape[1]).astype(str)),
        )

    @classmethod
    def from_interactions(
        cls,
        interactions: pd.DataFrame,
        catalog: pd.DataFrame | None = None,
        weighting: Weighting | None = None,
        *,
        users: IdMap | None = None,
        items: IdMap | None = None,
        basket_event_types: tuple[str, ...] | None = None,
        trending_half_life_days: float = 7.0,
    ) -> Dataset:
        """Build every matrix from an interactions table (and optional catalogue).

        ``users``/``items`` fix the index spaces (for example a train/test split shares the
        full data's maps); by default they are the ids in order of first appearance, with
        catalogue-only items appended after the interacted ones.
        """
        weighting = weighting or Weighting()
        # Ids and event types become categoricals once; every builder then works on codes.
        frame = encode_columns(interactions)
        if users is None:
            users = _id_map(frame[schema.USER_ID])
        if items is None:
            items = _id_map(frame[schema.ITEM_ID])
            if catalog is not None and len(catalog):
                items = items.extend(catalog[schema.ITEM_ID].astype(str).to_numpy())
        return cls(
            user_items=build_user_items(frame, users, items, weighting),
            users=users,
            items=items,
            ratings=build_ratings(frame, users, items),
            baskets=build_baskets(frame, items, event_types=basket_event_types),
            catalog=align_catalog(catalog, items) if catalog is not None else None,
            trending=item_trending(frame, items, weighting, half_life_days=trending_half_life_days),
            last_times=build_last_times(frame, users, items),
            info={"interactions": int(len(interactions))},
        )

    def fingerprint(self) -> str:
        """Short content hash of the interaction matrix and id maps (changes when the data does)."""
        digest = hashlib.sha256()
        for array in (self.user_items.indptr, self.user_items.indices, self.user_items.data):
            digest.update(np.ascontiguousarray(array).tobytes())
        digest.update("\x1f".join(self.users.ids[:1000]).encode())
        digest.update("\x1f".join(self.items.ids[:1000]).encode())
        return digest.hexdigest()[:16]


def _id_map(values: pd.Series) -> IdMap:
    """Ids in order of first appearance; categoricals (from ``encode_columns``) in category order."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return IdMap(np.asarray(values.cat.categories).astype(str))
    return IdMap.from_values(values)


def align_catalog(catalog: pd.DataFrame, items: IdMap) -> pd.DataFrame:
    """Catalogue rows reordered to item index order; items missing from it get empty fields.

    Result has a RangeIndex 0..n_items-1 and columns item_id, title, description, category
    (strings, "" when unknown), price (float, NaN when unknown) and in_stock (bool, True
    when unknown).
    """
    frame = catalog.drop_duplicates(schema.ITEM_ID, keep="last").copy()
    frame[schema.ITEM_ID] = frame[schema.ITEM_ID].astype(str)
    frame = frame.set_index(schema.ITEM_ID).reindex(pd.Index(items.ids, name=schema.ITEM_ID))
    out = pd.DataFrame({schema.ITEM_ID: items.ids})
    for column in (schema.TITLE, schema.DESCRIPTION, schema.CATEGORY):
        values = frame[column] if column in frame else pd.Series(index=frame.index, dtype="string")
        out[column] = values.astype("string").fillna("").to_numpy(dtype=str)
    price = frame[schema.PRICE] if schema.PRICE in frame else pd.Series(index=frame.index, dtype="float64")
    out[schema.PRICE] = pd.to_numeric(price, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    stock = frame[schema.IN_STOCK] if schema.IN_STOCK in frame else pd.Series(index=frame.index, dtype="boolean")
    out[schema.IN_STOCK] = stock.astype("boolean").fillna(True).to_numpy(dtype=bool)
    return out


def save_dataset_maps(dataset: Dataset, folder: Path) -> None:
    """Write the two id maps beside a model artifact (``users.npz``, ``items.npz``)."""
    folder.mkdir(parents=True, exist_ok=True)
    dataset.users.save(folder / "users.npz")
    dataset.items.save(folder / "items.npz")
