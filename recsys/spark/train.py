"""The training run on Spark: the twin of :func:`recsys.pipeline.train.train`.

Same configuration, same validation, same run folder (format version 2): the executors
write every list as Parquet into ``<out>/.tmp-<run id>/lists/<name>/``; the driver writes
``catalog.parquet`` and ``metadata.json`` and renames the folder to ``<out>/<run id>/``
when everything is written. ``recsys publish`` then reads it as any other run; the driver
alone takes the publish lock and switches ``live``. ``out`` must be a folder the driver and
the executors both see (one machine, or a shared file system).
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recsys.data import schema
from recsys.errors import ConfigError, DataError
from recsys.models.als import ALSConfig
from recsys.models.itemknn import ItemKNNConfig
from recsys.models.popular import PopularConfig
from recsys.models.rules import RulesConfig
from recsys.runs.folder import CATALOG_FILE, RUN_FORMAT_VERSION
from recsys.runs.folder import write_catalog as write_catalog_table
from recsys.pipeline.config import SPARK_MODELS, PipelineConfig
from recsys.pipeline.train import Timer, _jsonable, _tombstones, popular_lists, stored_config, write_run
from recsys.spark import lists as spark_lists
from recsys.spark import models as spark_models
from recsys.spark.dataset import SparkDataset, build_dataset
from recsys.spark.load import SparkInput, read_interactions
from recsys.spark.session import spark_session

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)



def check_models(config: PipelineConfig) -> None:
    """ConfigError before any work when a configured model is not one Spark runs."""
    other = [name for name in config.models if name not in SPARK_MODELS]
    if other:
        raise ConfigError(
            f"models.{other[0]}: not run by training.backend = \"spark\" (Spark runs: {', '.join(SPARK_MODELS)})"
        )


def train_spark(config: PipelineConfig, out: str | Path | None = None, *, spark: SparkSession | None = None) -> Path:
    """Run the training job on Spark; the path of the completed run folder.

    ``spark``: an existing session (tests); by default one is started from ``[spark]`` and
    stopped at the end.
    """
    check_models(config)
    if not config.data.path:
        raise ConfigError("data.path: no data source configured (set it in the file or pass --data)")
    if config.data.events.from_redis:
        raise ConfigError("data.events.from_redis: not read by the spark backend (export the events to the data path)")
    if config.evaluation.enabled:
        raise ConfigError("evaluation.enabled: use `recsys evaluate --backend spark` for holdout metrics on Spark")
    if getattr(config.lists, "active_within_days", None) is not None:
        raise ConfigError("lists.active_within_days: not applied by the spark backend (every user gets a list)")

    def build(folder: Path, run_id: str, timer: Timer) -> dict[str, Any]:
        if spark is not None:
            metadata = _train_into(spark, folder.resolve(), run_id, config, timer)
        else:
            with ExitStack() as stack:
                with timer.step("spark.start"):
                    session = stack.enter_context(spark_session(config.spark))
                metadata = _train_into(session, folder.resolve(), run_id, config, timer)
        metadata["timings"] = timer.seconds
        return metadata

    return write_run(config, out, build)


def load_dataset(
    spark: SparkSession, config: PipelineConfig, timer: Timer, forgotten: set[str] | None = None
) -> tuple[SparkInput, SparkDataset]:
    """Read, validate and index the configured data on Spark; rows of ``forgotten`` users
    (tombstones) are dropped before anything is built, counted in ``loaded.source``."""
    with timer.step("load") as info:
        loaded = read_interactions(
            spark,
            config.data.path or "",
            config.data.format,
            config.data.catalog,
            strict=config.data.validation == "strict",
            mapping=config.data,
        )
        info["catalog_items"] = len(loaded.catalog) if loaded.catalog is not None else 0
    rows, users = 0, 0
    if forgotten:
        loaded.interactions, rows, users = drop_forgotten_users(loaded.interactions, forgotten)
    loaded.source["forgotten"] = {"tombstones": len(forgotten or ()), "rows_dropped": rows, "users_dropped": users}
    with timer.step("dataset") as info:
        dataset = build_dataset(
            loaded.interactions,
            loaded.columns,
            loaded.catalog,
            config.weighting,
            basket_event_types=tuple(config.training.basket_event_types) if config.training.basket_event_types else None,
            trending_half_life_days=config.training.trending_half_life_days,
        )
        info.update(interactions=dataset.interactions, users=dataset.n_users, items=dataset.n_items)
    return loaded, dataset


def write_list(frame: DataFrame, folder: Path, kind: str, model: str | None, n: int) -> dict[str, Any]:
    """Write one list with Spark's Parquet writer; its metadata.json entry."""
    name = f"{kind}.{model}" if model else kind
    relative = f"lists/{name}"
    frame = frame.cache()
    frame.write.mode("overwrite").parquet((folder / relative).as_uri())
    rows = frame.count()
    frame.unpersist()
    return {"kind": kind, "model": model, "path": relative, "rows": int(rows), "n": n}


