from collections import Counter
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import recsys.models.rules as rules_module
from recsys.data.dataset import Dataset
from recsys.data.idmap import IdMap
from recsys.errors import ConfigError, ModelError
from recsys.models.base import Recommender
from recsys.models.rules import RulesRecommender
from tests.models.contract import RecommenderContract


class TestRules(RecommenderContract):
    model_name = "rules"
    fits_bare_matrix = False


class TestRulesWithTriples(RecommenderContract):
    model_name = "rules"
    params = {"max_itemset_size": 3, "min_support": 0.02}
    fits_bare_matrix = False


# Five baskets over four items, the statistics below are worked out by hand:
#   item counts: 0 -> 4, 1 -> 4, 2 -> 2, 3 -> 2;  pairs: {0,1} 3, {0,2} 2, {0,3} 1, {1,2} 1, {1,3} 2, {2,3} 0
#   triples: {0,1,2} 1 (basket 0), {0,1,3} 1 (basket 4)
HAND_BASKETS = [[0, 1, 2], [0, 1], [0, 2], [1, 3], [0, 1, 3]]
HAND_RULES = {
    # (i, j): (support, confidence(i->j), lift(i->j))
    (0, 1): (3 / 5, 3 / 4, (3 / 4) / (4 / 5)),  # 0.6, 0.75, 0.9375
    (1, 0): (3 / 5, 3 / 4, (3 / 4) / (4 / 5)),
    (0, 2): (2 / 5, 2 / 4, (2 / 4) / (2 / 5)),  # 0.4, 0.5, 1.25
    (2, 0): (2 / 5, 2 / 2, 1.0 / (4 / 5)),  # 0.4, 1.0, 1.25
    (0, 3): (1 / 5, 1 / 4, (1 / 4) / (2 / 5)),  # 0.2, 0.25, 0.625
    (3, 0): (1 / 5, 1 / 2, (1 / 2) / (4 / 5)),  # 0.2, 0.5, 0.625
    (1, 2): (1 / 5, 1 / 4, (1 / 4) / (2 / 5)),
    (2, 1): (1 / 5, 1 / 2, (1 / 2) / (4 / 5)),
    (1, 3): (2 / 5, 2 / 4, (2 / 4) / (2 / 5)),  # 0.4, 0.5, 1.25
    (3, 1): (2 / 5, 2 / 2, 1.0 / (4 / 5)),  # 0.4, 1.0, 1.25
}
HAND_TRIPLE_RULES = {
    # ((a, b), c): (support, confidence({a,b}->c), lift)
    ((0, 1), 2): (1 / 5, 1 / 3, (1 / 3) / (2 / 5)),
    ((0, 1), 3): (1 / 5, 1 / 3, (1 / 3) / (2 / 5)),
    ((0, 2), 1): (1 / 5, 1 / 2, (1 / 2) / (4 / 5)),
    ((1, 2), 0): (1 / 5, 1 / 1, 1.0 / (4 / 5)),
    ((0, 3), 1): (1 / 5, 1 / 1, 1.0 / (4 / 5)),
    ((1, 3), 0): (1 / 5, 1 / 2, (1 / 2) / (4 / 5)),
}


def basket_matrix(baskets: list[list[int]], n_items: int) -> sp.csr_matrix:
    rows = np.repeat(np.arange(len(baskets)), [len(b) for b in baskets])
    cols = np.concatenate([np.asarray(b, dtype=np.int64) for b in baskets]) if baskets else np.zeros(0, np.int64)
    return sp.csr_matrix((np.ones(len(cols), np.float32), (rows, cols)), shape=(len(baskets), n_items))


def basket_dataset(baskets: list[list[int]], n_items: int) -> Dataset:
    """One user per basket (user_items = the basket matrix)."""
    matrix = basket_matrix(baskets, n_items)
    return Dataset(
        user_items=matrix.copy(),
        users=IdMap(np.arange(matrix.shape[0]).astype(str)),
        items=IdMap(np.arange(n_items).astype(str)),
        baskets=matrix,
    )


