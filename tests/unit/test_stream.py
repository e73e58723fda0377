"""Stream-based selective sampling: the query rate follows the target under drift."""

from __future__ import annotations

import numpy as np
import pytest

from loopwise.strategies import StreamSelector


def _drifting_scores(n=30_000, seed=0):
    rng = np.random.RandomState(seed)
    a = rng.beta(2, 5, size=n // 3)  # low utilities
    b = rng.beta(5, 2, size=n // 3)  # the distribution jumps up
    c = 0.1 * rng.beta(2, 2, size=n - 2 * (n // 3))  # then collapses to a narrow low band
    return np.concatenate([a, b, c])


@pytest.mark.parametrize("rate", [0.05, 0.2])
def test_query_rate_tracks_the_target_in_every_regime(rate):
    scores = _drifting_scores()
    sel = StreamSelector(target_rate=rate, random_state=0)
    decisions = np.array([sel.decide(s) for s in scores])
    assert sel.n_seen_ == scores.size and sel.n_queried_ == decisions.sum()
    third = scores.size // 3
    regimes = (slice(500, third), slice(third + 500, 2 * third), slice(2 * third + 500, None))
    for part in (decisions[r] for r in regimes):
        assert abs(part.mean() - rate) < 0.25 * rate, part.mean()


def test_a_fixed_threshold_would_miss_the_target_where_the_adaptive_one_does_not():
    scores = _drifting_scores()
    first = scores[: scores.size // 3]
    fixed = np.quantile(first, 0.9)  # right for the first regime only
    later = scores[scores.size // 3 :]
    fixed_rate = (later >= fixed).mean()
    sel = StreamSelector(target_rate=0.1, random_state=0)
    adaptive = np.array([sel.decide(s) for s in scores])[scores.size // 3 :].mean()
    assert abs(fixed_rate - 0.1) > 0.2 and abs(adaptive - 0.1) < 0.02


def test_queries_go_to_the_most_uncertain_records_within_a_regime():
    rng = np.random.RandomState(1)
    scores = rng.rand(5000)
    sel = StreamSelector(target_rate=0.1, random_state=0)
    decisions = np.array([sel.decide(s) for s in scores])[100:]
    assert scores[100:][decisions].mean() > 0.8 > scores[100:][~decisions].mean()


def test_same_seed_same_decisions_and_select_equals_one_by_one(blobs):
    clf, X, *_ = blobs
    a = StreamSelector(target_rate=0.2, random_state=3).select(clf, X)
    sel = StreamSelector(target_rate=0.2, random_state=3)
    one_by_one = [i for i, q, _ in sel.stream(clf, X) if q]
    np.testing.assert_array_equal(a, one_by_one)
    np.testing.assert_array_equal(a, StreamSelector(target_rate=0.2, random_state=3).select(clf, X))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"target_rate": 0}, "target_rate must be in"),
        ({"target_rate": 1.5}, "target_rate must be in"),
        ({"utility": "gini"}, "utility must be one of"),
        ({"window": 1}, "window must be an integer >= 2"),
    ],
)
def test_bad_parameters_are_named(params, message):
    with pytest.raises(ValueError, match=message):
        StreamSelector(**params).decide(0.5)


def test_non_finite_score_is_refused():
    with pytest.raises(ValueError, match="finite"):
        StreamSelector().decide(float("nan"))
