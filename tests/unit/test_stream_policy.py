"""The stream policy: rate, control share, boost, replay from a saved state, budget."""

from __future__ import annotations

import json

import numpy as np
import pytest

from loopwise.strategies import StreamSelector
from loopwise.stream_policy import MAX_RATE, Decision, StreamPolicy, rate_for_budget


def _proba(n, seed=0, classes=4):
    """Class probabilities whose uncertainty varies from record to record."""
    rng = np.random.RandomState(seed)
    return rng.dirichlet(np.full(classes, 0.5), size=n)


def _counts(decisions):
    names = [d.decision for d in decisions]
    return {k: names.count(k) for k in ("query", "control", "skip")}


@pytest.mark.parametrize(("rate", "share"), [(0.05, 0.2), (0.2, 0.5), (0.1, 0.0)])
def test_the_realized_rate_converges_to_the_target_on_a_long_stream(rate, share):
    n = 40_000
    policy = StreamPolicy(target_rate=rate, control_share=share, random_state=1)
    counts = _counts(policy.decide_many(_proba(n)))
    asked = (counts["query"] + counts["control"]) / n
    assert abs(asked - rate) < 0.08 * rate, asked
    assert abs(counts["control"] / n - rate * share) < 0.15 * rate * share + 1e-9
    assert policy.n_seen_ == n and policy.n_control_ == counts["control"]


def test_control_share_does_not_depend_on_the_utility():
    n = 60_000
    policy = StreamPolicy(target_rate=0.1, control_share=0.2, random_state=2)
    proba = _proba(n, seed=3)
    decisions = policy.decide_many(proba)
    scores = np.array([d.score for d in decisions])
    control = np.array([d.decision == "control" for d in decisions])
    query = np.array([d.decision == "query" for d in decisions])
    low, high = scores < np.median(scores), scores >= np.median(scores)
    # controls: the same share among uncertain and confident records (0.02 expected each)
    assert abs(control[low].mean() - 0.02) < 0.004 and abs(control[high].mean() - 0.02) < 0.004
    # queries: only the uncertain ones
    assert query[high].mean() > 0.1 and query[low].mean() < 0.005


def test_queries_take_the_most_uncertain_records():
    policy = StreamPolicy(target_rate=0.1, control_share=0.0, random_state=0)
    decisions = policy.decide_many(_proba(5000))[500:]
    scores = np.array([d.score for d in decisions])
    asked = np.array([d.decision == "query" for d in decisions])
    assert np.quantile(scores, 0.85) < scores[asked].mean()
    thresholds = np.array([d.threshold for d in decisions])
    # the threshold is the window's quantile; the rank rule may differ by one record at it
    assert np.mean(scores[asked] >= thresholds[asked]) > 0.95


def test_boost_raises_the_rate_for_its_records_then_returns():
    policy = StreamPolicy(target_rate=0.05, control_share=0.2, boost=3.0, random_state=4)
    proba = _proba(30_000, seed=5)
    before = _counts(policy.decide_many(proba[:10_000]))
    policy.boost_for(5000)
    assert policy.rate_ == pytest.approx(0.15)
    during = _counts(policy.decide_many(proba[10_000:15_000]))
    assert policy.boost_left_ == 0 and policy.rate_ == 0.05
    after = _counts(policy.decide_many(proba[15_000:]))
    rate = {
        k: (c["query"] + c["control"]) / sum(c.values())
        for k, c in {"before": before, "during": during, "after": after}.items()
    }
    assert abs(rate["before"] - 0.05) < 0.01
    assert abs(rate["during"] - 0.15) < 0.02
    assert abs(rate["after"] - 0.05) < 0.01
    # the control draws follow the boosted rate too: the online sample stays uniform
    assert during["control"] / 5000 > 2 * before["control"] / 10_000


def test_a_boost_is_capped_and_never_shortened():
    policy = StreamPolicy(target_rate=0.3, boost=3.0, boost_records=100)
    policy.boost_for()
    assert policy.rate_ == MAX_RATE and policy.boost_left_ == 100
    policy.boost_for(10)
    assert policy.boost_left_ == 100


