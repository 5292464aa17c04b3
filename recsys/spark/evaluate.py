"""``recsys evaluate --backend spark``: the Spark models behind the evaluation runner's
:class:`~recsys.models.base.Recommender` interface.

The runner splits the data and builds the train matrix as for any model; the model here
sends that matrix (the same weights, the same indices) to Spark, fits its Spark twin there
and computes the top-N lists on the executors, block-wise with seen items removed. The
metrics are then computed by the runner exactly as for the local models, so both backends
are scored on the same split, users and relevance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recsys.data import schema
from recsys.data.dataset import Dataset
from recsys.data.idmap import IdMap
from recsys.errors import ConfigError, ModelError
from recsys.models.base import ModelConfig, Recommender
from recsys.models.registry import get_model_class
from recsys.pipeline.config import SPARK_MODELS, SparkConfig, check_spark_models
from recsys.spark import lists as spark_lists
from recsys.spark import models as spark_models
from recsys.spark.dataset import SparkDataset

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def spark_dataset(spark: SparkSession, dataset: Dataset) -> SparkDataset:
    """A local Dataset's matrices as a SparkDataset with the same indices and weights."""
    coo = dataset.user_items.tocoo()
    pairs = spark.createDataFrame(
        pd.DataFrame({"u": coo.row.astype(np.int64), "i": coo.col.astype(np.int64), "w": coo.data.astype(np.float64)})
    ).cache()
    users = spark.createDataFrame(
        pd.DataFrame({"u": np.arange(dataset.n_users, dtype=np.int64), schema.USER_ID: dataset.users.ids.astype(object)})
    )
    baskets = None
    n_baskets = 0
    if dataset.baskets is not None and dataset.baskets.nnz:
        basket_coo = dataset.baskets.tocoo()
        baskets = spark.createDataFrame(
            pd.DataFrame({"basket": basket_coo.row.astype(np.int64), "i": basket_coo.col.astype(np.int64)})
        ).cache()
        n_baskets = int(dataset.baskets.shape[0])
    return SparkDataset(
        pairs=pairs,
        users=users,
        items=dataset.items,
        n_users=dataset.n_users,
        catalog=dataset.catalog,
        baskets=baskets,
        n_baskets=n_baskets,
        trending=dataset.trending,
        interactions=int(dataset.user_items.nnz),
    )


