"""The report's statistics against scipy.stats and statsmodels, and their false-positive rate."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint, proportions_ztest

from recsys.abtest import stats

COUNTS = [
    (120, 1000, 100, 1000),
    (5, 40, 9, 38),
    (1503, 12000, 1377, 11870),
    (0, 500, 3, 480),
    (999, 1000, 990, 1000),
]


@pytest.mark.parametrize(("x1", "n1", "x2", "n2"), COUNTS)
def test_two_proportion_ztest_matches_statsmodels(x1: int, n1: int, x2: int, n2: int) -> None:
    z, p = stats.two_proportion_ztest(x1, n1, x2, n2)
    expected_z, expected_p = proportions_ztest([x1, x2], [n1, n2])
    assert z == pytest.approx(expected_z, rel=1e-9)
    assert p == pytest.approx(expected_p, rel=1e-9, abs=1e-300)


def test_two_proportion_ztest_is_vectorised() -> None:
    x1, n1, x2, n2 = (np.array(c) for c in zip(*COUNTS))
    z, p = stats.two_proportion_ztest(x1, n1, x2, n2)
    assert z.shape == p.shape == (len(COUNTS),)
    for i, (a, b, c, d) in enumerate(COUNTS):
        assert p[i] == pytest.approx(proportions_ztest([a, c], [b, d])[1], rel=1e-9)


@pytest.mark.parametrize(("x1", "n1", "x2", "n2"), COUNTS)
def test_wilson_and_difference_intervals_match_statsmodels(x1: int, n1: int, x2: int, n2: int) -> None:
    low, high = stats.wilson_interval(x1, n1)
    expected = proportion_confint(x1, n1, alpha=0.05, method="wilson")
    assert (low, high) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    low, high = stats.wilson_interval(x1, n1, confidence=0.9)
    assert (low, high) == pytest.approx(proportion_confint(x1, n1, alpha=0.1, method="wilson"), rel=1e-9, abs=1e-12)
    d_low, d_high = stats.proportion_difference_interval(x1, n1, x2, n2)
    expected = confint_proportions_2indep(x1, n1, x2, n2, method="wald", compare="diff", alpha=0.05)
    assert (d_low, d_high) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_degenerate_proportions() -> None:
    z, p = stats.two_proportion_ztest(0, 100, 0, 100)
    assert (z, p) == (0.0, 1.0)
    z, p = stats.two_proportion_ztest(0, 0, 5, 100)
    assert np.isnan(z) and np.isnan(p)
    low, high = stats.wilson_interval(0, 0)
    assert np.isnan(low) and np.isnan(high)
    low, high = stats.wilson_interval(12, 10)  # more successes than trials: not a proportion
    assert np.isnan(low) and np.isnan(high)


@given(
    n=st.integers(min_value=1, max_value=10**7),
    share=st.floats(min_value=0, max_value=1),
)
@settings(max_examples=200, deadline=None)
def test_wilson_interval_is_inside_0_1_and_contains_the_estimate(n: int, share: float) -> None:
    x = int(round(share * n))
    low, high = stats.wilson_interval(x, n)
    assert -1e-12 <= low <= x / n + 1e-12 <= high + 2e-12 <= 1 + 3e-12


def per_unit_revenue(rng: np.random.Generator, n: int, rate: float, mean: float) -> np.ndarray:
    """Mostly zeros, log-normal where the unit bought: the real shape of revenue per user."""
    bought = rng.random(n) < rate
    return np.where(bought, rng.lognormal(np.log(mean), 0.8, n), 0.0)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_welch_matches_scipy_on_per_unit_revenue(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = per_unit_revenue(rng, 800 + seed * 37, 0.08, 40.0)
    b = per_unit_revenue(rng, 760, 0.06, 40.0)
    t, df, p, low, high = stats.welch_ttest(a.mean(), a.var(ddof=1), a.size, b.mean(), b.var(ddof=1), b.size)
    expected = sps.ttest_ind(a, b, equal_var=False)
    assert t == pytest.approx(expected.statistic, rel=1e-9)
    assert p == pytest.approx(expected.pvalue, rel=1e-9)
    assert df == pytest.approx(expected.df, rel=1e-9)
    assert (low, high) == pytest.approx(tuple(expected.confidence_interval(0.95)), rel=1e-9)


def test_mean_interval_matches_scipy() -> None:
    rng = np.random.default_rng(7)
    values = per_unit_revenue(rng, 300, 0.1, 25.0)
    low, high = stats.mean_interval(values.mean(), values.var(ddof=1), values.size)
    expected = sps.t.interval(0.95, values.size - 1, loc=values.mean(), scale=sps.sem(values))
    assert (low, high) == pytest.approx(expected, rel=1e-9)
    assert np.isnan(stats.mean_interval(3.0, np.nan, 1)[0])


def test_welch_degenerate_cases() -> None:
    t, df, p, low, high = stats.welch_ttest(0.0, 0.0, 100, 0.0, 0.0, 90)
    assert (t, p, low, high) == (0.0, 1.0, 0.0, 0.0)
    assert np.isnan(stats.welch_ttest(1.0, 1.0, 1, 0.0, 1.0, 50)[2])


@pytest.mark.parametrize(
    ("observed", "weights"),
    [([5012, 4988], [1, 1]), ([9100, 900], [9, 1]), ([1000, 2100, 6900], [1, 2, 7]), ([5200, 4800], [1, 1])],
)
def test_srm_matches_scipy_chisquare(observed: list[int], weights: list[float]) -> None:
    chi2, p, expected = stats.srm_test(observed, weights)
    reference = sps.chisquare(observed, np.sum(observed) * np.asarray(weights) / np.sum(weights))
    assert chi2 == pytest.approx(reference.statistic, rel=1e-12)
    assert p == pytest.approx(reference.pvalue, rel=1e-9)
    assert expected.sum() == pytest.approx(sum(observed))


def test_srm_flags_a_broken_split() -> None:
    assert stats.srm_test([5200, 4800], [1, 1])[1] < stats.SRM_THRESHOLD
    assert stats.srm_test([5020, 4980], [1, 1])[1] > stats.SRM_THRESHOLD


# ------------------------------------------------------------- A/A and power
N_SIMULATIONS = 1000
ALPHA = 0.05


def false_positive_band(n: int = N_SIMULATIONS, alpha: float = ALPHA) -> tuple[float, float]:
    """99.9% binomial band of the number of p < alpha among n independent null tests."""
    return sps.binom.interval(0.999, n, alpha)


def simulate(rng: np.random.Generator, ctr_lift: float, conv_lift: float, revenue_lift: float) -> dict[str, np.ndarray]:
    """N_SIMULATIONS experiments at once: p-values of the three comparisons, shape (N,)."""
    units = rng.binomial(4000, 0.5, size=(N_SIMULATIONS, 2))
    impressions = units * 8
    ctr = np.array([0.10, 0.10 * ctr_lift])
    clicks = rng.binomial(impressions, ctr)
    conversion = np.array([0.05, 0.05 * conv_lift])
    converters = rng.binomial(units, conversion)
    _, ctr_p = stats.two_proportion_ztest(clicks[:, 1], impressions[:, 1], clicks[:, 0], impressions[:, 0])
    _, conv_p = stats.two_proportion_ztest(converters[:, 1], units[:, 1], converters[:, 0], units[:, 0])
    # Revenue: per-unit values with zeros, a fixed 2000 units per arm to keep the array rectangular.
    control = per_unit_revenue(rng, N_SIMULATIONS * 2000, 0.05, 40.0).reshape(N_SIMULATIONS, 2000)
    treated = per_unit_revenue(rng, N_SIMULATIONS * 2000, 0.05, 40.0 * revenue_lift).reshape(N_SIMULATIONS, 2000)
    rev_p = stats.welch_ttest(
        treated.mean(1), treated.var(1, ddof=1), 2000, control.mean(1), control.var(1, ddof=1), 2000
    )[2]
    return {"ctr": ctr_p, "conversion": conv_p, "revenue": rev_p}


def test_aa_false_positive_rate_is_alpha() -> None:
    p_values = simulate(np.random.default_rng(2024), 1.0, 1.0, 1.0)
    low, high = false_positive_band()
    for metric, p in p_values.items():
        hits = int((p < ALPHA).sum())
        assert low <= hits <= high, f"{metric}: {hits} of {N_SIMULATIONS} A/A runs had p < {ALPHA} (band {low:.0f}..{high:.0f})"
        # p-values of a null test are uniform, not merely right at alpha
        assert sps.kstest(p, "uniform").pvalue > 1e-3, metric


def test_a_real_lift_is_found_far_more_often_than_alpha() -> None:
    p_values = simulate(np.random.default_rng(99), 1.2, 1.5, 1.5)
    _, high = false_positive_band()
    for metric, p in p_values.items():
        assert (p < ALPHA).sum() > 3 * high, metric
