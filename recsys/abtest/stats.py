"""Statistics of an A/B report, vectorised so that thousands of simulated experiments run at once.

Every function takes numbers or numpy arrays of the same shape (one element per comparison)
and returns arrays of that shape.

* Per-unit proportions (conversion: units with a purchase / units): Wilson score interval
  per arm; difference tested with the pooled two-proportion z-test (as
  ``statsmodels.stats.proportion.proportions_ztest``), its confidence interval is the
  unpooled normal (Wald) interval of p1 - p2.
* Per-impression ratios (CTR = clicks / impressions) when units are randomised: the delta
  method on per-unit sums (a unit's impressions are not independent: a user who sees many
  lists weighs in with correlated clicks). Var(R) = sum_i (y_i - R x_i)^2 / (sum_i x_i)^2 *
  N / (N - 1); it equals the cluster-robust variance of an intercept-only regression of the
  per-impression outcome, clustered by unit (statsmodels ``cov_type="cluster"``). The
  difference of two arms is tested with z = (R1 - R0) / sqrt(V1 + V0).
* Means (revenue per user, per-unit values including zeros): t-interval per arm; difference
  tested with Welch's t-test (as ``scipy.stats.ttest_ind(equal_var=False)``), Welch-
  Satterthwaite degrees of freedom, and the matching t confidence interval.
* Sample ratio mismatch: chi-square goodness of fit of the units per arm against the
  configured weights (as ``scipy.stats.chisquare``).

A comparison that has no data (an arm without units) gives NaN, never an exception.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats as sps

ArrayLike = float | int | np.ndarray | Sequence[float]

#: p below this in the sample-ratio check means the split is broken, not unlucky.
SRM_THRESHOLD = 1e-3


def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return float(sps.norm.ppf(0.5 + confidence / 2))


def wilson_interval(successes: ArrayLike, trials: ArrayLike, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of successes/trials: (low, high), NaN where trials == 0."""
    x = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    z = _z(confidence)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = x / n
        denominator = 1 + z**2 / n
        centre = (p + z**2 / (2 * n)) / denominator
        half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denominator
    bad = (n <= 0) | (x < 0) | (x > n)
    return np.where(bad, np.nan, centre - half), np.where(bad, np.nan, centre + half)


