"""Stopping rules: each fires on its history and not on a near miss, in order of precedence."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

from loopwise import stopping
from loopwise.stopping import (
    RULE_ORDER,
    CycleRecord,
    Decision,
    LearningCurveFit,
    StoppingRules,
    decide,
    fit_learning_curve,
    hindsight_stop_point,
)

#: Rules with every optional rule off and plateau out of reach, to test one rule at a time.
QUIET = {"kappa_threshold": None, "plateau_window": 1000, "marginal_gain": False}


def quiet(**kw):
    return StoppingRules(**{**QUIET, **kw})


def history(metrics, *, start=10, step=10, cost_per_label=1.0, kappas=None):
    kappas = kappas or [None] * len(metrics)
    return [
        CycleRecord(i, start + i * step, (start + i * step) * cost_per_label, m, k)
        for i, (m, k) in enumerate(zip(metrics, kappas, strict=True))
    ]


def power_law_history(n_cycles, a=0.9, b=1.2, c=0.5, start=20, step=20, cost_per_label=1.0):
    labels = start + step * np.arange(n_cycles)
    return history(
        list(a - b * labels ** (-c)), start=start, step=step, cost_per_label=cost_per_label
    )


def run(hist, rules, pool_remaining=1000, next_batch=10):
    return decide(hist, rules, pool_remaining=pool_remaining, next_batch=next_batch)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kw",
    [
        {"cycle": 0, "labels": -1, "cost": 0.0, "metric": 0.5},
        {"cycle": 0, "labels": 10, "cost": -1.0, "metric": 0.5},
        {"cycle": 0, "labels": 10, "cost": 0.0, "metric": 93.0},
        {"cycle": 0, "labels": 10, "cost": 0.0, "metric": float("nan")},
        {"cycle": 0, "labels": 10, "cost": 0.0, "metric": 0.5, "predictions_kappa": 1.5},
        {"cycle": 0, "labels": True, "cost": 0.0, "metric": 0.5},
    ],
)
def test_cycle_record_rejects_impossible_values(kw):
    with pytest.raises(ValueError, match="CycleRecord"):
        CycleRecord(**kw)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"plateau_window": 0}, "plateau_window"),
        ({"plateau_epsilon": 0.0}, "plateau_epsilon"),
        ({"kappa_threshold": 0.0}, "kappa_threshold"),
        ({"kappa_threshold": 1.01}, "kappa_threshold"),
        ({"kappa_cycles": 0}, "kappa_cycles"),
        ({"target_metric": 95}, "fraction"),
        ({"min_cycles_for_fit": 2}, "3 parameters"),
        ({"max_labels": -1}, "max_labels"),
        ({"max_labels": True}, "max_labels"),
        ({"max_cost": float("inf")}, "max_cost"),
        ({"cost_per_label": -0.5}, "cost_per_label"),
        ({"max_label": 10}, "max_label"),  # a typo is an error, not a silent default
    ],
)
def test_stopping_rules_validate_ranges_with_the_field_name(kw, match):
    with pytest.raises(ValidationError, match=match):
        StoppingRules(**kw)


def test_boundary_values_are_accepted_and_act_at_the_boundary():
    # kappa_threshold 1.0: only identical predictions, kappa_cycles times in a row, stop
    rules = quiet(kappa_threshold=1.0, kappa_cycles=2)
    assert run(history([0.5, 0.6, 0.7], kappas=[None, 1.0, 1.0]), rules).rule == (
        "stabilizing_predictions"
    )
    assert run(history([0.5, 0.6, 0.7], kappas=[None, 1.0, 0.9999]), rules).rule == "continue"
    # a zero budget is a budget that is spent, not "no budget"
    assert run(history([0.5]), quiet(max_labels=0)).rule == "label_budget"
    assert run(history([0.5]), quiet(max_cost=0.0)).rule == "currency_budget"
    # the rules as a campaign file gives them (a mapping) work like keyword arguments
    from_file = StoppingRules.model_validate({**QUIET, "max_labels": 500, "target_metric": 0.95})
    assert run(history([0.5], start=500), from_file).rule == "label_budget"
    assert run(history([0.5], start=490), from_file).rule == "continue"


def test_decide_rejects_bad_history_and_arguments():
    h = history([0.5, 0.6])
    with pytest.raises(ValueError, match="cycle order"):
        run(h[::-1], quiet())
    with pytest.raises(ValueError, match="cannot decrease"):
        run([CycleRecord(0, 20, 0.0, 0.5), CycleRecord(1, 10, 0.0, 0.6)], quiet())
    with pytest.raises(TypeError, match="CycleRecord"):
        run([{"cycle": 0}], quiet())
    with pytest.raises(TypeError, match="StoppingRules"):
        run(h, {"max_labels": 10})
    with pytest.raises(ValueError, match="next_batch"):
        run(h, quiet(), next_batch=0)
    with pytest.raises(ValueError, match="pool_remaining"):
        run(h, quiet(), pool_remaining=-1)


# --------------------------------------------------------------------------- empty history


def test_empty_history_continues_with_nothing_to_judge():
    d = run([], StoppingRules(value_per_point=10.0, cost_per_label=1.0, target_metric=0.9))
    assert (d.stop, d.rule) == (False, "continue")
    assert "nothing to judge" in d.reason
    assert d.details["labels"] == 0 and d.details["metric"] is None


@pytest.mark.parametrize(
    "rules, pool, rule",
    [
        (quiet(), 0, "pool_exhausted"),
        (quiet(max_labels=0), 100, "label_budget"),
        (quiet(max_cost=0.0), 100, "currency_budget"),
        (quiet(max_cost=15.0, cost_per_label=1.0), 100, "currency_budget"),  # 20 labels cost 20
    ],
)
def test_empty_history_stops_on_exhausted_pool_or_zero_budget(rules, pool, rule):
    d = run([], rules, pool_remaining=pool, next_batch=20)
    assert (d.stop, d.rule) == (True, rule)


# --------------------------------------------------------------------------- each rule


def test_pool_exhausted_fires_at_zero_only():
    h = history([0.5, 0.6])
    assert run(h, quiet(), pool_remaining=0).rule == "pool_exhausted"
    assert run(h, quiet(), pool_remaining=1).rule == "continue"


def test_label_budget_fires_at_the_budget_and_clamps_the_next_batch():
    h = history([0.5, 0.6, 0.65], start=20, step=40)  # 100 labels
    d = run(h, quiet(max_labels=100), next_batch=20)
    assert (d.stop, d.rule) == (True, "label_budget")
    assert "100 labels >= max_labels 100" in d.reason
    d = run(h, quiet(max_labels=105), next_batch=20)
    assert d.rule == "continue"
    assert d.details["next_batch_effective"] == 5 and d.details["next_batch"] == 20


def test_next_batch_is_clamped_to_the_pool():
    d = run(history([0.5]), quiet(), pool_remaining=3, next_batch=20)
    assert d.details["next_batch_effective"] == 3


def test_currency_budget_spent_and_next_batch_overspend():
    h = [CycleRecord(0, 100, 500.0, 0.7)]
    d = run(h, quiet(max_cost=500.0, cost_per_label=1.0), next_batch=20)
    assert (d.rule, d.details["max_cost"]) == ("currency_budget", 500.0)
    assert "spent" in d.reason
    # 480 + 20 * 1.0 = 500 is exactly the budget: allowed
    h = [CycleRecord(0, 100, 480.0, 0.7)]
    assert run(h, quiet(max_cost=500.0, cost_per_label=1.0), next_batch=20).rule == "continue"
    # 481 + 20 > 500: the next batch would overspend
    h = [CycleRecord(0, 100, 481.0, 0.7)]
    d = run(h, quiet(max_cost=500.0, cost_per_label=1.0), next_batch=20)
    assert (d.stop, d.rule) == (True, "currency_budget")
    assert d.details["cost_after_next_batch"] == pytest.approx(501.0)
    assert "501.00 > max_cost 500.00" in d.reason


def test_currency_budget_prices_the_batch_clamped_to_the_label_budget():
    h = [CycleRecord(0, 100, 481.0, 0.7)]
    # only 5 labels left in the label budget: 481 + 5 <= 500
    d = run(h, quiet(max_cost=500.0, cost_per_label=1.0, max_labels=105), next_batch=20)
    assert d.rule == "continue"
    assert d.details["checks"]["currency_budget"]["next_batch_cost"] == pytest.approx(5.0)


def test_target_metric_fires_at_the_target_not_just_below():
    assert run(history([0.8, 0.9]), quiet(target_metric=0.9)).rule == "target_metric"
    assert run(history([0.8, 0.8999]), quiet(target_metric=0.9)).rule == "continue"


def test_plateau_needs_window_plus_one_records_and_a_small_gain():
    rules = StoppingRules(**{**QUIET, "plateau_window": 3, "plateau_epsilon": 0.005})
    d = run(history([0.80, 0.85, 0.852, 0.853, 0.854]), rules)  # +0.004 over 3 cycles
    assert (d.stop, d.rule) == (True, "plateau")
    assert d.details["window_gain"] == pytest.approx(0.004)
    assert d.details["metric_window_start"] == 0.85
    assert run(history([0.80, 0.85, 0.852, 0.853, 0.856]), rules).rule == "continue"  # +0.006
    # flat, but only 3 records: the window of 3 cycles needs 4
    d = run(history([0.85, 0.85, 0.85]), rules)
    assert d.rule == "continue"
    assert "needs 4 cycles, have 3" in d.details["checks"]["plateau"]["reason"]


def test_plateau_fires_when_the_metric_fell():
    rules = StoppingRules(**{**QUIET, "plateau_window": 2})
    assert run(history([0.80, 0.85, 0.86, 0.84]), rules).rule == "plateau"  # -0.01


def test_stabilizing_predictions_needs_k_consecutive_cycles():
    rules = StoppingRules(**{**QUIET, "kappa_threshold": 0.99, "kappa_cycles": 2})
    metrics = [0.5, 0.6, 0.7, 0.8]
    # two high kappas, but not consecutive at the end
    d = run(history(metrics, kappas=[None, 0.995, 0.98, 0.995]), rules)
    assert d.rule == "continue"
    assert d.details["checks"]["stabilizing_predictions"]["consecutive_cycles"] == 1
    d = run(history(metrics, kappas=[None, 0.98, 0.99, 0.995]), rules)
    assert (d.stop, d.rule) == (True, "stabilizing_predictions")
    assert d.details["recent_kappas"] == [0.99, 0.995]
    # the first cycle has no kappa: one record with a high kappa is not enough
    assert run(history([0.5, 0.6], kappas=[None, 1.0]), rules).rule == "continue"
    rules3 = StoppingRules(**{**QUIET, "kappa_threshold": 0.99, "kappa_cycles": 3})
    assert run(history(metrics, kappas=[None, 0.98, 0.99, 0.995]), rules3).rule == "continue"


# --------------------------------------------------------------------------- marginal gain


def test_marginal_gain_stops_on_a_saturating_curve_when_labels_are_expensive():
    h = power_law_history(8, a=0.9, b=1.2, c=0.5)  # 160 labels, gains shrinking
    rules = quiet(marginal_gain=True, value_per_point=1.0, cost_per_label=1.0)
    d = run(h, rules, next_batch=20)
    assert (d.stop, d.rule) == (True, "marginal_gain")
    # the true next-batch gain of the curve, which the fit must recover
    gain = (0.9 - 1.2 * 180**-0.5) - (0.9 - 1.2 * 160**-0.5)
    assert d.details["projected_gain"] == pytest.approx(gain, rel=1e-3)
    assert d.details["projected_value"] == pytest.approx(gain * 100, rel=1e-3)
    assert d.details["next_batch_cost"] == pytest.approx(20.0)
    assert d.details["fit"]["a"] == pytest.approx(0.9, abs=1e-3)
    assert d.reason.startswith(f"projected gain of the next 20 labels is {gain * 100:.2f} points")
    assert "< their cost 20.00" in d.reason


def test_marginal_gain_continues_when_a_point_is_worth_more():
    h = power_law_history(8, a=0.9, b=1.2, c=0.5)
    rules = quiet(marginal_gain=True, value_per_point=100.0, cost_per_label=1.0)
    d = run(h, rules, next_batch=20)
    assert d.rule == "continue"
    check = d.details["checks"]["marginal_gain"]
    assert check["projected_value"] > check["next_batch_cost"] == 20.0
    assert ">= their cost 20.00" in check["reason"]


def test_marginal_gain_is_off_without_value_or_with_too_few_cycles():
    h = power_law_history(8)
    assert run(h, quiet(marginal_gain=True, cost_per_label=1e6)).rule == "continue"  # value 0
    assert (
        run(h, quiet(marginal_gain=False, value_per_point=1.0, cost_per_label=1e6)).rule
        == "continue"
    )
    rules = quiet(marginal_gain=True, value_per_point=1.0, cost_per_label=1e6, min_cycles_for_fit=5)
    d = run(h[:4], rules)
    assert d.rule == "continue"
    assert "needs 5 cycles" in d.details["checks"]["marginal_gain"]["reason"]
    assert run(h[:5], rules).rule == "marginal_gain"


def test_marginal_gain_rule_stops_within_one_batch_of_the_hindsight_point():
    h = power_law_history(40, a=0.92, b=1.5, c=0.6, start=20, step=20)
    value_per_point, cost_per_label = 2.0, 0.05
    target = hindsight_stop_point(h, value_per_point, cost_per_label)
    assert target is not None and 3 <= target < 39
    rules = quiet(
        marginal_gain=True, value_per_point=value_per_point, cost_per_label=cost_per_label
    )
    stopped = next(
        i for i in range(len(h)) if run(h[: i + 1], rules, next_batch=20).rule == "marginal_gain"
    )
    assert abs(stopped - target) <= 1


# --------------------------------------------------------------------------- precedence


def test_rules_fire_in_order_of_precedence():
    # a history on which every rule would fire
    h = history([0.90, 0.95, 0.951, 0.951, 0.951], kappas=[None, 1.0, 1.0, 1.0, 1.0])  # 50 labels
    all_on = {
        "max_labels": 50,
        "max_cost": 50.0,
        "target_metric": 0.9,
        "plateau_window": 2,
        "marginal_gain": True,
        "value_per_point": 1.0,
        "cost_per_label": 1.0,
        "kappa_threshold": 0.99,
    }
    switch_off = {
        "label_budget": {"max_labels": None},
        "currency_budget": {"max_cost": None},
        "target_metric": {"target_metric": None},
        "plateau": {"plateau_window": 1000},
        "marginal_gain": {"marginal_gain": False},
        "stabilizing_predictions": {"kappa_threshold": None},
    }
    order = (
        "pool_exhausted",
        "label_budget",
        "currency_budget",
        "target_metric",
        "plateau",
        "marginal_gain",
        "stabilizing_predictions",
    )
    assert order == RULE_ORDER
    kw = dict(all_on)
    assert run(h, StoppingRules(**kw), pool_remaining=0).rule == "pool_exhausted"
    for rule in order[1:]:
        assert run(h, StoppingRules(**kw)).rule == rule
        kw.update(switch_off[rule])
    assert run(h, StoppingRules(**kw)).rule == "continue"


def test_continue_details_record_every_check():
    d = run(power_law_history(5), StoppingRules(value_per_point=100.0, cost_per_label=0.01))
    assert d.rule == "continue" and not d.stop
    assert list(d.details["checks"]) == list(RULE_ORDER)
    assert {"labels", "cost", "metric", "cycle", "next_batch_effective"} <= d.details.keys()
    assert "projected gain of the next 10 labels" in d.reason


# --------------------------------------------------------------------------- to_dict


def test_every_decision_serializes_to_strict_json():
    h = power_law_history(6, cost_per_label=1.0)
    cases = [
        run(h, quiet(), pool_remaining=0),
        run(h, quiet(max_labels=120)),
        run(h, quiet(max_cost=100.0)),
        run(h, quiet(target_metric=0.5)),
        run(h, StoppingRules(**{**QUIET, "plateau_window": 2, "plateau_epsilon": 1.0})),
        run(h, quiet(marginal_gain=True, value_per_point=1.0, cost_per_label=10.0)),
        run(history([0.5, 0.6, 0.7], kappas=[None, 1.0, 1.0]), StoppingRules()),
        run(h, StoppingRules(value_per_point=1e6)),
        run([], StoppingRules()),
    ]
    assert {d.rule for d in cases} == {*RULE_ORDER, "continue"}
    for d in cases:
        out = json.loads(json.dumps(d.to_dict(), allow_nan=False))
        assert out["rule"] == d.rule and out["stop"] is d.stop and out["reason"] == d.reason


def test_to_dict_converts_numpy_and_non_finite_numbers():
    d = Decision(
        True, "r", "plateau", {"x": np.float64(0.5), "n": np.int64(3), "t": (1, float("nan"))}
    )
    assert d.to_dict()["details"] == {"x": 0.5, "n": 3, "t": [1, None]}
    json.dumps(d.to_dict(), allow_nan=False)


# --------------------------------------------------------------------------- learning curve


def test_fit_recovers_known_parameters_of_a_noiseless_curve():
    n = np.array([20, 40, 60, 80, 100, 150, 200, 300, 400, 500])
    fit = fit_learning_curve(n, 0.92 - 1.5 * n**-0.6)
    assert fit.method == "curve_fit"
    assert (fit.a, fit.b, fit.c) == pytest.approx((0.92, 1.5, 0.6), rel=1e-4)
    assert fit.predict(1000) == pytest.approx(0.92 - 1.5 * 1000**-0.6, abs=1e-6)
    assert fit.predict(np.array([20, 40])).shape == (2,)


def test_fit_on_a_noisy_curve_extrapolates_within_tolerance():
    rng = np.random.RandomState(0)
    n = np.arange(20, 520, 20)
    y = 0.92 - 1.5 * n**-0.6 + rng.normal(0, 0.003, n.size)
    fit = fit_learning_curve(n, y)
    assert fit.a == pytest.approx(0.92, abs=0.02)
    assert fit.rmse < 0.005
    assert fit.predict(1000) == pytest.approx(0.92 - 1.5 * 1000**-0.6, abs=0.01)


def test_fit_stays_in_bounds_on_curves_that_are_not_power_laws():
    for y in (
        [0.5, 0.6, 0.7, 0.8],
        [0.6, 0.5, 0.4, 0.3],
        [0.7, 0.7, 0.7, 0.7],
        [0.99, 1.0, 1.0, 1.0],
    ):
        fit = fit_learning_curve([10, 20, 30, 40], y)
        assert fit.a <= 1.0 and fit.b >= 0.0 and fit.c > 0.0
        assert np.isfinite(fit.rmse)


def test_fit_falls_back_to_the_grid_when_curve_fit_fails(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("Optimal parameters not found")

    monkeypatch.setattr(stopping, "curve_fit", broken)
    n = np.array([20, 40, 60, 80, 100, 150, 200, 300, 400, 500])
    fit = fit_learning_curve(n, 0.92 - 1.5 * n**-0.6)
    assert fit.method == "grid"
    assert fit.a == pytest.approx(0.92, abs=0.01)
    assert fit.predict(1000) == pytest.approx(0.92 - 1.5 * 1000**-0.6, abs=0.005)


@pytest.mark.parametrize(
    "labels, metric, match",
    [
        ([10, 20, 20], [0.5, 0.6, 0.6], "3 distinct"),
        ([0, 10, 20], [0.5, 0.6, 0.7], "> 0"),
        ([10, 20, 30], [50, 60, 70], r"\[0, 1\]"),
        ([10, 20, 30], [0.5, 0.6], "same length"),
    ],
)
def test_fit_rejects_unusable_points(labels, metric, match):
    with pytest.raises(ValueError, match=match):
        fit_learning_curve(labels, metric)


def test_learning_curve_predict_rejects_zero_labels():
    with pytest.raises(ValueError, match="> 0"):
        LearningCurveFit(0.9, 1.0, 0.5, "curve_fit").predict(0)


# --------------------------------------------------------------------------- hindsight


def test_hindsight_point_is_the_first_batch_worth_less_than_its_cost():
    # gains per batch of 10 labels: 10, 5, 2, 1, 0.5 points; cost 2.5 per batch
    h = history([0.50, 0.60, 0.65, 0.67, 0.68, 0.685])
    assert hindsight_stop_point(h, value_per_point=1.0, cost_per_label=0.25) == 2
    assert hindsight_stop_point(h, value_per_point=1.0, cost_per_label=0.06) == 4
    assert hindsight_stop_point(h, value_per_point=1.0, cost_per_label=0.01) is None
    assert hindsight_stop_point([], value_per_point=1.0, cost_per_label=1.0) is None


def test_hindsight_point_skips_batches_without_new_labels():
    h = [CycleRecord(0, 10, 0.0, 0.5), CycleRecord(1, 10, 0.0, 0.4), CycleRecord(2, 20, 0.0, 0.6)]
    assert hindsight_stop_point(h, value_per_point=1.0, cost_per_label=1.0) is None


def test_hindsight_point_on_a_synthetic_power_law_matches_the_analytic_point():
    a, b, c, step, vpp, cpl = 0.92, 1.5, 0.6, 20, 2.0, 0.05
    h = power_law_history(40, a=a, b=b, c=c, start=20, step=step)
    # gain(n -> n+step) * 100 * vpp < step * cpl, first n on the grid
    labels = np.array([r.labels for r in h])
    worth = 100 * vpp * b * (labels[:-1] ** -c - labels[1:] ** -c) >= step * cpl
    assert hindsight_stop_point(h, vpp, cpl) == int(np.argmin(worth))
    assert worth[: int(np.argmin(worth))].all()


def test_hindsight_point_validates_prices():
    with pytest.raises(ValueError, match="cost_per_label"):
        hindsight_stop_point(history([0.5, 0.6]), 1.0, -1.0)


def test_without_a_model_to_judge_only_the_pool_and_the_budgets_stop():
    """One class labeled: the metric of a constant model is no reason to stop or go on."""
    flat = history([0.9, 0.9, 0.9, 0.9])  # target reached and a plateau: both would fire
    rules = StoppingRules(target_metric=0.5, plateau_window=2, kappa_threshold=None)
    assert run(flat, rules).rule == "target_metric"
    d = decide(flat, rules, pool_remaining=1000, next_batch=10, judge_model=False)
    assert (d.stop, d.rule) == (False, "continue")
    skipped = [n for n, c in d.details["checks"].items() if "not judged" in c["reason"]]
    assert skipped == [n for n in RULE_ORDER if n not in stopping.HARD_RULES]
    # The budgets and the pool still stop it.
    d = decide(
        flat, StoppingRules(max_labels=40), pool_remaining=1000, next_batch=10, judge_model=False
    )
    assert (d.stop, d.rule) == (True, "label_budget")
    d = decide(flat, rules, pool_remaining=0, next_batch=10, judge_model=False)
    assert (d.stop, d.rule) == (True, "pool_exhausted")
