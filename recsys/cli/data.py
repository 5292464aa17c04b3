"""``recsys data``: generate a synthetic shop, show data set figures, validate files."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from recsys.cli.inputs import config_option, resolve_input
from recsys.data.loaders import FORMATS, describe, load

FORMAT_HELP = "how to read PATH; auto tells MovieLens folders, CSV and Parquet apart"


@click.group("data")
def data() -> None:
    """Generate, inspect and validate interaction data."""


@data.command()
@click.option("--users", type=click.IntRange(min=1), default=5_000, show_default=True, help="number of shoppers")
@click.option("--items", type=click.IntRange(min=2), default=2_000, show_default=True, help="catalogue size")
@click.option("--interactions", type=click.IntRange(min=1), default=200_000, show_default=True, help="number of events")
@click.option("--seed", type=int, default=0, show_default=True, help="same seed, same files (byte for byte)")
@click.option("--days", type=click.IntRange(min=1), default=180, show_default=True, help="time span of the log")
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-data"),
    show_default=True,
    help="folder to write",
)
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv"]), default="parquet", show_default=True, help="file format")
@click.option("--json", "as_json", is_flag=True, help="print a JSON object instead of a table")
def generate(users: int, items: int, interactions: int, seed: int, days: int, out: Path, fmt: str, as_json: bool) -> None:
    """Write a synthetic shop (interactions + catalog) into a folder."""
    from recsys.data.generate import generate_shop

    started = time.perf_counter()
    with tqdm(total=3, desc="generate", unit="step", file=sys.stderr, disable=None) as bar:
        events, catalog = generate_shop(users, items, interactions, seed, days=days)
        bar.update()
        out.mkdir(parents=True, exist_ok=True)
        files = {"interactions": out / f"interactions.{fmt}", "catalog": out / f"catalog.{fmt}"}
        for name, frame in (("interactions", events), ("catalog", catalog)):
            bar.set_postfix_str(files[name].name)
            if fmt == "parquet":
                frame.to_parquet(files[name], index=False)
            else:
                frame.to_csv(files[name], index=False)
            bar.update()
    other = "csv" if fmt == "parquet" else "parquet"
    stale = [out / f"{name}.{other}" for name in files if (out / f"{name}.{other}").exists()]
    for path in stale:
        click.echo(f"warning: {path} is from an earlier run; `recsys data` reads the .parquet files first", err=True)

    summary: dict[str, Any] = {
        "out": str(out),
        "format": fmt,
        "seed": seed,
        "users": int(events["user_id"].nunique()),
        "items": int(events["item_id"].nunique()),
        "catalog_items": len(catalog),
        "interactions": len(events),
        "event_types": {str(k): int(v) for k, v in events["event_type"].value_counts().items()},
        "orders": int(events["order_id"].nunique()),
        "files": {name: str(path) for name, path in files.items()},
        "seconds": round(time.perf_counter() - started, 2),
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    rows = [(key, _fmt(value)) for key, value in summary.items() if key not in ("files", "event_types")]
    rows += [(f"  {name}", _fmt(count)) for name, count in summary["event_types"].items()]
    rows += [(f"file {name}", path) for name, path in summary["files"].items()]
    click.echo(_table(rows))


@data.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path), required=False)
@config_option
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None, help=FORMAT_HELP + " [default: auto]")
@click.option("--catalog", "catalog", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="item catalogue file")
@click.option("--strict/--lenient", default=None, help="fail on the first bad row instead of dropping bad rows [default: lenient, or [data] validation]")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object instead of tables")
def stats(path: Path | None, config_path: Path | None, fmt: str | None, catalog: Path | None, strict: bool | None, as_json: bool) -> None:
    """Users, items, interactions, density, event types, time range and the validation report.

    PATH may be left out when --config names the data ([data] path).
    """
    source = resolve_input(config_path, path, fmt, catalog, strict)
    loaded = load(source.path, **source.load_kwargs())
    figures = describe(loaded)
    if as_json:
        click.echo(json.dumps(figures, indent=2))
        return
    skip = {"validation", "event_types", "interactions_per_user", "interactions_per_item", "time_range", "value"}
    rows = [(key, _fmt(value)) for key, value in figures.items() if key not in skip and value is not None]
    for key in ("interactions_per_user", "interactions_per_item", "value"):
        spread = figures.get(key)
        if spread:
            rows.append((key, "  ".join(f"{k} {_fmt(v)}" for k, v in spread.items())))
    if figures["time_range"]:
        span = figures["time_range"]
        rows.append(("time_range", f"{span['first']} .. {span['last']} ({span['days']} days)"))
    for name, count in (figures["event_types"] or {}).items():
        rows.append((f"event {name}", _fmt(count)))
    click.echo(_table(rows))
    click.echo("")
    click.echo("\n".join(loaded.report.lines()))


@data.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path), required=False)
@config_option
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None, help=FORMAT_HELP + " [default: auto]")
@click.option("--catalog", "catalog", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="item catalogue file")
@click.option("--strict/--lenient", default=None, help="exit 1 with file, line and field of the first problem [default: lenient, or [data] validation]")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def validate(path: Path | None, config_path: Path | None, fmt: str | None, catalog: Path | None, strict: bool | None, as_json: bool) -> None:
    """Check a data set. Lenient (default): report dropped rows by reason and exit 0.

    PATH may be left out when --config names the data ([data] path).
    """
    source = resolve_input(config_path, path, fmt, catalog, strict)
    loaded = load(source.path, **source.load_kwargs())
    if as_json:
        click.echo(json.dumps(loaded.report.to_dict(), indent=2))
        return
    click.echo("\n".join(loaded.report.lines()))
    kept = sum(r.kept for r in loaded.report.files)
    total = sum(r.rows for r in loaded.report.files)
    click.echo("valid" if loaded.report.ok else f"{total - kept} of {total} rows would be dropped")


def _fmt(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.6g}" if abs(value) < 1 else f"{value:,.2f}"
    return str(value)


def _table(rows: list[tuple[str, str]]) -> str:
    width = max((len(k) for k, _ in rows), default=0)
    return "\n".join(f"{key:<{width}}  {value}" for key, value in rows)
