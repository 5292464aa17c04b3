"""The scheduled retraining job: ``python -m jobs.retrain``.

Everything comes from the environment and the configuration file:

* ``RECSYS_CONFIG``: the TOML file (default ``recsys.toml``; the built-in defaults when the
  default file does not exist);
* ``RECSYS_EVERY``: interval between runs ("6h", "30m"...; "once" = a single run), else the
  file's ``[schedule] every``, else a single run;
* ``RECSYS_DATA`` / ``RECSYS_DATA_FORMAT``: override the file's data source;
* ``RECSYS_REDIS_URL``, ``RECSYS_KEY_PREFIX``, ``RECSYS_HOME``: where lists are published.

Before each training, erasures asked through the API are applied to the run folders and
the event archive, and the events stream is moved into the archive when ``[events]
archive`` is set (see docs/privacy.md).

A single run exits 1 with one error line on failure; a schedule logs failed runs and goes
on until SIGTERM.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from recsys.errors import RecsysError

CONFIG_ENV = "RECSYS_CONFIG"
EVERY_ENV = "RECSYS_EVERY"
DATA_ENV = "RECSYS_DATA"
FORMAT_ENV = "RECSYS_DATA_FORMAT"


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from recsys.cli.pipeline import run_scheduled
    from recsys.pipeline.config import load_config

    try:
        configured = os.environ.get(CONFIG_ENV)
        path = Path(configured) if configured else Path("recsys.toml")
        config = load_config(path if configured or path.is_file() else None)
        config = config.with_data(os.environ.get(DATA_ENV) or None, os.environ.get(FORMAT_ENV) or None)
        every = os.environ.get(EVERY_ENV) or config.schedule.every
        if every and every.strip().lower() == "once":
            every = None
        run_scheduled(config, every=every)
    except RecsysError as error:
        click.echo(f"error: {error}", err=True)
        return 1
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
