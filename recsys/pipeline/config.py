"""The batch job's configuration: one TOML file, validated whole before any work starts.

Every section is a pydantic model with ``extra="forbid"``; each ``[models.<name>]`` table is
validated by that model's own config class (``get_model_class(name).config_class``). Any
problem raises :class:`~recsys.errors.ConfigError` naming the key path
(``models.als.factors``) and what is allowed.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from recsys.data.mapping import DataMapping
from recsys.data.matrix import Weighting
from recsys.errors import ConfigError
from recsys.models.base import ModelConfig
from recsys.models.registry import MODELS, get_model_class
from recsys.pipeline.schedule import parse_interval
from recsys.store.connection import URL_ENV
from recsys.store.keys import DEFAULT_PREFIX, PREFIX_ENV

DATA_FORMATS = ("auto", "csv", "parquet", "movielens-100k", "movielens-latest")
DataFormat = Literal["auto", "csv", "parquet", "movielens-100k", "movielens-latest"]

# Left out of the default similar-items lists: popular ranks every item alike, and the
# rules model's item lists are published as bought-together.
NOT_SIMILAR = frozenset({"popular", "rules"})
BACKENDS = ("local", "spark")
# The models the Spark backend (recsys.spark) runs; any other is refused before work starts.
SPARK_MODELS = ("als", "rules", "popular", "itemknn")

# publish.default_model value: the served model is chosen by [selection].
AUTO = "auto"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EventsConfig(Section):
    """``[data.events]``: logged API events read back from the Redis events stream."""

    from_redis: bool = Field(False, description="append the events stream to the interactions")
    max_events: int | None = Field(None, ge=1, description="read at most the newest N events; None = all")
    unknown_items: Literal["drop", "keep"] = Field(
        "drop",
        description="events of items in neither the catalogue nor the live version's catalogue: drop "
        "(stored by the API, never counted into popularity or training) or keep",
    )


class EventArchiveConfig(Section):
    """``[events]``: the event archive (append-only Parquet, one folder a day), see
    :mod:`recsys.events.archive`."""

    archive: str | None = Field(None, description='archive folder (e.g. "events/"); None = no archive')
    trim_stream: bool = Field(True, description="remove archived entries from the Redis stream")
    batch: int = Field(10_000, ge=1, le=1_000_000, description="stream entries per archive file (at most)")
    before_training: bool = Field(True, description="the pipeline and the scheduled job archive before each training")


class DataConfig(DataMapping):
    """``[data]``: where interactions and the catalogue come from, how to read the shop's
    columns, event names, dates and cancellations (the keys of
    :class:`~recsys.data.mapping.DataMapping`), and how strictly to check them."""

    path: str | None = Field(None, description="file or folder of interactions")
    format: DataFormat = "auto"
    catalog: str | None = Field(None, description="catalogue file; None = the one beside the data, if any")
    validation: Literal["strict", "lenient"] = "lenient"
    events: EventsConfig = Field(default_factory=EventsConfig)


class TrainingConfig(Section):
    """``[training]``: what happens around model fitting."""

    out: str = Field("runs", description="folder that receives the run folders")
    keep_runs: int = Field(5, ge=1, description="completed run folders kept in `out`; older ones are removed")
    if_data_missing: Literal["skip", "fail"] = Field(
        "skip", description="a model whose data (ratings, baskets, catalog) is absent: skip it or fail"
    )
    basket_event_types: list[str] | None = Field(None, description="event types that form baskets; None = all")
    trending_half_life_days: float = Field(7.0, gt=0)
    threads: int = Field(
        0, ge=0, description="threads that fit models and compute their lists (and implicit's num_threads); 0 = all cores"
    )
    backend: Literal["local", "spark"] = Field(
        "local", description="local = this machine (numpy, implicit); spark = a Spark cluster ([spark] section)"
    )


class SparkConfig(Section):
    """``[spark]``: the Spark session of ``[training] backend = "spark"`` (see docs/spark.md).

    ``conf`` is passed to the session builder as it is (``spark.executor.memory``,
    ``spark.archives`` for a packed Python environment, ``spark.kubernetes.container.image``...).
    """

    master: str = Field("local[*]", description="local[*], spark://host:7077, yarn, k8s://https://host:443")
    app_name: str = Field("recsys", min_length=1)
    conf: dict[str, str | int | float | bool] = Field(default_factory=dict, description="Spark properties, passed through")
    als_reg_param: float = Field(
        0.5, ge=0, description="MLlib ALS regParam (scaled by each user's and item's count, unlike implicit's)"
    )
    user_block_rows: int = Field(2048, ge=1, description="users per block when top-N lists are scored on executors")


class ListsConfig(Section):
    """``[lists]``: which precomputed lists are built and how long they are."""

    user_models: list[str] | None = Field(None, description="models with a top-N per user; None = every model")
    similar_models: list[str] | None = Field(
        None, description="models with similar items per item; None = every model except popular and rules"
    )
    together: bool = Field(True, description="bought-together per item (needs the rules model)")
    popular: bool = Field(True, description="popular overall (and per category)")
    popular_by_category: bool = True
    user_n: int = Field(20, ge=1, le=1000)
    similar_n: int = Field(20, ge=1, le=1000)
    together_n: int = Field(10, ge=1, le=1000)
    popular_n: int = Field(50, ge=1, le=10000)
    exclude_seen: bool = Field(True, description="leave items a user already has out of their list")
    reasons: bool = Field(
        True,
        description="user lists of models that explain (itemknn, ease, rules, content, ranker) carry each "
        "entry's because item (the seen item that contributes most to its score)",
    )
    active_within_days: float | None = Field(
        None,
        gt=0,
        description="per-user lists only for users with an event in the N days before the newest event of the data; "
        "the others get the fallback at serve time. None = every user",
    )


class RedisConfig(Section):
    """``[redis]``: where lists are published. Environment variables override the file."""

    url: str | None = Field(None, description=f"None = ${URL_ENV}, else the embedded Redis")
    key_prefix: str | None = Field(None, description=f"None = ${PREFIX_ENV}, else {DEFAULT_PREFIX!r}")


class PublishConfig(Section):
    """``[publish]``: versioning and write batching."""

    default_model: str | None = Field(
        "auto",
        description='model the API serves; "auto" = chosen on a holdout of the data ([selection]); None = the first user model',
    )
    keep_versions: int = Field(3, ge=1, description="completed versions kept (the live one is never deleted)")
    batch_fields: int = Field(1000, ge=1, le=100_000, description="hash fields per HSET command")
    commands_per_flush: int = Field(20, ge=1, le=10_000, description="commands per pipeline round trip")
    lock_ttl_seconds: float = Field(60.0, gt=0, description="publish lock expiry, renewed while writing")
    lock_wait_seconds: float = Field(10.0, ge=0, description="how long to wait for another publisher")


class EvaluationConfig(Section):
    """``[evaluation]``: optional holdout metrics written into the run's metadata."""

    enabled: bool = False
    split: Literal["stratified", "temporal", "leave-last"] = "stratified"
    test_size: float = Field(0.25, gt=0, lt=1)
    k: int = Field(10, ge=1)
    seed: int = 42


