"""List files: writer -> reader round trip, one row group per batch, Spark-written folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys.errors import DataError
from recsys.runs.lists import ListWriter, RunList, list_schema, rows_to_batch

ITEMS = np.array([f"item-{i}" for i in range(10)])
USERS = np.array([f"user-{u}" for u in range(7)])


def test_round_trip_drops_padding_and_empty_rows(tmp_path: Path) -> None:
    ids = np.array([[3, 1, -1], [-1, -1, -1], [0, 9, 2]], dtype=np.int32)
    scores = np.array([[0.9, 0.5, -np.inf], [-np.inf] * 3, [3.0, 2.0, 1.0]], dtype=np.float32)
    with ListWriter(tmp_path, "user", "als", 3, key_names=USERS, item_names=ITEMS) as writer:
        assert writer.write(np.array([4, 5, 6]), ids, scores) == 2
    entry = writer.close()
    assert entry == {"kind": "user", "model": "als", "path": "lists/user.als", "rows": 2, "n": 3}
    assert [p.name for p in (tmp_path / "lists" / "user.als").iterdir()] == ["part-00000.parquet"]
    rows = RunList("user", "als", 3, directory=tmp_path / "lists" / "user.als").read_all().to_pylist()
    assert rows == [
        {"key": "user-4", "item_ids": ["item-3", "item-1"], "scores": [pytest.approx(0.9), 0.5]},
        {"key": "user-6", "item_ids": ["item-0", "item-9", "item-2"], "scores": [3.0, 2.0, 1.0]},
    ]
    schema = pq.read_schema(tmp_path / "lists" / "user.als" / "part-00000.parquet")
    assert schema.field("item_ids").type == pa.list_(pa.string())
    assert schema.field("scores").type == pa.list_(pa.float32())


def test_confidence_and_lift_columns(tmp_path: Path) -> None:
    ids = np.array([[2, 5], [7, -1]])
    confidence = np.array([[0.5, 0.25], [0.75, 0.0]], dtype=np.float32)
    lift = confidence * 4
    with ListWriter(tmp_path, "together", None, 2, key_names=ITEMS, item_names=ITEMS, extra=("confidence", "lift")) as writer:
        writer.write(np.array([0, 1]), ids, confidence, {"confidence": confidence, "lift": lift})
    stored = RunList("together", None, 2, directory=tmp_path / writer.close()["path"])
    assert stored.columns() == ["key", "item_ids", "scores", "confidence", "lift"]
    rows = stored.read_all().to_pylist()
    assert rows[1] == {"key": "item-1", "item_ids": ["item-7"], "scores": [0.75], "confidence": [0.75], "lift": [3.0]}
    assert rows[0]["lift"] == [2.0, 1.0]
    with pytest.raises(ValueError, match="lacks the columns"):
        ListWriter(tmp_path / "x", "together", None, 2, key_names=ITEMS, item_names=ITEMS, extra=("lift",)).write(
            np.array([0]), ids[:1], confidence[:1]
        )


def test_writer_holds_one_batch_a_row_group_each(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    writer = ListWriter(tmp_path, "user", "m", 4, key_names=np.arange(1000).astype(str), item_names=ITEMS)
    sizes = []
    for start in range(0, 1000, 64):
        rows = np.arange(start, min(start + 64, 1000))
        ids = np.argsort(rng.random((len(rows), 10)), axis=1)[:, :4]
        writer.write(rows, ids, np.ones(ids.shape, dtype=np.float32))
        sizes.append(len(rows))
        # Each batch is in the file as soon as it is written (a row group per batch).
        assert writer.row_groups == len(sizes)
    writer.close()
    metadata = pq.read_metadata(writer.path)
    assert metadata.num_row_groups == len(sizes) == 16
    assert [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)] == sizes
    batches = list(RunList("user", "m", 4, directory=writer.directory).batches(100))
    assert max(b.num_rows for b in batches) <= 100 and sum(b.num_rows for b in batches) == 1000


def test_spark_style_folder_is_read_in_file_order(tmp_path: Path) -> None:
    """Files as Spark's df.write.parquet leaves them: part-*.snappy.parquet, _SUCCESS, .crc,
    Spark's list element name, an empty partition and an extra column."""
    folder = tmp_path / "lists" / "similar.als"
    folder.mkdir(parents=True)
    element = pa.list_(pa.field("element", pa.string()))
    floats = pa.list_(pa.field("element", pa.float32()))
    spark_schema = pa.schema([("key", pa.string()), ("item_ids", element), ("scores", floats), ("reasons", pa.list_(pa.string()))])

    def part(name: str, rows: list[tuple[str, list[str], list[float]]]) -> None:
        table = pa.table(
            {
                "key": [r[0] for r in rows],
                "item_ids": pa.array([r[1] for r in rows], type=element),
                "scores": pa.array([r[2] for r in rows], type=floats),
                "reasons": pa.array([["{}"] * len(r[1]) for r in rows], type=pa.list_(pa.string())),
            },
            schema=spark_schema,
        )
        pq.write_table(table, folder / name, compression="snappy")

    part("part-00001-4f2a-c000.snappy.parquet", [("item-3", ["item-1"], [0.5])])
    part("part-00000-4f2a-c000.snappy.parquet", [("item-0", ["item-2", "item-4"], [0.9, 0.1]), ("item-1", ["item-0"], [0.3])])
    part("part-00002-4f2a-c000.snappy.parquet", [])
    (folder / "_SUCCESS").write_text("")
    (folder / ".part-00000-4f2a-c000.snappy.parquet.crc").write_bytes(b"\x00crc")
    rows = RunList("similar", "als", 2, directory=folder).read_all()
    assert rows.column_names == ["key", "item_ids", "scores"]  # unknown columns not read
    assert rows["key"].to_pylist() == ["item-0", "item-1", "item-3"]
    assert rows["item_ids"].to_pylist()[0] == ["item-2", "item-4"]


