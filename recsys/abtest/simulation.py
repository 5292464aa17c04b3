"""A/A simulation: how often the report's CTR test calls a difference where there is none.

Both arms get the same treatment; users differ a lot, as in a shop: impressions per user
are heavy-tailed (log-normal, a few users see hundreds of lists) and each user has a
click rate of their own (Beta distributed). A test that treats impressions as independent
then finds "significant" differences far more often than its 5% level; the delta method
of :func:`recsys.abtest.stats.ratio_delta` (what the report uses) should stay at 5%.
Vectorised: every run is one row of the arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.abtest import stats


@dataclass(frozen=True)
class AAResult:
    """Share of A/A runs with p < alpha, for the delta method and the naive impression-level test."""

    runs: int
    users_per_arm: int
    alpha: float
    delta_false_positive_share: float
    naive_false_positive_share: float
    mean_impressions_per_user: float
    max_impressions_per_user: int


def simulate_aa(
    runs: int = 1000,
    users_per_arm: int = 1000,
    *,
    seed: int = 0,
    alpha: float = 0.05,
    impressions_sigma: float = 1.3,
    ctr_mean: float = 0.05,
    ctr_concentration: float = 4.0,
    max_impressions: int = 2000,
) -> AAResult:
    """Run ``runs`` A/A experiments of two arms of ``users_per_arm`` users each.

    Impressions per user: 1 + floor(LogNormal(0.5, impressions_sigma)), capped at
    ``max_impressions``; a user's click rate: Beta with mean ``ctr_mean`` and
    concentration ``ctr_concentration`` (a + b); clicks: Binomial(impressions, rate).
    """
    rng = np.random.default_rng(seed)
    shape = (runs, 2, users_per_arm)
    impressions = np.minimum(1 + np.floor(rng.lognormal(0.5, impressions_sigma, shape)), max_impressions)
    a = ctr_mean * ctr_concentration
    rates = rng.beta(a, ctr_concentration - a, shape)
    clicks = rng.binomial(impressions.astype(np.int64), rates).astype(np.float64)

    sums = [clicks.sum(-1), impressions.sum(-1), (clicks**2).sum(-1), (impressions**2).sum(-1), (clicks * impressions).sum(-1)]
    ratio, variance = stats.ratio_delta(*sums, np.full((runs, 2), users_per_arm))
    _, p_delta, _, _ = stats.ratio_difference_test(ratio[:, 1], variance[:, 1], ratio[:, 0], variance[:, 0])
    _, p_naive = stats.two_proportion_ztest(sums[0][:, 1], sums[1][:, 1], sums[0][:, 0], sums[1][:, 0])
    return AAResult(
        runs=runs,
        users_per_arm=users_per_arm,
        alpha=alpha,
        delta_false_positive_share=float(np.mean(p_delta < alpha)),
        naive_false_positive_share=float(np.mean(p_naive < alpha)),
        mean_impressions_per_user=float(impressions.mean()),
        max_impressions_per_user=int(impressions.max()),
    )
