"""``recsys train | publish | pipeline | versions | rollback``: the batch job's commands."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from recsys.pipeline.config import BACKENDS, DATA_FORMATS, PipelineConfig, load_config

log = logging.getLogger(__name__)

config_option = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Pipeline configuration (TOML). Default: ./recsys.toml when it exists.",
)
redis_option = click.option("--redis", "redis_url", default=None, metavar="URL", help="Redis URL (overrides RECSYS_REDIS_URL and the file).")
prefix_option = click.option("--prefix", default=None, metavar="PREFIX", help="Key prefix (overrides RECSYS_KEY_PREFIX and the file).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")
data_options = [
    click.option("--data", "data_path", default=None, metavar="PATH", help="Data file or folder (overrides [data] path)."),
    click.option("--format", "data_format", type=click.Choice(DATA_FORMATS), default=None, help="Data format (overrides [data] format)."),
]


def _data_options(func: Any) -> Any:
    for option in reversed(data_options):
        func = option(func)
    return func


backend_option = click.option(
    "--backend", type=click.Choice(BACKENDS), default=None,
    help="Where training runs (overrides [training] backend): this machine or Spark ([spark] section).",
)


def trainer_for(config: PipelineConfig) -> Any:
    """The training function of the configured backend: None = the local one."""
    if config.training.backend != "spark":
        return None
    from recsys.spark.train import train_spark

    return lambda settings, out: train_spark(settings, out)


def _load(
    config_path: Path | None, data_path: str | None = None, data_format: str | None = None, backend: str | None = None
) -> PipelineConfig:
    if config_path is None and Path("recsys.toml").is_file():
        config_path = Path("recsys.toml")
    config = load_config(config_path)
    return config.with_data(data_path, data_format).with_backend(backend)


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    """An aligned plain-text table."""
    cells = [[str(c) for c in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _echo_json(document: Any) -> None:
    click.echo(json.dumps(document, indent=2, sort_keys=True, default=str))


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _show_progress() -> bool | None:
    return None if sys.stderr.isatty() else False


def _print_run(run_dir: Path, as_json: bool) -> None:
    from recsys.runs.folder import RunFolder

    metadata = RunFolder(run_dir).metadata
    if as_json:
        _echo_json({"run_dir": str(run_dir), **{k: metadata.get(k) for k in ("run", "backend", "fingerprint", "counts", "timings", "peak_rss_mb", "active_users", "lists", "skipped", "default_model", "evaluation", "validation")}, "selection": metadata.get("selection")})
        return
    click.echo(f"run {metadata['run']}: {run_dir}")
    counts = metadata["counts"]
    fingerprint = f"; fingerprint {metadata['fingerprint']}" if metadata.get("fingerprint") else ""
    click.echo(f"{counts['users']} users, {counts['items']} items, {counts['interactions']} interactions{fingerprint}")
    _print_validation(metadata.get("validation") or {})
    rows = [[e["kind"], e.get("model") or "", e["rows"], e["n"]] for e in metadata["lists"]]
    click.echo(_table(["list", "model", "rows", "n"], rows))
    if counts.get("inactive_users"):
        click.echo(f"user lists for {counts['list_users']} active users; {counts['inactive_users']} inactive users get the fallback")
    for name, reason in metadata.get("skipped", {}).items():
        click.echo(f"skipped {name}: {reason}")
    _print_selection(metadata.get("selection"), metadata.get("default_model"))


def _print_selection(selection: dict[str, Any] | None, default_model: str | None) -> None:
    """The selection table: each candidate's holdout score and why it was or was not served."""
    if not selection:
        return
    holdout = selection.get("holdout") or {}
    if selection.get("candidates"):
        where = f"{holdout.get('method', '?')} holdout"
        if holdout.get("cut") is not None:
            where += f" from {_when(holdout['cut'])} UTC"
        if holdout.get("test_rows") is not None:
            where += f", {holdout['test_rows']} rows, {holdout.get('evaluated_users', 0)} users scored"
        click.echo(f"model selection on the {where}:")
        rows = [
            [
                c["model"],
                "" if c.get("value") is None else f"{c['value']:.4f}",
                ", ".join(f"{k}={v}" for k, v in c.get("params", {}).items()) + (" (tuned)" if c.get("tuned") else ""),
                "" if c.get("fit_seconds") is None else f"{c['fit_seconds']:.2f}",
                "*" if c.get("chosen") else "",
                c.get("why", ""),
            ]
            for c in selection["candidates"]
        ]
        click.echo(_table(["model", selection.get("metric", "metric"), "parameters", "fit (s)", "chosen", "why"], rows))
    click.echo(f"default model: {default_model} ({selection.get('reason', '')})")