def test_bad_files_are_named(tmp_path: Path) -> None:
    folder = tmp_path / "l"
    folder.mkdir()
    pq.write_table(pa.table({"key": ["a"], "item_ids": [["x", "y"]], "scores": [[1.0]]}), folder / "part-0.parquet")
    with pytest.raises(DataError, match=r"part-0\.parquet|key 'a': scores has 1 values, item_ids 2"):
        RunList("user", "m", 2, directory=folder).read_all()
    pq.write_table(pa.table({"key": ["a"], "scores": [[1.0]]}), folder / "part-0.parquet")
    with pytest.raises(DataError, match=r"part-0\.parquet: column 'item_ids' missing"):
        RunList("user", "m", 2, directory=folder).read_all()
    (folder / "part-0.parquet").write_text("not parquet")
    with pytest.raises(DataError, match=r"part-0\.parquet: not a readable Parquet file"):
        RunList("user", "m", 2, directory=folder).read_all()
    with pytest.raises(DataError, match="list folder not found"):
        RunList("user", "m", 2, directory=tmp_path / "nowhere").read_all()


def test_rows_to_batch_known_answer() -> None:
    batch = rows_to_batch(
        pa.array(["a", "b", "c"]), np.array([[1, -1], [-1, -1], [0, 1]]), np.array([[2.0, 0], [0, 0], [5.0, 4.0]]),
        pa.array(["x", "y"]),
    )
    assert batch.schema == list_schema()
    assert batch.to_pylist() == [
        {"key": "a", "item_ids": ["y"], "scores": [2.0]},
        {"key": "c", "item_ids": ["x", "y"], "scores": [5.0, 4.0]},
    ]
    json.dumps(batch.to_pylist())  # plain values only


def test_chunked_names_are_accepted(tmp_path: Path) -> None:
    """``pa.array`` of a large numpy unicode array (1.5M user ids) comes back chunked."""
    keys = pa.chunked_array([["u0", "u1"], ["u2"]])
    names = pa.chunked_array([ITEMS[:4].tolist(), ITEMS[4:].tolist()])
    with ListWriter(tmp_path, "user", "m", 2, key_names=keys, item_names=names) as writer:
        writer.write(np.array([2, 0]), np.array([[9, 1], [4, -1]]), np.ones((2, 2), dtype=np.float32))
    rows = RunList("user", "m", 2, directory=writer.directory).read_all().to_pylist()
    assert [(r["key"], r["item_ids"]) for r in rows] == [("u2", ["item-9", "item-1"]), ("u0", ["item-4"])]



def test_because_column_round_trip(tmp_path: Path) -> None:
    ids = np.array([[3, 1, -1], [0, 9, 2]], dtype=np.int32)
    because = np.array([[5, -1, -1], [-1, -1, 7]])
    with ListWriter(tmp_path, "user", "itemknn", 3, key_names=USERS, item_names=ITEMS, extra=("because",)) as writer:
        writer.write(np.array([0, 1]), ids, np.ones((2, 3), dtype=np.float32), {"because": because})
    stored = RunList("user", "itemknn", 3, directory=writer.directory)
    assert stored.columns() == ["key", "item_ids", "scores", "because"]
    rows = stored.read_all().to_pylist()
    assert [r["because"] for r in rows] == [["item-5", None], [None, None, "item-7"]]
    assert pq.read_schema(writer.path).field("because").type == pa.list_(pa.string())


def test_because_rows_may_be_null_but_not_of_another_length(tmp_path: Path) -> None:
    """A writer may leave a whole row's because null (= none); a length mismatch is refused."""
    folder = tmp_path / "user.m"
    folder.mkdir()
    table = pa.table(
        {
            "key": ["a", "b"],
            "item_ids": [["x", "y"], ["z"]],
            "scores": pa.array([[1.0, 0.5], [2.0]], type=pa.list_(pa.float32())),
            "because": pa.array([None, [""]], type=pa.list_(pa.string())),
        }
    )
    pq.write_table(table, folder / "part-0.parquet")
    assert RunList("user", "m", 2, directory=folder).read_all()["because"].to_pylist() == [None, [""]]
    pq.write_table(table.set_column(3, "because", pa.array([["q"], [""]], type=pa.list_(pa.string()))), folder / "part-0.parquet")
    with pytest.raises(DataError, match="because has 1 values, item_ids 2"):
        RunList("user", "m", 2, directory=folder).read_all()
