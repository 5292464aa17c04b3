"""``recsys serve``: run the recommendation API under gunicorn.

Configuration comes from the environment (``RECSYS_REDIS_URL``, ``RECSYS_KEY_PREFIX``,
``RECSYS_DEFAULT_N``, ``RECSYS_MAX_N``, ``RECSYS_REDIS_TIMEOUT``, ``RECSYS_ADMIN_TOKEN``...,
see ``serving.Settings``); the options here set the server and may override the Redis URL
and prefix. Without a Redis URL the embedded Redis is started (the one ``recsys demo``
publishes to). It refuses to start without ``RECSYS_INGEST_TOKEN`` unless
``RECSYS_INGEST_OPEN=1`` says that anyone may post events. The API starts even when Redis is down or nothing is published yet:
``/readyz`` answers 503 until both are fine, and requests recover by themselves.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from recsys.errors import ConfigError
from recsys.store.keys import PREFIX_ENV

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
URL_ENV = "RECSYS_REDIS_URL"  # recsys.store.connection.URL_ENV (that module imports redis)
WORKER_CLASSES = ("gevent", "gthread")


def bind_address(host: str, port: int) -> str:
    """``host:port`` for gunicorn, with brackets around an IPv6 address."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def prepare_metrics_dir() -> tuple[Path, bool]:
    """The Prometheus multiprocess folder, emptied of old values; True when created here.

    Must run before ``prometheus_client`` is imported (it reads the variable at import).
    """
    configured = os.environ.get(MULTIPROC_ENV)
    if configured:
        folder = Path(configured)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):
            stale.unlink()
        return folder, False
    folder = Path(tempfile.mkdtemp(prefix="recsys-metrics-"))
    os.environ[MULTIPROC_ENV] = str(folder)
    return folder, True


def gunicorn_options(
    host: str,
    port: int,
    workers: int,
    threads: int,
    timeout: int,
    access_log: bool,
    log_level: str,
    worker_class: str = "gevent",
    worker_connections: int = 1000,
) -> dict[str, Any]:
    """Gunicorn settings: gevent workers (an event loop each, many keep-alive clients, Redis
    commands auto-pipelined) or gthread workers (a thread pool each)."""
    from serving.gunicorn_errors import MAX_REQUEST_LINE, install
    from serving.metrics import mark_process_dead

    install()  # gunicorn's own 400/414/431 answers in the API's JSON shape
    return {
        "bind": bind_address(host, port),
        "workers": workers,
        "threads": threads,
        "worker_class": worker_class,
        "worker_connections": worker_connections,
        "timeout": timeout,
        "graceful_timeout": 10,
        "keepalive": 5,
        # As long as gunicorn allows, so that requests within the API's limits reach Flask.
        "limit_request_line": MAX_REQUEST_LINE,
        "preload_app": True,
        "accesslog": "-" if access_log else None,
        "errorlog": "-",
        "loglevel": log_level,
        "proc_name": "recsys-api",
        "control_socket_disable": True,
        "child_exit": lambda server, worker: mark_process_dead(worker.pid),
        **({"post_request": yield_to_other_clients} if worker_class == "gevent" else {}),
    }


def yield_to_other_clients(worker: Any, request: Any, environ: Any, response: Any) -> None:
    """Gunicorn ``post_request`` hook of gevent workers: let the other connections' greenlets
    run. A keep-alive client whose next request is already waiting (and whose route does no
    I/O, e.g. /healthz or a 400) would otherwise be served again and again, starving the
    others (p99 of /healthz went to ~200 ms under a closed-loop load)."""
    import gevent

    gevent.sleep(0)


def run_gunicorn(app: Any, options: dict[str, Any], on_exit: Any = None) -> None:
    """Run ``app`` under gunicorn in this process until it is stopped (SIGTERM, Ctrl-C)."""
    from gunicorn.app.base import BaseApplication

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)
            if on_exit is not None:
                self.cfg.set("on_exit", lambda server: on_exit())

        def load(self) -> Any:
            return app

    Server().run()


