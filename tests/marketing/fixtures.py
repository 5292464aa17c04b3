"""Small shops with planted structure, written by the tests themselves."""

from __future__ import annotations

import numpy as np
import pandas as pd

DAY = 86_400
END = 1_700_000_000


def planted_segments(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    """Three groups: frequent big spenders, lapsed one-off bargain hunters, new one-off buyers.

    Returns (interactions, catalogue, true group per user id).
    """
    rng = np.random.default_rng(seed)
    items = pd.DataFrame(
        {
            "item_id": [f"i{j}" for j in range(30)],
            "price": np.r_[np.full(10, 120.0), np.full(10, 4.0), np.full(10, 20.0)],
            "category": ["hifi"] * 10 + ["bargain"] * 10 + ["home"] * 10,
        }
    )
    rows, truth = [], {}
    groups = {"vip": (60, (8, 13), (0, 60), 0), "lapsed": (100, (1, 2), (300, 360), 10), "new": (80, (1, 2), (0, 10), 20)}
    for group, (count, orders, days_ago, first_item) in groups.items():
        for u in range(count):
            user = f"{group}{u}"
            truth[user] = group
            for o in range(rng.integers(*orders)):
                when = END - int(rng.uniform(*days_ago) * DAY)
                for item in rng.integers(first_item, first_item + 10, size=rng.integers(1, 4)):
                    rows.append((user, f"i{item}", "purchase", float(rng.integers(1, 3)), when, f"{user}-o{o}"))
    interactions = pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "value", "timestamp", "order_id"])
    return interactions, items, truth


def planted_propensity(seed: int = 0, users: int = 3000) -> tuple[pd.DataFrame, pd.DataFrame, set[str]]:
    """A shop where browsing the target category predicts buying it a few days later.

    Returns (interactions, catalogue, the users given the planted taste).
    """
    rng = np.random.default_rng(seed)
    items = pd.DataFrame(
        {
            "item_id": [f"i{j}" for j in range(40)],
            "price": np.full(40, 10.0),
            "category": ["tea"] * 10 + ["other"] * 30,
            "title": [f"green tea {j}" for j in range(10)] + [f"thing {j}" for j in range(30)],
        }
    )
    start = END - 180 * DAY
    rows = []
    fans = set()
    for u in range(users):
        user = f"u{u}"
        fan = rng.random() < 0.15
        if fan:
            fans.add(user)
        # Everyone buys other things now and then (the baseline's recency signal).
        for when in start + rng.uniform(0, 180 * DAY, size=rng.integers(1, 6)):
            rows.append((user, f"i{rng.integers(10, 40)}", "purchase", 1.0, int(when), None))
        # Fans browse tea often and buy it at a steady rate; others rarely.
        views = rng.poisson(12 if fan else 1)
        for when in start + rng.uniform(0, 180 * DAY, size=views):
            rows.append((user, f"i{rng.integers(0, 10)}", "view", 1.0, int(when), None))
        buys = rng.poisson(3 if fan else 0.1)
        for when in start + rng.uniform(0, 180 * DAY, size=buys):
            rows.append((user, f"i{rng.integers(0, 10)}", "purchase", 1.0, int(when), None))
    interactions = pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "value", "timestamp", "order_id"])
    return interactions.sort_values("timestamp", kind="stable").reset_index(drop=True), items, fans
