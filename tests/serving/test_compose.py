"""docker-compose.yml and the Dockerfile, checked without Docker: every service runs a real
command of this project with options it accepts, health checks hit real routes, and
ports, URLs and environment variables agree."""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import click
import pytest

from tests.serving.conftest import REPO_ROOT

yaml = pytest.importorskip("yaml")

COMPOSE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    with open(COMPOSE, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def resolve_recsys(args: list[str]) -> click.Context:
    """Parse ``recsys <sub> ...`` with the real click group (no command runs)."""
    from recsys.cli.main import cli

    with cli.make_context("recsys", [args[0], "--help"], resilient_parsing=True) as group_ctx:
        command = cli.get_command(group_ctx, args[0])
    assert command is not None, f"recsys has no sub-command {args[0]!r}"
    return command.make_context(args[0], list(args[1:]))


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_three_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"redis", "api", "trainer"}


def test_redis_persists(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    command = redis["command"]
    assert command[0] == "redis-server" and option(command, "--appendonly") == "yes"
    volume, _, target = redis["volumes"][0].partition(":")
    assert target == "/data" and volume in compose["volumes"]
    assert redis["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]


def test_api_command_is_recsys_serve(compose: dict[str, Any]) -> None:
    api = compose["services"]["api"]
    command = api["command"]
    assert command[0] == "recsys"
    ctx = resolve_recsys(command[1:])
    assert ctx.command.name == "serve"
    port = ctx.params["port"]
    assert ctx.params["host"] == "0.0.0.0"
    assert ctx.params["worker_class"] == "gevent"  # the fast worker (Redis commands pipelined)
    assert f"{port}:{port}" in api["ports"]
    assert re.search(rf"^EXPOSE {port}$", DOCKERFILE.read_text(), re.M)


def test_api_healthcheck_hits_a_real_route(compose: dict[str, Any]) -> None:
    from serving import create_app

    api = compose["services"]["api"]
    test = api["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    compile(test[3], "healthcheck", "exec")  # valid Python
    url = urlparse(re.search(r"'(http://[^']+)'", test[3]).group(1))
    port = resolve_recsys(api["command"][1:]).params["port"]
    assert url.hostname == "127.0.0.1" and url.port == port
    app = create_app({"REDIS_URL": "redis://127.0.0.1:1/0"})
    assert app.url_map.bind("localhost").match(url.path, method="GET")
    assert app.test_client().get(url.path).status_code == 200  # liveness needs no Redis


def test_api_environment_is_understood(compose: dict[str, Any]) -> None:
    from recsys.cli.serve import serve
    from serving import ENV_PREFIX, Settings

    known = {f"{ENV_PREFIX}_{name.upper()}" for name in Settings.model_fields}
    known |= {p.envvar for p in serve.params if isinstance(getattr(p, "envvar", None), str)}
    known |= {"PROMETHEUS_MULTIPROC_DIR"}
    environment = compose["services"]["api"]["environment"]
    assert set(environment) <= known, set(environment) - known
    values = {k: v for k, v in environment.items() if "${" not in str(v)}
    settings = Settings(**{k[len(ENV_PREFIX) + 1 :].lower(): v for k, v in values.items() if k in known and k.startswith(ENV_PREFIX)})
    assert settings.max_n >= settings.default_n


def test_trainer_runs_the_retraining_job(compose: dict[str, Any]) -> None:
    from recsys.pipeline.config import load_config
    from recsys.pipeline.schedule import parse_interval

    trainer = compose["services"]["trainer"]
    command = trainer["command"]
    assert command[:2] == ["python", "-m"]
    module = command[2]
    assert importlib.util.find_spec(module) is not None, module
    assert callable(importlib.import_module(module).main)
    environment = trainer["environment"]
    assert parse_interval(environment["RECSYS_EVERY"]) == 6 * 3600
    # the config file the job reads is the one the Dockerfile copies, and it is valid
    config_in_image = environment["RECSYS_CONFIG"]
    copied = re.search(rf"^COPY (\S+) {re.escape(config_in_image)}$", DOCKERFILE.read_text(), re.M)
    assert copied, f"Dockerfile does not copy {config_in_image}"
    load_config(REPO_ROOT / copied.group(1))
    mounts = {m.split(":")[1] for m in trainer["volumes"]}
    assert environment["RECSYS_DATA"] in mounts and "/app/runs" in mounts


def test_api_and_trainer_share_redis_and_prefix(compose: dict[str, Any]) -> None:
    services = compose["services"]
    api, trainer = services["api"]["environment"], services["trainer"]["environment"]
    assert api["RECSYS_REDIS_URL"] == trainer["RECSYS_REDIS_URL"]
    assert api["RECSYS_KEY_PREFIX"] == trainer["RECSYS_KEY_PREFIX"]
    url = urlparse(api["RECSYS_REDIS_URL"])
    assert url.hostname == "redis" and url.port == 6379
    for name in ("api", "trainer"):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
        assert services[name]["build"] == "." and (REPO_ROOT / "Dockerfile").is_file()


def test_dockerfile_base_and_install() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert "pip wheel" in text and "pip install" in text
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored
