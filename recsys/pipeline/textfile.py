"""Batch-job metrics for Prometheus, as files that node_exporter's textfile collector reads.

Each run of ``recsys train``, ``publish`` or ``pipeline`` (and the scheduled job) writes
``<metrics.textfile_dir>/recsys_<job>.prom`` in the Prometheus text format, atomically (a
temporary file renamed over the old one, so the collector never reads half a file). The
counters that must survive between runs (runs, failures, the last success time) are read
back from the previous file and carried forward: a failed run keeps the last success time,
which is what the "no successful run" alert watches.

Metrics (``job`` = train | publish):

* ``recsys_job_runs_total``, ``recsys_job_failures_total``: runs and failed runs;
* ``recsys_job_last_run_timestamp_seconds``, ``recsys_job_last_success_timestamp_seconds``,
  ``recsys_job_last_run_success`` (1 or 0), ``recsys_job_duration_seconds`` (last run);
* train only: ``recsys_train_step_seconds{step}``, ``recsys_train_rows{what}`` (interactions,
  users, items...), ``recsys_train_rows_dropped{table,reason}``, ``recsys_train_peak_rss_bytes``;
* publish only: ``recsys_publish_fields{hash}`` (fields written per hash), ``recsys_publish_lists``,
  ``recsys_publish_write_seconds``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile
from prometheus_client.parser import text_string_to_metric_families

log = logging.getLogger(__name__)

Job = Literal["train", "publish"]
CARRIED = ("recsys_job_runs_total", "recsys_job_failures_total", "recsys_job_last_success_timestamp_seconds")


def textfile_path(folder: str | Path, job: Job) -> Path:
    return Path(folder) / f"recsys_{job}.prom"


def read_carried(path: Path) -> dict[str, float]:
    """The values carried between runs, from the previous file (0 when there is none)."""
    values = dict.fromkeys(CARRIED, 0.0)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return values
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in values:
                    values[sample.name] = float(sample.value)
    except ValueError as error:
        log.warning("%s: unreadable metrics file (%s); counters start again", path, error)
    return values


class JobRecord:
    """What one run reports; filled by the job, written by :func:`record_job`."""

    def __init__(self) -> None:
        self.steps: dict[str, float] = {}
        self.rows: dict[str, float] = {}
        self.dropped: dict[tuple[str, str], float] = {}
        self.fields: dict[str, float] = {}
        self.values: dict[str, float] = {}

    def from_run_metadata(self, metadata: Mapping[str, Any]) -> None:
        """Step times, counts, dropped rows and peak memory of a finished training run."""
        for step, seconds in (metadata.get("timings") or {}).items():
            if isinstance(seconds, (int, float)):
                self.steps[str(step)] = float(seconds)
        for what, count in (metadata.get("counts") or {}).items():
            if isinstance(count, (int, float)):
                self.rows[str(what)] = float(count)
        for file in (metadata.get("validation") or {}).get("files", []) or []:
            for reason, count in (file.get("dropped") or {}).items():
                key = (str(file.get("table", "")), str(reason))
                self.dropped[key] = self.dropped.get(key, 0.0) + float(count)
        peak = metadata.get("peak_rss_mb") or (metadata.get("memory") or {}).get("peak_rss_mb")
        if isinstance(peak, (int, float)):
            self.values["recsys_train_peak_rss_bytes"] = float(peak) * 1024 * 1024

    def from_publish(self, result: Any) -> None:
        """Fields per hash, lists and write time of a finished publish."""
        for name, count in (getattr(result, "counts", None) or {}).items():
            self.fields[str(name)] = float(count)
        self.values["recsys_publish_lists"] = float(getattr(result, "lists", 0))
        self.values["recsys_publish_write_seconds"] = float(getattr(result, "write_seconds", 0.0))


def write_job_metrics(
    folder: str | Path, job: Job, record: JobRecord, *, success: bool, started: float, finished: float | None = None
) -> Path:
    """Write ``recsys_<job>.prom`` for a run that started at ``started`` (unix seconds)."""
    finished = time.time() if finished is None else finished
    path = textfile_path(folder, job)
    path.parent.mkdir(parents=True, exist_ok=True)
    carried = read_carried(path)
    registry = CollectorRegistry()

    def gauge(name: str, help_text: str, value: float, labels: Mapping[str, str] | None = None) -> None:
        labels = {"job": job, **(labels or {})}
        metric = gauges.get(name)
        if metric is None:
            metric = gauges[name] = Gauge(name, help_text, list(labels), registry=registry)
        metric.labels(**labels).set(value)

    gauges: dict[str, Gauge] = {}
    # Counters are written as gauges: their value comes from the file, not from this process.
    gauge("recsys_job_runs_total", "Runs of the job (carried between runs).", carried["recsys_job_runs_total"] + 1)
    gauge(
        "recsys_job_failures_total",
        "Failed runs of the job (carried between runs).",
        carried["recsys_job_failures_total"] + (0 if success else 1),
    )
    last_success = finished if success else carried["recsys_job_last_success_timestamp_seconds"]
    gauge("recsys_job_last_success_timestamp_seconds", "End of the last successful run (0 = never).", last_success)
    gauge("recsys_job_last_run_timestamp_seconds", "End of the last run.", finished)
    gauge("recsys_job_last_run_success", "1 when the last run succeeded.", 1.0 if success else 0.0)
    gauge("recsys_job_duration_seconds", "Duration of the last run.", max(0.0, finished - started))
    for step, seconds in record.steps.items():
        gauge("recsys_train_step_seconds", "Seconds per step of the last training run.", seconds, {"step": step})
    for what, count in record.rows.items():
        gauge("recsys_train_rows", "Counts of the last training run (interactions, users, items...).", count, {"what": what})
    for (table, reason), count in record.dropped.items():
        gauge("recsys_train_rows_dropped", "Input rows dropped by validation, by reason.", count, {"table": table, "reason": reason})
    for name, count in record.fields.items():
        gauge("recsys_publish_fields", "Fields written per hash by the last publish.", count, {"hash": name})
    for name, value in record.values.items():
        gauge(name, name.replace("_", " ").removeprefix("recsys "), value)
    write_to_textfile(str(path), registry)
    return path


@contextmanager
def recorded(folder: str | Path | None, job: Job) -> Iterator[JobRecord]:
    """Run a job's body and write its metrics file afterwards, success or failure.

    With ``folder`` None nothing is written. A failure to write is logged, never raised:
    monitoring must not fail the job it monitors.
    """
    record = JobRecord()
    started = time.time()
    success = False
    try:
        yield record
        success = True
    finally:
        if folder is not None:
            try:
                path = write_job_metrics(folder, job, record, success=success, started=started)
                log.info("metrics written to %s", path)
            except OSError as error:
                log.warning("could not write job metrics to %s: %s", folder, error)
