"""``recsys ab``: create, list, stop and report through the command line (CliRunner, real Redis)."""

from __future__ import annotations

import json
import time

import pytest
import redis
from click.testing import CliRunner

from recsys.abtest.events import validate_events, write_events
from recsys.abtest.experiments import ExperimentStore
from recsys.cli.ab import parse_variant
from recsys.cli.main import cli, main
from recsys.store.keys import KeyLayout
from tests.abtest.published import publish_meta


@pytest.fixture
def run(redis_url: str, key_prefix: str, redis_client: redis.Redis):  # noqa: ANN201 - returns a callable
    publish_meta(redis_client, KeyLayout(key_prefix), "v1", ["als", "ease", "itemknn"])
    runner = CliRunner()

    def invoke(*args: str):  # noqa: ANN202
        return runner.invoke(cli, ["ab", "--redis-url", redis_url, "--prefix", key_prefix, *args])

    return invoke


def test_parse_variant() -> None:
    assert parse_variant("control=als") == {"name": "control", "model": "als"}
    assert parse_variant("t=ease:2.5,exclude_recent=false,fallback=popular") == {
        "name": "t", "model": "ease", "weight": 2.5, "options": {"exclude_recent": False, "fallback": "popular"}
    }


def test_create_list_stop(run, redis_client: redis.Redis, key_prefix: str) -> None:  # noqa: ANN001
    result = run("create", "home", "--variant", "control=als:1", "--variant", "treatment=ease:3",
                 "--salt", "pepper", "--start", "2025-01-01T00:00:00Z", "--json")
    assert result.exit_code == 0, result.output
    created = json.loads(result.output)
    assert created["salt"] == "pepper" and created["start"] == 1735689600.0
    assert [v["weight"] for v in created["variants"]] == [1.0, 3.0]
    stored = ExperimentStore(redis_client, KeyLayout(key_prefix)).get("home")
    assert stored.control == "control" and stored.variants[1].model == "ease"

    table = run("list").output
    assert "home" in table and "active" in table and "treatment=ease:3" in table
    listed = json.loads(run("list", "--json").output)
    assert [e["name"] for e in listed] == ["home"] and listed[0]["active"] is True

    result = run("create", "second", "--variant", "a=als", "--variant", "b=ease")
    assert result.exit_code != 0 and "still running" in str(result.exception)  # one running experiment per placement
    elsewhere = run("create", "second", "--variant", "a=als", "--variant", "b=ease", "--placement", "product")
    assert elsewhere.exit_code == 0 and "on placement product" in elsewhere.output

    stopped = json.loads(run("stop", "home", "--json").output)
    assert stopped["status"] == "stopped" and stopped["stopped_at"] is not None
    assert "over" in run("list").output


def test_create_from_file_with_flag_override(run, tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "exp.json"
    path.write_text(json.dumps({"name": "from-file", "unit": "session",
                                "variants": [{"name": "a", "model": "als"}, {"name": "b", "model": "ease", "weight": 2}]}))
    result = run("create", "--file", str(path), "--salt", "s1", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["unit"] == "session" and document["salt"] == "s1" and document["name"] == "from-file"


def test_create_from_a_file_written_for_the_api(run, tmp_path) -> None:  # noqa: ANN001
    # The body of POST /v1/admin/experiments works as a --file too: one JSON for both.
    path = tmp_path / "exp.json"
    path.write_text(json.dumps({"name": "api-shaped", "start": 1_900_000_000, "duration": 3600,
                                "variants": {"treatment": {"model": "ease", "weight": 2}, "control": {"model": "als"}}}))
    document = json.loads(run("create", "--file", str(path), "--json").output)
    assert [(v["name"], v["model"], v["weight"]) for v in document["variants"]] == [("control", "als", 1.0), ("treatment", "ease", 2.0)]
    assert document["control"] == "control" and document["end"] == 1_900_003_600
    flags = run("create", "flagged", "--file", str(path), "--placement", "p2", "--variant", "a=als", "--variant", "b=ease", "--json")
    assert flags.exit_code == 0, flags.output
    assert json.loads(flags.output)["control"] == "a"  # the flags' variants, their first the control
    path.write_text(json.dumps({"name": "no-control", "variants": {"a": {"model": "als"}, "b": {"model": "ease"}}}))
    refused = run("create", "--file", str(path))
    assert refused.exit_code != 0 and "keyed 'control'" in str(refused.exception)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create", "x", "--variant", "onlyname"], "NAME=MODEL"),
        (["create", "x", "--variant", "a=als:heavy", "--variant", "b=ease"], "not a number"),
        (["create", "x", "--variant", "a=als"], "variants"),
        (["create", "x"], "--variant"),
        (["create", "x", "--variant", "a=als", "--variant", "b=ease", "--end", "next week"], "--end"),
        (["create", "x", "--variant", "a=als", "--variant", "b=ease,colour=red"], "unknown option"),
        (["create", "x", "--variant", "a=als", "--variant", "b=ease", "--start", "2030-01-02", "--end", "2030-01-01"], "end must be after start"),
        (["stop", "missing"], "no experiment named 'missing'"),
        (["report", "missing"], "no experiment named 'missing'"),
    ],
)
def test_errors_are_one_line(redis_url: str, key_prefix: str, redis_client: redis.Redis, args: list[str], message: str,
                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["ab", "--redis-url", redis_url, "--prefix", key_prefix, *args])
    assert exited.value.code != 0
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1, err


def test_bad_json_file_names_the_file(redis_url: str, key_prefix: str, tmp_path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: ANN001
    path = tmp_path / "broken.json"
    path.write_text("{nope")
    with pytest.raises(SystemExit):
        main(["ab", "--redis-url", redis_url, "--prefix", key_prefix, "create", "--file", str(path)])
    assert "broken.json" in capsys.readouterr().err


def test_report_table_json_plot_and_srm_warning(run, redis_client: redis.Redis, key_prefix: str, tmp_path) -> None:  # noqa: ANN001
    now = time.time()
    assert run("create", "rep", "--variant", "control=als", "--variant", "treatment=ease",
               "--salt", "fixed", "--start", str(now - 600)).exit_code == 0
    store = ExperimentStore(redis_client, KeyLayout(key_prefix))
    from recsys.abtest.assignment import assign_many

    users = [f"u{k}" for k in range(1200)]
    variants = assign_many(store.get("rep"), users)
    # Drop a third of the treatment's users: a broken split the report must flag.
    kept = [u for k, (u, v) in enumerate(zip(users, variants)) if v == "control" or k % 3]
    raw = [{"type": "impression", "user_id": u, "item_id": "i", "timestamp": now - 60} for u in kept]
    raw += [{"type": "click", "user_id": u, "item_id": "i", "timestamp": now - 59} for u in kept[::5]]
    for start in range(0, len(raw), 500):
        write_events(redis_client, KeyLayout(key_prefix), validate_events(raw[start : start + 500], now=now))

    result = run("report", "rep")
    assert result.exit_code == 0
    assert "WARNING: SRM" in result.output  # CliRunner mixes stderr into output
    assert "control (control)" in result.output and "vs control" in result.output

    plot = tmp_path / "rep.png"
    result = run("report", "rep", "--json", "--plot", str(plot))
    document = json.loads(result.stdout)
    assert document["srm"]["mismatch"] is True
    assert sum(v["units"] for v in document["variants"]) == len(kept)
    assert plot.read_bytes()[:4] == b"\x89PNG"
