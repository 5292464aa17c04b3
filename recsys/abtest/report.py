"""The report of an experiment: per-variant metrics with intervals, differences from the
control with p-values, and a sample-ratio-mismatch check.

Definitions (the same in the CLI, the admin API and the dashboard):

* **unit**: the experiment's randomisation unit (``user_id``, or ``session_id`` when
  ``experiment.unit == "session"``), assigned to a variant by the same hash the API uses.
* **units** of a variant: units with at least one impression in the window (exposed). Events
  of units never shown a list are left out (they were not treated) and counted in
  ``events.unexposed_units``.
* **impressions**, **clicks**: impression and click events of the exposed units.
* **CTR** = clicks / impressions, a per-impression ratio of a unit-randomised experiment:
  delta-method interval from per-unit sums (impressions of one user are not independent);
  vs control: z-test of the difference with the delta-method variances.
* **conversion** = units with a purchase / units; Wilson interval; pooled z-test.
* **revenue per user** = sum of purchase values / units, from per-unit revenue including
  zeros; t-interval; vs control: Welch's t-test.
* **SRM**: chi-square of units per variant against the configured weights; p < 0.001 puts
  an ``SRM`` warning first in ``warnings`` and sets ``srm.mismatch``.

The window is [start, min(end, stopped_at)) on the events' own timestamps.

**By segment** (``recsys ab report --by-segment``): the same report computed again on the
events of each customer segment's users alone, with the live version's user -> segment
mapping (``[segments]`` runs, recsys/store/keys.py); users outside every segment form the
group ``none``. Only for user-randomised experiments.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import redis

if TYPE_CHECKING:  # the API imports this module; pandas loads when a report is computed
    import pandas as pd

from recsys.abtest import stats
from recsys.abtest.assignment import assign_many
from recsys.abtest.events import read_events
from recsys.abtest.experiments import Experiment
from recsys.data import schema
from recsys.store.keys import EVENTS_MAXLEN, KeyLayout

CONFIDENCE = 0.95
ALPHA = 0.05
METRICS = ("ctr", "conversion", "revenue_per_user")
METRIC_LABELS = {"ctr": "CTR", "conversion": "Conversion", "revenue_per_user": "Revenue / user"}
METHODS = {
    "ctr": "clicks / impressions; delta-method variance from per-unit sums (units are randomised, not impressions); normal interval; z-test of the difference",
    "conversion": "units with a purchase / units; Wilson interval; pooled two-proportion z-test, unpooled normal interval of the difference",
    "revenue_per_user": "mean per-unit purchase value (zeros included); t-interval; Welch's t-test",
    "srm": f"chi-square goodness of fit of units per variant against the weights; mismatch when p < {stats.SRM_THRESHOLD:g}",
    "units": "units with at least one impression in the window",
}


def _num(value: Any) -> float | None:
    """JSON-safe float: None for NaN/inf."""
    number = float(value)
    return number if math.isfinite(number) else None


def _interval(low: Any, high: Any) -> list[float | None]:
    return [_num(low), _num(high)]


def unit_table(experiment: Experiment, events: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Per-unit aggregates of the window's events.

    Returns (table, counts): the table has one row per unit that has any event, columns
    unit, variant, impressions, clicks, purchases, revenue (float); counts says how many
    events had no unit id.
    """
    import pandas as pd
    unit_column = schema.USER_ID if experiment.unit == "user" else schema.SESSION_ID
    units = events[unit_column].astype(str)
    has_unit = (units != "").to_numpy()
    frame = events.loc[has_unit]
    types = frame[schema.EVENT_TYPE].astype(str).to_numpy()
    is_purchase = types == schema.PURCHASE
    values = frame[schema.VALUE].to_numpy(dtype=np.float64, na_value=np.nan)
    indicators = pd.DataFrame(
        {
            "unit": frame[unit_column].astype(str).to_numpy(),
            "impressions": (types == schema.IMPRESSION).astype(np.int64),
            "clicks": (types == schema.CLICK).astype(np.int64),
            "purchases": is_purchase.astype(np.int64),
            "revenue": np.where(is_purchase, np.nan_to_num(values, nan=0.0), 0.0),
        }
    )
    table = indicators.groupby("unit", sort=False).sum().reset_index()
    table["variant"] = assign_many(experiment, table["unit"].tolist()) if len(table) else np.array([], dtype=str)
    return table, {"events_without_unit": int((~has_unit).sum())}


