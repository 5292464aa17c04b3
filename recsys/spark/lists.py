"""Top-N lists computed on the executors and written by them as Parquet (run format 2).

Per-user lists are scored block-wise: each user's seen items (and, for ALS, the user's
factors) arrive as one Arrow batch of users (``mapInArrow``); the model's item-side data
(item factors, rules, neighbours, popularity) is broadcast once; a dense block of
(users x items) scores is built, seen items set to -inf, and the top N taken with
:func:`recsys.models.base.top_n` (ties: the lower item index first, as locally). No list is
over-fetched and filtered afterwards. Rows that end up with no item are not written.

Each list folder is ``lists/<name>/part-*.parquet`` with columns ``key`` (string),
``item_ids`` (list<string>) and ``scores`` (list<float32>), plus ``confidence`` and
``lift`` for ``together``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp

from recsys.data import schema
from recsys.models.base import top_n
from recsys.models.rules import METRICS, RulesConfig
from recsys.spark.dataset import SparkDataset

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

# Cells of one dense score block (users x items), float32: 64 Mi cells = 256 MB.
BLOCK_CELLS = 1 << 26
LIST_SCHEMA = "key string, item_ids array<string>, scores array<float>"
TOGETHER_SCHEMA = LIST_SCHEMA + ", confidence array<float>, lift array<float>"

# (seen CSR block, extra per-row arrays) -> dense float32 scores (rows, n_items), -inf = never
BlockScorer = Callable[[sp.csr_matrix, dict[str, np.ndarray]], np.ndarray]


def block_rows(n_items: int, configured: int) -> int:
    """Users per score block: at most ``configured``, and at most BLOCK_CELLS cells."""
    return max(1, min(configured, BLOCK_CELLS // max(n_items, 1)))


def list_arrays(keys: np.ndarray, ids: np.ndarray, scores: np.ndarray, item_ids: np.ndarray, **extra: np.ndarray) -> pa.RecordBatch:
    """One Arrow batch of lists from padded (rows, n) index/score arrays: -1 entries and
    empty rows left out, without a Python loop per row."""
    valid = ids >= 0
    lengths = valid.sum(axis=1)
    keep = lengths > 0
    offsets = np.r_[0, np.cumsum(lengths[keep])].astype(np.int32)
    flat = ids[keep][valid[keep]]
    columns = {
        "key": pa.array(np.asarray(keys)[keep].astype(str)),
        "item_ids": pa.ListArray.from_arrays(pa.array(offsets), pa.array(item_ids[flat])),
        "scores": pa.ListArray.from_arrays(pa.array(offsets), pa.array(scores[keep][valid[keep]].astype(np.float32))),
    }
    for name, values in extra.items():
        columns[name] = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values[keep][valid[keep]].astype(np.float32)))
    return pa.RecordBatch.from_pydict(columns)


def _csr_from_batch(batch: pa.RecordBatch, n_items: int, binary: bool) -> sp.csr_matrix:
    items = batch.column("items")
    weights = batch.column("weights")
    indptr = np.asarray(items.offsets, dtype=np.int64)
    indptr = indptr - indptr[0]
    indices = np.asarray(items.flatten(), dtype=np.int64)
    data = np.ones(len(indices), dtype=np.float32) if binary else np.asarray(weights.flatten(), dtype=np.float32)
    matrix = sp.csr_matrix((data, indices, indptr), shape=(batch.num_rows, n_items))
    matrix.sum_duplicates()
    return matrix


def _user_list_runner(
    scorer: BlockScorer, item_ids: Any, n_items: int, n: int, rows: int, exclude_seen: bool, binary: bool, extra: tuple[str, ...]
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        ids_of_items = item_ids.value
        for big in batches:
            for start in range(0, big.num_rows, rows):
                batch = big.slice(start, rows)
                seen = _csr_from_batch(batch, n_items, binary)
                columns = {name: batch.column(name) for name in extra}
                block = scorer(seen, columns)
                if exclude_seen:
                    block[np.repeat(np.arange(seen.shape[0]), np.diff(seen.indptr)), seen.indices] = -np.inf
                ids, scores = top_n(block, n)
                yield list_arrays(np.asarray(batch.column("key")), ids, scores, ids_of_items)

    return run


def user_lists(
    dataset: SparkDataset,
    scorer: BlockScorer,
    n: int,
    *,
    exclude_seen: bool,
    configured_rows: int,
    binary: bool = False,
    extra: DataFrame | None = None,
    extra_columns: tuple[str, ...] = (),
) -> DataFrame:
    """Top-``n`` per user (see the module docstring): a DataFrame of LIST_SCHEMA.

    ``scorer`` gets each block's seen matrix (weights, or 1.0 when ``binary``) and the
    ``extra_columns`` of ``extra`` joined on ``u`` (for example the user factors).
    """
    from pyspark.sql import functions as F

    grouped = dataset.pairs.groupBy("u").agg(
        F.sort_array(F.collect_list(F.struct("i", "w"))).alias("seen")
    ).select("u", F.col("seen.i").alias("items"), F.col("seen.w").alias("weights"))
    grouped = grouped.join(dataset.users.select("u", F.col(schema.USER_ID).alias("key")), "u")
    if extra is not None:
        grouped = grouped.join(extra, "u")
    spark = grouped.sparkSession
    item_ids = spark.sparkContext.broadcast(dataset.items.ids.astype(object))
    rows = block_rows(dataset.n_items, configured_rows)
    runner = _user_list_runner(scorer, item_ids, dataset.n_items, n, rows, exclude_seen, binary, extra_columns)
    return grouped.select("key", "items", "weights", *extra_columns).mapInArrow(runner, LIST_SCHEMA)


# ------------------------------------------------------------------ scorers
def popular_scorer(spark: Any, popularity: np.ndarray) -> BlockScorer:
    shared = spark.sparkContext.broadcast(np.where(popularity > 0, popularity, -np.inf).astype(np.float32))

    def score(seen: sp.csr_matrix, extra: dict[str, Any]) -> np.ndarray:
        return np.broadcast_to(shared.value, seen.shape).copy()

    return score


def als_scorer(spark: Any, item_factors: np.ndarray, cold: np.ndarray) -> BlockScorer:
    shared = spark.sparkContext.broadcast((item_factors, cold))

    def score(seen: sp.csr_matrix, extra: dict[str, Any]) -> np.ndarray:
        factors, cold_items = shared.value
        features = extra["features"]
        users = np.asarray(features.flatten(), dtype=np.float32).reshape(len(features), factors.shape[1])
        block = users @ factors.T
        block[:, cold_items] = -np.inf
        return block

    return score


def sparse_scorer(spark: Any, similarity: sp.csr_matrix) -> BlockScorer:
    """Scores = seen weights @ item-item matrix; -inf where no neighbour reaches (itemknn)."""
    shared = spark.sparkContext.broadcast(similarity)

    def score(seen: sp.csr_matrix, extra: dict[str, Any]) -> np.ndarray:
        from recsys.models.itemknn import sparse_scores_to_dense

        return sparse_scores_to_dense(seen @ shared.value)

    return score


def rules_scorer(spark: Any, matrices: dict[str, sp.csr_matrix], config: RulesConfig, n_items: int) -> BlockScorer:
    """The local rules model's own basket scoring (combine sum or max) on each block."""
    shared = spark.sparkContext.broadcast(matrices)

    def score(seen: sp.csr_matrix, extra: dict[str, Any]) -> np.ndarray:
        from recsys.models.rules import RulesRecommender

        model = RulesRecommender(config)
        model.n_items = n_items
        model.rules = shared.value
        model.rules3 = {m: sp.csr_matrix((0, n_items), dtype=np.float32) for m in METRICS}
        model.pair_antecedents = np.zeros((0, 2), dtype=np.int32)
        model._prepare()
        return model._score_baskets(seen)

    return score


