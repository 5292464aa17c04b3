"""``recsys data generate | stats | validate``."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from recsys.cli.main import cli, main

SMALL = ["--users", "300", "--items", "120", "--interactions", "6000"]


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The real entry point: errors become one line on stderr and exit code 1."""
    with pytest.raises(SystemExit) as done:
        main(list(args))
        raise SystemExit(0)
    captured = capsys.readouterr()
    return int(done.value.code or 0), captured.out, captured.err


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_generate_is_byte_identical_for_a_seed(tmp_path: Path, fmt: str) -> None:
    for out in ("a", "b", "c"):
        seed = "9" if out != "c" else "10"
        code, _ = run("data", "generate", *SMALL, "--seed", seed, "--format", fmt, "--out", str(tmp_path / out))
        assert code == 0
    for name in (f"interactions.{fmt}", f"catalog.{fmt}"):
        a = (tmp_path / "a" / name).read_bytes()
        assert a == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / f"interactions.{fmt}").read_bytes() != (tmp_path / "c" / f"interactions.{fmt}").read_bytes()


def test_generate_json_summary(tmp_path: Path) -> None:
    code, output = run("data", "generate", *SMALL, "--out", str(tmp_path / "shop"), "--json")
    assert code == 0
    summary = json.loads(output)
    assert summary["interactions"] == 6000 and summary["users"] == 300 and summary["catalog_items"] == 120
    assert summary["files"]["interactions"] == str(tmp_path / "shop" / "interactions.parquet")
    assert sum(summary["event_types"].values()) == 6000


def test_stats_json_and_table(tmp_path: Path) -> None:
    run("data", "generate", *SMALL, "--out", str(tmp_path / "shop"))
    code, output = run("data", "stats", str(tmp_path / "shop"), "--json")
    assert code == 0
    figures = json.loads(output)
    assert figures["users"] == 300 and figures["interactions"] == 6000
    assert figures["items"] + figures["cold_items"] == figures["catalog_items"] == 120
    assert figures["density"] == pytest.approx(figures["pairs"] / (figures["users"] * figures["items"]))
    assert figures["validation"]["ok"] is True
    assert set(figures["event_types"]) == {"view", "add_to_cart", "purchase"}

    code, table = run("data", "stats", str(tmp_path / "shop"))
    assert code == 0
    lines = table.splitlines()
    users_line = next(line for line in lines if line.startswith("users "))
    interactions_line = next(line for line in lines if line.startswith("interactions "))
    assert users_line.split()[-1] == "300" and interactions_line.split()[-1] == "6,000"
    assert users_line.index("300") == interactions_line.index("6,000")  # values start in one column
    assert "(interactions): 6000 rows, ok" in table


def bad_csv(tmp_path: Path) -> Path:
    path = tmp_path / "events.csv"
    path.write_text(
        "user_id,item_id,event_type,timestamp\n"
        "u1,i1,view,1700000000\n"
        "u2,i2,view,1700000000,extra\n"
        "u3,i3,view,1700000000\n"
        "u4,i4,view,not-a-time\n"
    )
    return path


def test_validate_lenient_reports_and_exits_zero(tmp_path: Path) -> None:
    code, output = run("data", "validate", str(bad_csv(tmp_path)))
    assert code == 0
    assert "malformed_row" in output and "unparseable" in output
    assert f"{tmp_path / 'events.csv'}, line 3, field '(field 5, no such column)': expected 4 fields, found 5" in output
    assert f"{tmp_path / 'events.csv'}, line 5, field 'timestamp': cannot parse 'not-a-time'" in output
    assert "2 of 4 rows would be dropped" in output

    code, output = run("data", "validate", str(bad_csv(tmp_path)), "--json")
    report = json.loads(output)
    assert report["ok"] is False and report["dropped"] == {"malformed_row": 1, "unparseable": 1}


def test_validate_strict_fails_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = bad_csv(tmp_path)
    code, out, err = run_main(capsys, "data", "validate", str(path), "--strict")
    assert code == 1 and out == ""
    assert err == f"error: {path}, line 3, field '(field 5, no such column)': expected 4 fields, found 5\n"
    code, out, _ = run_main(capsys, "data", "validate", str(tmp_path / "missing.csv"))
    assert code == 2  # click: the path does not exist


def test_validate_clean_data(tmp_path: Path) -> None:
    run("data", "generate", *SMALL, "--format", "csv", "--out", str(tmp_path / "shop"))
    code, output = run("data", "validate", str(tmp_path / "shop"), "--strict")
    assert code == 0 and output.strip().endswith("valid")


def test_command_line_entry_point_error_line(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("user_id,value\nu1,1\n")
    done = subprocess.run(
        [sys.executable, "-m", "recsys.cli.main", "data", "stats", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == f"error: {path}, line 1, field 'item_id': required column missing (the header has: user_id, value)\n"


@pytest.mark.movielens
def test_acceptance_movielens_stats(datasets_dir: Path) -> None:
    code, output = run("data", "stats", str(datasets_dir / "ml-100k"), "--format", "movielens-100k", "--json")
    assert code == 0
    figures = json.loads(output)
    assert (figures["users"], figures["items"], figures["interactions"]) == (943, 1682, 100_000)
    code, output = run("data", "stats", str(datasets_dir / "ml-latest-small"), "--format", "movielens-latest", "--json")
    figures = json.loads(output)
    assert (figures["users"], figures["items"], figures["interactions"]) == (610, 9724, 100_836)
    assert figures["catalog_items"] == 9742