def variant_summary(experiment: Experiment, units: pd.DataFrame) -> pd.DataFrame:
    """One row per variant (in definition order, empty ones included) of exposed-unit sums.

    Columns: units, impressions, clicks, clicks_sq, impressions_sq, clicks_impressions (per-unit
    sums of squares and products, for the delta method), converters, revenue, revenue_mean,
    revenue_var (ddof=1).
    """
    import pandas as pd
    exposed = units.loc[units["impressions"] > 0].assign(converted=lambda t: (t["purchases"] > 0).astype(np.int64))
    exposed = exposed.assign(
        clicks_sq=lambda t: t["clicks"].astype(np.float64) ** 2,
        impressions_sq=lambda t: t["impressions"].astype(np.float64) ** 2,
        clicks_impressions=lambda t: t["clicks"].astype(np.float64) * t["impressions"],
    )
    grouped = exposed.groupby("variant", sort=False)
    summary = pd.DataFrame(
        {
            "units": grouped.size(),
            "impressions": grouped["impressions"].sum(),
            "clicks": grouped["clicks"].sum(),
            "clicks_sq": grouped["clicks_sq"].sum(),
            "impressions_sq": grouped["impressions_sq"].sum(),
            "clicks_impressions": grouped["clicks_impressions"].sum(),
            "converters": grouped["converted"].sum(),
            "revenue": grouped["revenue"].sum(),
            "revenue_mean": grouped["revenue"].mean(),
            "revenue_var": grouped["revenue"].var(ddof=1),
        }
    )
    names = [v.name for v in experiment.variants]
    summary = summary.reindex(names)
    counts = ["units", "impressions", "clicks", "converters"]
    summary[counts] = summary[counts].fillna(0).astype(np.int64)
    summary["revenue"] = summary["revenue"].fillna(0.0)
    for column in ("clicks_sq", "impressions_sq", "clicks_impressions"):
        summary[column] = summary[column].fillna(0.0)
    return summary


