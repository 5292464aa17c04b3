"""The one id rule: validation (strict and lenient) refuses what the API could not serve."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys.data import validation as v
from recsys.data.ids import MAX_ID_LENGTH, IdError, check_id, text_problem
from recsys.data.loaders import load, load_frames
from recsys.errors import DataError

NOW = 1_720_000_000


def frame(users: list[object], items: list[object] | None = None) -> pd.DataFrame:
    items = items or [f"i{k}" for k in range(len(users))]
    return pd.DataFrame({"user_id": users, "item_id": items, "event_type": "click", "timestamp": NOW - 10})


@pytest.mark.parametrize(
    ("bad", "why"),
    [("a\x00b", "NUL"), ("a\nb", "newline"), ("x" * 2_000_000, "2 MB"), ("a\u2028b", "line separator"),
     ("x\x85y", "C1 control")],
)
def test_strict_refuses_ids_the_api_cannot_serve(bad: str, why: str) -> None:
    with pytest.raises(DataError, match=r"field 'user_id': id .* is not a valid id"):
        load_frames(frame(["u1", bad]), strict=True, now=NOW)
    lenient = load_frames(frame(["u1", bad]), now=NOW)
    assert lenient.interactions["user_id"].tolist() == ["u1"], why
    assert lenient.report.dropped == {v.INVALID_ID: 1}


def test_parquet_struct_and_list_ids_are_refused(tmp_path: Path) -> None:
    table = pa.table({
        "user_id": pa.array([{"a": 1}, {"a": 2}, {"a": 3}], type=pa.struct([("a", pa.int64())])),
        "item_id": ["i1", "i2", "i3"],
        "timestamp": [NOW - 5] * 3,
    })
    path = tmp_path / "events.parquet"
    pq.write_table(table, path)
    # The failure: ids such as "{'a': 1}" were accepted and published.
    with pytest.raises(DataError, match="is not a valid id"):
        load(path, strict=True, now=NOW)
    listed = pa.table({"user_id": [["u1"], ["u2"]], "item_id": ["i1", "i2"], "timestamp": [NOW - 5] * 2})
    pq.write_table(listed, path)
    with pytest.raises(DataError, match="is not a valid id"):
        load(path, strict=True, now=NOW)


def test_good_ids_pass() -> None:
    data = load_frames(frame(["u1", 42, "Zoë-ünïcode", "a/b", "x" * MAX_ID_LENGTH]), strict=True, now=NOW)
    assert data.interactions["user_id"].tolist() == ["u1", "42", "Zoë-ünïcode", "a/b", "x" * MAX_ID_LENGTH]


def test_catalogue_without_a_shared_item() -> None:
    interactions = frame(["u1", "u2"], ["i1", "i2"])
    catalog = pd.DataFrame({"item_id": ["sku-1", "sku-2"], "title": ["a", "b"]})
    with pytest.raises(DataError, match="shares no item id with the interactions"):
        load_frames(interactions, catalog, strict=True, now=NOW)
    lenient = load_frames(interactions, catalog, now=NOW)
    assert not lenient.report.ok  # the failure: "ok": true
    assert any("shares no item id" in w for w in lenient.report.to_dict()["warnings"])
    assert any(line.startswith("WARNING: ") and "shares no item id" in line for line in lenient.report.lines())
    matching = load_frames(interactions, pd.DataFrame({"item_id": ["i1", "x"], "title": ["a", "b"]}), strict=True, now=NOW)
    assert matching.report.ok


def test_check_id_rule() -> None:
    assert check_id(7) == "7" and check_id("u1") == "u1"
    for bad in (True, 1.5, b"u1", {"a": 1}, ["u"], None):
        with pytest.raises(IdError, match="must be a string"):
            check_id(bad)
    assert text_problem("") == "must not be empty"
    assert "whitespace" in (text_problem(" u") or "")
    assert "control" in (text_problem("a\tb") or "")
    assert "longer than" in (text_problem("x" * (MAX_ID_LENGTH + 1)) or "")
