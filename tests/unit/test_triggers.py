"""Retrain triggers: each fires on its evidence and only then; keys; Wilson coverage."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from loopwise.triggers import (
    TRIGGER_ORDER,
    TriggerRules,
    accuracy_decay,
    evaluate_triggers,
    first_fired,
    input_drift,
    new_labels,
    online_accuracy,
    prediction_drift,
    wilson_interval,
)

RULES = TriggerRules()


def _inputs(n, seed, shift=0.0):
    rng = np.random.RandomState(seed)
    return pd.DataFrame({"a": rng.normal(shift, 1, n), "b": rng.normal(0, 1, n)})


def _control(version, n, correct, decision="control"):
    return [
        {
            "decision": decision,
            "model_version": version,
            "prediction": "x",
            "label": "x" if i < correct else "y",
        }
        for i in range(n)
    ]


# --------------------------------------------------------------------------- new labels


def test_new_labels_fires_at_the_threshold_only():
    assert not new_labels(99, 3, RULES).fired
    fired = new_labels(100, 3, RULES)
    assert fired.fired and fired.key == "labels:3" and "100 new labels" in fired.sentence
    assert new_labels(250, 3, RULES).key == "labels:3"  # more labels, same retrain asked
    assert new_labels(100, 4, RULES).key == "labels:4"
    assert new_labels(99, 3, RULES).key is None


# --------------------------------------------------------------------------- input drift


def test_input_drift_fires_on_a_shifted_input_and_names_it():
    ref = _inputs(2000, 0)
    decision = input_drift(ref, _inputs(600, 1, shift=1.0), 7, RULES)
    assert decision.fired and decision.key == "drift:7"
    assert decision.numbers["drifted_features"] == ["a"] and "a PSI" in decision.sentence
    assert decision.numbers["n_current"] == RULES.drift_window  # only the last window


def test_input_drift_does_not_fire_on_the_same_distribution():
    decision = input_drift(_inputs(2000, 0), _inputs(500, 2), 7, RULES)
    assert not decision.fired and decision.key is None
    assert decision.numbers["max_psi"] < RULES.psi_threshold


def test_input_drift_needs_a_full_window():
    decision = input_drift(_inputs(2000, 0), _inputs(499, 1, shift=3.0), 0, RULES)
    assert not decision.fired and "needs 500" in decision.sentence


def test_input_drift_reads_record_inputs_and_arrays():
    ref = _inputs(1000, 0)
    records = _inputs(500, 1, shift=1.5).to_dict("records")
    assert input_drift(ref, records, 1, RULES).fired
    arr = input_drift(ref.to_numpy(), _inputs(500, 1, shift=1.5).to_numpy(), 1, RULES)
    assert arr.fired and arr.numbers["drifted_features"] == ["x0"]


# --------------------------------------------------------------------------- prediction drift


def test_prediction_drift_fires_on_a_moved_class_mix_only():
    ref = ["a"] * 500 + ["b"] * 500
    same = ["a", "b"] * 250
    moved = ["a"] * 450 + ["b"] * 50
    assert not prediction_drift(ref, same, 2, RULES).fired
    decision = prediction_drift(ref, moved, 2, RULES)
    assert decision.fired and decision.key == "prediction_drift:2"
    assert decision.numbers["psi"] > RULES.psi_threshold and "class" in decision.sentence


def test_prediction_drift_discounts_the_psi_of_sampling_many_classes():
    """Two windows of 400 from one 26-class mix read a PSI of about 25 * 2 / 400 = 0.125:
    over 60 draws the raw PSI passes 0.2 now and then, the rule does not fire on it."""
    rng = np.random.RandomState(0)
    classes = [chr(65 + i) for i in range(26)]
    p = rng.dirichlet(np.ones(26) * 5)
    rules = TriggerRules(drift_window=400)
    raw_over, fired = 0, 0
    for _ in range(60):
        ref = list(rng.choice(classes, 400, p=p))
        cur = list(rng.choice(classes, 400, p=p))
        d = prediction_drift(ref, cur, 0, rules)
        raw_over += d.numbers["psi"] > rules.psi_threshold
        fired += d.fired
    assert raw_over >= 3, "the uncorrected rule would have fired on sampling noise"
    assert fired == 0
    q = p.copy()
    q[:13] *= 4  # half the classes four times as frequent
    moved = list(rng.choice(classes, 400, p=q / q.sum()))
    assert prediction_drift(ref, moved, 1, rules).fired


def test_prediction_drift_counts_a_class_never_seen_in_the_snapshot():
    decision = prediction_drift(["a", "b"] * 300, ["c"] * 500, 0, RULES)
    assert decision.fired and decision.numbers["current_mix"]["c"] == 1.0


# --------------------------------------------------------------------------- accuracy decay


def test_online_accuracy_counts_control_labels_only_per_version():
    records = (
        _control("1", 40, 30)
        + _control("1", 50, 0, decision="query")  # biased sample: ignored
        + _control(None, 10, 10)
        + [{"decision": "control", "model_version": "1", "prediction": "x", "label": None}]
    )
    online = online_accuracy(records)
    assert set(online) == {"1", "unknown"}
    assert online["1"]["n"] == 40 and online["1"]["correct"] == 30
    assert online["1"]["low"] < 0.75 < online["1"]["high"]
    assert online["unknown"]["accuracy"] == 1.0


def test_accuracy_decay_fires_when_surely_below_holdout_minus_drop():
    online = online_accuracy(_control("3", 200, 140))  # 0.70, interval about 0.63-0.76
    decision = accuracy_decay(online, "3", 0.90, RULES, retrain_count=2)
    assert decision.fired and decision.key == "accuracy:3:2"
    assert "0.700" in decision.sentence and "0.850" in decision.sentence
    # within the interval of holdout - drop: not fired
    assert not accuracy_decay(online, "3", 0.78, RULES).fired


def test_accuracy_decay_waits_for_min_control_labels():
    online = online_accuracy(_control("3", 29, 0))
    decision = accuracy_decay(online, "3", 0.95, RULES)
    assert not decision.fired and "needs 30" in decision.sentence
    assert not accuracy_decay(online, "4", 0.95, RULES).fired  # no labels for the version


@pytest.mark.parametrize("n", [30, 100, 400])
def test_wilson_interval_covers_the_truth_at_about_the_nominal_rate(n):
    rng = np.random.RandomState(n)
    trials, covered = 2000, 0
    for p in rng.uniform(0.6, 0.97, size=trials):
        correct = int(rng.binomial(n, p))
        low, high = wilson_interval(correct, n)
        covered += low <= p <= high
    assert 0.92 <= covered / trials <= 0.98


def test_wilson_interval_edges():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(30, 30)
    assert high == 1.0 and 0.85 < low < 1.0
    with pytest.raises(ValueError, match="correct <= n"):
        wilson_interval(5, 3)


# --------------------------------------------------------------------------- all together


def _evaluate(**kw):
    base = {
        "new_label_count": 10,
        "retrain_count": 1,
        "window_index": 4,
        "reference": _inputs(2000, 0),
        "current": _inputs(500, 1),
        "reference_labels": ["a", "b"] * 300,
        "predictions": ["a", "b"] * 250,
        "online": online_accuracy(_control("2", 100, 90)),
        "version": "2",
        "holdout_accuracy": 0.9,
    }
    return evaluate_triggers(RULES, **{**base, **kw})


def test_evaluate_triggers_in_order_and_first_fired_names_the_retrain():
    quiet = _evaluate()
    assert [d.name for d in quiet] == list(TRIGGER_ORDER)
    assert first_fired(quiet) is None
    drift_and_labels = _evaluate(current=_inputs(500, 1, shift=2.0), new_label_count=150)
    assert [d.name for d in drift_and_labels if d.fired] == ["input_drift", "new_labels"]
    assert first_fired(drift_and_labels).key == "drift:4"
    json.dumps([d.to_dict() for d in drift_and_labels])


def test_keys_are_stable_for_the_same_evidence_and_new_for_new_evidence():
    shifted = _inputs(500, 1, shift=2.0)
    a = first_fired(_evaluate(current=shifted)).key
    assert a == first_fired(_evaluate(current=shifted)).key  # a re-run asks for the same run
    assert first_fired(_evaluate(current=shifted, window_index=5)).key != a
    decayed = online_accuracy(_control("2", 100, 60))
    k = first_fired(_evaluate(online=decayed)).key
    assert k == first_fired(_evaluate(online=decayed)).key == "accuracy:2:1"
    assert first_fired(_evaluate(online=decayed, retrain_count=2)).key != k


def test_missing_inputs_do_not_fire():
    decisions = evaluate_triggers(RULES, new_label_count=0, retrain_count=0)
    assert not any(d.fired for d in decisions)
    assert all(d.sentence for d in decisions)


def test_rules_validate_and_are_frozen():
    with pytest.raises(ValidationError):
        TriggerRules(min_new_labels=0)
    with pytest.raises(ValidationError):
        TriggerRules(unknown=1)
    with pytest.raises(ValidationError):
        RULES.max_drop = 0.1
