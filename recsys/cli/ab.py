"""``recsys ab``: create, list, stop, delete and report A/B experiments stored in Redis."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import orjson

from recsys.errors import ConfigError, RecsysError
from recsys.store.connection import URL_ENV
from recsys.store.keys import PREFIX_ENV, KeyLayout

if TYPE_CHECKING:
    from recsys.abtest.experiments import ExperimentStore


class AbContext:
    """Connection settings of the group, resolved lazily (``--help`` needs no Redis)."""

    def __init__(self, redis_url: str | None, prefix: str | None) -> None:
        self.redis_url = redis_url
        self.layout = KeyLayout(prefix) if prefix else KeyLayout.from_env()

    def store(self) -> ExperimentStore:
        from recsys.abtest.experiments import ExperimentStore
        from recsys.store.connection import connect

        return ExperimentStore(connect(self.redis_url), self.layout)


def parse_time(raw: str, flag: str) -> float:
    """Unix seconds from ``--start``/``--end``: unix seconds or ISO-8601 (naive = UTC)."""
    from recsys.abtest.events import parse_timestamp

    try:
        return parse_timestamp(raw)
    except ValueError as error:
        raise ConfigError(f"{flag}: {error}") from None


def parse_variant(spec: str) -> dict[str, Any]:
    """``NAME=MODEL[:WEIGHT][,OPTION=VALUE...]`` -> a variant definition.

    Example: ``treatment=ease:2,exclude_recent=false,fallback=popular``.
    """
    name, sep, rest = spec.partition("=")
    if not sep or not name or not rest:
        raise ConfigError(f"--variant {spec!r}: expected NAME=MODEL[:WEIGHT][,OPTION=VALUE...]")
    head, *option_parts = rest.split(",")
    model, _, weight_text = head.partition(":")
    variant: dict[str, Any] = {"name": name.strip(), "model": model.strip()}
    if weight_text:
        try:
            variant["weight"] = float(weight_text)
        except ValueError:
            raise ConfigError(f"--variant {spec!r}: weight {weight_text!r} is not a number") from None
    options: dict[str, Any] = {}
    for part in option_parts:
        key, eq, value = part.partition("=")
        if not eq or not key:
            raise ConfigError(f"--variant {spec!r}: option {part!r} is not OPTION=VALUE")
        lowered = value.strip().lower()
        options[key.strip()] = True if lowered == "true" else False if lowered == "false" else value.strip()
    if options:
        variant["options"] = options
    return variant


def _load_file(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            document = orjson.loads(handle.read())
    except orjson.JSONDecodeError as error:
        raise ConfigError(f"{path}: invalid JSON: {error}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: expected a JSON object with the experiment definition")
    return document


def _echo_json(document: Any) -> None:
    click.echo(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())


@click.group("ab")
@click.option("--redis", "--redis-url", "redis_url", envvar=URL_ENV, default=None, help=f"Redis URL (default ${URL_ENV}, else the embedded Redis).")
@click.option("--prefix", envvar=PREFIX_ENV, default=None, help=f"Key prefix (default ${PREFIX_ENV}, else 'recsys:').")
@click.pass_context
def ab(ctx: click.Context, redis_url: str | None, prefix: str | None) -> None:
    """Create, list, stop, delete and report A/B experiments."""
    ctx.obj = AbContext(redis_url, prefix)


@ab.command("create")
@click.argument("name", required=False)
@click.option("--variant", "variants", multiple=True, metavar="NAME=MODEL[:WEIGHT][,OPT=VAL]",
              help="An arm; repeat for each. The first is the control unless --control says otherwise.")
@click.option("--file", "file_", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSON definition: the body of POST /v1/admin/experiments (variants keyed by name, the "
                   "control keyed 'control') or the stored form (a variants array); flags given as well override it.")
@click.option("--start", help="Start, ISO-8601 or unix seconds (default now).")
@click.option("--end", help="End, ISO-8601 or unix seconds (default: until stopped).")
@click.option("--salt", help="Hash salt (default random); the same salt reproduces the same split.")
@click.option("--unit", type=click.Choice(["user", "session"]), help="What is randomised (default user).")
@click.option("--placement", help="Where the lists are shown, the API's placement= (default 'default'); one running experiment per placement.")
@click.option("--control", help="Name of the control variant (default the first).")
@click.option("--description", help="Free text shown in lists and reports.")
@click.option("--json", "as_json", is_flag=True, help="Print the stored definition as JSON.")
@click.pass_obj
def create(
    obj: AbContext,
    name: str | None,
    variants: tuple[str, ...],
    file_: Path | None,
    start: str | None,
    end: str | None,
    salt: str | None,
    unit: str | None,
    placement: str | None,
    control: str | None,
    description: str | None,
    as_json: bool,
) -> None:
    """Create and start experiment NAME.

    Example: recsys ab create homepage --variant control=als:1 --variant treatment=ease:1
    """
    from recsys.abtest.experiments import parse_experiment, request_to_definition

    document: dict[str, Any] = _load_file(file_) if file_ else {}
    if name:
        document["name"] = name
    if isinstance(document.get("variants"), dict):  # the API's body: validated as the API does
        document = request_to_definition(document)
        if variants:
            del document["control"]  # the --variant flags replace the file's variants
    if variants:
        document["variants"] = [parse_variant(v) for v in variants]
    for key, value in (("salt", salt), ("unit", unit), ("placement", placement), ("control", control), ("description", description)):
        if value is not None:
            document[key] = value
    if start is not None:
        document["start"] = parse_time(start, "--start")
    if end is not None:
        document["end"] = parse_time(end, "--end")
    if "name" not in document:
        raise ConfigError("an experiment needs a NAME (argument) or a \"name\" in --file")
    if "variants" not in document:
        raise ConfigError("an experiment needs at least two --variant NAME=MODEL[:WEIGHT] (or \"variants\" in --file)")
    for forbidden in ("status", "stopped_at", "created_at"):
        document.pop(forbidden, None)
    from recsys.abtest.experiments import live_published

    store = obj.store()
    experiment = store.create(parse_experiment(document), published=live_published(store.client, store.layout), check=True)
    if as_json:
        _echo_json(experiment.model_dump(mode="json"))
    else:
        arms = ", ".join(f"{v.name}={v.model}:{v.weight:g}" for v in experiment.variants)
        click.echo(
            f"created {experiment.name} on placement {experiment.placement}: {arms} "
            f"(control {experiment.control}, unit {experiment.unit}, salt {experiment.salt})"
        )


def _when(seconds: float | None) -> str:
    from recsys.abtest.report import iso

    return iso(seconds) if seconds is not None else "-"


@ab.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the definitions as JSON.")
@click.pass_obj
def list_(obj: AbContext, as_json: bool) -> None:
    """List experiments, oldest first."""
    from recsys.abtest.experiments import live_published
    from recsys.abtest.report import table

    store = obj.store()
    for marked in store.mark_broken(live_published(store.client, store.layout)):
        click.echo(f"WARNING: experiment {marked.name} is broken: {marked.broken}", err=True)
    experiments = store.list()
    now = time.time()
    if as_json:
        _echo_json([{**e.model_dump(mode="json"), "active": e.is_active(now), "state": _state(e, now)} for e in experiments])
        return
    if not experiments:
        click.echo("no experiments")
        return
    rows = [
        [
            e.name,
            _state(e, now),
            e.placement,
            e.unit,
            ", ".join(f"{v.name}={v.model}:{v.weight:g}" for v in e.variants),
            _when(e.start),
            _when(e.window()[1]),
        ]
        for e in experiments
    ]
    click.echo(table(rows, ["name", "status", "placement", "unit", "variants (name=model:weight)", "start", "end"]))
    for e in experiments:
        if e.broken is not None and not e.is_over(now):
            click.echo(f"{e.name} is broken since {_when(e.broken_at)}: {e.broken}; its users get the default model")


def _state(experiment: Any, now: float) -> str:
    """broken, active, scheduled or over."""
    if experiment.is_over(now):
        return "over"
    if experiment.broken is not None:
        return "broken"
    return "active" if experiment.is_active(now) else "scheduled"


@ab.command("stop")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the stopped definition as JSON.")
@click.pass_obj
def stop(obj: AbContext, name: str, as_json: bool) -> None:
    """Stop experiment NAME: from now on it routes nobody (the default model serves)."""
    store = obj.store()
    try:
        experiment = store.stop(name)
    except KeyError:
        raise RecsysError(f"no experiment named {name!r}") from None
    if as_json:
        _echo_json(experiment.model_dump(mode="json"))
    else:
        click.echo(f"stopped {name} at {_when(experiment.stopped_at)}; it routes nobody now (the default model serves)")


@ab.command("delete")
@click.argument("name")
@click.pass_obj
def delete(obj: AbContext, name: str) -> None:
    """Delete experiment NAME (its events stay in the stream)."""
    if not obj.store().delete(name):
        raise RecsysError(f"no experiment named {name!r}")
    click.echo(f"deleted {name}")


@ab.command("report")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), help="Also write a PNG chart here.")
@click.option("--by-segment", is_flag=True,
              help="Also break the results down by customer segment (the live version's [segments]).")
@click.pass_obj
def report(obj: AbContext, name: str, as_json: bool, plot: Path | None, by_segment: bool) -> None:
    """Metrics per variant with 95% intervals, differences from the control, SRM check."""
    from recsys.abtest.experiments import live_published
    from recsys.abtest.report import build_report, format_report, plot_report

    store = obj.store()
    store.mark_broken(live_published(store.client, store.layout))
    try:
        experiment = store.get(name)
    except KeyError:
        raise RecsysError(f"no experiment named {name!r}") from None
    if by_segment and experiment.unit != "user":
        raise RecsysError(f"--by-segment: experiment {name!r} randomises sessions; segments are of users")
    document = build_report(store.client, obj.layout, experiment, progress=True, by_segment=by_segment)
    for warning in document["warnings"]:
        click.echo(f"WARNING: {warning}", err=True)
    if plot is not None:
        plot_report(document, plot)
        click.echo(f"chart written to {plot}", err=True)
    if as_json:
        click.echo(json.dumps(document, indent=2))
    else:
        click.echo(format_report(document))
    sys.stdout.flush()
