"""Run folders of either format lose a forgotten user's rows; unreadable ones are deleted."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from recsys.privacy.runs import scrub_run, scrub_runs
from recsys.privacy.tombstones import hash_user_id

RUN = "20260101T000000.000Z-abcdef"


def parquet_run(root: Path) -> Path:
    """A run folder in format 2: two list files under lists/user.als, a model folder."""
    folder = root / RUN
    (folder / "lists" / "user.als").mkdir(parents=True)
    (folder / "lists" / "similar.als").mkdir(parents=True)
    (folder / "models" / "als").mkdir(parents=True)
    (folder / "models" / "als" / "factors.npz").write_bytes(b"gone")
    lists = folder / "lists"
    pq.write_table(pa.table({"key": ["a", "gone", "b"], "item_ids": [["i1"], ["i2"], ["i3"]], "scores": [[1.0], [2.0], [3.0]]}),
                   lists / "user.als" / "part-00000.parquet")
    pq.write_table(pa.table({"key": ["c", "gone"], "item_ids": [["i1"], ["i4"]], "scores": [[1.0], [0.5]]}),
                   lists / "user.als" / "part-00001.parquet")
    # An item id equal to the user id is an item, not the user: similar lists are kept whole.
    pq.write_table(pa.table({"key": ["gone"], "item_ids": [["i1"]], "scores": [[1.0]]}), lists / "similar.als" / "part-00000.parquet")
    metadata = {"format_version": 2, "run": RUN, "counts": {"users": 4},
                "lists": [{"kind": "user", "model": "als", "path": "lists/user.als", "rows": 5, "n": 1},
                          {"kind": "similar", "model": "als", "path": "lists/similar.als", "rows": 1, "n": 1}]}
    (folder / "metadata.json").write_text(json.dumps(metadata), encoding="utf-8")
    return folder


def keys(folder: Path, name: str) -> list[str]:
    return [k for f in sorted((folder / "lists" / name).glob("*.parquet")) for k in pq.read_table(f).column("key").to_pylist()]


def test_parquet_run_rewritten_without_the_user(tmp_path: Path) -> None:
    folder = parquet_run(tmp_path)
    outcome, rows = scrub_run(folder, {hash_user_id("gone")})
    assert outcome == "rewritten" and rows == {hash_user_id("gone"): 1}
    assert keys(folder, "user.als") == ["a", "b", "c"] and keys(folder, "similar.als") == ["gone"]
    metadata = json.loads((folder / "metadata.json").read_text())
    assert metadata["lists"][0]["rows"] == 3 and metadata["counts"]["users"] == 3
    assert metadata["erasures"] == {"users_removed": 1, "models_removed": ["als"]}
    assert not (folder / "models" / "als").exists()
    assert scrub_run(folder, {hash_user_id("gone")}) == (None, {})  # nothing left to remove


def test_delete_mode_and_unreadable_runs(tmp_path: Path) -> None:
    parquet_run(tmp_path)
    result = scrub_runs(tmp_path, {hash_user_id("gone")}, "delete")
    assert result.deleted == [RUN] and not (tmp_path / RUN).exists()
    folder = parquet_run(tmp_path)
    (folder / "metadata.json").write_text(json.dumps({"format_version": 9, "run": RUN}), encoding="utf-8")
    assert scrub_runs(tmp_path, {hash_user_id("someone")}).deleted == [RUN]
    assert scrub_runs(tmp_path, set()).to_json() == {"folder": str(tmp_path), "rewritten": [], "deleted": [], "untouched": 0}
