"""The models the Spark backend fits, each the twin of a local model.

* ``popular``: per-item aggregations (users or summed weight, trending mix), the formula of
  :class:`recsys.models.popular.PopularRecommender`.
* ``rules``: pair rules by pair counting in Spark SQL (a self-join of the baskets), with the
  definitions, thresholds, per-item cap and ranking of :mod:`recsys.models.rules`:
  support = C[i, j] / baskets, confidence = C[i, j] / C[i, i], lift = confidence / support(j),
  computed with the same float64 operations (so the float32 rules are equal, not close).
  Nothing caps basket length, as locally: a basket of k items costs k^2 pair rows.
* ``itemknn``: exact cosine between the items' weight columns (a self-join on users), the
  ``k`` best neighbours per item, the item itself included (implicit's CosineRecommender).
* ``als``: MLlib ALS with implicit preferences on the TF-IDF / BM25 weighted input of
  :func:`recsys.models.als.weight_input`. MLlib's confidence is ``1 + alpha * w`` and its
  regParam is scaled by each user's and item's count (ALS-WR), unlike implicit's absolute
  ``regularization``: ``[spark] als_reg_param`` sets it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from recsys.models.als import ALSConfig
from recsys.models.itemknn import ItemKNNConfig
from recsys.models.popular import PopularConfig
from recsys.models.rules import METRICS, RulesConfig
from recsys.spark.dataset import SparkDataset

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


# ------------------------------------------------------------------ popular
def popularity(dataset: SparkDataset, config: PopularConfig) -> np.ndarray:
    """(n_items,) float32 popularity, as PopularRecommender.popularity."""
    from pyspark.sql import functions as F

    aggregate = F.count("*") if config.mode == "users" else F.sum("w")
    sums = dataset.pairs.groupBy("i").agg(aggregate.alias("p")).toPandas()
    base = np.zeros(dataset.n_items, dtype=np.float64)
    base[sums["i"].to_numpy(dtype=np.int64)] = sums["p"].to_numpy(dtype=np.float64)
    if config.mode == "weight":
        base = base.astype(np.float32).astype(np.float64)
    trending = dataset.trending
    if config.mode == "trending" and trending is not None:
        base = trending.astype(np.float64)
    elif config.trending_weight > 0 and trending is not None and trending.max() > 0 and base.max() > 0:
        w = config.trending_weight
        base = (1 - w) * base / base.max() + w * trending / trending.max()
    return base.astype(np.float32)


# ------------------------------------------------------------------ rules
@dataclass
class SparkRules:
    """Pair rules: ``table`` (i, j, support, confidence, lift) on the cluster, and the same
    rules as CSR matrices (n_items x n_items, float32) for scoring blocks of users."""

    table: DataFrame
    matrices: dict[str, sp.csr_matrix]
    item_counts: np.ndarray
    n_baskets: int


def fit_rules(dataset: SparkDataset, config: RulesConfig) -> SparkRules:
    """Pair rules from the baskets (see the module docstring)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if dataset.baskets is None or dataset.n_baskets == 0:
        raise ValueError("rules: the training data has no baskets")
    n = float(dataset.n_baskets)
    baskets = dataset.baskets
    counts = baskets.groupBy("i").agg(F.count("*").alias("ci"))
    frequent = counts.where((F.col("ci") / F.lit(n)) >= config.min_support).select("i", "ci")
    kept = baskets.join(F.broadcast(frequent.select("i")), "i")
    left = kept.select("basket", F.col("i"))
    right = kept.select("basket", F.col("i").alias("j"))
    pairs = left.join(right, "basket").where(F.col("i") != F.col("j")).groupBy("i", "j").agg(F.count("*").alias("c"))
    pairs = pairs.where((F.col("c") / F.lit(n)) >= config.min_support)
    counts_j = frequent.select(F.col("i").alias("j"), F.col("ci").alias("cj"))
    rules = pairs.join(F.broadcast(frequent), "i").join(F.broadcast(counts_j), "j")
    c = F.col("c").cast("double")
    rules = rules.select(
        "i",
        "j",
        (c / F.lit(n)).alias("support"),
        (c / F.col("ci").cast("double")).alias("confidence"),
        ((c / F.col("ci").cast("double")) / (F.col("cj").cast("double") / F.lit(n))).alias("lift"),
    )
    rules = rules.where(
        (F.col("support") >= config.min_support)
        & (F.col("confidence") >= config.min_confidence)
        & (F.col("lift") >= config.min_lift)
    )
    if config.max_rules_per_item is not None:
        best = Window.partitionBy("i").orderBy(F.desc(config.rank_by), F.asc("j"))
        rules = rules.withColumn("__rank", F.row_number().over(best)).where(F.col("__rank") <= config.max_rules_per_item).drop("__rank")
    rules = rules.select("i", "j", *[F.col(m).cast("float").alias(m) for m in METRICS]).cache()
    local = rules.toPandas()
    shape = (dataset.n_items, dataset.n_items)
    rows, cols = local["i"].to_numpy(dtype=np.int64), local["j"].to_numpy(dtype=np.int64)
    matrices = {}
    for metric in METRICS:
        matrix = sp.csr_matrix((local[metric].to_numpy(dtype=np.float32), (rows, cols)), shape=shape)
        matrix.sort_indices()
        matrices[metric] = matrix
    item_counts = np.zeros(dataset.n_items, dtype=np.int64)
    every = counts.toPandas()
    item_counts[every["i"].to_numpy(dtype=np.int64)] = every["ci"].to_numpy(dtype=np.int64)
    return SparkRules(rules, matrices, item_counts, dataset.n_baskets)


