"""``recsys evaluate`` / ``recsys tune`` through click's runner and the real entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from recsys.cli.evaluate import evaluate, tune
from recsys.errors import ConfigError, ModelError
from tests.models.contract import cluster_interactions


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "events.csv"
    cluster_interactions()[0].to_csv(path, index=False)
    return path


def test_evaluate_table_json_and_plot(data_file: Path, tmp_path: Path) -> None:
    out, png = tmp_path / "result.json", tmp_path / "chart.png"
    result = CliRunner().invoke(
        evaluate,
        ["--data", str(data_file), "--models", "popular,itemknn", "--param", "itemknn.k=5", "--k", "5",
         "--split", "leave-last", "--leave-k", "2", "--json", str(out), "--plot", str(png)],
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[1].startswith("leave-last split (leave_k=2, seed=42)")
    header = lines[2].split()
    assert header[:4] == ["model", "precision@5", "recall@5", "ndcg@5"]
    assert header[-2:] == ["fit_s", "recommend_s"]
    assert [line.split()[0] for line in lines[4:6]] == ["popular", "itemknn"]
    document = json.loads(out.read_text())
    assert list(document["models"]) == ["popular", "itemknn"]
    assert document["split"]["method"] == "leave-last" and document["k"] == 5
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_json_to_stdout(data_file: Path) -> None:
    result = CliRunner().invoke(evaluate, ["--data", str(data_file), "--json", "-", "--split", "temporal"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["split"]["cold_users"] >= 0 and "popular" in document["models"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--param", "popular.factors=3"], "popular: unknown parameter 'factors'"),
        (["--param", "factors=3"], "MODEL.NAME=VALUE"),
        (["--models", "nope"], "unknown model 'nope'"),
        (["--relevance", "good"], "--relevance"),
        (["--test-size", "1.5"], "test_size"),
    ],
)
def test_evaluate_bad_options(data_file: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(evaluate, ["--data", str(data_file), *args])
    assert isinstance(result.exception, ConfigError)
    assert message in str(result.exception)


def test_evaluate_failed_model_exit_code(data_file: Path) -> None:
    # "content" needs a catalogue, which this run lacks: reported, and the run fails at the end.
    result = CliRunner().invoke(evaluate, ["--data", str(data_file), "--models", "popular,content"])
    assert isinstance(result.exception, ModelError)
    assert "content" in str(result.exception)
    assert result.output.splitlines()[4].split()[0] == "popular"


def test_tune_cli(data_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "tune.json"
    result = CliRunner().invoke(
        tune,
        ["popular", "--data", str(data_file), "--param", "mode=users,weight", "--metric", "map@5", "--final", "--json", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert "best on validation" in result.output and "scored on test" in result.output
    document = json.loads(out.read_text())
    assert [t["params"]["mode"] for t in document["trials"]] == ["users", "weight"]
    assert document["best"]["params"]["mode"] in ("users", "weight")
    assert "map@5" in document["test"]["metrics"]


def test_entry_point_one_line_error(data_file: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "recsys.cli.main", "evaluate", "--data", str(data_file), "--param", "popular.nope=1"],
        capture_output=True, text=True, timeout=60,
    )
    assert completed.returncode == 1
    assert completed.stderr.strip().splitlines()[-1].startswith("error: popular: unknown parameter 'nope'")


def test_evaluate_flags_a_model_scoring_zero(data_file: Path, tmp_path: Path) -> None:
    # One neighbour per item is the item itself: once seen items are removed, no list is left.
    out = tmp_path / "result.json"
    result = CliRunner().invoke(
        evaluate, ["--data", str(data_file), "--models", "popular,itemknn", "--param", "itemknn.k=1", "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text())
    assert list(document["warnings"]) == ["itemknn"]
    assert "recommends no item at all" in document["warnings"]["itemknn"]
    assert "warning: itemknn scores 0 on every ranking metric at 10" in result.output