class SparkRecommender(Recommender):
    """One Spark model (als, itemknn, rules, popular) fitted on Spark from a local Dataset.

    ``recommend`` computes the requested users' lists on the executors; scores per item
    (``_score_users``) are not available, as they never leave the cluster.
    """

    def __init__(self, name: str, config: ModelConfig, spark: SparkSession, spark_config: SparkConfig) -> None:
        model_class = get_model_class(name)
        self.name = name  # type: ignore[misc]
        self.config_class = model_class.config_class  # type: ignore[misc]
        self.requires = model_class.requires  # type: ignore[misc]
        super().__init__(config)
        self._spark = spark
        self._spark_config = spark_config
        self._data: SparkDataset | None = None
        self._scorer: Any = None
        self._extra: Any = None
        self._extra_columns: tuple[str, ...] = ()
        self._binary = False
        self._users = IdMap([])

    def _fit(self, dataset: Dataset, *, show_progress: bool = False) -> None:
        spark = self._spark
        data = spark_dataset(spark, dataset)
        config = self.config
        if self.name == "popular":
            self._scorer = spark_lists.popular_scorer(spark, spark_models.popularity(data, config))  # type: ignore[arg-type]
        elif self.name == "rules":
            if data.baskets is None:
                raise ModelError("rules: the training data has no baskets")
            rules = spark_models.fit_rules(data, config)  # type: ignore[arg-type]
            self._scorer = spark_lists.rules_scorer(spark, rules.matrices, config, data.n_items)  # type: ignore[arg-type]
            self._binary = True
        elif self.name == "itemknn":
            self._scorer = spark_lists.sparse_scorer(spark, spark_models.fit_itemknn(data, config))  # type: ignore[arg-type]
        elif self.name == "als":
            als = spark_models.fit_als(data, config, self._spark_config.als_reg_param)  # type: ignore[arg-type]
            self._scorer = spark_lists.als_scorer(spark, als.item_factors, als.cold)
            self._extra, self._extra_columns = als.user_factors, ("features",)
        else:
            raise ConfigError(f"{self.name}: not run by the spark backend (Spark runs: {', '.join(SPARK_MODELS)})")
        self._data = data
        self._users = dataset.users

    def recommend(
        self,
        user_indices: np.ndarray | list[int] | int,
        n: int = 10,
        *,
        exclude_seen: bool = True,
        item_filter: np.ndarray | None = None,
        batch_size: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` for the given users, computed on Spark; shapes as the base class."""
        from pyspark.sql import functions as F

        self._require_fitted()
        if item_filter is not None:
            raise ModelError(f"{self.name}: item filters are not supported by the spark backend")
        users = self._check_indices(user_indices, self.n_users, "user")
        self._check_n(n)
        data = self._data
        assert data is not None
        wanted = self._spark.createDataFrame(pd.DataFrame({"u": users.astype(np.int64)}))
        subset = SparkDataset(
            pairs=data.pairs.join(F.broadcast(wanted), "u"),
            users=data.users.join(F.broadcast(wanted), "u"),
            items=data.items,
            n_users=len(users),
            catalog=data.catalog,
            baskets=data.baskets,
            n_baskets=data.n_baskets,
            trending=data.trending,
            interactions=data.interactions,
        )
        frame = spark_lists.user_lists(
            subset, self._scorer, n, exclude_seen=exclude_seen, configured_rows=self._spark_config.user_block_rows,
            binary=self._binary, extra=self._extra, extra_columns=self._extra_columns,
        ).toPandas()  # fmt: skip
        ids = np.full((len(users), n), -1, dtype=np.int32)
        scores = np.full((len(users), n), -np.inf, dtype=np.float32)
        if len(frame):
            rows = pd.Index(users).get_indexer(self._users.to_index(frame["key"].to_numpy(dtype=str)))
            lengths = frame["item_ids"].map(len).to_numpy()
            flat_items = data.items.to_index(np.concatenate(frame["item_ids"].to_numpy()).astype(str))
            flat_scores = np.concatenate(frame["scores"].to_numpy()).astype(np.float32)
            positions = np.arange(len(flat_items)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
            ids[np.repeat(rows, lengths), positions] = flat_items
            scores[np.repeat(rows, lengths), positions] = flat_scores
        return ids, scores

    def _score_users(self, user_indices: np.ndarray) -> np.ndarray:
        raise ModelError(f"{self.name}: the spark backend computes lists, not score blocks; use recommend()")

    def _score_items(self, item_indices: np.ndarray) -> np.ndarray:
        raise ModelError(f"{self.name}: the spark backend computes lists, not score blocks")

    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        raise ModelError(f"{self.name}: a model fitted on Spark is not saved locally; the run folder holds its lists")

    def _set_state(self, meta: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        raise ModelError(f"{self.name}: a model fitted on Spark cannot be loaded locally")


def spark_factories(
    names: Sequence[str], params: Mapping[str, Mapping[str, Any]], spark: SparkSession | None, spark_config: SparkConfig
) -> dict[str, Any]:
    """Evaluation-runner factories for the Spark twins, refused before work for other models
    (``spark`` None: only check the names and parameters)."""
    try:
        check_spark_models({name: dict(params.get(name, {})) for name in names})
    except ValueError as error:
        raise ConfigError(f"--backend spark: {error}") from None
    factories = {}
    for name in names:
        config = get_model_class(name).parse_config(dict(params.get(name, {})))
        factories[name] = lambda name=name, config=config: SparkRecommender(name, config, spark, spark_config)
    return factories
