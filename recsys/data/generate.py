"""A synthetic shop with structure that recommenders can learn.

:func:`generate_shop` builds a catalogue and an event log that look like a small web shop:

* items in categories, with titles and descriptions built from each category's vocabulary,
  log-normal prices, some items out of stock and some that nobody interacted with (cold);
* long-tail popularity (Zipf-like) inside every category;
* users who like one to three categories: about 90% of an active user's events fall in
  their three most visited categories (against about 60% if events were shuffled);
* sessions of views, some items added to the cart, some carts bought as an order (basket);
  items bought together come from the same or a complementary category, and many items
  have a *companion* (espresso machine -> grinder) that is often bought with them;
* a funnel of event types (views >> add_to_cart > purchase), a daily and weekly rhythm
  over ``days`` days ending at a fixed time, and a few new arrivals that only sell in the
  last 30 days (so trending differs from all-time popularity).

Everything is vectorised numpy; the output depends only on the arguments (byte-identical
files for a seed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recsys.data import schema
from recsys.data.validation import strings_from_codes
from recsys.errors import ConfigError

END_TIME = 1_719_792_000  # 2024-07-01T00:00:00Z: the log ends here, so output is deterministic
NEW_ARRIVAL_DAYS = 30
EVENT_NAMES = (schema.VIEW, schema.ADD_TO_CART, schema.PURCHASE)
_VIEW, _CART, _PURCHASE = 0, 1, 2


@dataclass(frozen=True)
class Category:
    """Vocabulary and price level of one product category."""

    name: str
    nouns: tuple[str, ...]
    adjectives: tuple[str, ...]
    features: tuple[str, ...]
    uses: tuple[str, ...]
    brands: tuple[str, ...]
    log_price: float  # mean of log(price)
    complement: str  # the category whose items are bought with this one's


CATEGORIES: tuple[Category, ...] = (
    Category(
        "coffee",
        ("espresso machine", "coffee grinder", "milk frother", "coffee beans", "pour-over kettle", "french press", "tamper", "moka pot"),
        ("barista", "single-origin", "dark roast", "compact", "stainless"),
        ("burr grinding", "15 bar pressure", "arabica beans", "steam wand", "thermo block", "precise dosing", "crema", "descaling"),
        ("your morning espresso", "slow brewing", "the office kitchen"),
        ("Brewhaus", "Crema & Co", "Bean Theory"),
        4.0,
        "kitchen",
    ),
    Category(
        "kitchen",
        ("chef knife", "frying pan", "cutting board", "saucepan", "mixing bowl", "spatula", "dutch oven", "knife sharpener"),
        ("cast iron", "non-stick", "bamboo", "professional", "ceramic"),
        ("oven safe", "dishwasher safe", "ergonomic handle", "forged steel", "induction ready", "even heating", "food grade", "riveted"),
        ("everyday cooking", "weekend baking", "family dinners"),
        ("Kochwerk", "PanPal", "Hearth"),
        3.4,
        "coffee",
    ),
    Category(
        "camping",
        ("tent", "sleeping bag", "camping stove", "headlamp", "trekking poles", "backpack", "sleeping mat", "water filter"),
        ("ultralight", "waterproof", "two-person", "four-season", "packable"),
        ("ripstop nylon", "aluminium poles", "down insulation", "gas canister", "rechargeable battery", "hip belt", "rain fly", "compression sack"),
        ("alpine hikes", "weekend camping", "long-distance trekking"),
        ("Summit", "Trailcraft", "Nordwand"),
        4.2,
        "outdoor-clothing",
    ),
    Category(
        "outdoor-clothing",
        ("rain jacket", "hiking boots", "fleece", "merino base layer", "softshell pants", "wool socks", "gloves", "beanie"),
        ("breathable", "insulated", "windproof", "merino", "lightweight"),
        ("gore-tex membrane", "taped seams", "vibram sole", "odour resistant", "thermal lining", "adjustable hood", "quick dry", "reinforced knees"),
        ("rainy trails", "cold mornings", "mountain weather"),
        ("Fjellwear", "Ridgeline", "Kestrel"),
        4.0,
        "camping",
    ),
    Category(
        "audio",
        ("headphones", "bluetooth speaker", "earbuds", "turntable", "amplifier", "soundbar", "microphone", "dac"),
        ("wireless", "noise-cancelling", "hi-fi", "portable", "studio"),
        ("active noise cancelling", "30 hour battery", "aptx codec", "deep bass", "usb-c charging", "balanced output", "low latency", "vinyl"),
        ("commuting", "home listening", "podcast recording"),
        ("Sonique", "Auralis", "Bassline"),
        4.6,
        "accessories",
    ),
    Category(
        "computers",
        ("laptop", "monitor", "mechanical keyboard", "mouse", "webcam", "docking station", "ssd", "graphics tablet"),
        ("gaming", "ultrawide", "ergonomic", "4k", "portable"),
        ("ips panel", "hot-swappable switches", "1tb storage", "thunderbolt", "144 hz refresh", "backlit keys", "full hd camera", "aluminium body"),
        ("remote work", "gaming nights", "photo editing"),
        ("Compute", "Pixelforge", "Keystone"),
        5.2,
        "accessories",
    ),
    Category(
        "accessories",
        ("usb-c cable", "charger", "phone case", "screen protector", "power bank", "laptop sleeve", "cable organizer", "adapter"),
        ("fast-charging", "braided", "slim", "shockproof", "travel"),
        ("65 w output", "gan technology", "tempered glass", "10000 mah", "magnetic", "multi-port", "drop tested", "compact design"),
        ("travel", "the desk", "everyday carry"),
        ("Voltix", "Plugwise", "Carryall"),
        2.8,
        "computers",
    ),
    Category(
        "books",
        ("novel", "cookbook", "biography", "travel guide", "graphic novel", "poetry collection", "history book", "science book"),
        ("bestselling", "illustrated", "hardcover", "paperback", "award-winning"),
        ("gripping plot", "full colour photos", "annotated edition", "maps", "recipes", "essays", "first edition", "large print"),
        ("rainy afternoons", "the commute", "book clubs"),
        ("Inkwell Press", "Folio", "Marginalia"),
        2.7,
        "stationery",
    ),
    Category(
        "stationery",
        ("notebook", "fountain pen", "pencil set", "planner", "ink bottle", "sketchbook", "desk organizer", "washi tape"),
        ("dotted", "refillable", "leather-bound", "recycled", "pocket"),
        ("acid-free paper", "fine nib", "lay-flat binding", "elastic closure", "numbered pages", "smudge proof ink", "hardcover", "archival"),
        ("journaling", "sketching", "the home office"),
        ("Papier", "Nibworks", "Quill"),
        2.6,
        "books",
    ),
    Category(
        "fitness",
        ("yoga mat", "dumbbells", "kettlebell", "resistance bands", "foam roller", "jump rope", "pull-up bar", "exercise bike"),
        ("adjustable", "non-slip", "heavy-duty", "foldable", "eco"),
        ("cushioned surface", "cast iron core", "five resistance levels", "carry strap", "quiet flywheel", "textured grip", "door frame mount", "natural rubber"),
        ("home workouts", "strength training", "morning yoga"),
        ("Ironclad", "Flowfit", "Corestrong"),
        3.9,
        "sportswear",
    ),
    Category(
        "sportswear",
        ("running shoes", "training shorts", "sports bra", "running tights", "track jacket", "cycling jersey", "sweatband", "gym bag"),
        ("moisture-wicking", "high-performance", "reflective", "seamless", "cushioned"),
        ("responsive foam", "mesh upper", "zip pocket", "flatlock seams", "four-way stretch", "uv protection", "ventilated", "anti-chafe"),
        ("marathon training", "the gym", "evening runs"),
        ("Stride", "Velocita", "Pulse"),
        3.7,
        "fitness",
    ),
    Category(
        "garden",
        ("garden hose", "pruning shears", "plant pots", "seed kit", "watering can", "raised bed", "compost bin", "garden gloves"),
        ("expandable", "terracotta", "organic", "self-watering", "galvanised"),
        ("frost resistant", "heirloom seeds", "bypass blades", "uv stabilised", "drainage holes", "brass fittings", "easy assembly", "puncture proof"),
        ("balcony gardens", "vegetable patches", "indoor herbs"),
        ("Greenthumb", "Verdant", "Rootstock"),
        3.3,
        "kitchen",
    ),
)


def generate_shop(
    users: int,
    items: int,
    interactions: int,
    seed: int = 0,
    *,
    days: int = 180,
    end_time: int = END_TIME,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A synthetic shop: (interactions, catalog).

    ``interactions`` has exactly ``interactions`` rows sorted by time, with columns user_id,
    item_id, event_type (view / add_to_cart / purchase), value (1 for views, the quantity
    for carts and purchases), timestamp (int64 unix seconds), session_id and order_id (set
    on purchases only). Every user has at least one session when ``interactions`` is about
    5 x ``users`` or more. ``catalog`` has ``items`` rows: item_id, title, description,
    category, price, in_stock.
    """
    for name, value, low in (("users", users, 1), ("items", items, 2), ("interactions", interactions, 1), ("days", days, 1)):
        if int(value) < low:
            raise ConfigError(f"generate: {name} must be >= {low}, got {value}")
    rng = np.random.default_rng(seed)
    shop = _Shop.build(rng, items)
    events = _events(rng, shop, users, interactions, days, end_time)
    return events, shop.catalog()


