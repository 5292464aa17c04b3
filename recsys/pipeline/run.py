"""Train + publish: one run of the batch retraining job, and its Redis connection."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from recsys.pipeline.config import PipelineConfig, parse_config
from recsys.pipeline.textfile import JobRecord, recorded
from recsys.pipeline.train import LoadedInput, train
from recsys.publish.publisher import Publisher, PublishResult
from recsys.runs.folder import RunFolder
from recsys.store.connection import connect
from recsys.store.keys import KeyLayout

log = logging.getLogger(__name__)


@dataclass
class PipelineResult:
    run_dir: Path
    publish: PublishResult
    #: What ran before training: queued erasures applied, events archived.
    prepared: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"run_dir": str(self.run_dir), **self.publish.to_json(), "prepared": self.prepared}


def connect_store(
    config: PipelineConfig, redis_url: str | None = None, prefix: str | None = None
) -> tuple[redis.Redis, KeyLayout]:
    """Client and key layout for the configured Redis (embedded when no URL is configured).

    Raises StoreError naming the URL within seconds when Redis does not answer.
    """
    return connect(config.redis_url(redis_url)), KeyLayout(config.key_prefix(prefix))


def make_publisher(
    config: PipelineConfig, client: redis.Redis, layout: KeyLayout, *, show_progress: bool | None = None
) -> Publisher:
    settings = config.publish
    return Publisher(
        client,
        layout,
        keep_versions=settings.keep_versions,
        batch_fields=settings.batch_fields,
        commands_per_flush=settings.commands_per_flush,
        lock_ttl_seconds=settings.lock_ttl_seconds,
        lock_wait_seconds=settings.lock_wait_seconds,
        show_progress=show_progress,
    )


def run_config(run: RunFolder) -> PipelineConfig:
    """The configuration a run was trained with (from its metadata).

    A Redis URL whose password was masked when stored is dropped (the environment or
    ``--redis`` then say where to publish).
    """
    document = dict(run.metadata.get("config", {}))
    redis_section = dict(document.get("redis") or {})
    if "***" in str(redis_section.get("url") or ""):
        redis_section["url"] = None
        document["redis"] = redis_section
    return parse_config(document, source=f"{run.path}/metadata.json")


def publish_run(
    run_dir: str | Path,
    *,
    config: PipelineConfig | None = None,
    redis_url: str | None = None,
    prefix: str | None = None,
    show_progress: bool | None = None,
) -> PublishResult:
    """``recsys publish RUN``: settings from ``config``, else from the run's own metadata."""
    run = RunFolder(run_dir)
    settings = config or run_config(run)
    with recorded(settings.metrics.textfile_dir, "publish") as record:
        client, layout = connect_store(settings, redis_url, prefix)
        result = make_publisher(settings, client, layout, show_progress=show_progress).publish_run(run)
        record.from_publish(result)
    return result


def train_run(
    config: PipelineConfig,
    out: str | Path | None = None,
    *,
    data: LoadedInput | None = None,
    events_client: redis.Redis | None = None,
    show_progress: bool | None = None,
    trainer: Callable[[PipelineConfig, str | Path | None], Path] | None = None,
) -> Path:
    """``recsys train``: a training run whose metrics go to ``[metrics] textfile_dir``;
    ``trainer(config, out)`` replaces the local training (the Spark backend's)."""
    with recorded(config.metrics.textfile_dir, "train") as record:
        return _train_once(config, out, record, data, events_client, show_progress, trainer)


def _train_once(
    config: PipelineConfig,
    out: str | Path | None,
    record: JobRecord,
    data: LoadedInput | None,
    events_client: redis.Redis | None,
    show_progress: bool | None,
    trainer: Callable[[PipelineConfig, str | Path | None], Path] | None,
) -> Path:
    """One training run (local, or ``trainer``'s), its metadata noted into ``record``."""
    if trainer is not None:
        run_dir = trainer(config, out)
    else:
        run_dir = train(config, out, data=data, events_client=events_client, show_progress=show_progress)
    with open(Path(run_dir) / "metadata.json", encoding="utf-8") as handle:
        record.from_run_metadata(json.load(handle))
    return run_dir


def prepare_training(
    config: PipelineConfig, client: redis.Redis, layout: KeyLayout, *, runs_root: Path | None = None
) -> dict[str, Any]:
    """Before each training: scrub the folders of erasures asked through the API, then
    move the stream into the event archive (when ``[events] archive`` is set)."""
    from recsys.events.archive import archive_events
    from recsys.privacy.forget import apply_pending

    archive = config.events.archive
    report: dict[str, Any] = {
        "erasures": apply_pending(client, layout, runs_root=runs_root or Path(config.training.out), archive_root=archive)
    }
    if archive and config.events.before_training:
        result = archive_events(client, layout, archive, batch=config.events.batch, trim=config.events.trim_stream)
        report["archive"] = result.to_json()
    return report


def run_pipeline(
    config: PipelineConfig,
    *,
    out: str | Path | None = None,
    redis_url: str | None = None,
    prefix: str | None = None,
    data: LoadedInput | None = None,
    show_progress: bool | None = None,
    trainer: Callable[[PipelineConfig, str | Path | None], Path] | None = None,
) -> PipelineResult:
    """Train, then publish the run as the new live version.

    Redis is reached first, so an unreachable server fails in seconds, before any training.
    ``trainer(config, out)`` replaces the local training run (the Spark backend's).
    """
    with recorded(config.metrics.textfile_dir, "train") as record:
        client, layout = connect_store(config, redis_url, prefix)
        prepared = prepare_training(config, client, layout, runs_root=Path(out) if out is not None else None)
        run_dir = _train_once(config, out, record, data, client, show_progress, trainer)
    with recorded(config.metrics.textfile_dir, "publish") as record:
        result = make_publisher(config, client, layout, show_progress=show_progress).publish_run(run_dir)
        record.from_publish(result)
    return PipelineResult(run_dir, result, prepared)