def test_replay_from_a_saved_state_gives_the_same_decisions():
    proba = _proba(6000, seed=6)
    params = {"target_rate": 0.1, "control_share": 0.3, "window": 300, "random_state": 7}
    policy = StreamPolicy(**params)
    policy.decide_many(proba[:2500])
    policy.boost_for(400)
    saved = json.loads(json.dumps(policy.state()))  # what the stream flow stores
    first = policy.decide_many(proba[2500:])
    replay = StreamPolicy.from_state(params, saved).decide_many(proba[2500:])
    assert first == replay
    again = StreamPolicy.from_state(params, saved).decide_many(proba[2500:])
    assert again == first
    # a fresh policy (no memory) would decide differently: the state matters
    assert StreamPolicy(**params).decide_many(proba[2500:]) != first


def test_decisions_are_deterministic_for_a_seed_and_differ_across_seeds():
    proba = _proba(3000)
    a = StreamPolicy(random_state=1).decide_many(proba)
    assert a == StreamPolicy(random_state=1).decide_many(proba)
    assert a != StreamPolicy(random_state=2).decide_many(proba)


def test_one_by_one_and_mappings_decide_as_decide_many():
    proba = _proba(800, classes=3)
    many = StreamPolicy(target_rate=0.2, random_state=3).decide_many(proba)
    policy = StreamPolicy(target_rate=0.2, random_state=3)
    one = [policy.decide({"a": r[0], "b": r[1], "c": r[2]}) for r in proba]
    assert [d.decision for d in one] == [d.decision for d in many]
    np.testing.assert_allclose([d.score for d in one], [d.score for d in many])


def test_control_share_one_is_random_selection():
    decisions = StreamPolicy(target_rate=0.1, control_share=1.0).decide_many(_proba(20_000))
    counts = _counts(decisions)
    assert counts["query"] == 0 and abs(counts["control"] / 20_000 - 0.1) < 0.01


def test_decision_to_dict_is_json_safe():
    first = StreamPolicy().decide([0.5, 0.5])
    assert isinstance(first, Decision) and first.threshold is None
    assert first.to_dict() == {"decision": first.decision, "score": 1.0, "threshold": None}
    json.dumps(StreamPolicy().state())


def test_selector_state_round_trip_keeps_its_decisions():
    scores = np.random.RandomState(0).rand(3000)
    sel = StreamSelector(target_rate=0.1, random_state=0)
    [sel.decide(s) for s in scores[:1000]]
    saved = json.loads(json.dumps(sel.get_state()))
    rest = [sel.decide(s) for s in scores[1000:]]
    again = StreamSelector(target_rate=0.1, random_state=0).set_state(saved)
    assert [again.decide(s) for s in scores[1000:]] == rest


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"target_rate": 0}, "target_rate must be in"),
        ({"control_share": 1.5}, "control_share must be in"),
        ({"utility": "gini"}, "utility must be one of"),
        ({"boost": 0.5}, "boost must be"),
        ({"boost_records": 0}, "boost_records must be"),
        ({"random_state": None}, "random_state must be"),
    ],
)
def test_bad_parameters_are_named(params, message):
    with pytest.raises(ValueError, match=message):
        StreamPolicy(**params)


def test_bad_inputs_are_refused():
    policy = StreamPolicy()
    with pytest.raises(ValueError, match="finite"):
        policy.decide([np.nan, 1.0])
    with pytest.raises(ValueError, match="same number of classes"):
        policy.decide_many([{"a": 1.0}, {"a": 0.5, "b": 0.5}])
    with pytest.raises(ValueError, match="not a StreamPolicy state"):
        StreamPolicy.from_state({}, {"version": 1})


def test_rate_for_budget():
    assert rate_for_budget(50, 1000) == pytest.approx(0.05)
    assert rate_for_budget(900, 1000) == MAX_RATE
    assert 0 < rate_for_budget(1e-6, 1e9) < 1e-10
    for bad in ((0, 100), (10, 0), (-1, 10), (float("nan"), 10)):
        with pytest.raises(ValueError, match="must be a finite number > 0"):
            rate_for_budget(*bad)