def compute_report(
    experiment: Experiment,
    events: pd.DataFrame,
    *,
    now: float | None = None,
    confidence: float = CONFIDENCE,
) -> dict[str, Any]:
    """The report of ``experiment`` from its window's events (a :func:`read_events` table).

    Returns a JSON-able dict: ``experiment``, ``window``, ``events``, ``variants`` (one entry
    per variant with counts, each metric's value and interval, and ``vs_control`` for
    non-control variants), ``srm`` and ``warnings``.
    """
    now = time.time() if now is None else now
    units, counts = unit_table(experiment, events)
    summary = variant_summary(experiment, units)
    control = experiment.control
    c = summary.loc[control]
    k = summary.index.get_loc(control)

    n = summary["units"].to_numpy(np.float64)
    impressions = summary["impressions"].to_numpy(np.float64)
    clicks = summary["clicks"].to_numpy(np.float64)
    converters = summary["converters"].to_numpy(np.float64)
    rev_mean = summary["revenue_mean"].to_numpy(np.float64)
    rev_var = summary["revenue_var"].to_numpy(np.float64)

    with np.errstate(divide="ignore", invalid="ignore"):
        conversion = converters / n
    ctr, ctr_var = stats.ratio_delta(
        clicks, impressions, summary["clicks_sq"].to_numpy(np.float64), summary["impressions_sq"].to_numpy(np.float64),
        summary["clicks_impressions"].to_numpy(np.float64), n,
    )
    ctr_ci = stats.ratio_interval(ctr, ctr_var, confidence)
    conv_ci = stats.wilson_interval(converters, n, confidence)
    rev_ci = stats.mean_interval(rev_mean, rev_var, n, confidence)

    ctr_z, ctr_p, ctr_low, ctr_high = stats.ratio_difference_test(ctr, ctr_var, ctr[k], ctr_var[k], confidence)
    ctr_d = (ctr_low, ctr_high)
    conv_z, conv_p = stats.two_proportion_ztest(converters, n, c["converters"], c["units"])
    conv_d = stats.proportion_difference_interval(converters, n, c["converters"], c["units"], confidence)
    rev_t, rev_df, rev_p, rev_lo, rev_hi = stats.welch_ttest(
        rev_mean, rev_var, n, c["revenue_mean"], c["revenue_var"], c["units"], confidence
    )

    warnings: list[str] = []
    variants: list[dict[str, Any]] = []
    for i, variant in enumerate(experiment.variants):
        entry: dict[str, Any] = {
            "name": variant.name,
            "model": variant.model,
            "options": dict(variant.options),
            "weight": variant.weight,
            "is_control": variant.name == control,
            "units": int(n[i]),
            "impressions": int(impressions[i]),
            "clicks": int(clicks[i]),
            "converters": int(converters[i]),
            "revenue": _num(summary["revenue"].iloc[i]),
            "ctr": {"value": _num(ctr[i]), "ci": _interval(ctr_ci[0][i], ctr_ci[1][i])},
            "conversion": {"value": _num(conversion[i]), "ci": _interval(conv_ci[0][i], conv_ci[1][i])},
            "revenue_per_user": {"value": _num(rev_mean[i]), "ci": _interval(rev_ci[0][i], rev_ci[1][i])},
            "vs_control": None,
        }
        if clicks[i] > impressions[i]:
            warnings.append(
                f"variant {variant.name!r} has more clicks ({int(clicks[i])}) than impressions "
                f"({int(impressions[i])}): CTR is not a proportion; check that impressions are logged"
            )
            entry["ctr"]["ci"] = [None, None]
        if variant.name != control:
            entry["vs_control"] = {
                "ctr": {
                    "diff": _num(ctr[i] - ctr[k]),
                    "ci": _interval(ctr_d[0][i], ctr_d[1][i]),
                    "relative": _num(stats.relative(ctr[i] - ctr[k], ctr[k])),
                    "z": _num(ctr_z[i]),
                    "p_value": _num(ctr_p[i]),
                },
                "conversion": {
                    "diff": _num(conversion[i] - conversion[k]),
                    "ci": _interval(conv_d[0][i], conv_d[1][i]),
                    "relative": _num(stats.relative(conversion[i] - conversion[k], conversion[k])),
                    "z": _num(conv_z[i]),
                    "p_value": _num(conv_p[i]),
                },
                "revenue_per_user": {
                    "diff": _num(rev_mean[i] - rev_mean[k]),
                    "ci": _interval(rev_lo[i], rev_hi[i]),
                    "relative": _num(stats.relative(rev_mean[i] - rev_mean[k], rev_mean[k])),
                    "t": _num(rev_t[i]),
                    "df": _num(rev_df[i]),
                    "p_value": _num(rev_p[i]),
                },
            }
            for metric in METRICS:
                result = entry["vs_control"][metric]
                result["significant"] = result["p_value"] is not None and result["p_value"] < 1 - confidence
        variants.append(entry)

    weights = [v.weight for v in experiment.variants]
    chi2, srm_p, expected = stats.srm_test(n, weights)
    mismatch = bool(math.isfinite(srm_p) and srm_p < stats.SRM_THRESHOLD)
    if mismatch:
        observed = ", ".join(f"{v.name}={int(k)}" for v, k in zip(experiment.variants, n))
        wanted = ", ".join(f"{v.name}={e:.0f}" for v, e in zip(experiment.variants, expected))
        warnings.insert(
            0,
            f"SRM: units per variant ({observed}) deviate from the configured weights (expected {wanted}; "
            f"chi2={chi2:.1f}, p={srm_p:.2g}); assignment or logging is broken, do not trust the differences",
        )

    start, end = experiment.window()
    if start > now:
        warnings.append("the experiment has not started yet")
    if counts["events_without_unit"]:
        warnings.append(
            f"{counts['events_without_unit']} event(s) in the window have no {experiment.unit} id and were ignored"
        )
    if int(n.sum()) == 0:
        warnings.append("no exposed units yet (no impression events in the window)")
    if experiment.broken is not None:
        warnings.insert(
            0,
            f"broken since {iso(experiment.broken_at)}: {experiment.broken}; from then on its users were served the "
            "default model, so later events do not measure the variants",
        )

    unexposed = units.loc[units["impressions"] == 0]
    return {
        "experiment": experiment.name,
        "status": experiment.status,
        "active": experiment.is_active(now),
        "unit": experiment.unit,
        "placement": experiment.placement,
        "broken": experiment.broken,
        "broken_at": experiment.broken_at,
        "control": control,
        "window": {"start": start, "end": end, "start_iso": iso(start), "end_iso": iso(end) if end is not None else None},
        "generated_at": now,
        "confidence": confidence,
        "events": {
            "in_window": int(len(events)),
            "without_unit": counts["events_without_unit"],
            "units_with_events": int(len(units)),
            "unexposed_units": int(len(unexposed)),
        },
        "variants": variants,
        "srm": {
            "chi2": _num(chi2),
            "p_value": _num(srm_p),
            "mismatch": mismatch,
            "threshold": stats.SRM_THRESHOLD,
            "observed": {v.name: int(k) for v, k in zip(experiment.variants, n)},
            "expected": {v.name: _num(e) for v, e in zip(experiment.variants, expected)},
        },
        "warnings": warnings,
        "methods": METHODS,
    }


