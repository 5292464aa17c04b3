"""The training data on Spark: the same matrices as :class:`recsys.data.dataset.Dataset`,
as DataFrames of integer indices.

* Users and items get the indices the local backend gives them: order of first
  appearance in the file (the ``ordinal`` column), catalogue-only items appended in
  catalogue order. Ties between equal scores are broken by these indices, as locally.
* ``pairs`` (u, i, w): the summed event weights of :class:`~recsys.data.matrix.Weighting`
  (event weights, values, decay, rating threshold, binary), pairs of weight 0 dropped.
* ``baskets`` (basket, i): distinct items per (user, order or session), as
  :func:`~recsys.data.matrix.build_baskets` forms them.
* ``trending`` per item: :func:`~recsys.data.matrix.item_trending` as an aggregation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from recsys.data import schema
from recsys.data.dataset import align_catalog
from recsys.data.idmap import IdMap
from recsys.data.matrix import Weighting
from recsys.spark.load import ORDINAL, numbered

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

TRENDING_WINDOW_DAYS = 30.0


@dataclass
class SparkDataset:
    """Indexed training data. ``users`` (u, user_id) stays on the cluster; the item map and
    the aligned catalogue are on the driver (one entry per item)."""

    pairs: DataFrame
    users: DataFrame
    items: IdMap
    n_users: int
    catalog: pd.DataFrame | None
    baskets: DataFrame | None
    n_baskets: int
    trending: np.ndarray | None
    interactions: int

    @property
    def n_items(self) -> int:
        return len(self.items)


def _weight_expression(columns: list[str], weighting: Weighting, now: float | None, *, decay: bool = True) -> Column:
    """Per-event weight, as :func:`recsys.data.matrix.event_weights` computes it."""
    from pyspark.sql import functions as F

    if schema.EVENT_TYPE in columns:
        weight = F.lit(float(weighting.default_weight))
        for name, value in weighting.event_weights.items():
            weight = F.when(F.col(schema.EVENT_TYPE) == name, F.lit(float(value))).otherwise(weight)
    else:
        weight = F.lit(float(weighting.default_weight))
    has_value = schema.VALUE in columns
    if weighting.rating_threshold is not None and has_value:
        value = F.col(schema.VALUE)
        is_rating = (F.col(schema.EVENT_TYPE) == schema.RATING) if schema.EVENT_TYPE in columns else value.isNotNull()
        below = is_rating & ~(F.coalesce(value >= weighting.rating_threshold, F.lit(False)))
        weight = F.when(F.coalesce(below, F.lit(False)), F.lit(0.0)).otherwise(weight)
    if weighting.use_values and has_value:
        factor = F.coalesce(F.col(schema.VALUE), F.lit(1.0))
        if weighting.value_transform == "log":
            factor = F.log2(F.lit(1.0) + F.greatest(factor, F.lit(0.0)))
        weight = weight * factor
    if decay and weighting.half_life_days is not None and schema.TIMESTAMP in columns and now is not None:
        age = F.greatest((F.lit(now) - F.col(schema.TIMESTAMP).cast("double")) / 86400.0, F.lit(0.0))
        weight = weight * F.coalesce(F.pow(F.lit(0.5), age / weighting.half_life_days), F.lit(1.0))
    return weight


def _first_appearance(frame: DataFrame, column: str, index: str) -> DataFrame:
    """(index, raw id) in order of first appearance (smallest ordinal), indices from 0."""
    from pyspark.sql import functions as F

    firsts = frame.groupBy(column).agg(F.min(ORDINAL).alias("__first")).orderBy("__first")
    return numbered(firsts, index, 0).select(index, column)


def build_dataset(
    interactions: DataFrame,
    columns: list[str],
    catalog: pd.DataFrame | None,
    weighting: Weighting,
    *,
    basket_event_types: tuple[str, ...] | None = None,
    trending_half_life_days: float = 7.0,
) -> SparkDataset:
    """Index, weight and aggregate validated interactions (see the module docstring)."""
    from pyspark.sql import functions as F

    interactions = interactions.cache()
    users = _first_appearance(interactions, schema.USER_ID, "u").cache()
    item_frame = _first_appearance(interactions, schema.ITEM_ID, "i").orderBy("i").toPandas()
    items = IdMap(item_frame[schema.ITEM_ID].to_numpy(dtype=str))
    if catalog is not None and len(catalog):
        items = items.extend(catalog[schema.ITEM_ID].astype(str).to_numpy())
    spark: SparkSession = interactions.sparkSession
    item_index = spark.createDataFrame(
        pd.DataFrame({"i": np.arange(len(items), dtype=np.int64), schema.ITEM_ID: items.ids.astype(object)})
    )
    indexed = interactions.join(F.broadcast(item_index), schema.ITEM_ID).join(users, schema.USER_ID)

    has_time = schema.TIMESTAMP in columns
    newest = interactions.agg(F.max(schema.TIMESTAMP)).first()[0] if has_time else None
    now = float(weighting.reference_time) if weighting.reference_time is not None else (float(newest) if newest is not None else None)
    weighted = indexed.withColumn("__w", _weight_expression(columns, weighting, now))
    pairs = weighted.groupBy("u", "i").agg(F.sum("__w").alias("w")).where(F.col("w") != 0)
    # float32, as the local matrix stores its weights
    pairs = pairs.withColumn("w", F.col("w").cast("float").cast("double"))
    if weighting.binary:
        pairs = pairs.where(F.col("w") > 0).withColumn("w", F.lit(1.0))
    pairs = pairs.where(F.col("w") != 0).cache()

    baskets, n_baskets = _baskets(indexed, columns, basket_event_types)
    trending = _trending(indexed, columns, weighting, len(items), trending_half_life_days) if has_time else None
    return SparkDataset(
        pairs=pairs,
        users=users,
        items=items,
        n_users=users.count(),
        catalog=align_catalog(catalog, items) if catalog is not None else None,
        baskets=baskets,
        n_baskets=n_baskets,
        trending=trending,
        interactions=interactions.count(),
    )


def _baskets(indexed: DataFrame, columns: list[str], event_types: tuple[str, ...] | None) -> tuple[DataFrame | None, int]:
    from pyspark.sql import functions as F

    candidates = [c for c in (schema.ORDER_ID, schema.SESSION_ID) if c in columns]
    column = next((c for c in candidates if indexed.where(F.col(c).isNotNull()).limit(1).count()), None)
    if column is None:
        return None, 0
    rows = indexed.where(F.col(column).isNotNull())
    if event_types is not None and schema.EVENT_TYPE in columns:
        rows = rows.where(F.col(schema.EVENT_TYPE).isin(list(event_types)))
    baskets = rows.select(F.struct("u", column).alias("basket"), "i").distinct().cache()
    n_baskets = baskets.select("basket").distinct().count()
    return baskets, int(n_baskets)


def _trending(indexed: DataFrame, columns: list[str], weighting: Weighting, n_items: int, half_life_days: float) -> np.ndarray | None:
    from pyspark.sql import functions as F

    newest = indexed.agg(F.max(schema.TIMESTAMP)).first()[0]
    if newest is None:
        return None
    base = _weight_expression(columns, weighting, None, decay=False)
    age = (F.lit(float(newest)) - F.col(schema.TIMESTAMP).cast("double")) / 86400.0
    decayed = F.when(age <= TRENDING_WINDOW_DAYS, base * F.pow(F.lit(0.5), age / half_life_days)).otherwise(F.lit(0.0))
    sums = indexed.where(F.col(schema.TIMESTAMP).isNotNull()).groupBy("i").agg(F.sum(decayed).alias("t")).toPandas()
    out = np.zeros(n_items, dtype=np.float64)
    out[sums["i"].to_numpy(dtype=np.int64)] = sums["t"].to_numpy(dtype=np.float64)
    return out.astype(np.float32)
