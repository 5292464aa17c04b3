"""``recsys segments`` and ``recsys propensity`` from the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
from click.testing import CliRunner

from recsys.cli.main import cli
from tests.marketing.fixtures import planted_propensity, planted_segments


def _write(folder: Path, interactions: pd.DataFrame, catalog: pd.DataFrame) -> Path:
    folder.mkdir()
    interactions.to_csv(folder / "interactions.csv", index=False)
    catalog.to_csv(folder / "catalog.csv", index=False)
    return folder


def test_segments_command(tmp_path: Path) -> None:
    shop = _write(tmp_path / "shop", *planted_segments()[:2])
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["segments", "--data", str(shop), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["k"] == 3 and document["customers"] == 240
    assert {p.name for p in out.iterdir()} == {"segments.parquet", "segments.json", "segments.png"}
    assert len(pd.read_parquet(out / "segments.parquet")) == 240
    table = CliRunner().invoke(cli, ["segments", "--data", str(shop), "--out", str(out), "--k", "3"])
    assert "recent, frequent, high spend" in table.output


def test_propensity_command(tmp_path: Path) -> None:
    interactions, catalog, _ = planted_propensity(users=1500)
    shop = _write(tmp_path / "shop", interactions, catalog)
    audience = tmp_path / "audience.csv"
    result = CliRunner().invoke(
        cli, ["propensity", "--data", str(shop), "--target", "category=tea", "--horizon", "14d", "--k", "50",
              "--out", str(audience), "--json"],
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["model"]["auc"] > document["baseline"]["auc"]
    assert len(pd.read_csv(audience)) == 50 and len(document["audience"]) == 50


def test_errors_are_one_line(tmp_path: Path) -> None:
    shop = _write(tmp_path / "shop", *planted_segments()[:2])
    for args, message in (
        (["propensity", "--data", str(shop), "--target", "tea"], "--target: expected category=NAME"),
        (["propensity", "--data", str(shop), "--target", "category=tea", "--horizon", "soon"], "--horizon"),
        (["segments", "--data", str(shop), "--k", "1"], "--k"),
        (["segments", "--data", str(shop), "--k", "many"], "--k"),
    ):
        completed = subprocess.run(
            [sys.executable, "-c", "from recsys.cli.main import main; main()", *args],
            capture_output=True, text=True, env={**os.environ}, timeout=120,
        )
        assert completed.returncode != 0
        assert message in completed.stderr and "Traceback" not in completed.stderr, completed.stderr
