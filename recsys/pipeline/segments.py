"""The pipeline's segment step: customer segments (recsys.marketing.segments) and a popular
list per segment, written into the run folder for the publisher.

Files (docs/run-format.md):

* ``segments.parquet``: user_id, segment (int32), segment_name, one row per customer with a
  purchase (the segment table);
* ``lists/segment/``: one list per segment in the list format (key = segment id as text),
  the items most users of the segment interacted with, best first.

metadata.json gets ``"segments": {"table", "k", "names": {id: name}, "sizes": {id: n},
"details": {id: {"centroid", "top_categories"}}, "silhouette", "list": {...}}``; the list entry itself is in ``"lists"`` (kind ``segment``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from recsys.data import schema
from recsys.errors import DataError
from recsys.pipeline.config import SegmentsSection
from recsys.runs.folder import SEGMENTS_FILE
from recsys.runs.lists import ListWriter

log = logging.getLogger(__name__)


#: The centroid values kept with a published version (the console's segment table).
SUMMARY_FEATURES = ("recency_days", "frequency", "monetary", "tenure_days")


def segment_details(summary: dict[str, Any]) -> dict[str, Any]:
    """What the console shows of a segment beside its name and size: the median recency,
    frequency, spend and tenure of its customers, and its top categories with their shares."""
    centroid = summary.get("centroid") or {}
    return {
        "centroid": {name: centroid[name] for name in SUMMARY_FEATURES if name in centroid},
        "top_categories": list(summary.get("top_categories") or []),
    }


def segment_popular(interactions: pd.DataFrame, labels: pd.Series, item_names: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per segment: the items the most distinct members interacted with (ties: overall count).

    Returns (segment ids (k,), item index rows (k, n) with -1 padding, scores (k, n)).
    """
    segments = np.sort(labels.unique())
    frame = interactions[[schema.USER_ID, schema.ITEM_ID]].astype(str).drop_duplicates()
    frame = frame.assign(segment=labels.reindex(frame[schema.USER_ID].to_numpy()).to_numpy())
    frame = frame[frame["segment"].notna()]
    index = pd.Index(item_names)
    frame = frame.assign(item=index.get_indexer(frame[schema.ITEM_ID].to_numpy()))
    frame = frame[frame["item"] >= 0]
    overall = frame["item"].value_counts()
    ids = np.full((len(segments), n), -1, dtype=np.int64)
    scores = np.zeros((len(segments), n), dtype=np.float32)
    for row, segment in enumerate(segments):
        counts = frame.loc[frame["segment"] == segment, "item"].value_counts()
        if counts.empty:
            continue
        table = pd.DataFrame({"count": counts, "overall": overall.reindex(counts.index).to_numpy()})
        table = table.sort_values(["count", "overall"], ascending=False, kind="stable").head(n)
        ids[row, : len(table)] = table.index.to_numpy(dtype=np.int64)
        scores[row, : len(table)] = table["count"].to_numpy(dtype=np.float32)
    return segments.astype(np.int64), ids, scores


def write_segments(
    folder: Path,
    interactions: pd.DataFrame,
    catalog: pd.DataFrame | None,
    settings: SegmentsSection,
    item_names: np.ndarray,
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Segment the customers and write the table and lists; (metadata, list entry), or
    (None, None) with a warning when the data cannot form segments."""
    from recsys.marketing.features import purchase_lines
    from recsys.marketing.segments import SegmentsConfig, segment_customers

    config = SegmentsConfig(
        k=settings.k, k_max=settings.k_max, categories=settings.categories, seed=settings.seed,
        min_customers=settings.min_customers,
    )
    try:
        result = segment_customers(purchase_lines(interactions, catalog), config)
    except DataError as error:
        log.warning("no segments in this run: %s", error)
        return {"skipped": str(error)}, None
    table = result.table()[[schema.USER_ID, "segment", "segment_name"]]
    table.to_parquet(folder / SEGMENTS_FILE, index=False)
    segments, ids, scores = segment_popular(interactions, result.labels, np.asarray(item_names, dtype=str), settings.popular_n)
    keys = pa.array([str(s) for s in segments])
    with ListWriter(folder, "segment", None, settings.popular_n, key_names=keys, item_names=item_names) as writer:
        writer.write(np.arange(len(segments)), ids, scores)
    entry = {**writer.close(), "reason": "popular"}
    metadata = {
        "table": SEGMENTS_FILE,
        "k": result.k,
        "customers": int(len(table)),
        "names": {str(s["id"]): s["name"] for s in result.summary},
        "sizes": {str(s["id"]): s["size"] for s in result.summary},
        "details": {str(s["id"]): segment_details(s) for s in result.summary},
        "silhouette": round(result.silhouette.get(result.k, float("nan")), 4) if result.k in result.silhouette else None,
    }
    return metadata, entry