def as_dict(model: RulesRecommender) -> dict[tuple[int, int], tuple[float, float, float]]:
    coo = model.confidence.tocoo()
    return {
        (int(i), int(j)): (float(model.support[i, j]), float(c), float(model.lift[i, j]))
        for i, j, c in zip(coo.row, coo.col, coo.data, strict=True)
    }


def triples_as_dict(model: RulesRecommender) -> dict[tuple[tuple[int, int], int], tuple[float, float, float]]:
    out = {}
    for metric_rows in [model.rules3["confidence"].tocoo()]:
        for p, c, conf in zip(metric_rows.row, metric_rows.col, metric_rows.data, strict=True):
            a, b = model.pair_antecedents[p]
            out[((int(a), int(b)), int(c))] = (
                float(model.rules3["support"][p, c]),
                float(conf),
                float(model.rules3["lift"][p, c]),
            )
    return out


def assert_rules_equal(got: dict, expected: dict) -> None:
    assert set(got) == set(expected)
    for key, values in expected.items():
        np.testing.assert_allclose(got[key], values, rtol=1e-6, err_msg=str(key))


def test_hand_computed_statistics() -> None:
    model = RulesRecommender(max_itemset_size=3, max_rules_per_item=None).fit(basket_dataset(HAND_BASKETS, 4))
    assert model.n_baskets == 5 and model.item_counts.tolist() == [4, 4, 2, 2]
    assert_rules_equal(as_dict(model), HAND_RULES)
    assert_rules_equal(triples_as_dict(model), HAND_TRIPLE_RULES)


@pytest.mark.parametrize(
    ("params", "kept"),
    [
        ({"min_support": 0.3}, {(0, 1), (1, 0), (0, 2), (2, 0), (1, 3), (3, 1)}),
        ({"min_confidence": 0.6}, {(0, 1), (1, 0), (2, 0), (3, 1)}),
        ({"min_lift": 1.0}, {(0, 2), (2, 0), (1, 3), (3, 1)}),
        ({"min_support": 0.3, "min_confidence": 0.6, "min_lift": 1.0}, {(2, 0), (3, 1)}),
        ({"max_rules_per_item": 1}, {(0, 1), (1, 0), (2, 0), (3, 1)}),
        ({"max_rules_per_item": 1, "rank_by": "lift"}, {(0, 2), (1, 3), (2, 0), (3, 1)}),
    ],
)
def test_thresholds_known_answer(params: dict, kept: set) -> None:
    model = RulesRecommender(params).fit(basket_dataset(HAND_BASKETS, 4))
    assert_rules_equal(as_dict(model), {key: HAND_RULES[key] for key in kept})


def test_triple_support_threshold() -> None:
    # Every triple is in one basket of five (support 0.2): a higher threshold leaves none.
    model = RulesRecommender(max_itemset_size=3, min_support=0.3).fit(basket_dataset(HAND_BASKETS, 4))
    assert len(model.pair_antecedents) == 0 and model.rules3["confidence"].nnz == 0
    model = RulesRecommender(max_itemset_size=3, min_confidence=0.9).fit(basket_dataset(HAND_BASKETS, 4))
    assert set(triples_as_dict(model)) == {((1, 2), 0), ((0, 3), 1)}


def test_basket_recommendation_known_answer() -> None:
    data = basket_dataset(HAND_BASKETS, 4)
    best = RulesRecommender(combine="max").fit(data)
    ids, scores = best.recommend_for_basket([0], 3)
    assert ids.tolist() == [1, 2, 3]
    np.testing.assert_allclose(scores, [0.75, 0.5, 0.25])
    # {0, 3}: 0 -> 1 (0.75), 0 -> 2 (0.5), 3 -> 1 (1.0); basket items are never suggested.
    ids, scores = best.recommend_for_basket([0, 3], 3)
    assert ids.tolist() == [1, 2, -1]
    np.testing.assert_allclose(scores[:2], [1.0, 0.5])
    total = RulesRecommender(combine="sum").fit(data)
    ids, scores = total.recommend_for_basket([3, 0], 2)
    assert ids.tolist() == [1, 2]
    np.testing.assert_allclose(scores, [1.75, 0.5])
    # With triples, {0, 3} -> 1 (confidence 1.0) adds to the pair rules.
    triples = RulesRecommender(combine="sum", max_itemset_size=3).fit(data)
    ids, scores = triples.recommend_for_basket([0, 3], 2)
    assert ids.tolist() == [1, 2]
    np.testing.assert_allclose(scores, [2.75, 0.5])
    by_lift = RulesRecommender(combine="max", rank_by="lift").fit(data)
    ids, scores = by_lift.recommend_for_basket([2], 3)
    assert ids.tolist() == [0, 1, -1]
    np.testing.assert_allclose(scores[:2], [1.25, 0.625])


