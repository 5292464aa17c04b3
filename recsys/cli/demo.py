"""``recsys demo``: synthetic shop -> train -> publish -> API, in one command.

Works on a fresh machine: with no ``RECSYS_REDIS_URL`` the lists go to the embedded Redis
(started under ``RECSYS_HOME``), which ``recsys serve`` then finds the same way.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from recsys.store.connection import HOME_ENV, URL_ENV
from recsys.store.keys import PREFIX_ENV

log = logging.getLogger(__name__)

# Every model the demo trains when its module exists; svd only when the data has ratings.
DEMO_MODELS: dict[str, dict[str, Any]] = {
    "popular": {},
    "itemknn": {},
    "userknn": {},
    "als": {},
    "ease": {},
    "svd": {},
    "content": {},
    "rules": {},
}


def demo_home() -> Path:
    """``RECSYS_HOME`` when set, else the working folder."""
    return Path(os.environ.get(HOME_ENV) or ".").expanduser()


def available_models(has_ratings: bool) -> dict[str, dict[str, Any]]:
    from recsys.models.registry import MODELS

    chosen = {}
    for name, params in DEMO_MODELS.items():
        module = MODELS[name].split(":")[0]
        if importlib.util.find_spec(module) is None:
            log.info("demo: model %s not installed, skipped", name)
            continue
        if name == "svd" and not has_ratings:
            continue
        chosen[name] = params
    return chosen


def demo_config(models: dict[str, dict[str, Any]], data_dir: Path, runs_dir: Path) -> Any:
    from recsys.pipeline.config import parse_config

    user_models = list(models)
    default = next((m for m in ("als", "ease", "itemknn", "popular") if m in models), user_models[0])
    return parse_config(
        {
            "data": {"path": str(data_dir), "format": "auto", "validation": "lenient"},
            "training": {"out": str(runs_dir), "keep_runs": 3},
            "models": models,
            "lists": {"user_n": 20, "similar_n": 20, "together_n": 10, "popular_n": 50},
            "publish": {"default_model": default, "keep_versions": 3},
        },
        source="demo configuration",
    )


def write_demo_data(folder: Path, users: int, items: int, interactions: int, seed: int) -> tuple[Any, Any]:
    """Generate the shop and write ``interactions.parquet`` + ``catalog.parquet`` into ``folder``."""
    from recsys.data.generate import generate_shop

    events, catalog = generate_shop(users, items, interactions, seed)
    folder.mkdir(parents=True, exist_ok=True)
    events.to_parquet(folder / "interactions.parquet", index=False)
    catalog.to_parquet(folder / "catalog.parquet", index=False)
    return events, catalog


def example_user(run_dir: Path, model: str | None) -> str:
    """A user id that has a list of the default model (the first row of its first batch)."""
    from recsys.runs.folder import RunFolder

    run = RunFolder(run_dir)
    for entry in run.list_entries():
        if entry["kind"] == "user" and entry.get("model") == model:
            for batch in run.list(entry).batches(16):
                if batch.num_rows:
                    return str(batch.column("key")[0].as_py())
    return str(run.users().ids[0])


@click.command("demo")
@click.option("--users", default=3000, show_default=True, help="Synthetic users.")
@click.option("--items", default=800, show_default=True, help="Synthetic catalogue items.")
@click.option("--interactions", default=150_000, show_default=True, help="Synthetic events.")
@click.option("--seed", default=42, show_default=True, help="Random seed (same seed, same data).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the API listens on.")
@click.option("--port", default=8000, show_default=True, help="Port the API listens on.")
@click.option("--no-serve", is_flag=True, help="Stop after publishing (do not start the API).")
def demo(users: int, items: int, interactions: int, seed: int, host: str, port: int, no_serve: bool) -> None:
    """Generate demo data, train every available model, publish to Redis and start the API."""
    from recsys.pipeline.run import run_pipeline
    from recsys.store.connection import configured_url, resolve_url

    home = demo_home()
    data_dir = home / "demo-data"
    runs_dir = home / "runs"
    click.echo(f"generating demo shop: {users} users, {items} items, {interactions} events -> {data_dir}", err=True)
    events, _ = write_demo_data(data_dir, users, items, interactions, seed)
    has_ratings = bool((events["event_type"] == "rating").any()) if "event_type" in events else False
    config = demo_config(available_models(has_ratings), data_dir, runs_dir)
    click.echo(f"training {', '.join(config.models)}", err=True)

    url = resolve_url(None)  # starts the embedded Redis when no URL is configured
    result = run_pipeline(config, redis_url=url)
    publish = result.publish
    where = "embedded Redis" if configured_url() is None else "Redis"
    click.echo(
        f"published version {publish.version} to {where} (prefix {config.key_prefix()!r}): "
        f"{publish.lists} lists in {publish.write_seconds:.2f}s"
    )
    user = example_user(result.run_dir, config.default_model())
    click.echo("try:")
    click.echo(f"  curl 'http://{host}:{port}/v1/users/{user}/recommendations?n=5'")
    if no_serve:
        return
    env = dict(os.environ)
    env[URL_ENV] = url
    env[PREFIX_ENV] = config.key_prefix()
    command = [sys.executable, "-m", "recsys.cli.main", "serve", "--host", host, "--port", str(port)]
    click.echo(f"starting the API on http://{host}:{port} (Ctrl-C stops it)", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, command, env)