NO_SEGMENT = "none"


def segment_reports(
    experiment: Experiment,
    events: pd.DataFrame,
    segment_of: dict[str, str],
    names: dict[str, str],
    *,
    now: float | None = None,
    confidence: float = CONFIDENCE,
) -> list[dict[str, Any]]:
    """One report per segment (ids in numeric order, then ``none``) on its users' events.

    ``segment_of`` maps user id -> segment id; ``names`` segment id -> name. Each entry is
    ``{"segment", "name", "users", "report"}``; groups without events are left out.
    """
    if experiment.unit != "user":
        raise ValueError("a report by segment needs a user-randomised experiment (segments are of users)")
    users = events[schema.USER_ID].astype(str)
    groups = users.map(lambda u: segment_of.get(u, NO_SEGMENT)).to_numpy()
    present = set(groups.tolist())
    order = sorted((g for g in present if g != NO_SEGMENT), key=lambda g: (not g.isdigit(), int(g) if g.isdigit() else 0, g))
    if NO_SEGMENT in present:
        order.append(NO_SEGMENT)
    out = []
    for group in order:
        subset = events.loc[groups == group]
        report = compute_report(experiment, subset, now=now, confidence=confidence)
        out.append(
            {
                "segment": group,
                "name": names.get(group, "users outside every segment" if group == NO_SEGMENT else group),
                "users": int(subset[schema.USER_ID].astype(str).nunique()),
                "report": report,
            }
        )
    return out