def naive_rules(baskets: list[list[int]]) -> tuple[dict, dict]:
    """Pair and triple rules by counting in pure Python."""
    n = len(baskets)
    singles: Counter = Counter()
    pairs: Counter = Counter()
    triples: Counter = Counter()
    for basket in baskets:
        items = sorted(set(basket))
        singles.update(items)
        pairs.update(combinations(items, 2))
        triples.update(combinations(items, 3))
    pair_rules = {}
    for (a, b), count in pairs.items():
        for i, j in ((a, b), (b, a)):
            confidence = count / singles[i]
            pair_rules[(i, j)] = (count / n, confidence, confidence / (singles[j] / n))
    triple_rules = {}
    for triple, count in triples.items():
        for consequent in triple:
            antecedent = tuple(x for x in triple if x != consequent)
            confidence = count / pairs[antecedent]
            triple_rules[(antecedent, consequent)] = (count / n, confidence, confidence / (singles[consequent] / n))
    return pair_rules, triple_rules


def random_baskets(seed: int, n_baskets: int = 80, n_items: int = 15) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    popularity = rng.random(n_items) ** 2 + 0.05
    sizes = rng.integers(1, 7, n_baskets)
    return [
        sorted(rng.choice(n_items, size=int(size), replace=False, p=popularity / popularity.sum()).tolist())
        for size in sizes
    ]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_statistics_equal_naive_counting(seed: int) -> None:
    baskets = random_baskets(seed)
    pair_rules, triple_rules = naive_rules(baskets)
    model = RulesRecommender(max_itemset_size=3, max_rules_per_item=None).fit(basket_dataset(baskets, 15))
    assert_rules_equal(as_dict(model), pair_rules)
    assert_rules_equal(triples_as_dict(model), triple_rules)


@pytest.mark.parametrize("seed", [3, 4])
def test_thresholds_and_top_k_equal_naive(seed: int) -> None:
    baskets = random_baskets(seed)
    pair_rules, triple_rules = naive_rules(baskets)
    params = {"min_support": 0.03, "min_confidence": 0.2, "min_lift": 1.1, "rank_by": "lift", "max_rules_per_item": 3}
    model = RulesRecommender(max_itemset_size=3, **params).fit(basket_dataset(baskets, 15))

    def passes(values: tuple[float, float, float]) -> bool:
        support, confidence, lift = values
        # The same float formulas as the model, so no value sits on a threshold by rounding.
        return support >= 0.03 and confidence >= 0.2 and lift >= 1.1

    def best(rules: dict) -> dict:
        by_antecedent: dict = {}
        for (antecedent, consequent), values in rules.items():
            if passes(values):
                by_antecedent.setdefault(antecedent, []).append((-values[2], consequent, values))
        return {(a, c): v for a, group in by_antecedent.items() for _, c, v in sorted(group)[:3]}

    expected_pairs, expected_triples = best(pair_rules), best(triple_rules)
    assert expected_pairs and expected_triples
    assert_rules_equal(as_dict(model), expected_pairs)
    assert_rules_equal(triples_as_dict(model), expected_triples)


def test_triples_counted_in_chunks_equal_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    data = basket_dataset(random_baskets(5, n_baskets=120), 15)
    whole = RulesRecommender(max_itemset_size=3, max_rules_per_item=None).fit(data)
    monkeypatch.setattr(rules_module, "TRIPLE_CHUNK_NNZ", 40)
    chunked = RulesRecommender(max_itemset_size=3, max_rules_per_item=None).fit(data)
    assert len(chunked.pair_antecedents) == len(whole.pair_antecedents) > 10
    assert_rules_equal(triples_as_dict(chunked), triples_as_dict(whole))