# ------------------------------------------------------------------ item lists
def similar_lists(spark: Any, item_ids: np.ndarray, scores_of: Callable[[np.ndarray], np.ndarray], n: int, rows: int) -> DataFrame:
    """Top-``n`` similar items per item (never the item itself), item blocks on the executors.

    ``scores_of(item_indices)`` gives the dense (len, n_items) similarity rows.
    """
    n_items = len(item_ids)
    shared_ids = spark.sparkContext.broadcast(item_ids.astype(object))

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for big in batches:
            for start in range(0, big.num_rows, rows):
                items = np.asarray(big.column("i").slice(start, rows), dtype=np.int64)
                block = scores_of(items)
                block[np.arange(len(items)), items] = -np.inf
                ids, scores = top_n(block, n)
                names = shared_ids.value
                yield list_arrays(names[items], ids, scores, names)

    frame = spark.range(n_items).withColumnRenamed("id", "i")
    return frame.mapInArrow(run, LIST_SCHEMA)


def als_similar(spark: Any, item_factors: np.ndarray, cold: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Cosine between item factors, as the local factor models' similar items."""
    shared = spark.sparkContext.broadcast((item_factors, cold))

    def scores_of(items: np.ndarray) -> np.ndarray:
        factors, cold_items = shared.value
        norms = np.linalg.norm(factors, axis=1).astype(np.float32)
        norms = np.where(norms > 0, norms, 1.0).astype(np.float32)
        block = (factors[items] @ factors.T) / (norms[items, None] * norms[None, :])
        block[:, cold_items] = -np.inf
        block[cold_items[items]] = -np.inf
        return block

    return scores_of


def sparse_similar(spark: Any, similarity: sp.csr_matrix) -> Callable[[np.ndarray], np.ndarray]:
    shared = spark.sparkContext.broadcast(similarity)

    def scores_of(items: np.ndarray) -> np.ndarray:
        from recsys.models.itemknn import sparse_scores_to_dense

        return sparse_scores_to_dense(shared.value[items])

    return scores_of


def together_lists(rules: DataFrame, item_ids: np.ndarray, n: int, rank_by: str) -> DataFrame:
    """Bought-together per item from the rules table: the ``n`` best rules of each item by
    ``rank_by`` (ties: lower item index), with confidence and lift beside."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    spark = rules.sparkSession
    names = spark.createDataFrame(pd.DataFrame({"i": np.arange(len(item_ids), dtype=np.int64), "name": item_ids.astype(object)}))
    best = Window.partitionBy("i").orderBy(F.desc(rank_by), F.asc("j"))
    top = rules.withColumn("rank", F.row_number().over(best)).where(F.col("rank") <= n)
    top = top.join(F.broadcast(names.select(F.col("i").alias("j"), F.col("name").alias("target"))), "j")
    grouped = top.groupBy("i").agg(F.sort_array(F.collect_list(F.struct("rank", "target", F.col(rank_by).alias("score"), "confidence", "lift"))).alias("l"))
    grouped = grouped.join(F.broadcast(names), "i")
    return grouped.select(
        F.col("name").alias("key"),
        F.col("l.target").alias("item_ids"),
        F.col("l.score").cast("array<float>").alias("scores"),
        F.col("l.confidence").cast("array<float>").alias("confidence"),
        F.col("l.lift").cast("array<float>").alias("lift"),
    )