def _print_validation(report: dict[str, Any]) -> None:
    """Rows read and dropped by reason per input file; warnings (too many catalogue rows dropped) on stderr."""
    for file in report.get("files", []):
        dropped = file.get("dropped") or {}
        reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(dropped.items(), key=lambda kv: -kv[1]))
        click.echo(f"{file['file']} ({file['table']}): {file['rows']} rows, {file['kept']} kept" + (f"; dropped: {reasons}" if reasons else ""))
    for warning in report.get("warnings", []):
        click.echo(f"WARNING: {warning}", err=True)


def _print_publish(result: Any, as_json: bool) -> None:
    if as_json:
        _echo_json(result.to_json())
        return
    click.echo(f"live version: {result.version} (was {result.previous or 'none'}); run {result.run}")
    click.echo(_table(["hash", "fields"], [[k, v] for k, v in result.counts.items()]))
    click.echo(f"{result.lists} lists in {result.write_seconds:.2f}s ({result.lists_per_second:,.0f} lists/s); total {result.seconds:.2f}s")
    if result.deleted_versions:
        click.echo(f"deleted old versions: {', '.join(result.deleted_versions)}")
    if result.cleaned_pending:
        click.echo(f"removed unfinished versions: {', '.join(result.cleaned_pending)}")


@click.command("train")
@config_option
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None, help="Folder for run folders (default: [training] out).")
@_data_options
@backend_option
@json_option
def train(
    config_path: Path | None, out: Path | None, data_path: str | None, data_format: str | None, backend: str | None, as_json: bool
) -> None:
    """Train the configured models into a run folder (runs/<id>/)."""
    from recsys.pipeline.run import train_run

    config = _load(config_path, data_path, data_format, backend)
    run_dir = train_run(config, out, show_progress=_show_progress(), trainer=trainer_for(config))
    _print_run(run_dir, as_json)


@click.command("publish")
@click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=Path))
@config_option
@redis_option
@prefix_option
@json_option
def publish(run: Path, config_path: Path | None, redis_url: str | None, prefix: str | None, as_json: bool) -> None:
    """Publish a run's lists to Redis as a new live version."""
    from recsys.pipeline.run import publish_run

    config = load_config(config_path) if config_path is not None else None
    result = publish_run(run, config=config, redis_url=redis_url, prefix=prefix, show_progress=_show_progress())
    _print_publish(result, as_json)
    from recsys.pipeline.run import run_config
    from recsys.runs.folder import RunFolder

    _warn_broken_experiments(*_connect_for(config or run_config(RunFolder(run)), redis_url, prefix))


@click.command("pipeline")
@config_option
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None, help="Folder for run folders (default: [training] out).")
@_data_options
@redis_option
@prefix_option
@click.option("--every", default=None, metavar="INTERVAL", help="Keep running: retrain every INTERVAL (90s, 30m, 6h, 1d).")
@backend_option
@json_option
def pipeline(
    config_path: Path | None,
    out: Path | None,
    data_path: str | None,
    data_format: str | None,
    redis_url: str | None,
    prefix: str | None,
    every: str | None,
    backend: str | None,
    as_json: bool,
) -> None:
    """Train and publish: the batch retraining job (once, or on a schedule)."""
    config = _load(config_path, data_path, data_format, backend)
    run_scheduled(config, out=out, redis_url=redis_url, prefix=prefix, every=every, as_json=as_json)