# ------------------------------------------------------------------ itemknn
def fit_itemknn(dataset: SparkDataset, config: ItemKNNConfig) -> sp.csr_matrix:
    """(n_items, n_items) float32 CSR: the ``k`` nearest items of each item by cosine."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    pairs = dataset.pairs
    norms = pairs.groupBy("i").agg(F.sqrt(F.sum(F.col("w") * F.col("w"))).alias("norm"))
    left = pairs.select("u", "i", F.col("w").alias("wi"))
    right = pairs.select("u", F.col("i").alias("j"), F.col("w").alias("wj"))
    dots = left.join(right, "u").groupBy("i", "j").agg(F.sum(F.col("wi") * F.col("wj")).alias("dot"))
    norms_j = norms.select(F.col("i").alias("j"), F.col("norm").alias("norm_j"))
    cosine = (
        dots.join(F.broadcast(norms), "i")
        .join(F.broadcast(norms_j), "j")
        .select("i", "j", (F.col("dot") / (F.col("norm") * F.col("norm_j"))).alias("s"))
        .where(F.col("s") != 0)
    )
    best = Window.partitionBy("i").orderBy(F.desc("s"), F.asc("j"))
    top = cosine.withColumn("__rank", F.row_number().over(best)).where(F.col("__rank") <= config.k).toPandas()
    matrix = sp.csr_matrix(
        (top["s"].to_numpy(dtype=np.float32), (top["i"].to_numpy(dtype=np.int64), top["j"].to_numpy(dtype=np.int64))),
        shape=(dataset.n_items, dataset.n_items),
    )
    matrix.sort_indices()
    return matrix


# ------------------------------------------------------------------ als
@dataclass
class SparkALS:
    """Fitted factors: users on the cluster (u, features), items on the driver."""

    user_factors: DataFrame
    item_factors: np.ndarray  # (n_items, f) float32, zero rows for items without factors
    cold: np.ndarray  # (n_items,) bool: items ALS has no factors for (never recommended)


def weighted_input(dataset: SparkDataset, config: ALSConfig) -> DataFrame:
    """(u, i, w) weighted as :func:`recsys.models.als.weight_input` weights the matrix."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    pairs = dataset.pairs
    if config.weighting == "tfidf":
        # tfidf over items x users: sqrt(w) * (log(n_items) - log1p(items of the user))
        per_user = Window.partitionBy("u")
        idf = F.log(F.lit(float(dataset.n_items))) - F.log1p(F.count("*").over(per_user).cast("double"))
        return pairs.select("u", "i", (F.sqrt("w") * idf).cast("float").alias("w"))
    if config.weighting == "bm25":
        per_item, per_user = Window.partitionBy("i"), Window.partitionBy("u")
        average = pairs.agg(F.sum("w")).first()[0] / float(dataset.n_users)
        idf = F.log(F.lit(float(dataset.n_users))) - F.log1p(F.count("*").over(per_item).cast("double"))
        length_norm = (1.0 - config.b) + config.b * F.sum("w").over(per_user) / F.lit(average)
        weight = F.col("w") * (config.k1 + 1.0) / (config.k1 * length_norm + F.col("w")) * idf
        return pairs.select("u", "i", weight.cast("float").alias("w"))
    return pairs.select("u", "i", F.col("w").cast("float").alias("w"))


def fit_als(dataset: SparkDataset, config: ALSConfig, reg_param: float) -> SparkALS:
    """MLlib ALS (implicit preferences) on the weighted input."""
    from pyspark.ml.recommendation import ALS
    from pyspark.sql import functions as F

    ratings = weighted_input(dataset, config).where(F.col("w") != 0)
    ratings = ratings.select(F.col("u").cast("int"), F.col("i").cast("int"), "w")
    seed = {"seed": config.random_state} if config.random_state is not None else {}
    als = ALS(
        **seed,
        rank=config.factors,
        maxIter=config.iterations,
        regParam=reg_param,
        alpha=config.alpha,
        implicitPrefs=True,
        userCol="u",
        itemCol="i",
        ratingCol="w",
        nonnegative=False,
        checkpointInterval=-1,
    )
    model = als.fit(ratings)
    items = model.itemFactors.toPandas()
    factors = np.zeros((dataset.n_items, config.factors), dtype=np.float32)
    index = items["id"].to_numpy(dtype=np.int64)
    if len(index):
        factors[index] = np.vstack(items["features"].to_numpy()).astype(np.float32)
    cold = np.ones(dataset.n_items, dtype=bool)
    cold[index] = False
    user_factors = model.userFactors.select(F.col("id").cast("long").alias("u"), "features").cache()
    return SparkALS(user_factors, factors, cold)
