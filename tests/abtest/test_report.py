"""The experiment report: counts per variant, statistics cross-checked with scipy/statsmodels, SRM."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
import redis
from scipy import stats as sps
from statsmodels.stats.proportion import proportion_confint, proportions_ztest

from recsys.abtest.assignment import assign_many
from recsys.abtest.events import validate_events, write_events
from recsys.abtest.experiments import Experiment, Variant
from recsys.abtest.report import build_report, compute_report, format_report, plot_report
from recsys.store.keys import KeyLayout

NOW = 1_750_000_000.0


def make_experiment(weights: tuple[float, ...] = (1.0, 1.0), **extra: object) -> Experiment:
    names = ["control", "treatment", "third"][: len(weights)]
    variants = [Variant(name=n, model=f"model-{n}", weight=w) for n, w in zip(names, weights)]
    return Experiment(name="exp", variants=variants, salt="fixed", start=NOW - 86400, **extra)


def synthetic_events(experiment: Experiment, n_users: int, seed: int, ctr: dict[str, float]) -> tuple[pd.DataFrame, dict]:
    """An events table and, per variant, the per-user arrays the statistics should use."""
    rng = np.random.default_rng(seed)
    users = np.array([f"u{k}" for k in range(n_users)])
    variant = assign_many(experiment, users)
    impressions = rng.integers(1, 12, n_users)
    clicks = rng.binomial(impressions, np.vectorize(ctr.get)(variant))
    bought = rng.random(n_users) < 0.08
    revenue = np.where(bought, np.round(rng.lognormal(3, 0.7, n_users), 2), 0.0)
    rows = []
    for kind, counts in (("impression", impressions), ("click", clicks)):
        rows.append(pd.DataFrame({"event_type": kind, "user_id": np.repeat(users, counts)}))
    rows.append(pd.DataFrame({"event_type": "purchase", "user_id": users[bought], "value": revenue[bought]}))
    # Noise the report must ignore: clicks of never-exposed users, and events without a user id.
    rows.append(pd.DataFrame({"event_type": "click", "user_id": [f"ghost{k}" for k in range(40)]}))
    rows.append(pd.DataFrame({"event_type": "impression", "user_id": "", "session_id": [f"s{k}" for k in range(15)]}))
    frame = pd.concat(rows, ignore_index=True)
    frame["session_id"] = frame["session_id"].fillna("") if "session_id" in frame else ""
    frame["item_id"] = "item"
    frame["timestamp"] = NOW - 100
    frame["recommendation_id"] = ""
    frame["value"] = frame["value"].astype(float)
    frame = frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    truth = {
        name: {
            "units": int((variant == name).sum()),
            "impressions": int(impressions[variant == name].sum()),
            "clicks": int(clicks[variant == name].sum()),
            "converters": int(bought[variant == name].sum()),
            "revenue": revenue[variant == name],
            "user_clicks": clicks[variant == name],
            "user_impressions": impressions[variant == name],
        }
        for name in ctr
    }
    return frame, truth


def per_impression_fit(user_clicks: np.ndarray, user_impressions: np.ndarray, treated: np.ndarray | None = None):  # noqa: ANN201
    """OLS of the per-impression click (0/1) on a constant (and a treatment dummy), with
    standard errors clustered by user: the reference for the delta method."""
    import statsmodels.api as sm

    groups = np.repeat(np.arange(len(user_impressions)), user_impressions)
    starts = np.repeat(np.cumsum(user_impressions) - user_impressions, user_impressions)
    position = np.arange(len(groups)) - starts
    clicked = (position < np.repeat(user_clicks, user_impressions)).astype(float)
    design = np.ones((len(groups), 1)) if treated is None else sm.add_constant(np.repeat(treated, user_impressions))
    return sm.OLS(clicked, design).fit(cov_type="cluster", cov_kwds={"groups": groups})


def test_report_counts_and_statistics_match_the_libraries() -> None:
    exp = make_experiment()
    frame, truth = synthetic_events(exp, 3000, seed=5, ctr={"control": 0.10, "treatment": 0.13})
    report = compute_report(exp, frame, now=NOW)
    by_name = {v["name"]: v for v in report["variants"]}
    for name, t in truth.items():
        v = by_name[name]
        assert (v["units"], v["impressions"], v["clicks"], v["converters"]) == (
            t["units"], t["impressions"], t["clicks"], t["converters"]
        )
        assert v["revenue"] == pytest.approx(t["revenue"].sum())
        assert v["ctr"]["value"] == pytest.approx(t["clicks"] / t["impressions"])
        # CTR: delta method = cluster-robust (by user) interval of the per-impression click rate.
        fit = per_impression_fit(t["user_clicks"], t["user_impressions"])
        assert v["ctr"]["ci"] == pytest.approx(list(fit.conf_int(0.05)[0]), rel=1e-9)
        assert v["conversion"]["ci"] == pytest.approx(proportion_confint(t["converters"], t["units"], method="wilson"))
        assert v["revenue_per_user"]["value"] == pytest.approx(t["revenue"].mean())
        expected_ci = sps.t.interval(0.95, t["units"] - 1, loc=t["revenue"].mean(), scale=sps.sem(t["revenue"]))
        assert v["revenue_per_user"]["ci"] == pytest.approx(expected_ci)

    c, t = truth["control"], truth["treatment"]
    vs = by_name["treatment"]["vs_control"]
    assert by_name["control"]["vs_control"] is None
    pooled = per_impression_fit(
        np.concatenate([c["user_clicks"], t["user_clicks"]]), np.concatenate([c["user_impressions"], t["user_impressions"]]),
        treated=np.r_[np.zeros(len(c["user_clicks"])), np.ones(len(t["user_clicks"]))],
    )
    assert vs["ctr"]["diff"] == pytest.approx(pooled.params[1])
    # statsmodels' small-sample factor differs (G/(G-1) pooled vs N/(N-1) per arm): 0.1%.
    assert vs["ctr"]["z"] == pytest.approx(pooled.tvalues[1], rel=2e-3)
    assert vs["ctr"]["p_value"] < 1e-6
    assert vs["ctr"]["significant"] and vs["ctr"]["p_value"] < 1e-6
    assert vs["ctr"]["ci"][0] > 0
    assert vs["conversion"]["p_value"] == pytest.approx(proportions_ztest([t["converters"], c["converters"]], [t["units"], c["units"]])[1])
    welch = sps.ttest_ind(t["revenue"], c["revenue"], equal_var=False)
    assert vs["revenue_per_user"]["p_value"] == pytest.approx(welch.pvalue)
    assert vs["revenue_per_user"]["ci"] == pytest.approx(tuple(welch.confidence_interval(0.95)))

    srm = sps.chisquare([c["units"], t["units"]])
    assert report["srm"]["p_value"] == pytest.approx(srm.pvalue) and not report["srm"]["mismatch"]
    assert report["events"]["unexposed_units"] == 40
    assert report["events"]["without_unit"] == 15
    assert any("no user id" in w for w in report["warnings"])
    assert not any(w.startswith("SRM") for w in report["warnings"])
    json.dumps(report, allow_nan=False)  # strictly JSON


def test_a_lost_share_of_one_variant_raises_the_srm_warning() -> None:
    exp = make_experiment()
    frame, _ = synthetic_events(exp, 4000, seed=8, ctr={"control": 0.1, "treatment": 0.1})
    variant_of = dict(zip(frame["user_id"], assign_many(exp, frame["user_id"].tolist())))
    treated = [u for u, v in variant_of.items() if v == "treatment"]
    dropped = set(treated[: len(treated) // 8])  # 12% of treatment's logging lost
    broken = frame.loc[~frame["user_id"].isin(dropped)]
    report = compute_report(exp, broken, now=NOW)
    assert report["srm"]["mismatch"] and report["srm"]["p_value"] < 1e-3
    assert report["warnings"][0].startswith("SRM")
    assert compute_report(exp, frame, now=NOW)["srm"]["mismatch"] is False


def test_unequal_weights_and_three_arms() -> None:
    exp = make_experiment((2.0, 1.0, 1.0))
    frame, truth = synthetic_events(exp, 4000, seed=3, ctr={"control": 0.1, "treatment": 0.1, "third": 0.1})
    report = compute_report(exp, frame, now=NOW)
    units = [truth[n]["units"] for n in ("control", "treatment", "third")]
    assert report["srm"]["p_value"] == pytest.approx(sps.chisquare(units, np.sum(units) * np.array([0.5, 0.25, 0.25])).pvalue)
    assert [v["vs_control"] is None for v in report["variants"]] == [True, False, False]


def test_session_unit_and_empty_data() -> None:
    exp = make_experiment(unit="session")
    frame = pd.DataFrame(
        {
            "event_type": ["impression", "impression", "click", "purchase"],
            "user_id": ["", "", "", "u9"],
            "session_id": ["s1", "s2", "s1", ""],
            "item_id": "i",
            "value": [np.nan, np.nan, np.nan, 5.0],
            "timestamp": NOW,
            "recommendation_id": "",
        }
    )
    report = compute_report(exp, frame, now=NOW)
    assert sum(v["units"] for v in report["variants"]) == 2
    assert sum(v["clicks"] for v in report["variants"]) == 1
    assert report["events"]["without_unit"] == 1
    empty = compute_report(exp, frame.iloc[0:0], now=NOW)
    assert all(v["units"] == 0 and v["ctr"]["value"] is None for v in empty["variants"])
    assert "no exposed units" in " ".join(empty["warnings"])
    json.dumps(empty, allow_nan=False)
    assert "control" in format_report(empty)


def test_build_report_reads_the_window_from_redis(redis_client: redis.Redis, key_prefix: str, tmp_path) -> None:
    layout = KeyLayout(key_prefix)
    now = time.time()
    exp = Experiment(
        name="live", variants=[Variant(name="a", model="als"), Variant(name="b", model="ease")],
        salt="s", start=now - 600, end=now - 60,
    )
    raw = [{"type": "impression", "user_id": f"u{k}", "item_id": "i", "timestamp": now - 300} for k in range(200)]
    raw += [{"type": "click", "user_id": f"u{k}", "item_id": "i", "timestamp": now - 299} for k in range(0, 200, 4)]
    raw += [{"type": "impression", "user_id": "early", "item_id": "i", "timestamp": now - 900}]
    raw += [{"type": "impression", "user_id": "late", "item_id": "i", "timestamp": now - 30}]
    for start in range(0, len(raw), 100):
        write_events(redis_client, layout, validate_events(raw[start : start + 100], now=now))
    report = build_report(redis_client, layout, exp, now=now)
    assert sum(v["units"] for v in report["variants"]) == 200
    assert sum(v["clicks"] for v in report["variants"]) == 50
    assert report["events"]["in_window"] == 250
    assert report["active"] is False
    text = format_report(report)
    assert "a (control)" in text and "sample ratio check" in text
    out = plot_report(report, tmp_path / "chart.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_warns_when_the_stream_was_trimmed_past_the_window_start(redis_client: redis.Redis, key_prefix: str) -> None:
    layout = KeyLayout(key_prefix)
    now = time.time()
    write_events(redis_client, layout, validate_events({"type": "impression", "user_id": "u", "item_id": "i"}, now=now))
    recent = Experiment(name="new", variants=[Variant(name="a", model="x"), Variant(name="b", model="y")], start=now + 5)
    assert not any("trimmed" in w for w in build_report(redis_client, layout, recent, now=now)["warnings"])
    old = Experiment(name="old", variants=[Variant(name="a", model="x"), Variant(name="b", model="y")], start=now - 3600)
    # A stream that simply began after the start (nothing removed) is complete: no warning.
    assert not any("trimmed" in w for w in build_report(redis_client, layout, old, now=now)["warnings"])
    write_events(redis_client, layout, validate_events({"type": "click", "user_id": "u", "item_id": "j"}, now=now))
    redis_client.xtrim(layout.events, maxlen=1, approximate=False)  # what XADD MAXLEN does to the oldest entries
    report = build_report(redis_client, layout, old, now=now)
    assert any("trimmed" in w for w in report["warnings"])
    assert report["events"]["stream_oldest"] == pytest.approx(now, abs=5)