def live_segments(client: redis.Redis, layout: KeyLayout, users: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """(user id -> segment id for ``users``, segment id -> name) of the live version; empty
    when nothing is live or the live version has no segments."""
    import orjson

    live = client.get(layout.live)
    if live is None:
        return {}, {}
    version = live.decode()
    raw = client.get(layout.meta(version))
    names = {str(k): str(v) for k, v in ((orjson.loads(raw).get("segments") or {}) if raw else {}).items()}
    if not names:
        return {}, {}
    mapping: dict[str, str] = {}
    key = layout.segment_of(version)
    for start in range(0, len(users), 1000):
        chunk = users[start : start + 1000]
        for user, segment in zip(chunk, client.hmget(key, chunk)):
            if segment is not None:
                mapping[user] = segment.decode()
    return mapping, names


def build_report(
    client: redis.Redis,
    layout: KeyLayout,
    experiment: Experiment,
    *,
    now: float | None = None,
    confidence: float = CONFIDENCE,
    progress: bool = False,
    by_segment: bool = False,
) -> dict[str, Any]:
    """Read the experiment's window from the events stream and compute its report.

    When the stream (bounded by ``EVENTS_MAXLEN``) no longer holds the start of the window,
    a warning says from when on the report is complete.
    """
    now = time.time() if now is None else now
    start, end = experiment.window()
    oldest, trimmed = stream_state(client, layout)
    events = read_events(client, layout, start, end, progress=progress)
    report = compute_report(experiment, events, now=now, confidence=confidence)
    report["events"]["stream_oldest"] = oldest
    if trimmed and oldest is not None and oldest > start + 1.0:
        report["warnings"].append(
            f"the events stream no longer holds the start of the window (oldest entry {iso(oldest)}; "
            "older events were trimmed at EVENTS_MAXLEN): the report covers only what is left"
        )
    if by_segment:
        users = sorted(set(events[schema.USER_ID].astype(str)) - {""}) if len(events) else []
        segment_of, names = live_segments(client, layout, users)
        if not names:
            report["warnings"].append("the live version has no customer segments ([segments] enabled = true): no breakdown")
        report["by_segment"] = segment_reports(experiment, events, segment_of, names, now=now, confidence=confidence)
    return report


def stream_state(client: redis.Redis, layout: KeyLayout) -> tuple[float | None, bool]:
    """(arrival time in unix s of the oldest entry still in the stream, whether entries were
    removed from it). Without the stream: (None, False).

    Entries were removed when more were ever added than the stream holds: Redis 7 counts
    the added ones (XINFO ``entries-added``); for Redis 6.2, which does not, the ingestion
    script keeps the count in ``{p}events-added``. A stream written before that count
    existed (on 6.2) can only have been trimmed at ``EVENTS_MAXLEN`` (approximate trimming
    never goes below it), so then the length decides.
    """
    try:
        info = client.xinfo_stream(layout.events)
    except redis.ResponseError:  # no such key
        return None, False
    first = info.get("first-entry")
    if not first:
        return None, False
    stream_id = first[0]
    text = stream_id.decode() if isinstance(stream_id, bytes) else str(stream_id)
    length = int(info["length"])
    added = info.get("entries-added")
    if added is None:
        counted = client.get(layout.events_added)
        added = int(counted) if counted is not None else None
    trimmed = (added is not None and int(added) > length) or length >= EVENTS_MAXLEN
    return int(text.split("-")[0]) / 1000.0, trimmed


def iso(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------------------ rendering
def _fmt_rate(value: float | None, ci: list[float | None]) -> str:
    if value is None:
        return "-"
    if ci[0] is None or ci[1] is None:
        return f"{100 * value:.2f}%"
    return f"{100 * value:.2f}% [{100 * ci[0]:.2f}, {100 * ci[1]:.2f}]"


def _fmt_money(value: float | None, ci: list[float | None]) -> str:
    if value is None:
        return "-"
    if ci[0] is None or ci[1] is None:
        return f"{value:.3f}"
    return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def _fmt_diff(result: dict[str, Any], percent: bool) -> str:
    if result["diff"] is None:
        return "-"
    scale, unit = (100.0, " pp") if percent else (1.0, "")
    low, high = result["ci"]
    text = f"{scale * result['diff']:+.3f}{unit}"
    if low is not None and high is not None:
        text += f" [{scale * low:+.3f}, {scale * high:+.3f}]"
    if result["relative"] is not None:
        text += f" ({100 * result['relative']:+.1f}%)"
    p = result["p_value"]
    text += f" p={p:.3g}" if p is not None else " p=-"
    return text + (" *" if result.get("significant") else "")


def table(rows: list[list[str]], header: list[str]) -> str:
    """Left-aligned text table (first column), right-aligned numbers."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for r, row in enumerate([header, *rows]):
        cells = [str(cell).ljust(w) if i == 0 else str(cell).rjust(w) for i, (cell, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
        if r == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_report(report: dict[str, Any]) -> str:
    """Human-readable report: header, per-variant table, comparisons table, warnings."""
    window = report["window"]
    lines = [
        f"experiment {report['experiment']}  ({report['status']}{', active' if report['active'] else ''}; "
        f"unit {report['unit']}; control {report['control']})",
        f"window     {window['start_iso']} .. {window['end_iso'] or 'open'}",
        f"events     {report['events']['in_window']} in window, {report['events']['unexposed_units']} unexposed unit(s) left out",
        "",
    ]
    header = ["variant", "model", "weight", "units", "impressions", "clicks", "CTR [95% CI]", "conversion [95% CI]", "revenue/user [95% CI]"]
    rows = [
        [
            v["name"] + (" (control)" if v["is_control"] else ""),
            v["model"],
            f"{v['weight']:g}",
            str(v["units"]),
            str(v["impressions"]),
            str(v["clicks"]),
            _fmt_rate(v["ctr"]["value"], v["ctr"]["ci"]),
            _fmt_rate(v["conversion"]["value"], v["conversion"]["ci"]),
            _fmt_money(v["revenue_per_user"]["value"], v["revenue_per_user"]["ci"]),
        ]
        for v in report["variants"]
    ]
    lines.append(table(rows, header))
    comparisons = [v for v in report["variants"] if v["vs_control"]]
    if comparisons:
        lines.append("")
        header = ["vs control", "CTR diff [95% CI]", "conversion diff [95% CI]", "revenue/user diff [95% CI]"]
        rows = [
            [
                v["name"],
                _fmt_diff(v["vs_control"]["ctr"], True),
                _fmt_diff(v["vs_control"]["conversion"], True),
                _fmt_diff(v["vs_control"]["revenue_per_user"], False),
            ]
            for v in comparisons
        ]
        lines.append(table(rows, header))
        lines.append("(* p < 0.05; pp = percentage points)")
    srm = report["srm"]
    if srm["p_value"] is not None:
        lines.append("")
        lines.append(f"sample ratio check: chi2={srm['chi2']:.2f}, p={srm['p_value']:.3g}" + (" MISMATCH" if srm["mismatch"] else " ok"))
    for group in report.get("by_segment") or []:
        lines.append("")
        lines.append(f"== segment {group['segment']}: {group['name']} ({group['users']} users with events)")
        lines.extend(format_report(group["report"]).split("\n")[3:])
        for warning in group["report"]["warnings"]:
            lines.append(f"   warning: {warning}")
    return "\n".join(lines)


def plot_report(report: dict[str, Any], path: str | Path) -> Path:
    """Bar chart (PNG) of each metric per variant with its 95% interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = report["variants"]
    names = [v["name"] for v in variants]
    figure, axes = plt.subplots(1, len(METRICS), figsize=(4 * len(METRICS), 3.6), constrained_layout=True)
    for ax, metric in zip(axes, METRICS):
        values = np.array([v[metric]["value"] if v[metric]["value"] is not None else np.nan for v in variants])
        lows = np.array([v[metric]["ci"][0] if v[metric]["ci"][0] is not None else np.nan for v in variants])
        highs = np.array([v[metric]["ci"][1] if v[metric]["ci"][1] is not None else np.nan for v in variants])
        scale = 100.0 if metric != "revenue_per_user" else 1.0
        errors = np.nan_to_num(np.vstack([values - lows, highs - values]) * scale, nan=0.0)
        colors = ["#7f8c8d" if v["is_control"] else "#2e86de" for v in variants]
        ax.bar(names, np.nan_to_num(values * scale), yerr=errors, color=colors, capsize=6)
        ax.set_title(METRIC_LABELS[metric] + (" (%)" if scale == 100 else ""))
        ax.grid(axis="y", alpha=0.3)
    title = report["experiment"] + ("  [SRM WARNING]" if report["srm"]["mismatch"] else "")
    figure.suptitle(title, color="#c0392b" if report["srm"]["mismatch"] else "black")
    out = Path(path)
    figure.savefig(out, dpi=100)
    plt.close(figure)
    return out