def write_catalog(dataset: SparkDataset, path: Path) -> None:
    """catalog.parquet: one row per item the run knows (every item of the id map), written
    as the local backend writes it."""
    from recsys.data.dataset import align_catalog

    catalog = dataset.catalog if dataset.catalog is not None else align_catalog(pd.DataFrame({schema.ITEM_ID: []}), dataset.items)
    write_catalog_table(catalog, path)


def drop_forgotten_users(frame: DataFrame, hashes: set[str]) -> tuple[DataFrame, int, int]:
    """Rows of users with a tombstone removed, hashed in Spark SQL as
    :func:`recsys.privacy.tombstones.hash_user_id` hashes (rows dropped, users dropped)."""
    from pyspark.sql import functions as F

    from recsys.privacy.tombstones import SALT

    if not hashes:
        return frame, 0, 0
    stones = frame.sparkSession.createDataFrame(pd.DataFrame({"__stone": sorted(hashes)}), "__stone string")
    marked = frame.withColumn("__stone", F.sha2(F.concat(F.lit(SALT.decode("utf-8")), F.col(schema.USER_ID)), 256))
    hit = marked.join(F.broadcast(stones), "__stone", "left_semi")
    counts = hit.agg(F.count("*"), F.countDistinct(schema.USER_ID)).first()
    kept = marked.join(F.broadcast(stones), "__stone", "left_anti").drop("__stone")
    return kept, int(counts[0]), int(counts[1])


