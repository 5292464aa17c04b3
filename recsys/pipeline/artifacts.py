"""The run folder: what ``recsys train`` writes and ``recsys publish`` reads.

Layout of ``runs/<run id>/`` (all arrays ``.npz``, loaded with ``allow_pickle=False``)::

    metadata.json            run id, data fingerprint, counts, validation report, timings,
                             configuration, holdout metrics, and the index of lists below
    users.npz, items.npz     id maps (raw id <-> index)
    catalog.npz              item_id, title, category (unicode), price (float64, NaN = unknown),
                             in_stock (bool), each shape (n_items,), in item index order
                             (empty fields for every item when the data has no catalogue)
    models/<name>/           each fitted model (Recommender.save)
    lists/user.<model>.npz   ids int32 (n_users, n), scores float32 (n_users, n)
    lists/similar.<model>.npz  ids, scores of shape (n_items, n)
    lists/together.npz       ids, scores, confidence, lift of shape (n_items, n)
    lists/popular.npz        categories (k+1,) unicode, "" = overall first; ids, scores (k+1, n)

Item indices are -1 (scores -inf) where a list has fewer than ``n`` entries. Nothing here
imports a model: the publisher reads a run without the training libraries.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys.data import schema
from recsys.data.idmap import IdMap
from recsys.errors import DataError

METADATA_FILE = "metadata.json"
RUN_FORMAT_VERSION = 1
CATALOG_FIELDS = (schema.TITLE, schema.CATEGORY, schema.PRICE, schema.IN_STOCK)
LIST_KINDS = ("user", "similar", "together", "popular")
RUN_ID_PATTERN = re.compile(r"^\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{6}$")


def new_run_id(now: datetime | None = None) -> str:
    """Sortable, unique id: UTC time to the millisecond plus a random suffix."""
    moment = now or datetime.now(UTC)
    return f"{moment:%Y%m%dT%H%M%S}.{moment.microsecond // 1000:03d}Z-{secrets.token_hex(3)}"


@dataclass
class ListArrays:
    """One kind of precomputed list for every row (user, item or category).

    ``ids`` (rows, n) int32 item indices (-1 = padding), ``scores`` (rows, n) float32;
    ``extra`` holds same-shaped arrays published beside the scores (together: "c", "l").
    ``labels`` names the rows only for ``popular`` (category names, "" = overall); for the
    other kinds row ``r`` is user or item index ``r``.
    """

    kind: str
    model: str | None
    ids: np.ndarray
    scores: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    labels: np.ndarray | None = None

    @property
    def name(self) -> str:
        return f"{self.kind}.{self.model}" if self.model else self.kind

    @property
    def length(self) -> int:
        return int(self.ids.shape[1])

    def save(self, folder: Path) -> dict[str, Any]:
        """Write ``lists/<name>.npz`` under ``folder``; the index entry for metadata.json."""
        relative = Path("lists") / f"{self.name}.npz"
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {"ids": self.ids, "scores": self.scores}
        arrays.update({f"extra__{k}": v for k, v in self.extra.items()})
        if self.labels is not None:
            arrays["labels"] = self.labels
        with open(folder / relative, "wb") as handle:
            np.savez(handle, **arrays)
        return {
            "kind": self.kind,
            "model": self.model,
            "file": relative.as_posix(),
            "rows": int(self.ids.shape[0]),
            "n": self.length,
            "non_empty": int((self.ids[:, 0] >= 0).sum()) if self.ids.shape[1] else 0,
        }

    @classmethod
    def load(cls, folder: Path, entry: dict[str, Any]) -> ListArrays:
        path = folder / entry["file"]
        with np.load(path, allow_pickle=False) as data:
            extra = {k.removeprefix("extra__"): data[k] for k in data.files if k.startswith("extra__")}
            labels = data["labels"] if "labels" in data.files else None
            return cls(entry["kind"], entry.get("model"), data["ids"], data["scores"], extra, labels)


def save_catalog(catalog: pd.DataFrame, path: Path) -> None:
    """The catalogue fields the API returns, aligned to the item map (see module docstring)."""
    arrays = {
        schema.ITEM_ID: catalog[schema.ITEM_ID].to_numpy(dtype=str),
        schema.TITLE: catalog[schema.TITLE].astype("string").fillna("").to_numpy(dtype=str),
        schema.CATEGORY: catalog[schema.CATEGORY].astype("string").fillna("").to_numpy(dtype=str),
        schema.PRICE: pd.to_numeric(catalog[schema.PRICE], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan),
        schema.IN_STOCK: catalog[schema.IN_STOCK].astype("boolean").fillna(True).to_numpy(dtype=bool),
    }
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


class RunFolder:
    """A completed run folder, read lazily."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        meta_file = self.path / METADATA_FILE
        if not self.path.is_dir():
            raise DataError(f"{self.path}: run folder not found")
        try:
            with open(meta_file, encoding="utf-8") as handle:
                self.metadata: dict[str, Any] = json.load(handle)
        except FileNotFoundError:
            raise DataError(f"{self.path}: not a completed run (no {METADATA_FILE})") from None
        except json.JSONDecodeError as error:
            raise DataError(f"{meta_file}: invalid JSON at line {error.lineno}: {error.msg}") from None
        version = self.metadata.get("format_version")
        if version != RUN_FORMAT_VERSION:
            raise DataError(f"{meta_file}: run format version {version!r}, this version reads {RUN_FORMAT_VERSION}")

    @property
    def run_id(self) -> str:
        return str(self.metadata["run"])

    def users(self) -> IdMap:
        return IdMap.load(self.path / "users.npz")

    def items(self) -> IdMap:
        return IdMap.load(self.path / "items.npz")

    def list_entries(self) -> list[dict[str, Any]]:
        return list(self.metadata.get("lists", []))

    def load_list(self, entry: dict[str, Any]) -> ListArrays:
        try:
            return ListArrays.load(self.path, entry)
        except (FileNotFoundError, KeyError, ValueError) as error:
            raise DataError(f"{self.path / entry.get('file', '?')}: unreadable list file ({error})") from None

    def catalog(self) -> dict[str, np.ndarray] | None:
        path = self.path / "catalog.npz"
        if not path.exists():
            return None
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}


def completed_runs(root: Path) -> list[Path]:
    """Run folders under ``root`` that finished (have metadata), oldest first."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and RUN_ID_PATTERN.match(p.name) and (p / METADATA_FILE).exists())
