"""``recsys redis``: manage the embedded Redis used when no RECSYS_REDIS_URL is set."""

from __future__ import annotations

import click

from recsys.store.connection import EmbeddedRedis, configured_url


@click.group("redis")
def redis_group() -> None:
    """Start, stop or locate the embedded Redis."""


@redis_group.command("start")
def start() -> None:
    """Start the embedded Redis (no-op when it runs) and print its URL."""
    click.echo(EmbeddedRedis().ensure_running())


@redis_group.command("stop")
def stop() -> None:
    """Stop the embedded Redis, saving its data."""
    click.echo("stopped" if EmbeddedRedis().stop() else "not running")


@redis_group.command("url")
def url() -> None:
    """Print the Redis URL the commands would use."""
    configured = configured_url()
    click.echo(configured or EmbeddedRedis().url + ("" if EmbeddedRedis().is_running() else "  (embedded, not running)"))
