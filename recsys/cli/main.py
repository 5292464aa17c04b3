"""Entry point of the ``recsys`` command.

Sub-commands live in their own modules and are imported only when used, so ``recsys
--help`` is instant and a command never pays for another's heavy imports. Every
:class:`~recsys.errors.RecsysError` becomes one line on stderr and exit code 1.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

import click

from recsys import __version__
from recsys.errors import RecsysError

# name -> (module, attribute, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "data": ("recsys.cli.data", "data", "Generate, inspect and validate interaction data."),
    "evaluate": ("recsys.cli.evaluate", "evaluate", "Compare models offline on a held-out split."),
    "tune": ("recsys.cli.evaluate", "tune", "Grid-search a model's parameters on a validation split."),
    "train": ("recsys.cli.pipeline", "train", "Train the configured models into a run folder."),
    "publish": ("recsys.cli.pipeline", "publish", "Publish a run's lists to Redis as a new live version."),
    "pipeline": ("recsys.cli.pipeline", "pipeline", "Train and publish: the batch retraining job."),
    "versions": ("recsys.cli.pipeline", "versions", "List published versions."),
    "rollback": ("recsys.cli.pipeline", "rollback", "Make an earlier version live again."),
    "serve": ("recsys.cli.serve", "serve", "Run the recommendation API under gunicorn."),
    "demo": ("recsys.cli.demo", "demo", "Demo data -> train -> publish -> API, in one command."),
    "ab": ("recsys.cli.ab", "ab", "Create, list, stop and report A/B experiments."),
    "redis": ("recsys.cli.redis", "redis_group", "Start, stop or locate the embedded Redis."),
    "segments": ("recsys.cli.marketing", "segments", "Cluster customers into named segments (RFM + K-means)."),
    "propensity": ("recsys.cli.marketing", "propensity", "Who is likely to buy a category or item soon (logistic regression)."),
    "forget": ("recsys.cli.privacy", "forget", "Forget users everywhere (erasure), with a receipt."),
    "items": ("recsys.cli.privacy", "items", "Change price, stock, visibility of items between trainings."),
    "events": ("recsys.cli.privacy", "events", "Archive the events stream into Parquet files."),
}


class LazyGroup(click.Group):
    """A group whose sub-commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module_name, attribute, _ = COMMANDS[cmd_name]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name == module_name:
                return None
            raise
        return getattr(module, attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="recsys")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """recsys: recommendations for e-commerce, from interaction logs to a low-latency API."""
    level = logging.WARNING - 10 * min(verbose, 2) if verbose else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; a RecsysError (or a bad file) becomes one line on stderr, not a traceback."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        cli.main(args=argv, prog_name="recsys", standalone_mode=False)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except RecsysError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)
    except (FileNotFoundError, PermissionError, IsADirectoryError) as error:
        click.echo(f"error: {error.strerror}: {error.filename}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
