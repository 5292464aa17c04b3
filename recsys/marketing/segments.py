"""Customer segments: RFM features clustered with K-means, named in plain words.

Features (see :mod:`recsys.marketing.features`) are log-scaled where they are heavy-tailed
(recency, frequency, spend, tenure), standardised, and clustered with scikit-learn's
``KMeans``. With ``k = "auto"`` the number of segments is the one with the best silhouette
over ``k_range`` (on a sample for large shops). Each segment is named by where its centroid
stands against the average customer ("recent, frequent, high spend"), and the labelling's
stability is measured as the adjusted Rand index between fits with different seeds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator
from threadpoolctl import threadpool_limits

from recsys.data import schema
from recsys.errors import DataError
from recsys.marketing.features import Purchases, customer_features, top_categories

LOG_SCALED = ("recency_days", "frequency", "monetary", "tenure_days")
CLUSTER_FEATURES = LOG_SCALED  # plus share_* columns when the catalogue has categories
# A centroid this many standard deviations from the average earns a word.
WORD_THRESHOLD = 0.35
SINGLE_THREAD_BELOW = 50_000


class SegmentsConfig(BaseModel):
    """``[segments]``: how customers are clustered."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    k: int | Literal["auto"] = Field("auto", description="number of segments, or auto (best silhouette in k_range)")
    k_min: int = Field(2, ge=2)
    k_max: int = Field(8, ge=2, le=50)
    categories: int = Field(5, ge=0, le=50, description="category-share features for the largest N categories")
    seed: int = 0
    n_init: int = Field(10, ge=1)
    silhouette_sample: int = Field(10_000, ge=100, description="customers sampled to score each k")
    stability_runs: int = Field(5, ge=2, description="fits with other seeds to measure the adjusted Rand index")
    min_customers: int = Field(20, ge=2)

    @model_validator(mode="after")
    def _range(self) -> SegmentsConfig:
        if self.k_min > self.k_max:
            raise ValueError(f"k_min ({self.k_min}) is above k_max ({self.k_max})")
        if isinstance(self.k, int) and self.k < 2:
            raise ValueError(f"k must be 2 or more, or 'auto' (got {self.k})")
        return self


@dataclass
class Segmentation:
    """The result: one label per customer and a summary per segment.

    ``labels``: Series user_id -> segment index (0 = largest segment).
    ``summary``: per segment: id, name, size, share, centroid (median feature values in
    their own units), z (centroid in standard deviations from the average customer),
    top_categories.
    """

    labels: pd.Series
    features: pd.DataFrame
    summary: list[dict[str, Any]]
    k: int
    silhouette: dict[int, float]
    stability: dict[str, float]
    feature_names: list[str]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> dict[int, str]:
        return {s["id"]: s["name"] for s in self.summary}

    def table(self) -> pd.DataFrame:
        """user_id, segment, segment_name and the features, one row per customer."""
        out = self.features.copy()
        out.insert(0, "segment", self.labels.reindex(out.index).to_numpy(dtype=np.int32))
        out.insert(1, "segment_name", out["segment"].map(self.names))
        return out.reset_index()

    def to_json(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "customers": int(len(self.labels)),
            "features": self.feature_names,
            "silhouette": {str(k): round(v, 4) for k, v in self.silhouette.items()},
            "stability": {k: round(v, 4) for k, v in self.stability.items()},
            "segments": self.summary,
            **self.info,
        }


