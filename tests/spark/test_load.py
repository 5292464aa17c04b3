"""The Spark reader reports a bad row exactly as the local loader does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from recsys.data.loaders import load
from recsys.errors import DataError
from recsys.spark.load import read_interactions

NOW = 1_750_000_000
BAD_CSV = """user_id,item_id,event_type,value,timestamp,order_id
u1,i1,purchase,1,1700000000,o1
u1,i2,purchase,2,1700000000,o1
,i3,view,1,1700000000,o2
u2,i1,Add-To-Cart,1,1700000100,o3
u2,i2,purchase,abc,1700000100,o3
u3,i3,view,1,1700000100
u4,i4,view,1,1600000000000,o4

u5,i5,cancel,1,1700000000,o5
u6,i6,view,-3,1700000000,o6
u7,i7,view,1,2900000000,o7
u1,i1,purchase,1,1700000000,o1
u8,i8,PageView,1,1700000000,o8
u8,i9,wishlist,1,1700000000,o8
u2,i1,Add-To-Cart,1,1700000100,o3
"""


@pytest.fixture
def bad_csv(tmp_path: Path) -> Path:
    path = tmp_path / "interactions.csv"
    path.write_text(BAD_CSV)
    return path


@pytest.mark.parametrize("chunk_rows", [3, 1000])
def test_bad_rows_reported_as_the_local_loader_reports_them(spark: Any, bad_csv: Path, chunk_rows: int) -> None:
    local = load(bad_csv, now=NOW)
    # chunk_rows=3: the duplicates on lines 13 and 16 are in other chunks than their originals.
    remote = read_interactions(spark, str(bad_csv), now=NOW, chunk_rows=chunk_rows)
    assert remote.report.to_dict() == local.report.to_dict()
    assert remote.report.lines() == local.report.lines()
    assert local.report.dropped["duplicate"] == 2
    rows = remote.interactions.orderBy("ordinal").toPandas().drop(columns="ordinal")
    expected = local.interactions
    assert list(rows.columns) == list(expected.columns)
    for column in expected.columns:
        assert _plain(rows[column]) == _plain(expected[column]), column


def _plain(values: pd.Series) -> list[object]:
    """Values as comparable Python objects, None where missing (dtypes differ by reader)."""
    return [None if pd.isna(v) else (float(v) if isinstance(v, (int, float)) else str(v)) for v in values.tolist()]


def test_strict_mode_fails_on_the_same_line_and_field(spark: Any, bad_csv: Path) -> None:
    with pytest.raises(DataError) as local:
        load(bad_csv, strict=True, now=NOW)
    with pytest.raises(DataError) as remote:
        read_interactions(spark, str(bad_csv), strict=True, now=NOW, chunk_rows=3)
    assert str(remote.value) == str(local.value)
    assert "line 4" in str(remote.value) and "user_id" in str(remote.value)


def test_parquet_rows_and_missing_column(spark: Any, tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"userId": ["a", "b", None, "a", "c"], "sku": ["x", "y", "z", "x", "w"], "rating": [4.0, None, 3.0, 4.0, 5.0]}
    )
    path = tmp_path / "events.parquet"
    frame.to_parquet(path)
    local = load(path, now=NOW)
    remote = read_interactions(spark, str(path), now=NOW, chunk_rows=2)
    assert remote.report.to_dict() == local.report.to_dict()
    assert remote.report.files[0].issues[0].unit == "row"

    frame.drop(columns="sku").to_parquet(tmp_path / "no_item.parquet")
    with pytest.raises(DataError) as local_error:
        load(tmp_path / "no_item.parquet")
    with pytest.raises(DataError) as remote_error:
        read_interactions(spark, str(tmp_path / "no_item.parquet"))
    assert str(remote_error.value) == str(local_error.value)
