"""``recsys serve``: options, and configuration errors as one line (the server itself is
exercised by test_integration.py)."""

from __future__ import annotations

import os
import subprocess
import sys

from click.testing import CliRunner

from recsys.cli.serve import bind_address, serve
from tests.serving.conftest import REPO_ROOT


def test_help_lists_the_options() -> None:
    result = CliRunner().invoke(serve, ["--help"])
    assert result.exit_code == 0
    for option in ("--host", "--port", "--workers", "--worker-class", "--worker-connections", "--threads", "--redis", "--prefix", "RECSYS_PORT"):
        assert option in result.output


def test_serve_names_the_same_url_variable_as_the_store() -> None:
    from recsys.cli import serve as serve_module
    from recsys.store.connection import URL_ENV

    assert serve_module.URL_ENV == URL_ENV


def test_gunicorn_options_per_worker_class() -> None:
    from recsys.cli.serve import gunicorn_options, yield_to_other_clients

    gevent = gunicorn_options("127.0.0.1", 8000, 2, 4, 30, False, "info")
    assert gevent["worker_class"] == "gevent" and gevent["worker_connections"] == 1000
    assert gevent["post_request"] is yield_to_other_clients  # fairness between keep-alive clients
    threaded = gunicorn_options("127.0.0.1", 8000, 2, 4, 30, False, "info", worker_class="gthread")
    assert threaded["worker_class"] == "gthread" and threaded["threads"] == 4
    assert "post_request" not in threaded


def test_unknown_worker_class_is_a_usage_error() -> None:
    result = CliRunner().invoke(serve, ["--worker-class", "sync"])
    assert result.exit_code == 2 and "--worker-class" in result.output


def test_bind_address() -> None:
    assert bind_address("0.0.0.0", 8000) == "0.0.0.0:8000"
    assert bind_address("::1", 8000) == "[::1]:8000"
    assert bind_address("[::]", 80) == "[::]:80"


def test_invalid_configuration_is_one_line_and_exit_1(redis_url: str) -> None:
    env = {**os.environ, "RECSYS_REDIS_URL": redis_url, "RECSYS_MAX_N": "lots", "PYTHONPATH": str(REPO_ROOT)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    result = subprocess.run(
        [sys.executable, "-m", "recsys.cli.main", "serve", "--port", "0"],
        env=env, capture_output=True, text=True, timeout=60, cwd=REPO_ROOT,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: invalid API configuration: RECSYS_MAX_N"), result.stderr


def test_bad_option_value_is_a_usage_error() -> None:
    result = CliRunner().invoke(serve, ["--workers", "0"])
    assert result.exit_code == 2 and "--workers" in result.output