def cluster_matrix(features: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Standardised feature matrix (customers x features) and the feature names."""
    names = [c for c in CLUSTER_FEATURES if c in features] + [c for c in features if c.startswith("share_")]
    values = features[names].to_numpy(dtype=np.float64).copy()
    for j, name in enumerate(names):
        if name in LOG_SCALED:
            values[:, j] = np.log1p(np.maximum(values[:, j], 0.0))
    mean = values.mean(axis=0)
    std = values.std(axis=0)
    std[std == 0] = 1.0
    return (values - mean) / std, names


def segment_customers(purchases: Purchases, config: SegmentsConfig | None = None) -> Segmentation:
    """Cluster the customers of ``purchases`` (features at the end of the log)."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, silhouette_score

    config = config or SegmentsConfig()
    categories = top_categories(purchases, config.categories) if config.categories else []
    features = customer_features(purchases, categories=categories)
    if len(features) < config.min_customers:
        raise DataError(f"only {len(features)} customers with purchases; segments need at least {config.min_customers}")
    matrix, names = cluster_matrix(features)
    rng = np.random.default_rng(config.seed)
    sample = rng.choice(len(matrix), size=min(len(matrix), config.silhouette_sample), replace=False)

    # K-means on a few thousand rows is faster on one thread than paying OpenMP's start-up
    # and spin-waits, which on a busy machine made it 20x slower; large shops use every core.
    threads = 1 if len(matrix) < SINGLE_THREAD_BELOW else None

    def fit(k: int, seed: int) -> np.ndarray:
        with threadpool_limits(limits=threads):
            return KMeans(n_clusters=k, n_init=config.n_init, random_state=seed).fit_predict(matrix)

    silhouette: dict[int, float] = {}
    if config.k == "auto":
        upper = min(config.k_max, len(features) - 1)
        for k in range(config.k_min, upper + 1):
            labels = fit(k, config.seed)
            if len(np.unique(labels[sample])) < 2:
                continue
            silhouette[k] = float(silhouette_score(matrix[sample], labels[sample]))
        if not silhouette:
            raise DataError("customers are too alike to form two segments")
        k = max(silhouette, key=lambda key: (silhouette[key], -key))
    else:
        k = min(config.k, len(features) - 1)
    labels = fit(k, config.seed)
    if k not in silhouette and len(np.unique(labels[sample])) > 1:
        silhouette[k] = float(silhouette_score(matrix[sample], labels[sample]))
    others = [fit(k, config.seed + 1 + run) for run in range(config.stability_runs - 1)]
    scores = [float(adjusted_rand_score(labels, other)) for other in others]
    stability = {"adjusted_rand_mean": float(np.mean(scores)), "adjusted_rand_min": float(np.min(scores))}

    # Renumber so that segment 0 is the largest (stable, readable ids).
    sizes = np.bincount(labels, minlength=k)
    order = np.lexsort((np.arange(k), -sizes))
    relabel = np.empty(k, dtype=np.int64)
    relabel[order] = np.arange(k)
    labels = relabel[labels]
    label_series = pd.Series(labels.astype(np.int32), index=features.index, name="segment")
    summary = _summaries(features, matrix, names, labels, k, purchases, categories)
    return Segmentation(
        label_series,
        features,
        summary,
        k,
        silhouette,
        stability,
        names,
        info={"purchases_from": purchases.source_events, "spend": "quantity x price" if purchases.has_prices else "units"},
    )


def _summaries(
    features: pd.DataFrame,
    matrix: np.ndarray,
    names: list[str],
    labels: np.ndarray,
    k: int,
    purchases: Purchases,
    categories: list[str],
) -> list[dict[str, Any]]:
    lines = purchases.lines
    line_segment = pd.Series(labels, index=features.index).reindex(lines[schema.USER_ID].to_numpy()).to_numpy()
    summary = []
    for segment in range(k):
        members = labels == segment
        z = matrix[members].mean(axis=0)
        centroid = features.loc[members, names].median()
        segment_lines = lines.loc[line_segment == segment]
        named = segment_lines.loc[segment_lines[schema.CATEGORY] != "", schema.CATEGORY]
        top = named.value_counts(normalize=True).head(3)
        summary.append(
            {
                "id": segment,
                "name": describe(dict(zip(names, z.tolist())), categories),
                "size": int(members.sum()),
                "share": round(float(members.mean()), 4),
                "centroid": {n: round(float(v), 3) for n, v in centroid.items()},
                "z": {n: round(float(v), 3) for n, v in zip(names, z)},
                "top_categories": [{"category": str(c), "share": round(float(s), 3)} for c, s in top.items()],
            }
        )
    _make_unique(summary)
    return summary


def describe(z: dict[str, float], categories: list[str] | None = None) -> str:
    """Plain words for a centroid given in standard deviations from the average customer."""
    words = []
    recency, frequency, spend, tenure = (z.get(n, 0.0) for n in LOG_SCALED)
    if tenure <= -WORD_THRESHOLD and frequency <= 0:
        words.append("new")
    if recency <= -WORD_THRESHOLD:
        words.append("recent")
    elif recency >= WORD_THRESHOLD:
        words.append("lapsed")
    if frequency >= WORD_THRESHOLD:
        words.append("frequent")
    elif frequency <= -WORD_THRESHOLD:
        words.append("one-off")
    if spend >= WORD_THRESHOLD:
        words.append("high spend")
    elif spend <= -WORD_THRESHOLD:
        words.append("low spend")
    else:
        words.append("average spend")
    shares = {n.removeprefix("share_"): v for n, v in z.items() if n.startswith("share_") and n != "share_other"}
    if shares:
        best = max(shares, key=lambda n: shares[n])
        if shares[best] >= 2 * WORD_THRESHOLD:
            words.append(f"{best} lovers")
    return ", ".join(words)


def _make_unique(summary: list[dict[str, Any]]) -> None:
    seen: dict[str, int] = {}
    for entry in summary:
        name = entry["name"]
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            entry["name"] = f"{name} ({seen[name]})"


def plot_segments(segmentation: Segmentation, path: str | Path) -> Path:
    """PNG: segment sizes (bars) and centroids in standard deviations (heat map)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = segmentation.summary
    names = segmentation.feature_names
    z = np.array([[s["z"][n] for n in names] for s in summary])
    fig, (bars, heat) = plt.subplots(1, 2, figsize=(12, 0.6 * len(summary) + 2.5), gridspec_kw={"width_ratios": [1, 2]})
    labels = [f"{s['id']}: {s['name']}" for s in summary]
    positions = np.arange(len(summary))
    bars.barh(positions, [s["size"] for s in summary], color="#4C72B0")
    bars.set_yticks(positions, labels)
    bars.invert_yaxis()
    bars.set_xlabel("customers")
    bars.set_title("segment size")
    limit = max(1.0, float(np.abs(z).max()))
    image = heat.imshow(z, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    heat.set_xticks(np.arange(len(names)), [n.replace("_days", "").replace("share_", "% ") for n in names], rotation=45, ha="right")
    heat.set_yticks(positions, [str(s["id"]) for s in summary])
    heat.set_title("centroid (standard deviations from the average customer)")
    fig.colorbar(image, ax=heat, shrink=0.8)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
