"""The data source of the commands that read data (``data stats|validate``, ``evaluate``, ``tune``).

Each takes ``--config FILE``: its ``[data]`` section gives the path, format, catalogue,
validation mode and the column mapping (docs/data.md), and ``[weighting]`` how events
become weights. Options given on the command line win over the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from recsys.data.mapping import DataMapping
from recsys.data.matrix import Weighting
from recsys.errors import ConfigError

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Pipeline configuration (TOML): [data] gives the path, catalogue and the column mapping, [weighting] the weights.",
)


@dataclass(frozen=True)
class DataInput:
    """What to read and how, from the options and the configuration file."""

    path: Path
    format: str
    catalog: Path | None
    strict: bool
    mapping: DataMapping
    weighting: Weighting

    def load_kwargs(self) -> dict[str, Any]:
        return {"format": self.format, "catalog": self.catalog, "strict": self.strict, "mapping": self.mapping}


def resolve_input(
    config_path: Path | None,
    path: Path | None,
    fmt: str | None,
    catalog: Path | None,
    strict: bool | None,
) -> DataInput:
    """Command-line options over the file's ``[data]`` (a ConfigError when there is no path)."""
    if config_path is None:
        if path is None:
            raise ConfigError("no data: give the data path (or --config FILE whose [data] path names it)")
        return DataInput(path, fmt or "auto", catalog, bool(strict), DataMapping(), Weighting())
    from recsys.pipeline.config import load_config

    config = load_config(config_path)
    data = config.data
    if path is None:
        if not data.path:
            raise ConfigError(f"{config_path}: data.path is not set; give the data path on the command line")
        path = Path(data.path)
    # A catalogue configured for another data source does not belong to this one.
    if catalog is None and data.catalog and (data.path is None or Path(data.path).resolve() == path.resolve()):
        catalog = Path(data.catalog)
    return DataInput(
        path=path,
        format=fmt or data.format,
        catalog=catalog,
        strict=data.validation == "strict" if strict is None else strict,
        mapping=DataMapping(**{name: getattr(data, name) for name in DataMapping.model_fields}),
        weighting=config.weighting,
    )