# ------------------------------------------------------------------ catalogue
@dataclass
class _Shop:
    """Items and their hidden structure (category, popularity, companion)."""

    categories: tuple[Category, ...]
    category_share: np.ndarray  # (n_categories,) share of traffic
    complement: np.ndarray  # (n_categories,) index of the complementary category
    item_category: np.ndarray  # (n_items,) int
    popularity: np.ndarray  # (2, n_items): before / during the new-arrival window
    companion: np.ndarray  # (n_items,) item index or -1
    title: np.ndarray
    description: np.ndarray
    price: np.ndarray
    in_stock: np.ndarray

    @classmethod
    def build(cls, rng: np.random.Generator, n_items: int) -> _Shop:
        n_cat = int(min(len(CATEGORIES), max(1, n_items // 8)))
        categories = CATEGORIES[:n_cat]
        names = [c.name for c in categories]
        complement = np.array(
            [names.index(c.complement) if c.complement in names else i for i, c in enumerate(categories)]
        )
        share = rng.dirichlet(np.full(n_cat, 4.0))
        # Every category gets at least one item; the rest follow the traffic share.
        item_category = rng.permutation(
            np.concatenate([np.arange(n_cat), rng.choice(n_cat, size=n_items - n_cat, p=share)])
        )

        # Zipf-like long tail inside each category: a random rank per item.
        rank = rng.permutation(n_items)
        base = (rank + 1.0) ** -0.9
        top_of_category = _argmax_per_group(base, item_category, n_cat)
        protected = np.zeros(n_items, dtype=bool)
        protected[top_of_category] = True
        candidates = np.flatnonzero(~protected)
        n_cold = min(len(candidates), int(round(0.05 * n_items)) if n_items >= 20 else int(n_items >= 3))
        cold = rng.choice(candidates, size=n_cold, replace=False)
        base[cold] = 0.0
        warm_candidates = np.setdiff1d(candidates, cold)
        n_new = min(len(warm_candidates), int(round(0.03 * n_items)))
        new = rng.choice(warm_candidates, size=n_new, replace=False)
        before = base.copy()
        before[new] = 0.0
        during = base.copy()
        if n_new:
            during[new] = np.quantile(base[base > 0], 0.97)
        popularity = np.stack([before, during])

        companion = _sample_items(rng, item_category, popularity[0], complement[item_category])
        companion[companion == np.arange(n_items)] = -1

        title, description = _texts(rng, categories, item_category)
        log_price = np.array([c.log_price for c in categories])[item_category] + 0.45 * rng.standard_normal(n_items)
        price = np.maximum(np.round(np.exp(log_price)) - 0.01, 0.99)
        in_stock = rng.random(n_items) >= 0.08
        return cls(categories, share, complement, item_category, popularity, companion, title, description, price, in_stock)

    @property
    def n_items(self) -> int:
        return len(self.item_category)

    def catalog(self) -> pd.DataFrame:
        names = np.array([c.name for c in self.categories])
        return pd.DataFrame(
            {
                schema.ITEM_ID: _prefixed("i", np.arange(self.n_items)),
                schema.TITLE: pd.Series(self.title, dtype="str"),
                schema.DESCRIPTION: pd.Series(self.description, dtype="str"),
                schema.CATEGORY: _labels(names, self.item_category),
                schema.PRICE: self.price,
                schema.IN_STOCK: self.in_stock,
            }
        )


def _argmax_per_group(values: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Index of the largest value in each group, shape (n_groups,) (every group non-empty)."""
    order = np.lexsort((-values, groups))
    first = np.searchsorted(groups[order], np.arange(n_groups), side="left")
    return order[first]


def _sample_items(
    rng: np.random.Generator, item_category: np.ndarray, weights: np.ndarray, categories: np.ndarray
) -> np.ndarray:
    """One item per entry of ``categories``, drawn inside that category by ``weights``.

    ``weights`` has shape (n_items,); the result has the shape of ``categories``. A
    category whose weights are all zero falls back to uniform over its items.
    """
    n_cat = int(item_category.max()) + 1
    order = np.argsort(item_category, kind="stable")
    sorted_cat = item_category[order]
    starts = np.searchsorted(sorted_cat, np.arange(n_cat), side="left")
    ends = np.searchsorted(sorted_cat, np.arange(n_cat), side="right")
    w = weights[order].astype(np.float64)
    totals = np.bincount(sorted_cat, weights=w, minlength=n_cat)
    empty = totals[sorted_cat] <= 0
    w = np.where(empty, 1.0, w)
    totals = np.bincount(sorted_cat, weights=w, minlength=n_cat)
    cum = np.cumsum(w)
    before = cum[starts] - w[starts]
    target = before[categories] + rng.random(categories.shape) * totals[categories]
    pos = np.searchsorted(cum, target, side="right")
    pos = np.clip(pos, starts[categories], ends[categories] - 1)
    return order[pos]


def _texts(
    rng: np.random.Generator, categories: tuple[Category, ...], item_category: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Titles and descriptions, each shape (n_items,) str, from the category vocabularies."""
    n = len(item_category)
    titles = np.empty(n, dtype=object)
    descriptions = np.empty(n, dtype=object)
    model = rng.integers(100, 1000, size=n).astype(str)
    letters = np.array(list("ABCDEFGHKLMRSTVXZ"))[rng.integers(0, 17, size=n)]
    picks = rng.random((n, 6))
    feature_keys = rng.random((n, 8))
    for k, category in enumerate(categories):
        idx = np.flatnonzero(item_category == k)
        if not len(idx):
            continue
        p = picks[idx]
        noun = np.array(category.nouns)[(p[:, 0] * len(category.nouns)).astype(int)]
        adj = np.array(category.adjectives)[(p[:, 1] * len(category.adjectives)).astype(int)]
        brand = np.array(category.brands)[(p[:, 2] * len(category.brands)).astype(int)]
        use = np.array(category.uses)[(p[:, 3] * len(category.uses)).astype(int)]
        feats = np.array(category.features)[np.argsort(feature_keys[idx, : len(category.features)], axis=1)[:, :3]]
        add = np.strings.add
        titles[idx] = add(add(add(add(add(add(brand, " "), adj), " "), noun), " "), add(letters[idx], model[idx]))
        sentence = add(add(add(add(np.strings.capitalize(adj), " "), noun), " by "), brand)
        features = add(add(add(add(feats[:, 0], ", "), feats[:, 1]), " and "), feats[:, 2])
        descriptions[idx] = add(add(add(add(add(sentence, ": "), features), ". Made for "), use), ".")
    return titles.astype(str), descriptions.astype(str)


# --------------------------------------------------------------------- events
def _events(
    rng: np.random.Generator, shop: _Shop, n_users: int, n_events: int, days: int, end_time: int
) -> pd.DataFrame:
    """The event log, exactly ``n_events`` rows sorted by time."""
    n_cat = len(shop.categories)
    # User tastes: 1-3 preferred categories (Gumbel top-k by category share) with weights.
    n_pref = np.minimum(rng.choice([1, 2, 3], size=n_users, p=[0.35, 0.45, 0.2]), n_cat)
    keys = np.log(shop.category_share)[None, :] + rng.gumbel(size=(n_users, n_cat))
    prefs = np.argsort(-keys, axis=1)[:, :3]
    if prefs.shape[1] < 3:
        prefs = np.pad(prefs, ((0, 0), (0, 3 - prefs.shape[1])), mode="edge")
    taste = rng.gamma(2.0, size=(n_users, 3)) * (np.arange(3)[None, :] < n_pref[:, None])
    taste_cum = np.cumsum(taste / taste.sum(axis=1, keepdims=True), axis=1)
    taste_cum[:, -1] = 1.0
    activity = rng.lognormal(0.0, 1.0, size=n_users)
    activity /= activity.sum()

    parts: list[dict[str, np.ndarray]] = []
    total = 0
    sessions_done = 0
    while total < n_events:
        # About 4.7 events per session; a margin so that one batch almost always suffices.
        n_sessions = int((n_events - total) / 4.0) + 16
        batch = _session_batch(
            rng, shop, n_sessions, sessions_done, n_users, prefs, n_pref, taste_cum, activity, days, end_time
        )
        parts.append(batch)
        total += len(batch["session"])
        sessions_done += n_sessions
    ev = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}

    # Keep the first n_events events in session order (each session's own time order), so
    # a cut session loses its last events, never a view before its purchase.
    order = _sort_order(ev["session"], ev["ts"] - (end_time - days * 86400), ev["kind"])[:n_events]
    ev = {key: value[order] for key, value in ev.items()}
    order = _sort_order(ev["ts"] - (end_time - days * 86400), ev["session"], ev["kind"])
    ev = {key: value[order] for key, value in ev.items()}

    session_codes = pd.factorize(ev["session"])[0]
    has_order = ev["kind"] == _PURCHASE
    order_codes = np.full(len(has_order), -1, dtype=np.int64)
    order_codes[has_order] = pd.factorize(ev["session"][has_order])[0]
    return pd.DataFrame(
        {
            schema.USER_ID: _prefixed("u", ev["user"]),
            schema.ITEM_ID: _prefixed("i", ev["item"]),
            schema.EVENT_TYPE: _labels(np.array(EVENT_NAMES), ev["kind"]),
            schema.VALUE: ev["value"].astype(np.float64),
            schema.TIMESTAMP: ev["ts"].astype(np.int64),
            schema.SESSION_ID: _prefixed("s", session_codes),
            schema.ORDER_ID: _prefixed("o", order_codes),
        }
    )


def _session_batch(
    rng: np.random.Generator,
    shop: _Shop,
    n_sessions: int,
    first_session: int,
    n_users: int,
    prefs: np.ndarray,
    n_pref: np.ndarray,
    taste_cum: np.ndarray,
    activity: np.ndarray,
    days: int,
    end_time: int,
) -> dict[str, np.ndarray]:
    """Events of ``n_sessions`` sessions as parallel arrays (session, user, item, kind, value, ts)."""
    n_cat = len(shop.categories)
    session = np.arange(first_session, first_session + n_sessions)
    # The first n_users sessions overall give every user one; the rest follow activity.
    user = np.where(session < n_users, session % n_users, rng.choice(n_users, size=n_sessions, p=activity))
    pick = (taste_cum[user] < rng.random(n_sessions)[:, None]).sum(axis=1)
    category = prefs[user, np.minimum(pick, n_pref[user] - 1)]
    explore = rng.random(n_sessions) < 0.1
    category = np.where(explore, rng.choice(n_cat, size=n_sessions, p=shop.category_share), category)

    # Start times: growing traffic, busier weekends, a daily rhythm.
    day_weight = np.linspace(1.0, 1.5, days) * np.where((np.arange(days) + 3) % 7 >= 5, 1.3, 1.0)
    hours = np.arange(24)
    hour_weight = 0.3 + np.exp(-0.5 * ((hours - 20.0) / 3.5) ** 2) + 0.5 * np.exp(-0.5 * ((hours - 12.5) / 2.0) ** 2)
    day = rng.choice(days, size=n_sessions, p=day_weight / day_weight.sum())
    hour = rng.choice(24, size=n_sessions, p=hour_weight / hour_weight.sum())
    start = end_time - days * 86400 + day * 86400 + hour * 3600 + rng.integers(0, 3600, size=n_sessions)
    period = (start >= end_time - NEW_ARRIVAL_DAYS * 86400).astype(np.int64)
    buying = rng.random(n_sessions) < 0.3

    # Views: 1 + geometric per session; mostly the session's category, some complementary.
    n_views = np.minimum(rng.geometric(0.28, size=n_sessions), 25)
    v_session = np.repeat(np.arange(n_sessions), n_views)
    mix = rng.random(len(v_session))
    v_cat = category[v_session]
    v_cat = np.where(mix < 0.12, shop.complement[v_cat], v_cat)
    v_cat = np.where(mix > 0.93, rng.choice(n_cat, size=len(v_session), p=shop.category_share), v_cat)
    v_item = np.empty(len(v_session), dtype=np.int64)
    v_period = period[v_session]
    for p in (0, 1):
        sel = v_period == p
        v_item[sel] = _sample_items(rng, shop.item_category, shop.popularity[p], v_cat[sel])
    gaps = rng.exponential(45.0, size=len(v_session)).astype(np.int64) + 1
    cum = np.cumsum(gaps)
    first_view = np.concatenate([[0], np.cumsum(n_views)[:-1]])
    offset = cum - np.repeat(cum[first_view] - gaps[first_view], n_views)
    v_ts = start[v_session] + offset
    session_end = v_ts[np.cumsum(n_views) - 1]

    # Carts: often in buying sessions, rarely otherwise; purchases: most carts of buying sessions.
    v_buying = buying[v_session]
    # An item goes into the cart at most once per session (first view wins), so that no
    # two events of the log are identical.
    n_items = shop.n_items
    carted = np.flatnonzero(rng.random(len(v_session)) < np.where(v_buying, 0.4, 0.06))
    carted = np.sort(carted[np.unique(v_session[carted] * n_items + v_item[carted], return_index=True)[1]])
    quantity = rng.choice([1, 2, 3], size=len(carted), p=[0.85, 0.12, 0.03])
    bought = v_buying[carted] & (rng.random(len(carted)) < 0.7)
    c_ts = v_ts[carted] + rng.integers(2, 40, size=len(carted))
    checkout = session_end + rng.integers(60, 300, size=n_sessions)

    # Companions: the item bought with a purchased item (cart + purchase at checkout),
    # unless it is in the order already.
    b_session = v_session[carted][bought]
    b_item = v_item[carted][bought]
    comp = shop.companion[b_item]
    with_comp = (comp >= 0) & (rng.random(len(b_item)) < 0.4)
    x_session = b_session[with_comp]
    x_item = comp[with_comp]
    x_key = x_session * n_items + x_item
    fresh = ~np.isin(x_key, b_session * n_items + b_item)
    fresh &= np.isin(np.arange(len(x_key)), np.unique(x_key, return_index=True)[1])
    x_session, x_item = x_session[fresh], x_item[fresh]

    n_x = len(x_session)
    sessions = np.concatenate([v_session, v_session[carted], b_session, x_session, x_session])
    items = np.concatenate([v_item, v_item[carted], b_item, x_item, x_item])
    kinds = np.concatenate(
        [
            np.full(len(v_session), _VIEW),
            np.full(len(carted), _CART),
            np.full(len(b_session), _PURCHASE),
            np.full(n_x, _CART),
            np.full(n_x, _PURCHASE),
        ]
    ).astype(np.int8)
    values = np.concatenate([np.ones(len(v_session)), quantity, quantity[bought], np.ones(n_x), np.ones(n_x)])
    ts = np.concatenate([v_ts, c_ts, checkout[b_session], checkout[x_session] - 10, checkout[x_session]])
    # The log ends at end_time: sessions running past it lose their last events.
    kept = ts < end_time
    return {
        "session": sessions[kept] + first_session,
        "user": user[sessions[kept]],
        "item": items[kept],
        "kind": kinds[kept],
        "value": values[kept],
        "ts": ts[kept],
    }


def _sort_order(first: np.ndarray, second: np.ndarray, third: np.ndarray) -> np.ndarray:
    """Stable order by (first, second, third), non-negative ints: one argsort of a packed
    int64 key when the three fit in 63 bits (much faster than lexsort), else lexsort."""
    bits = [max(int(a.max(initial=0)).bit_length(), 1) for a in (first, second, third)]
    if sum(bits) > 63:
        return np.lexsort((third, second, first))
    key = (first.astype(np.int64) << (bits[1] + bits[2])) | (second.astype(np.int64) << bits[2]) | third.astype(np.int64)
    return np.argsort(key, kind="stable")


# -------------------------------------------------------------------- strings
def _prefixed(prefix: str, codes: np.ndarray) -> pd.Series:
    """``prefix`` + decimal code as a str Series; negative codes become missing."""
    array = pa.array(codes, mask=codes < 0)
    joined = pc.binary_join_element_wise(prefix, pc.cast(array, pa.string()), "")
    return pd.Series(joined, dtype=pd.StringDtype("pyarrow", na_value=np.nan))


def _labels(names: np.ndarray, codes: np.ndarray) -> pd.Series:
    """``names[codes]`` as a str Series."""
    return strings_from_codes(names, codes)
