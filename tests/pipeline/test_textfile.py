"""Batch-job metrics in node_exporter's textfile format: written per run, counters carried."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from recsys.errors import DataError
from recsys.pipeline.run import run_pipeline
from recsys.pipeline.textfile import JobRecord, recorded, textfile_path, write_job_metrics
from recsys.pipeline.train import LoadedInput
from tests.models.contract import cluster_interactions
from tests.pipeline.test_train import config_for


@pytest.fixture(scope="module")
def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    return cluster_interactions()


def samples(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a metrics file, keyed by (name, sorted labels)."""
    out = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(path: Path, name: str, **labels: str) -> float:
    return samples(path)[(name, tuple(sorted({"job": path.stem.removeprefix("recsys_"), **labels}.items())))]


def test_counters_carried_and_last_success_kept_on_failure(tmp_path: Path) -> None:
    record = JobRecord()
    record.steps["fit.als"] = 1.5
    path = write_job_metrics(tmp_path, "train", record, success=True, started=100.0, finished=160.0)
    assert path == textfile_path(tmp_path, "train")
    assert value(path, "recsys_job_runs_total") == 1
    assert value(path, "recsys_job_failures_total") == 0
    assert value(path, "recsys_job_last_success_timestamp_seconds") == 160.0
    assert value(path, "recsys_job_duration_seconds") == 60.0
    assert value(path, "recsys_train_step_seconds", step="fit.als") == 1.5

    write_job_metrics(tmp_path, "train", JobRecord(), success=False, started=200.0, finished=210.0)
    assert value(path, "recsys_job_runs_total") == 2
    assert value(path, "recsys_job_failures_total") == 1
    assert value(path, "recsys_job_last_success_timestamp_seconds") == 160.0  # kept
    assert value(path, "recsys_job_last_run_timestamp_seconds") == 210.0
    assert value(path, "recsys_job_last_run_success") == 0
    assert not list(tmp_path.glob("*.tmp*"))  # written atomically, no temporary file left


def test_recorded_writes_on_failure_and_reraises(tmp_path: Path) -> None:
    with pytest.raises(DataError):
        with recorded(tmp_path, "publish"):
            raise DataError("boom")
    assert value(textfile_path(tmp_path, "publish"), "recsys_job_failures_total") == 1
    with recorded(None, "publish"):  # no folder configured: nothing written, nothing raised
        pass


def test_unwritable_folder_never_fails_the_job(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with recorded(blocker / "sub", "train") as record:
        record.steps["x"] = 1.0  # the job itself succeeds


def test_pipeline_writes_train_and_publish_metrics(
    tmp_path: Path, redis_client: redis.Redis, redis_url: str, key_prefix: str, frames: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    interactions, catalog = frames
    dropped = {"files": [{"table": "interactions", "dropped": {"missing_user": 3}}]}
    config = config_for(models={"popular": {}}, metrics={"textfile_dir": str(tmp_path / "metrics")})
    run_pipeline(
        config, out=tmp_path / "runs", redis_url=redis_url, prefix=key_prefix,
        data=LoadedInput(interactions, catalog, report=dropped),
    )
    train_file = textfile_path(tmp_path / "metrics", "train")
    publish_file = textfile_path(tmp_path / "metrics", "publish")
    assert value(train_file, "recsys_job_last_run_success") == 1
    assert value(train_file, "recsys_train_step_seconds", step="fit.popular") >= 0
    assert value(train_file, "recsys_train_rows", what="users") == interactions["user_id"].nunique()
    assert value(train_file, "recsys_train_rows_dropped", table="interactions", reason="missing_user") == 3
    assert value(publish_file, "recsys_publish_lists") > 0
    assert value(publish_file, "recsys_job_runs_total") == 1
