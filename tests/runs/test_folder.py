"""The run folder: format version check, entries, catalogue."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recsys.errors import DataError
from recsys.runs.folder import RunFolder, completed_runs, new_run_id


def write_metadata(folder: Path, document: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metadata.json").write_text(json.dumps(document))


def test_version_1_folder_refused_naming_both_versions(tmp_path: Path) -> None:
    write_metadata(tmp_path / "old", {"format_version": 1, "run": "old", "lists": []})
    with pytest.raises(DataError, match=r"old/metadata\.json: run format version 1, this version reads 2 \(.*train again"):
        RunFolder(tmp_path / "old")
    write_metadata(tmp_path / "none", {"run": "x"})
    with pytest.raises(DataError, match="run format version None, this version reads 2"):
        RunFolder(tmp_path / "none")
    with pytest.raises(DataError, match="not a completed run"):
        RunFolder(tmp_path)


def test_entries_are_checked(tmp_path: Path) -> None:
    write_metadata(tmp_path, {"format_version": 2, "lists": [
        {"kind": "user", "model": "als", "path": "../../etc", "rows": 1, "n": 3},
        {"kind": "nope", "path": "lists/x", "n": 3},
        {"kind": "popular", "path": "lists/popular", "n": 0},
    ]})
    run = RunFolder(tmp_path)
    entries = run.list_entries()
    with pytest.raises(DataError, match="path leaves the run folder"):
        run.list(entries[0])
    with pytest.raises(DataError, match="kind must be one of"):
        run.list(entries[1])
    with pytest.raises(DataError, match="'n' must be a positive integer"):
        run.list(entries[2])
    with pytest.raises(DataError, match="no together list"):
        run.find_list("together")
    assert run.catalog() is None and run.catalog_rows() == 0
    with pytest.raises(DataError, match="only runs of the local backend keep id maps"):
        run.users()


def test_completed_runs_sorted_and_only_finished(tmp_path: Path) -> None:
    ids = sorted(new_run_id() for _ in range(3))
    for run_id in ids[:2]:
        write_metadata(tmp_path / run_id, {"format_version": 2})
    (tmp_path / ids[2]).mkdir()  # unfinished: no metadata
    (tmp_path / "notes").mkdir()
    assert [p.name for p in completed_runs(tmp_path)] == ids[:2]
    assert completed_runs(tmp_path / "missing") == []


def test_publisher_and_run_folder_import_neither_training_nor_models() -> None:
    """The run format sits below both sides: publishing needs no training code."""
    import subprocess
    import sys

    code = (
        "import sys, recsys.publish.publisher, recsys.runs.folder, recsys.runs.lists\n"
        "print(sorted(m for m in sys.modules if m.startswith(('recsys.pipeline', 'recsys.models'))))"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"