@click.command("serve")
@click.option("--host", envvar="RECSYS_HOST", default="127.0.0.1", show_default=True, show_envvar=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", envvar="RECSYS_PORT", type=click.IntRange(0, 65535), default=8000, show_default=True, show_envvar=True, help="Port to listen on.")
@click.option("--workers", envvar="RECSYS_WORKERS", type=click.IntRange(1, 64), default=2, show_default=True, show_envvar=True, help="Worker processes (about one per core).")
@click.option(
    "--worker-class", envvar="RECSYS_WORKER_CLASS", type=click.Choice(WORKER_CLASSES), default="gevent", show_default=True, show_envvar=True,
    help="gevent: an event loop per worker, the Redis commands of concurrent requests pipelined (fastest); gthread: a thread pool per worker.",
)
@click.option("--worker-connections", envvar="RECSYS_WORKER_CONNECTIONS", type=click.IntRange(1, 100_000), default=1000, show_default=True, show_envvar=True, help="Most simultaneous clients per gevent worker.")
@click.option("--threads", envvar="RECSYS_THREADS", type=click.IntRange(1, 256), default=4, show_default=True, show_envvar=True, help="Threads per gthread worker.")
@click.option("--timeout", type=click.IntRange(1, 3600), default=30, show_default=True, help="Seconds before a stuck worker is restarted.")
@click.option("--redis", "redis_url", default=None, metavar="URL", help="Redis URL (overrides RECSYS_REDIS_URL; default: the embedded Redis).")
@click.option("--prefix", default=None, metavar="PREFIX", help="Key prefix (overrides RECSYS_KEY_PREFIX).")
@click.option("--access-log/--no-access-log", default=False, show_default=True, help="Log every request to stderr.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info", show_default=True)
def serve(
    host: str,
    port: int,
    workers: int,
    worker_class: str,
    worker_connections: int,
    threads: int,
    timeout: int,
    redis_url: str | None,
    prefix: str | None,
    access_log: bool,
    log_level: str,
) -> None:
    """Run the recommendation API under gunicorn."""
    if worker_class == "gevent":
        # Before redis, ssl and the app are imported, so every socket and lock they make is
        # cooperative (gunicorn's worker patches again after fork: that is a no-op then).
        from gevent import monkey

        monkey.patch_all()
    from recsys.store.connection import configured_url, redact, resolve_url

    if redis_url:
        os.environ[URL_ENV] = redis_url
    if prefix:
        os.environ[PREFIX_ENV] = prefix
    if configured_url() is None:
        # Every worker must use the same server: resolve (and start) the embedded one once.
        os.environ[URL_ENV] = resolve_url(None)
    metrics_dir, created = prepare_metrics_dir()

    def cleanup() -> None:
        if created:
            shutil.rmtree(metrics_dir, ignore_errors=True)

    from serving import create_app, services

    try:
        app = create_app()  # validates the configuration: ConfigError -> one line, exit 1
    except BaseException:
        cleanup()
        raise
    state = services(app)
    if not state.settings.ingest_token and not state.settings.ingest_open:
        cleanup()
        raise ConfigError(
            "POST /v1/events would be closed to everyone: set RECSYS_INGEST_TOKEN (clients send "
            "'Authorization: Bearer <token>'), or RECSYS_INGEST_OPEN=1 to accept events from anyone"
        )
    click.echo(
        f"recsys API on http://{bind_address(host, port)} ({_shape(worker_class, workers, worker_connections, threads)}); "
        f"Redis {redact(os.environ[URL_ENV])}, prefix {state.layout.prefix!r}; {_readiness(os.environ[URL_ENV], state.layout.live)}",
        err=True,
    )
    sys.stderr.flush()

    options = gunicorn_options(host, port, workers, threads, timeout, access_log, log_level, worker_class, worker_connections)
    run_gunicorn(app, options, cleanup)


def _shape(worker_class: str, workers: int, connections: int, threads: int) -> str:
    if worker_class == "gevent":
        return f"{workers} gevent workers, up to {connections} connections each"
    return f"{workers} gthread workers x {threads} threads"


def _readiness(url: str, live_key: str) -> str:
    """One phrase on Redis and the live version, for the start-up line (never fails)."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        live = client.get(live_key)
        client.close()
    except (redis.RedisError, OSError, ValueError) as error:
        return f"Redis not reachable yet ({error}); /readyz answers 503 until it is"
    if live is None:
        return "nothing published yet; /readyz answers 503 until a version is live"
    return f"live version {live.decode()}"
