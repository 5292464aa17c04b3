"""``recsys segments`` and ``recsys propensity``: the marketing side of the interaction data."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from recsys.errors import ConfigError

config_option = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Pipeline configuration (TOML) whose [data] section is read. Default: ./recsys.toml when it exists.",
)
data_option = click.option("--data", "data_path", default=None, metavar="PATH", help="Data file or folder (overrides [data] path).")
format_option = click.option("--format", "data_format", default=None, help="Data format (overrides [data] format).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")


def _load_config(config_path: Path | None) -> Any:
    from recsys.pipeline.config import load_config

    if config_path is None and Path("recsys.toml").is_file():
        config_path = Path("recsys.toml")
    return load_config(config_path)


def _load_data(config_path: Path | None, data_path: str | None, data_format: str | None) -> tuple[Any, Any]:
    """Interactions and catalogue through the pipeline's loader (same mapping, same validation)."""
    from recsys.pipeline.train import load_input

    config = _load_config(config_path).with_data(data_path, data_format)
    loaded = load_input(config)
    if loaded.interactions.empty:
        raise ConfigError(f"{config.data.path}: no valid interactions")
    return loaded.interactions, loaded.catalog


def _config_error(error: ValidationError, option: str) -> ConfigError:
    problems = "; ".join(
        (f"{'.'.join(map(str, p['loc']))}: " if p["loc"] else "") + str(p["msg"]).removeprefix("Value error, ")
        for p in error.errors()
    )
    return ConfigError(f"{option}: {problems}")


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


@click.command("segments")
@config_option
@data_option
@format_option
@click.option("--k", "k", default="auto", show_default=True, help="number of segments, or auto (best silhouette)")
@click.option("--k-max", type=click.IntRange(min=2, max=50), default=8, show_default=True, help="largest k tried by auto")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("segments"), show_default=True,
              help="folder for segments.parquet, segments.json and segments.png")
@json_option
def segments(config_path: Path | None, data_path: str | None, data_format: str | None, k: str, k_max: int, seed: int,
             out: Path, as_json: bool) -> None:
    """Cluster customers by recency, frequency, spend, tenure and category shares."""
    from recsys.marketing.features import purchase_lines
    from recsys.marketing.segments import SegmentsConfig, plot_segments, segment_customers

    try:
        settings = SegmentsConfig(k=k if k == "auto" else int(k), k_max=k_max, seed=seed)
    except ValueError as error:
        if isinstance(error, ValidationError):
            raise _config_error(error, "--k") from None
        raise ConfigError(f"--k: expected a number of segments or 'auto', got {k!r}") from None
    interactions, catalog = _load_data(config_path, data_path, data_format)
    click.echo("computing customer features and clustering...", err=True)
    result = segment_customers(purchase_lines(interactions, catalog), settings)
    out.mkdir(parents=True, exist_ok=True)
    result.table().to_parquet(out / "segments.parquet", index=False)
    document = result.to_json()
    with open(out / "segments.json", "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2)
    plot_segments(result, out / "segments.png")
    if as_json:
        click.echo(json.dumps({**document, "out": str(out)}, indent=2))
        return
    silhouette = document["silhouette"].get(str(result.k))
    click.echo(
        f"{document['customers']} customers in {result.k} segments (silhouette {silhouette}, "
        f"stability across seeds: adjusted Rand {result.stability['adjusted_rand_mean']:.3f})"
    )
    rows = [
        [s["id"], s["name"], s["size"], f"{100 * s['share']:.1f}%", s["centroid"]["recency_days"], s["centroid"]["frequency"],
         s["centroid"]["monetary"], ", ".join(c["category"] for c in s["top_categories"]) or "-"]
        for s in document["segments"]
    ]
    click.echo(_table(["id", "segment", "customers", "share", "recency (d)", "orders", "spend", "top categories"], rows))
    click.echo(f"wrote {out / 'segments.parquet'}, {out / 'segments.json'}, {out / 'segments.png'}")


@click.command("propensity")
@config_option
@data_option
@format_option
@click.option("--target", required=True, help="category=NAME, item=ID or title=WORD")
@click.option("--horizon", default="14d", show_default=True, help="how far ahead a purchase counts (e.g. 7d, 14d, 30d)")
@click.option("--k", type=click.IntRange(min=1), default=100, show_default=True, help="audience size and k of precision@k/lift@k")
@click.option("--cutoffs", "train_cutoffs", type=click.IntRange(min=1, max=24), default=3, show_default=True,
              help="earlier cut-offs stacked for training")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="write the audience (CSV) here")
