"""``recsys forget | items | events``: erasure, live catalogue changes, the event archive."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import orjson

from recsys.cli.pipeline import _echo_json, _store, _table, config_option, json_option, prefix_option, redis_option
from recsys.errors import ConfigError


@click.command("forget")
@click.argument("user_ids", nargs=-1)
@click.option("--runs", "runs_mode", type=click.Choice(["rewrite", "delete"]), default="rewrite", show_default=True,
              help="Run folders holding the users: rewrite them without the users, or delete them.")
@click.option("--pending", is_flag=True, help="Also scrub the folders for erasures asked through the API.")
@config_option
@redis_option
@prefix_option
@json_option
def forget(
    user_ids: tuple[str, ...], runs_mode: str, pending: bool, config_path: Path | None, redis_url: str | None,
    prefix: str | None, as_json: bool,
) -> None:
    """Forget users everywhere: Redis lists of every version, recent items, events stream,
    event archive and run folders; later trainings drop them (tombstones)."""
    from recsys.privacy.forget import apply_pending, forget_users

    client, layout, config = _store(config_path, redis_url, prefix)
    document: dict[str, Any] = {}
    if user_ids:
        document = forget_users(
            client, layout, list(user_ids), runs_root=Path(config.training.out), archive_root=config.events.archive,
            runs_mode=runs_mode,  # type: ignore[arg-type]
            lock_wait_seconds=config.publish.lock_wait_seconds,
        )
    elif not pending:
        raise ConfigError("give at least one user id to forget (or --pending)")
    if pending:
        document["pending"] = apply_pending(
            client, layout, runs_root=Path(config.training.out), archive_root=config.events.archive,
            runs_mode=runs_mode,  # type: ignore[arg-type]
        )
    if as_json:
        _echo_json(document)
        return
    if user_ids:
        rows = [[u["tombstone"][:16], u["lists"], u["keys"], u["stream_events"], u["archived_events"], u["runs"]]
                for u in document["users"]]
        click.echo(_table(["tombstone", "lists", "keys", "stream events", "archived events", "runs"], rows))
        runs = document["runs"]
        click.echo(f"run folders in {runs['folder']}: rewritten {', '.join(runs['rewritten']) or 'none'}; "
                   f"deleted {', '.join(runs['deleted']) or 'none'}; {runs['untouched']} without these users")
        archive = document["archive"]
        if archive["folder"]:
            click.echo(f"event archive {archive['folder']}: {archive['rows']} events removed from {archive['files_rewritten']} files")
        else:
            click.echo("event archive: none configured ([events] archive)")
    if pending:
        click.echo(f"erasures queued by the API: {document['pending']['pending']} applied to the folders")


@click.group("items")
def items() -> None:
    """Change items between trainings (price, stock, visibility), served from the next request."""


def _bool(value: str | None, name: str) -> bool | None:
    if value is None:
        return None
    lowered = value.strip().lower()
    if lowered in ("true", "yes", "1"):
        return True
    if lowered in ("false", "no", "0"):
        return False
    raise ConfigError(f"--{name}: expected true or false, got {value!r}")


@items.command("set")
@click.argument("item_id", required=False)
@click.option("--in-stock", "in_stock", default=None, metavar="true|false")
@click.option("--price", default=None, metavar="PRICE", help='New price; "none" = unknown.')
@click.option("--hidden", default=None, metavar="true|false", help="Hidden items are never served.")
@click.option("--file", "file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="JSON array of updates [{item_id, in_stock, price, hidden}], applied in one atomic call.")
@config_option
@redis_option
@prefix_option
@json_option
def items_set(
    item_id: str | None, in_stock: str | None, price: str | None, hidden: str | None, file: Path | None,
    config_path: Path | None, redis_url: str | None, prefix: str | None, as_json: bool,
) -> None:
    """Update one item (ITEM and options) or many (--file) in the live catalogue."""
    from recsys.catalog.overlay import apply_updates, parse_updates

    if file is not None:
        if item_id is not None or any(v is not None for v in (in_stock, price, hidden)):
            raise ConfigError("--file: give either a file of updates or ITEM with options, not both")
        try:
            with open(file, "rb") as handle:
                document = orjson.loads(handle.read())
        except orjson.JSONDecodeError as error:
            raise ConfigError(f"{file}: invalid JSON: {error}") from None
        try:
            updates = parse_updates(document)
        except ConfigError as error:
            raise ConfigError(f"{file}: {error}") from None
    else:
        if item_id is None:
            raise ConfigError("give ITEM with --in-stock, --price or --hidden (or --file)")
        entry: dict[str, Any] = {"item_id": item_id}
        if in_stock is not None:
            entry["in_stock"] = _bool(in_stock, "in-stock")
        if hidden is not None:
            entry["hidden"] = _bool(hidden, "hidden")
        if price is not None:
            if price.strip().lower() in ("none", "null", ""):
                entry["price"] = None
            else:
                try:
                    entry["price"] = float(price)
                except ValueError:
                    raise ConfigError(f"--price: expected a number or none, got {price!r}") from None
        try:
            updates = parse_updates(entry)
        except ConfigError as error:
            message = str(error)
            for field, option in (("body.in_stock", "--in-stock"), ("body.price", "--price"), ("body.hidden", "--hidden"), ("body.item_id", "ITEM")):
                message = message.replace(field, option)
            raise ConfigError(message) from None
    client, layout, _ = _store(config_path, redis_url, prefix)
    receipt = apply_updates(client, layout, updates)
    if as_json:
        _echo_json(receipt)
        return
    rows = [[i["item_id"], orjson.dumps(i["overlay"]).decode(), i["versions_changed"]] for i in receipt["items"]]
    click.echo(_table(["item", "overlay now", "versions changed"], rows))


@items.command("overlay")
@config_option
@redis_option
@prefix_option
@json_option
def items_overlay(config_path: Path | None, redis_url: str | None, prefix: str | None, as_json: bool) -> None:
    """Show the item overlay: every field set between trainings and the catalogue value it replaced."""
    from recsys.catalog.overlay import read_overlay

    client, layout, _ = _store(config_path, redis_url, prefix)
    overlay = read_overlay(client, layout)
    if as_json:
        _echo_json({"items": overlay})
        return
    if not overlay:
        click.echo("the item overlay is empty")
        return
    rows = [[item, orjson.dumps(e.get("set", {})).decode(), orjson.dumps(e.get("base", {})).decode()] for item, e in sorted(overlay.items())]
    click.echo(_table(["item", "set", "catalogue value"], rows))


@click.group("events")
def events() -> None:
    """The event archive: the Redis events stream kept as Parquet files, one folder a day."""


@events.command("archive")
@click.option("--archive", "archive_path", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Archive folder (overrides [events] archive).")
@config_option
@redis_option
@prefix_option
@json_option
def events_archive(
    archive_path: Path | None, config_path: Path | None, redis_url: str | None, prefix: str | None, as_json: bool
) -> None:
    """Move the stream's entries into the archive (crash-safe, each event once)."""
    from recsys.events.archive import archive_events

    client, layout, config = _store(config_path, redis_url, prefix)
    folder = archive_path or (Path(config.events.archive) if config.events.archive else None)
    if folder is None:
        raise ConfigError("events.archive: no archive folder configured (set [events] archive or pass --archive)")
    result = archive_events(client, layout, folder, batch=config.events.batch, trim=config.events.trim_stream)
    if as_json:
        _echo_json(result.to_json())
        return
    click.echo(
        f"archived {result.written} events into {folder} ({len(result.files)} files; "
        f"{result.duplicates} duplicates and {result.forgotten} of forgotten users left out; "
        f"{result.trimmed} trimmed from the stream; last id {result.last_id or '-'})"
    )
