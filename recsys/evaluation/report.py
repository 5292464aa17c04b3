"""Human and machine output of an evaluation: aligned table, JSON file, comparison chart."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recsys.evaluation.metrics import RATING_METRICS

TIME_COLUMNS: tuple[str, ...] = ("fit_seconds", "recommend_seconds")


def metric_columns(models: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Metric names in first-seen order, timings last (error entries have none)."""
    names: list[str] = []
    for values in models.values():
        for key in values:
            if key != "error" and key not in names and key not in TIME_COLUMNS:
                names.append(key)
    return names + [c for c in TIME_COLUMNS if any(c in v for v in models.values())]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def format_table(rows: Mapping[str, Mapping[str, Any]], first_column: str = "model", columns: Sequence[str] | None = None) -> str:
    """Aligned text table: one row per key of ``rows``, one column per metric.

    Numbers are right-aligned with 4 decimals; a row with ``error`` shows the message instead.
    """
    columns = list(columns) if columns is not None else metric_columns(rows)
    header = [first_column, *[c.replace("_seconds", "_s") for c in columns]]
    body: list[list[str]] = []
    errors: list[str] = []
    for name, values in rows.items():
        if "error" in values:
            message = str(values["error"])
            errors.append(message if message.startswith(f"{name}:") else f"{name}: {message}")
            body.append([name, *["-" for _ in columns]])
        else:
            body.append([name, *[_cell(values.get(c)) for c in columns]])
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = []
    for row in [header, *body]:
        cells = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines + [f"error  {e}" for e in errors])


def write_json(document: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``document`` as indented JSON (``allow_nan=False``: NaN must be None already)."""
    target = Path(path)
    if target.parent != Path(""):
        target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2, allow_nan=False)
        handle.write("\n")
    return target


def plot_comparison(result: Mapping[str, Any], path: str | Path, title: str | None = None) -> Path:
    """PNG comparing the models of an evaluation document (``EvaluationResult.to_dict()``).

    Panels: ranking and beyond-accuracy metrics as grouped bars; RMSE/MAE (when present);
    fit and recommend seconds per model on a log scale.
    """
    import matplotlib

    matplotlib.use("Agg")
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    import matplotlib.pyplot as plt

    models = {name: values for name, values in result["models"].items() if "error" not in values}
    target = Path(path)
    if target.parent != Path(""):
        target.parent.mkdir(parents=True, exist_ok=True)
    present = [
        m for m in metric_columns(models) if m not in TIME_COLUMNS and any(v.get(m) is not None for v in models.values())
    ]
    ranking = [m for m in present if m not in RATING_METRICS]
    rating = [m for m in present if m in RATING_METRICS]
    times = [c for c in TIME_COLUMNS if any(v.get(c) is not None for v in models.values())]
    panels = [(ranking, "value", False)] + ([(rating, "error (lower is better)", False)] if rating else [])
    panels.append((times, "seconds", True))
    ratios = [max(len(p[0]), 1) + 1 for p in panels]
    fig, axes = plt.subplots(1, len(panels), figsize=(max(10.0, 0.9 * sum(ratios) + 2), 5), gridspec_kw={"width_ratios": ratios})
    width = 0.8 / max(len(models), 1)
    for axis, (columns, ylabel, log_scale) in zip(np.atleast_1d(axes), panels, strict=True):
        x = np.arange(len(columns))
        for j, (name, values) in enumerate(models.items()):
            heights = [float(values.get(c) or 0.0) for c in columns]
            if log_scale:
                heights = [max(h, 1e-4) for h in heights]
            axis.bar(x + (j - (len(models) - 1) / 2) * width, heights, width, label=name)
        axis.set_xticks(x, [c.replace("_seconds", "") for c in columns], rotation=30, ha="right")
        axis.set_ylabel(ylabel)
        axis.grid(axis="y", alpha=0.3)
        if log_scale:
            axis.set_yscale("log")
    first = np.atleast_1d(axes)[0]
    first.legend(fontsize="small")
    split = result.get("split", {})
    first.set_title(title or f"{split.get('method', '')} split, k={result.get('k')}")
    fig.tight_layout()
    fig.savefig(target, dpi=110)
    plt.close(fig)
    return target