def test_bought_together() -> None:
    model = RulesRecommender().fit(basket_dataset(HAND_BASKETS, 4))
    ids, confidence, lift = model.bought_together([0, 2], 4)
    assert ids.shape == confidence.shape == lift.shape == (2, 4)
    assert ids.tolist() == [[1, 2, 3, -1], [0, 1, -1, -1]]
    np.testing.assert_allclose(confidence[0, :3], [0.75, 0.5, 0.25])
    np.testing.assert_allclose(lift[0, :3], [0.9375, 1.25, 0.625])
    np.testing.assert_allclose(confidence[1, :2], [1.0, 0.5])
    np.testing.assert_allclose(lift[1, :2], [1.25, 0.625])
    assert np.isneginf(confidence[ids == -1]).all() and (lift[ids == -1] == 0).all()
    similar_ids, _ = model.similar_items([0, 2], 4)
    np.testing.assert_array_equal(similar_ids, ids)
    by_lift = RulesRecommender(rank_by="lift").fit(basket_dataset(HAND_BASKETS, 4))
    assert by_lift.bought_together(0, 3)[0].tolist() == [[2, 1, 3]]


@pytest.mark.parametrize("params", [{}, {"combine": "max", "max_itemset_size": 3}])
def test_many_baskets_batched_equal_one_by_one(params: dict) -> None:
    data = basket_dataset(random_baskets(6), 15)
    model = RulesRecommender(params).fit(data)
    queries = random_baskets(7, n_baskets=25)
    ids, scores = model.recommend_for_basket(basket_matrix(queries, 15), 5)
    assert ids.shape == scores.shape == (25, 5)
    for row, basket in enumerate(queries):
        one_ids, one_scores = model.recommend_for_basket(np.asarray(basket), 5)
        np.testing.assert_array_equal(one_ids, ids[row])
        np.testing.assert_allclose(one_scores, scores[row], rtol=1e-6)
        assert not set(basket) & set(one_ids.tolist())


def test_user_recommendation_is_the_basket_of_their_items() -> None:
    data = basket_dataset(random_baskets(8), 15)
    users = sp.csr_matrix(data.user_items[::-1])  # other users than the baskets' owners
    data = Dataset(user_items=users, users=data.users, items=data.items, baskets=data.baskets)
    model = RulesRecommender(max_itemset_size=3).fit(data)
    ids, scores = model.recommend(np.arange(data.n_users), 4)
    basket_ids, basket_scores = model.recommend_for_basket(users, 4)
    np.testing.assert_array_equal(ids, basket_ids)
    np.testing.assert_allclose(scores, basket_scores)


def test_save_load_keeps_rules(tmp_path: Path) -> None:
    model = RulesRecommender(max_itemset_size=3).fit(basket_dataset(random_baskets(9), 15))
    loaded = Recommender.load(model.save(tmp_path / "rules"))
    assert isinstance(loaded, RulesRecommender)
    assert_rules_equal(as_dict(loaded), as_dict(model))
    assert_rules_equal(triples_as_dict(loaded), triples_as_dict(model))
    np.testing.assert_array_equal(loaded.recommend_for_basket([1, 2, 3], 5)[0], model.recommend_for_basket([1, 2, 3], 5)[0])


def test_bad_input() -> None:
    with pytest.raises(ConfigError, match="max_itemset_size"):
        RulesRecommender(max_itemset_size=4)
    with pytest.raises(ConfigError, match="rank_by"):
        RulesRecommender(rank_by="support")
    with pytest.raises(ModelError, match="no baskets"):
        RulesRecommender().fit(basket_dataset([], 4))
    model = RulesRecommender().fit(basket_dataset(HAND_BASKETS, 4))
    with pytest.raises(ModelError, match="unknown item index 7"):
        model.recommend_for_basket([0, 7], 3)
    with pytest.raises(ModelError, match="matrix has 5 items"):
        model.recommend_for_basket(sp.csr_matrix((2, 5)), 3)
    with pytest.raises(ModelError, match="n must be a positive integer"):
        model.bought_together([0], 0)
    ids, scores = model.recommend_for_basket([], 2)
    assert ids.tolist() == [-1, -1] and np.isneginf(scores).all()