def _train_into(spark: SparkSession, folder: Path, run_id: str, config: PipelineConfig, timer: Timer) -> dict[str, Any]:
    model_configs = config.model_configs()
    with timer.step("forgotten") as info:
        hashes = _tombstones(config, folder.parent, None)
        info["tombstones"] = len(hashes)
    loaded, dataset = load_dataset(spark, config, timer, hashes)
    if dataset.pairs.limit(1).count() == 0:
        raise DataError("every interaction has weight 0 (check [weighting] event_weights): nothing to learn from")

    skipped: dict[str, str] = {}
    if "rules" in model_configs and (dataset.baskets is None or dataset.n_baskets == 0):
        reason = "needs baskets, which the data has none of"
        if config.training.if_data_missing == "fail":
            raise DataError(f"models.rules: {reason} (set training.if_data_missing = \"skip\" to skip it)")
        log.warning("skipping model rules: %s", reason)
        skipped["rules"] = reason
    fitted = [name for name in model_configs if name not in skipped]
    if not fitted:
        raise DataError(f"no configured model can train on this data ({'; '.join(f'{k}: {v}' for k, v in skipped.items())})")
    user_models = [m for m in config.user_models() if m in fitted]
    similar_models = [m for m in config.similar_models() if m in fitted]
    default_model = config.default_model()
    if default_model in skipped:
        if config.publish.default_model is not None:
            raise DataError(f"publish.default_model: {default_model} cannot train here ({skipped[default_model]})")
        default_model = user_models[0] if user_models else None

    with timer.step("catalog"):
        write_catalog(dataset, folder / CATALOG_FILE)
    lists_cfg = config.lists
    rows = config.spark.user_block_rows
    item_ids = dataset.items.ids
    entries: list[dict[str, Any]] = []
    models_meta: dict[str, Any] = {}
    popularity: np.ndarray | None = None
    for name in fitted:
        model_config = model_configs[name]
        scorer = similar = None
        extra, extra_columns, binary = None, (), False
        with timer.step(f"fit.{name}") as info:
            if name == "popular":
                assert isinstance(model_config, PopularConfig)
                popularity = spark_models.popularity(dataset, model_config)
                scorer = spark_lists.popular_scorer(spark, popularity)
            elif name == "rules":
                assert isinstance(model_config, RulesConfig)
                rules = spark_models.fit_rules(dataset, model_config)
                scorer = spark_lists.rules_scorer(spark, rules.matrices, model_config, dataset.n_items)
                binary = True
                info["rules"] = int(rules.matrices["confidence"].nnz)
            elif name == "itemknn":
                assert isinstance(model_config, ItemKNNConfig)
                similarity = spark_models.fit_itemknn(dataset, model_config)
                scorer = spark_lists.sparse_scorer(spark, similarity)
                similar = spark_lists.sparse_similar(spark, similarity)
            elif name == "als":
                assert isinstance(model_config, ALSConfig)
                als = spark_models.fit_als(dataset, model_config, config.spark.als_reg_param)
                scorer = spark_lists.als_scorer(spark, als.item_factors, als.cold)
                similar = spark_lists.als_similar(spark, als.item_factors, als.cold)
                extra, extra_columns = als.user_factors, ("features",)
        models_meta[name] = {"config": model_config.model_dump(mode="json"), "fit_seconds": timer.seconds[f"fit.{name}"]}
        if name == "als":
            models_meta[name]["spark"] = {"reg_param": config.spark.als_reg_param}
        if name in user_models and scorer is not None:
            with timer.step(f"lists.user.{name}") as info:
                frame = spark_lists.user_lists(
                    dataset, scorer, lists_cfg.user_n, exclude_seen=lists_cfg.exclude_seen,
                    configured_rows=rows, binary=binary, extra=extra, extra_columns=extra_columns,
                )  # fmt: skip
                entries.append(write_list(frame, folder, "user", name, lists_cfg.user_n))
                info["rows"] = entries[-1]["rows"]
        if name in similar_models and similar is not None:
            with timer.step(f"lists.similar.{name}") as info:
                frame = spark_lists.similar_lists(spark, item_ids, similar, lists_cfg.similar_n, spark_lists.block_rows(dataset.n_items, rows))
                entries.append(write_list(frame, folder, "similar", name, lists_cfg.similar_n))
                info["rows"] = entries[-1]["rows"]
        if name == "rules" and lists_cfg.together:
            with timer.step("lists.together") as info:
                assert isinstance(model_config, RulesConfig)
                frame = spark_lists.together_lists(rules.table, item_ids, lists_cfg.together_n, model_config.rank_by)
                entries.append(write_list(frame, folder, "together", None, lists_cfg.together_n))
                info["rows"] = entries[-1]["rows"]

    if lists_cfg.popular:
        with timer.step("lists.popular") as info:
            if popularity is None:
                popularity = spark_models.popularity(dataset, PopularConfig())
            categories = (
                dataset.catalog[schema.CATEGORY].to_numpy(dtype=str)
                if dataset.catalog is not None and lists_cfg.popular_by_category
                else None
            )
            arrays = popular_lists(popularity, categories, lists_cfg.popular_n)
            batch = spark_lists.list_arrays(arrays.labels, arrays.ids, arrays.scores, item_ids)
            frame = spark.createDataFrame(batch.to_pandas(), spark_lists.LIST_SCHEMA)
            entries.append(write_list(frame.coalesce(1), folder, "popular", None, lists_cfg.popular_n))
            info["categories"] = entries[-1]["rows"] - 1

    forgotten = loaded.source.pop("forgotten")
    return {
        "format_version": RUN_FORMAT_VERSION,
        "run": run_id,
        "backend": "spark",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": _jsonable(loaded.source),
        "catalog": CATALOG_FILE,
        "counts": {
            "interactions": dataset.interactions,
            "events": 0,
            "users": dataset.n_users,
            "items": dataset.n_items,
            "nnz": int(dataset.pairs.count()),
            "baskets": dataset.n_baskets,
            "catalog_items": int(len(loaded.catalog)) if loaded.catalog is not None else 0,
        },
        "validation": _jsonable(loaded.report),
        "forgotten": forgotten,
        "spark": {"master": spark.sparkContext.master, "app_id": spark.sparkContext.applicationId, "version": spark.version},
        "config": stored_config(config),
        "models": models_meta,
        "skipped": skipped,
        "default_model": default_model,
        "lists": entries,
        "evaluation": None,
    }
