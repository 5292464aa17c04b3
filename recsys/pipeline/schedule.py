"""Running the job on a schedule: ``--every 6h``.

The job runs at once, then every interval (measured start to start; a run longer than the
interval is followed by the next one straight away). A failed run logs one error line and
the schedule goes on. SIGTERM (or SIGINT) stops the loop cleanly: while sleeping it exits at
once; during a run it lets that run finish (a second signal aborts it; an aborted publish
leaves the live version as it was).
"""

from __future__ import annotations

import logging
import re
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

from recsys.errors import ConfigError, RecsysError

log = logging.getLogger(__name__)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


def parse_interval(text: str) -> float:
    """Seconds in ``"90s"``, ``"30m"``, ``"6h"``, ``"1d"``, ``"1h30m"`` or a bare number of seconds."""
    value = str(text).strip().lower()
    try:
        seconds = float(value)
    except ValueError:
        parts = _PART.findall(value)
        if not parts or "".join(n + u for n, u in parts) != value:
            raise ConfigError(
                f"invalid interval {text!r} (use a number with a unit s, m, h or d: '90s', '30m', '6h', '1d', '1h30m')"
            ) from None
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds < 1:
        raise ConfigError(f"invalid interval {text!r}: must be at least 1 second")
    return seconds


class Scheduler:
    """Calls ``job`` every ``interval`` seconds until stopped."""

    def __init__(self, interval: float, job: Callable[[], object], *, max_runs: int | None = None) -> None:
        self.interval = interval
        self.job = job
        self.max_runs = max_runs
        self.stop_event = threading.Event()
        self.running = False
        self.runs = 0
        self.failures = 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.running and self.stop_event.is_set():
            raise KeyboardInterrupt  # second signal during a run: abort it
        name = signal.Signals(signum).name
        log.info("%s received: %s", name, "stopping after the current run" if self.running else "stopping")
        self.stop_event.set()

    def install_signal_handlers(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)

    def run_forever(self) -> int:
        """Loop until stopped; the number of failed runs."""
        while not self.stop_event.is_set():
            started = time.monotonic()
            self.running = True
            try:
                self.job()
            except RecsysError as error:
                self.failures += 1
                log.error("run failed: %s", error)
            except Exception as error:  # noqa: BLE001 - the schedule must survive any failed run
                self.failures += 1
                log.error("run failed: %s: %s", type(error).__name__, error)
            finally:
                self.running = False
            self.runs += 1
            if self.max_runs is not None and self.runs >= self.max_runs:
                break
            wait = max(0.0, self.interval - (time.monotonic() - started))
            if wait and not self.stop_event.is_set():
                log.info("next run in %.0fs", wait)
            self.stop_event.wait(wait)
        log.info("schedule stopped after %d runs (%d failed)", self.runs, self.failures)
        return self.failures