def run_scheduled(
    config: PipelineConfig,
    *,
    out: Path | None = None,
    redis_url: str | None = None,
    prefix: str | None = None,
    every: str | None = None,
    as_json: bool = False,
) -> None:
    """One run (its error propagates: exit 1), or a schedule that logs failed runs and goes on."""
    from recsys.pipeline.run import run_pipeline
    from recsys.pipeline.schedule import Scheduler, parse_interval

    def job() -> None:
        result = run_pipeline(
            config, out=out, redis_url=redis_url, prefix=prefix, show_progress=_show_progress(), trainer=trainer_for(config)
        )
        if as_json:
            click.echo(json.dumps(result.to_json(), sort_keys=True, default=str))
        else:
            from recsys.runs.folder import RunFolder

            metadata = RunFolder(result.run_dir).metadata
            _print_selection(metadata.get("selection"), metadata.get("default_model"))
            click.echo(f"run {result.run_dir.name} -> live version {result.publish.version}")
            _print_validation(metadata.get("validation") or {})
            _print_publish(result.publish, False)
        _warn_broken_experiments(*_connect_for(config, redis_url, prefix))

    if every is None:
        job()
        return
    scheduler = Scheduler(parse_interval(every), job)
    scheduler.install_signal_handlers()
    scheduler.run_forever()


def _connect_for(config: PipelineConfig, redis_url: str | None, prefix: str | None) -> tuple[Any, Any]:
    """The client and key layout a publish with these settings wrote to."""
    from recsys.pipeline.run import connect_store

    return connect_store(config, redis_url, prefix)


def _warn_broken_experiments(client: Any, layout: Any) -> None:
    """After a version switch: mark (and say) which A/B experiments lost a variant's model."""
    from recsys.abtest.experiments import ExperimentStore, live_published

    for experiment in ExperimentStore(client, layout).mark_broken(live_published(client, layout)):
        click.echo(f"WARNING: A/B experiment {experiment.name} is broken: {experiment.broken}; its users get the default model", err=True)


def _store(config_path: Path | None, redis_url: str | None, prefix: str | None) -> tuple[Any, Any, PipelineConfig]:
    from recsys.pipeline.run import connect_store

    config = _load(config_path)
    client, layout = connect_store(config, redis_url, prefix)
    return client, layout, config


@click.command("versions")
@config_option
@redis_option
@prefix_option
@json_option
def versions(config_path: Path | None, redis_url: str | None, prefix: str | None, as_json: bool) -> None:
    """List published versions (newest first); * marks the live one."""
    from recsys.publish.versions import list_versions

    client, layout, _ = _store(config_path, redis_url, prefix)
    rows = list_versions(client, layout)
    if as_json:
        live = next((r.version for r in rows if r.live), None)
        _echo_json({"prefix": layout.prefix, "live": live, "versions": [r.to_json() for r in rows]})
        return
    if not rows:
        click.echo(f"no versions published under prefix {layout.prefix!r}")
        return
    table = []
    for row in rows:
        meta = row.meta
        counts = meta.get("counts", {})
        table.append([
            "*" if row.live else "",
            row.version,
            _when(row.published_at),
            "complete" if row.complete else "incomplete",
            meta.get("run", ""),
            meta.get("default_model", ""),
            ",".join(meta.get("user_models", [])),
            sum(v for k, v in counts.items() if k != "catalog"),
        ])
    click.echo(_table(["live", "version", "published (UTC)", "state", "run", "default", "user models", "lists"], table))


@click.command("rollback")
@click.option("--to", "target", default=None, metavar="VERSION", help="Version to make live (default: the one before the live one).")
@config_option
@redis_option
@prefix_option
@json_option
def rollback(target: str | None, config_path: Path | None, redis_url: str | None, prefix: str | None, as_json: bool) -> None:
    """Make an earlier version live again, atomically."""
    from recsys.publish.versions import rollback as do_rollback

    client, layout, config = _store(config_path, redis_url, prefix)
    previous, live = do_rollback(client, layout, target, lock_wait_seconds=config.publish.lock_wait_seconds)
    _warn_broken_experiments(client, layout)
    if as_json:
        _echo_json({"previous": previous, "live": live})
    elif previous == live:
        click.echo(f"{live} is already live")
    else:
        click.echo(f"live version: {live} (was {previous})")