class SelectionConfig(Section):
    """``[selection]``: the served model is chosen on a temporal holdout of the shop's own data.

    Every candidate is fitted on the older part and scored on the newest part; the best is
    published as the default (``publish.default_model = "auto"``). ``popular`` is always a
    candidate, so the served model never scores below popularity. Ties go to popular, then
    to the model configured first. The holdout is the newest ``holdout_fraction`` of the
    rows and/or the last ``holdout_days`` days (both given: the smaller of the two).
    """

    enabled: bool = Field(True, description="false = serve publish.default_model, else the first user model, unscored")
    candidates: list[str] | None = Field(None, description="models compared; None = every configured model with user lists")
    holdout_fraction: float | None = Field(0.2, gt=0, lt=1, description="newest share of the rows held out")
    holdout_days: float | None = Field(None, gt=0, description="hold out the last N days instead (or as well)")
    metric: str = Field("ndcg@10", description="what is compared: a ranking metric name@k (ndcg, map, recall...)")
    max_users: int | None = Field(
        20_000, gt=0, description="score a seeded sample of this many holdout users; None = every holdout user"
    )
    max_fit_users: int | None = Field(
        50_000,
        gt=0,
        description="fit the candidates on a seeded sample of this many training users (the scored ones among "
        "them); None = every user",
    )
    budget_seconds: float | None = Field(
        None, gt=0, description="also try a small parameter grid per model within this many seconds; None = defaults only"
    )

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, metric: str) -> str:
        from recsys.evaluation.metrics import RATING_METRICS
        from recsys.evaluation.tuning import parse_metric

        try:
            base, _, _ = parse_metric(metric)
        except ConfigError as error:
            raise ValueError(str(error)) from None
        if base in RATING_METRICS:
            raise ValueError(f"{metric!r} scores rating predictions, not top-N lists; use a ranking metric such as ndcg@10")
        return metric

    @model_validator(mode="after")
    def _some_holdout(self) -> SelectionConfig:
        if self.holdout_fraction is None and self.holdout_days is None:
            raise ValueError("selection: set holdout_fraction, holdout_days or both")
        return self