@click.option("--publish", "publish_name", default=None, metavar="NAME",
              help="publish the audience to Redis as NAME (GET /v1/admin/audiences/NAME)")
@click.option("--redis", "redis_url", default=None, metavar="URL", help="Redis URL (overrides RECSYS_REDIS_URL and the file).")
@click.option("--prefix", default=None, metavar="PREFIX", help="Key prefix (overrides RECSYS_KEY_PREFIX and the file).")
@json_option
def propensity(config_path: Path | None, data_path: str | None, data_format: str | None, target: str, horizon: str, k: int,
               train_cutoffs: int, seed: int, out: Path | None, publish_name: str | None, redis_url: str | None,
               prefix: str | None, as_json: bool) -> None:
    """Who is likely to buy TARGET in the next HORIZON: logistic regression against a baseline."""
    from recsys.marketing.audiences import check_name

    if publish_name is not None:
        try:
            check_name(publish_name)
        except ConfigError as error:
            raise ConfigError(f"--publish: {error}") from None
    from recsys.marketing.features import purchase_lines
    from recsys.marketing.propensity import PropensityConfig, fit_propensity, parse_target
    from recsys.pipeline.schedule import parse_interval

    parse_target(target)
    try:
        days = parse_interval(horizon) / 86_400.0
    except ConfigError as error:
        raise ConfigError(f"--horizon: {error}") from None
    try:
        settings = PropensityConfig(target=target, horizon_days=days, k=k, train_cutoffs=train_cutoffs, seed=seed)
    except ValidationError as error:
        raise _config_error(error, "--target") from None
    interactions, catalog = _load_data(config_path, data_path, data_format)
    click.echo("building features at each cut-off and fitting...", err=True)
    result = fit_propensity(purchase_lines(interactions, catalog), interactions, settings, catalog)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        result.audience.to_csv(out, index=False)
    document = result.to_json()
    if publish_name is not None:
        document["published"] = _publish_audience(config_path, redis_url, prefix, publish_name, result, document)
    if as_json:
        click.echo(json.dumps(document, indent=2))
        return
    if publish_name is not None:
        click.echo(f"published audience {publish_name!r} ({len(result.audience)} customers)", err=True)
    click.echo(f"target {target}, horizon {days:g} days; evaluated at {document['cutoffs']['evaluation']} "
               f"(trained on {len(document['cutoffs']['train'])} earlier cut-offs, C = {result.chosen_c:g})")
    rows = []
    for name, metrics in (("logistic regression", document["model"]), ("recency-frequency baseline", document["baseline"])):
        rows.append([name, metrics["auc"], metrics["precision_at_k"], metrics["lift_at_k"]])
    click.echo(_table(["model", "AUC", f"precision@{k}", f"lift@{k}"], rows))
    base = document["model"]
    click.echo(f"{base['positives']} of {base['customers']} customers bought it in the evaluated window (base rate {base['base_rate']})")
    if out is not None:
        click.echo(f"wrote the top {len(result.audience)} customers to {out}")
    sys.stdout.flush()


def _publish_audience(config_path: Path | None, redis_url: str | None, prefix: str | None, name: str, result: Any,
                      document: dict[str, Any]) -> dict[str, Any]:
    """Write the audience to Redis (recsys.marketing.audiences); its stored meta."""
    from recsys.data import schema
    from recsys.marketing.audiences import publish_audience
    from recsys.store.connection import connect
    from recsys.store.keys import KeyLayout

    config = _load_config(config_path)
    client = connect(config.redis_url(redis_url))
    try:
        meta = {
            "target": document["target"],
            "horizon_days": document["horizon_days"],
            "k": document["k"],
            "cutoff": document["cutoffs"]["end"],
            "cutoffs": document["cutoffs"],
            "auc": document["model"]["auc"],
            "baseline_auc": document["baseline"]["auc"],
        }
        return publish_audience(
            client,
            KeyLayout(config.key_prefix(prefix)),
            name,
            [str(u) for u in result.audience[schema.USER_ID]],
            [float(s) for s in result.audience["score"]],
            meta,
        )
    finally:
        client.close()