def two_proportion_ztest(
    successes_a: ArrayLike, trials_a: ArrayLike, successes_b: ArrayLike, trials_b: ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """Pooled two-sided z-test of p_a == p_b: (z, p_value). Both arms all-0 or all-1 -> (0, 1)."""
    x1, n1 = np.asarray(successes_a, dtype=np.float64), np.asarray(trials_a, dtype=np.float64)
    x2, n2 = np.asarray(successes_b, dtype=np.float64), np.asarray(trials_b, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        pooled = (x1 + x2) / (n1 + n2)
        se = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
        diff = x1 / n1 - x2 / n2
        z = np.where(se > 0, diff / se, np.where(diff == 0, 0.0, np.nan))
    p = 2 * sps.norm.sf(np.abs(z))
    undefined = (n1 <= 0) | (n2 <= 0)
    return np.where(undefined, np.nan, z), np.where(undefined, np.nan, p)


def proportion_difference_interval(
    successes_a: ArrayLike,
    trials_a: ArrayLike,
    successes_b: ArrayLike,
    trials_b: ArrayLike,
    confidence: float = 0.95,
) -> tuple[np.ndarray, np.ndarray]:
    """Unpooled normal interval of p_a - p_b: (low, high)."""
    x1, n1 = np.asarray(successes_a, dtype=np.float64), np.asarray(trials_a, dtype=np.float64)
    x2, n2 = np.asarray(successes_b, dtype=np.float64), np.asarray(trials_b, dtype=np.float64)
    z = _z(confidence)
    with np.errstate(divide="ignore", invalid="ignore"):
        p1, p2 = x1 / n1, x2 / n2
        se = np.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
        diff = p1 - p2
    return diff - z * se, diff + z * se


def ratio_delta(
    numerator: ArrayLike,
    denominator: ArrayLike,
    numerator_sq: ArrayLike,
    denominator_sq: ArrayLike,
    cross: ArrayLike,
    units: ArrayLike,
) -> tuple[np.ndarray, np.ndarray]:
    """(ratio, variance) of sum(y) / sum(x) over N units by the delta method, from the
    per-unit sums: sum y, sum x, sum y^2, sum x^2, sum x*y and N. NaN where N < 2 or sum x = 0."""
    y, x = np.asarray(numerator, dtype=np.float64), np.asarray(denominator, dtype=np.float64)
    yy, xx, xy = (np.asarray(a, dtype=np.float64) for a in (numerator_sq, denominator_sq, cross))
    n = np.asarray(units, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = y / x
        residual_ss = np.maximum(yy - 2 * ratio * xy + ratio**2 * xx, 0.0)
        variance = residual_ss / x**2 * n / (n - 1)
    bad = (n < 2) | (x <= 0)
    return np.where(x > 0, ratio, np.nan), np.where(bad, np.nan, variance)


def ratio_interval(ratio: ArrayLike, variance: ArrayLike, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Normal interval of a delta-method ratio: (low, high)."""
    r, v = np.asarray(ratio, dtype=np.float64), np.asarray(variance, dtype=np.float64)
    half = _z(confidence) * np.sqrt(v)
    return r - half, r + half


def ratio_difference_test(
    ratio_a: ArrayLike, variance_a: ArrayLike, ratio_b: ArrayLike, variance_b: ArrayLike, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two-sided z-test of R_a == R_b for independent arms: (z, p_value, low, high) of R_a - R_b.
    Both variances 0 and equal ratios: z = 0, p = 1."""
    ra, va = np.asarray(ratio_a, dtype=np.float64), np.asarray(variance_a, dtype=np.float64)
    rb, vb = np.asarray(ratio_b, dtype=np.float64), np.asarray(variance_b, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(va + vb)
        diff = ra - rb
        z = np.where(se > 0, diff / se, np.where(diff == 0, 0.0, np.nan))
    p = 2 * sps.norm.sf(np.abs(z))
    half = _z(confidence) * se
    undefined = np.isnan(se)
    return (
        np.where(undefined, np.nan, z),
        np.where(undefined, np.nan, p),
        np.where(undefined, np.nan, diff - half),
        np.where(undefined, np.nan, diff + half),
    )


def mean_interval(mean: ArrayLike, variance: ArrayLike, n: ArrayLike, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Student t interval of a mean from its sample mean, sample variance (ddof=1) and n."""
    m = np.asarray(mean, dtype=np.float64)
    v = np.asarray(variance, dtype=np.float64)
    count = np.asarray(n, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        half = sps.t.ppf(0.5 + confidence / 2, count - 1) * np.sqrt(v / count)
    half = np.where(count >= 2, half, np.nan)
    return m - half, m + half


def welch_ttest(
    mean_a: ArrayLike,
    variance_a: ArrayLike,
    n_a: ArrayLike,
    mean_b: ArrayLike,
    variance_b: ArrayLike,
    n_b: ArrayLike,
    confidence: float = 0.95,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Welch's two-sided t-test of mean_a == mean_b from summary statistics (variances ddof=1).

    Returns (t, df, p_value, low, high), where [low, high] is the interval of mean_a - mean_b.
    Both variances 0: t = 0, p = 1 when the means are equal (NaN otherwise).
    """
    m1, v1, k1 = (np.asarray(a, dtype=np.float64) for a in (mean_a, variance_a, n_a))
    m2, v2, k2 = (np.asarray(a, dtype=np.float64) for a in (mean_b, variance_b, n_b))
    with np.errstate(divide="ignore", invalid="ignore"):
        s1, s2 = v1 / k1, v2 / k2
        se = np.sqrt(s1 + s2)
        diff = m1 - m2
        df = (s1 + s2) ** 2 / (s1**2 / (k1 - 1) + s2**2 / (k2 - 1))
        t = np.where(se > 0, diff / se, np.where(diff == 0, 0.0, np.nan))
        p = np.where(se > 0, 2 * sps.t.sf(np.abs(t), df), np.where(diff == 0, 1.0, np.nan))
        half = sps.t.ppf(0.5 + confidence / 2, df) * se
    half = np.where(se > 0, half, 0.0)
    undefined = (k1 < 2) | (k2 < 2)
    nan = np.nan
    return (
        np.where(undefined, nan, t),
        np.where(undefined, nan, df),
        np.where(undefined, nan, p),
        np.where(undefined, nan, diff - half),
        np.where(undefined, nan, diff + half),
    )


def srm_test(observed: ArrayLike, weights: ArrayLike) -> tuple[float, float, np.ndarray]:
    """Chi-square goodness of fit of units per arm against the configured traffic weights.

    Returns (chi2, p_value, expected counts). NaN when there are no units.
    """
    counts = np.asarray(observed, dtype=np.float64)
    shares = np.asarray(weights, dtype=np.float64)
    shares = shares / shares.sum()
    total = counts.sum()
    expected = total * shares
    if total <= 0:
        return float("nan"), float("nan"), expected
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    p = float(sps.chi2.sf(chi2, len(counts) - 1))
    return chi2, p, expected


def relative(diff: ArrayLike, baseline: ArrayLike) -> np.ndarray:
    """diff / baseline, NaN where the baseline is 0."""
    d = np.asarray(diff, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b != 0, d / b, np.nan)