class ScheduleConfig(Section):
    """``[schedule]``: how often the retraining job (``python -m jobs.retrain``) runs."""

    every: str | None = Field(None, description='interval such as "6h", "30m", "1d"; None = once')

    @field_validator("every")
    @classmethod
    def _valid_interval(cls, every: str | None) -> str | None:
        if every is not None:
            try:
                parse_interval(every)
            except ConfigError as error:
                raise ValueError(str(error)) from None
        return every


class MetricsConfig(Section):
    """``[metrics]``: batch-job metrics for Prometheus (node_exporter's textfile collector)."""

    textfile_dir: str | None = Field(
        None, description="folder for recsys_train.prom / recsys_publish.prom; None = no files"
    )


class SegmentsSection(Section):
    """``[segments]``: customer segments (recsys.marketing.segments) computed by each run, with
    a popular list per segment that the API serves to a known user without a list of their own."""

    enabled: bool = Field(False, description="compute segments and per-segment popular lists in every run")
    k: int | Literal["auto"] = Field("auto", description="number of segments, or auto (best silhouette)")
    k_max: int = Field(8, ge=2, le=50, description="largest k tried by auto")
    categories: int = Field(5, ge=0, le=50, description="category-share features for the largest N categories")
    seed: int = 0
    min_customers: int = Field(20, ge=2, description="fewer customers with purchases: no segments (a warning)")
    popular_n: int = Field(50, ge=1, le=10000, description="length of each segment's popular list")

    @field_validator("k")
    @classmethod
    def _k(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 2:
            raise ValueError(f"k must be 2 or more, or 'auto' (got {value})")
        return value


class PipelineConfig(Section):
    """The whole file. ``models`` maps registry name -> parameters (validated per model)."""

    data: DataConfig = Field(default_factory=DataConfig)
    weighting: Weighting = Field(default_factory=Weighting)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    models: dict[str, dict[str, Any]] = Field(default_factory=lambda: {"popular": {}})
    lists: ListsConfig = Field(default_factory=ListsConfig)
    spark: SparkConfig = Field(default_factory=SparkConfig)
    redis: RedisConfig = Field(default_factory=RedisConfig)
    publish: PublishConfig = Field(default_factory=PublishConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    events: EventArchiveConfig = Field(default_factory=EventArchiveConfig)
    segments: SegmentsSection = Field(default_factory=SegmentsSection)

    @model_validator(mode="after")
    def _cross_check(self) -> PipelineConfig:
        if not self.models:
            raise ValueError("models: no model configured (add a [models.<name>] table)")
        names = list(self.models)
        for key, chosen in (("lists.user_models", self.lists.user_models), ("lists.similar_models", self.lists.similar_models)):
            unknown = [m for m in chosen or [] if m not in self.models]
            if unknown:
                raise ValueError(f"{key}: {unknown} not configured (configured models: {', '.join(names)})")
        if self.training.backend == "spark":
            check_spark_models(self.models)
            if self.segments.enabled:
                raise ValueError("segments.enabled: only the local backend computes segments (training.backend = \"local\")")
        users = self.user_models()
        if self.publish.default_model not in (None, AUTO) and self.publish.default_model not in users:
            raise ValueError(
                f"publish.default_model: {self.publish.default_model!r} has no user lists "
                f"(allowed: {AUTO!r}, {', '.join(users) or 'none'})"
            )
        unknown = [m for m in self.selection.candidates or [] if m not in users and m != "popular"]
        if unknown:
            raise ValueError(
                f"selection.candidates: {unknown} have no user lists (allowed: popular, {', '.join(users) or 'none'})"
            )
        return self

    # ------------------------------------------------------------ derived
    def user_models(self) -> list[str]:
        """Models whose top-N per user is published, in configuration order."""
        return list(self.lists.user_models) if self.lists.user_models is not None else list(self.models)

    def similar_models(self) -> list[str]:
        if self.lists.similar_models is not None:
            return list(self.lists.similar_models)
        return [m for m in self.models if m not in NOT_SIMILAR]

    def default_model(self) -> str | None:
        """The configured default model; "auto" and None give the first user model (before
        selection, which may replace it: see recsys.pipeline.selection)."""
        users = self.user_models()
        if self.publish.default_model not in (None, AUTO):
            return self.publish.default_model
        return users[0] if users else None

    def model_configs(self) -> dict[str, ModelConfig]:
        """Every configured model's typed config, validated by the model's class."""
        return {name: _model_config(name, params) for name, params in self.models.items()}

    def redis_url(self, override: str | None = None) -> str | None:
        """Command line, then ``RECSYS_REDIS_URL``, then the file; None = embedded Redis."""
        return override or os.environ.get(URL_ENV) or self.redis.url or None

    def key_prefix(self, override: str | None = None) -> str:
        """Command line, then ``RECSYS_KEY_PREFIX``, then the file, then ``recsys:``."""
        return override or os.environ.get(PREFIX_ENV) or self.redis.key_prefix or DEFAULT_PREFIX

    def with_backend(self, backend: str | None) -> PipelineConfig:
        """A copy trained by ``backend`` (``--backend``), re-validated (Spark refuses the
        models it does not run)."""
        if backend is None or backend == self.training.backend:
            return self
        document = self.model_dump()
        document["training"] = {**document["training"], "backend": backend}
        return parse_config(document, source="command line")

    def with_data(self, path: str | None = None, format: str | None = None) -> PipelineConfig:
        """A copy whose data source is overridden (``--data`` / ``--format``), re-validated."""
        if path is None and format is None:
            return self
        data = self.data.model_dump()
        if path is not None:
            data["path"] = str(path)
            # A catalogue configured for another data source does not belong to this one.
            data["catalog"] = None
        if format is not None:
            data["format"] = format
        document = self.model_dump()
        document["data"] = data
        return parse_config(document, source="command line")


def check_spark_models(models: dict[str, dict[str, Any]]) -> None:
    """Refuse, before any work, what the Spark backend does not run (ValueError naming the key)."""
    for name, params in models.items():
        if name not in SPARK_MODELS:
            raise ValueError(
                f"models.{name}: not run by training.backend = \"spark\" (Spark runs: {', '.join(SPARK_MODELS)})"
            )
        params = params if isinstance(params, dict) else {}
        if name == "rules" and params.get("max_itemset_size", 2) != 2:
            raise ValueError("models.rules.max_itemset_size: Spark mines pair rules only (set it to 2)")
        if name == "itemknn" and params.get("similarity", "bm25") != "cosine":
            raise ValueError(
                "models.itemknn.similarity: Spark computes exact cosine only "
                f"(got {params.get('similarity', 'bm25')!r}, the local default is bm25; set \"cosine\")"
            )


def _model_config(name: str, params: dict[str, Any]) -> ModelConfig:
    if name not in MODELS:
        raise ConfigError(f"models.{name}: unknown model (allowed: {', '.join(MODELS)})")
    try:
        model_class = get_model_class(name)
    except ModuleNotFoundError as error:
        raise ConfigError(f"models.{name}: model not available in this installation ({error})") from None
    if not isinstance(params, dict):
        raise ConfigError(f"models.{name}: expected a table of parameters, got {params!r}")
    try:
        return model_class.config_class(**params)
    except ValidationError as error:
        raise ConfigError(_format_errors(error, model_class.config_class, root=f"models.{name}")) from None
    except ConfigError as error:  # nested validation (e.g. a blend's components)
        raise ConfigError(f"models.{name}: {error}") from None


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    """Allowed keys of the table that ``loc`` points into (for 'unknown key' messages)."""
    current: Any = model
    for part in loc[:-1]:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(str(part))
        if field is None:
            return None
        current = field.annotation
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return None


def _format_errors(error: ValidationError, model: type[BaseModel], root: str = "") -> str:
    parts = []
    for problem in error.errors():
        loc = tuple(problem["loc"])
        path = ".".join([root, *map(str, loc)] if root else map(str, loc)) or root or "config"
        if problem["type"] == "extra_forbidden":
            allowed = _fields_at(model, loc)
            parts.append(f"{path}: unknown key" + (f" (allowed: {', '.join(allowed)})" if allowed else ""))
        elif problem["type"] == "value_error" and not loc:
            # Cross-field checks already name their key path.
            parts.append(str(problem["msg"]).removeprefix("Value error, "))
        else:
            message = str(problem["msg"]).removeprefix("Value error, ")
            parts.append(f"{path}: {message} (got {problem.get('input')!r})")
    return "; ".join(parts)


def parse_config(document: dict[str, Any], source: str = "configuration") -> PipelineConfig:
    """Validate a configuration document (the parsed TOML) and every model's parameters."""
    try:
        config = PipelineConfig(**document)
    except ValidationError as error:
        raise ConfigError(f"{source}: {_format_errors(error, PipelineConfig)}") from None
    try:
        config.model_configs()
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None
    return config


def load_config(path: str | Path | None) -> PipelineConfig:
    """Read and validate a TOML file; None gives the defaults (popular model only)."""
    if path is None:
        return parse_config({}, source="defaults")
    file = Path(path)
    try:
        with open(file, "rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{file}: configuration file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{file}: is a folder, expected a TOML file") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{file}: invalid TOML: {error}") from None
    config = parse_config(document, source=str(file))
    # Relative paths (data, catalogue, runs folder) are relative to the file, not the working folder.
    return _resolve_paths(config, file.resolve().parent)


def _resolve_paths(config: PipelineConfig, base: Path) -> PipelineConfig:
    def resolved(value: str | None) -> str | None:
        # URIs (hdfs://, s3a://, file://) are read by Spark as they are.
        if value and "://" not in value and not Path(value).expanduser().is_absolute():
            return str(base / value)
        return value

    data = config.data.model_copy(update={"path": resolved(config.data.path), "catalog": resolved(config.data.catalog)})
    training = config.training.model_copy(update={"out": resolved(config.training.out)})
    metrics = config.metrics.model_copy(update={"textfile_dir": resolved(config.metrics.textfile_dir)})
    events = config.events.model_copy(update={"archive": resolved(config.events.archive)})
    return config.model_copy(update={"data": data, "training": training, "metrics": metrics, "events": events})
