"""When to stop an active-learning campaign, with the reason and the numbers behind it.

A campaign is a history of :class:`CycleRecord` rows (labels and money spent so far,
holdout metric after retraining, agreement with the previous model). :func:`decide`
checks the rules of :class:`StoppingRules` in a fixed order (:data:`RULE_ORDER`);
the first that fires wins and the :class:`Decision` names it, says why in a sentence
with numbers and keeps those numbers in ``details``.

- ``pool_exhausted`` — nothing left to label.
- ``label_budget`` — as many labels as ``max_labels``.
- ``currency_budget`` — ``max_cost`` spent, or the next batch would overspend it.
- ``target_metric`` — the holdout metric reached ``target_metric``.
- ``plateau`` — the metric gained less than ``plateau_epsilon`` over the last
  ``plateau_window`` cycles.
- ``marginal_gain`` — an inverse power law fitted to the learning curve
  (:func:`fit_learning_curve`) says the next batch is worth less than it costs.
- ``stabilizing_predictions`` — Cohen's kappa between consecutive models on a fixed
  stop set stayed at or above ``kappa_threshold`` for ``kappa_cycles`` cycles
  (Bloodgood & Vijay-Shanker, 2009).

:func:`hindsight_stop_point` gives, from a finished curve, the cycle after which the
next batch was really worth less than it cost, to benchmark the marginal-gain rule.

Metrics are fractions in [0, 1], higher is better; one *point* is 0.01 of metric.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, field_validator
from scipy.optimize import OptimizeWarning, curve_fit

from loopwise.jsonsafe import json_safe

__all__ = [
    "HARD_RULES",
    "RULE_ORDER",
    "CycleRecord",
    "Decision",
    "LearningCurveFit",
    "StoppingRules",
    "decide",
    "fit_learning_curve",
    "hindsight_stop_point",
    "history_records",
]

#: The rules that stop a campaign whatever its model: nothing left to label, or to spend.
HARD_RULES = ("pool_exhausted", "label_budget", "currency_budget")

#: The rules :func:`decide` checks, in this order; the first that fires wins.
RULE_ORDER = (
    "pool_exhausted",
    "label_budget",
    "currency_budget",
    "target_metric",
    "plateau",
    "marginal_gain",
    "stabilizing_predictions",
)
CONTINUE = "continue"

#: Range of the exponent ``c`` of the power law; learning curves sit around 0.1–1.
_C_BOUNDS = (0.01, 3.0)
#: Exponents tried by the grid fit that seeds ``curve_fit`` and replaces it when it fails.
_C_GRID = np.geomspace(*_C_BOUNDS, num=48)
_A_MAX = 1.0


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class CycleRecord:
    """One row of campaign history, written after the model was retrained.

    Attributes
    ----------
    cycle : int
        Cycle number, increasing along the history.
    labels : int
        Labels acquired so far (seed set included).
    cost : float
        Money spent on labels so far.
    metric : float
        Holdout metric of the retrained model, a fraction in [0, 1].
    predictions_kappa : float or None
        Cohen's kappa between this model's and the previous model's predictions on
        a fixed stop set; None for the first cycle.
    """

    cycle: int
    labels: int
    cost: float
    metric: float
    predictions_kappa: float | None = None

    def __post_init__(self) -> None:
        for name in ("cycle", "labels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise ValueError(f"CycleRecord.{name} must be an integer >= 0, got {value!r}")
        if not _is_real(self.cost) or not math.isfinite(self.cost) or self.cost < 0:
            raise ValueError(f"CycleRecord.cost must be a finite number >= 0, got {self.cost!r}")
        if not _is_real(self.metric) or not 0.0 <= self.metric <= 1.0:
            raise ValueError(
                f"CycleRecord.metric must be a fraction in [0, 1] (0.93 for 93 %), got {self.metric!r}"
            )
        kappa = self.predictions_kappa
        if kappa is not None and (not _is_real(kappa) or not -1.0 <= kappa <= 1.0):
            raise ValueError(
                f"CycleRecord.predictions_kappa must be None or in [-1, 1], got {kappa!r}"
            )


def history_records(rows: Sequence[Mapping[str, Any]]) -> list[CycleRecord]:
    """Campaign history rows (``cycle``, ``labels``, ``cost``, ``metric``, optional
    ``kappa``; other keys ignored) as :class:`CycleRecord` objects."""
    return [
        CycleRecord(
            cycle=int(h["cycle"]),
            labels=int(h["labels"]),
            cost=float(h["cost"]),
            metric=float(h["metric"]),
            predictions_kappa=h.get("kappa"),
        )
        for h in rows
    ]


class StoppingRules(BaseModel):
    """Which stopping rules apply and their thresholds; ``None`` switches a rule off.

    ``marginal_gain`` needs ``value_per_point > 0`` (what one point of metric,
    0.01, is worth in the currency of ``cost_per_label``); with the default 0 it
    is off. ``max_labels = 0`` or ``max_cost = 0`` stop before the first batch.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, validate_assignment=True)

    max_labels: int | None = Field(default=None, ge=0, strict=True)
    max_cost: float | None = Field(default=None, ge=0.0)
    target_metric: float | None = None
    plateau_epsilon: float = Field(default=0.005, gt=0.0)
    plateau_window: int = Field(default=3, ge=1, strict=True)
    marginal_gain: bool = True
    value_per_point: float = Field(default=0.0, ge=0.0)
    cost_per_label: float = Field(default=0.0, ge=0.0)
    min_cycles_for_fit: int = Field(default=3, strict=True)
    kappa_threshold: float | None = Field(default=0.99, gt=0.0, le=1.0)
    kappa_cycles: int = Field(default=2, ge=1, strict=True)

    @field_validator("target_metric")
    @classmethod
    def _fraction(cls, v: float | None) -> float | None:
        if v is not None and not 0.0 < v <= 1.0:
            raise ValueError(f"target_metric is a fraction in (0, 1] (0.95 for 95 %), got {v}")
        return v

    @field_validator("min_cycles_for_fit")
    @classmethod
    def _enough_points(cls, v: int) -> int:
        if v < 3:
            raise ValueError(
                f"min_cycles_for_fit must be >= 3: the learning curve has 3 parameters, got {v}"
            )
        return v


@dataclass(frozen=True)
class Decision:
    """Whether to stop, which rule said so, why, and the numbers behind it.

    Attributes
    ----------
    stop : bool
    reason : str
        A sentence with the numbers, for logs and run notes.
    rule : str
        One of :data:`RULE_ORDER`, or ``"continue"``.
    details : dict
        The numbers: the campaign state and the fired rule's inputs; for
        ``"continue"``, under ``"checks"``, the verdict of every rule.
    """

    stop: bool
    reason: str
    rule: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The decision as plain JSON types (NaN and infinities become None)."""
        return {
            "stop": bool(self.stop),
            "rule": self.rule,
            "reason": self.reason,
            "details": json_safe(self.details),
        }


# --------------------------------------------------------------------------- learning curve


@dataclass(frozen=True)
class LearningCurveFit:
    """An inverse power law ``metric(n) = a - b * n**(-c)`` fitted to a learning curve.

    Attributes
    ----------
    a : float
        Asymptote, at most 1.
    b : float
        Scale, >= 0.
    c : float
        Decay exponent, > 0.
    method : str
        ``"curve_fit"`` (nonlinear least squares) or ``"grid"`` (best exponent of a
        grid with ``a`` and ``b`` by bounded linear least squares, used when the
        nonlinear fit fails).
    rmse : float
        Root mean squared error of the fit on its points.
    """

    a: float
    b: float
    c: float
    method: str
    rmse: float = float("nan")

    def predict(self, n: float | npt.ArrayLike) -> float | np.ndarray:
        """Metric expected at ``n`` labels (scalar or array, every ``n > 0``)."""
        arr = np.asarray(n, dtype=float)
        if np.any(~(arr > 0)):
            raise ValueError(f"n must be > 0 labels, got {n!r}")
        out = _power_law(arr, self.a, self.b, self.c)
        return float(out) if out.ndim == 0 else out

    def to_dict(self) -> dict[str, Any]:
        """Parameters as plain JSON types."""
        return json_safe(
            {"a": self.a, "b": self.b, "c": self.c, "method": self.method, "rmse": self.rmse}
        )


def fit_learning_curve(labels: npt.ArrayLike, metric: npt.ArrayLike) -> LearningCurveFit:
    """Fit ``metric(n) = a - b * n**(-c)`` with ``a <= 1``, ``b >= 0``, ``c > 0``.

    A grid over ``c`` (bounded linear least squares for ``a`` and ``b`` at each
    ``c``) gives the starting point of :func:`scipy.optimize.curve_fit`; if that
    fails or leaves the bounds, the grid's best fit is returned (``method="grid"``).

    Parameters
    ----------
    labels : array-like of shape (n_points,)
        Label counts, every one > 0; at least 3 distinct values.
    metric : array-like of shape (n_points,)
        Metric at each label count, fractions in [0, 1].

    Returns
    -------
    LearningCurveFit
    """
    n = np.asarray(labels, dtype=float)
    y = np.asarray(metric, dtype=float)
    if n.ndim != 1 or y.shape != n.shape:
        raise ValueError(
            f"labels and metric must be 1-D of the same length, got shapes {n.shape} and {y.shape}"
        )
    if not (np.all(np.isfinite(n)) and np.all(n > 0)):
        raise ValueError(f"labels must be finite and > 0, got {n.tolist()}")
    if not (np.all(np.isfinite(y)) and np.all((y >= 0) & (y <= 1))):
        raise ValueError(f"metric must be fractions in [0, 1], got {y.tolist()}")
    if np.unique(n).size < 3:
        raise ValueError(
            f"a 3-parameter learning curve needs at least 3 distinct label counts, got {np.unique(n).tolist()}"
        )
    return _fit_power_law(n, y)


def _power_law(n: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    return a - b * n ** (-c)


def _fit_power_law(n: np.ndarray, y: np.ndarray) -> LearningCurveFit:
    grid = _fit_grid(n, y)
    lower, upper = (-np.inf, 0.0, _C_BOUNDS[0]), (_A_MAX, np.inf, _C_BOUNDS[1])
    # start strictly inside the bounds: the grid optimum often sits on a = 1 or b = 0
    p0 = (min(grid.a, _A_MAX - 1e-6), max(grid.b, 1e-6), grid.c)
    try:
        with warnings.catch_warnings():
            # 3 points fit exactly and the covariance is undefined: not our concern
            warnings.simplefilter("ignore", OptimizeWarning)
            params, _ = curve_fit(
                _power_law, n, y, p0=p0, bounds=(lower, upper), method="trf", maxfev=2000
            )
    except (RuntimeError, ValueError):
        return grid
    a, b, c = (float(v) for v in params)
    if not all(math.isfinite(v) for v in (a, b, c)) or a > _A_MAX or b < 0 or c <= 0:
        return grid
    rmse = _rmse(n, y, a, b, c)
    if rmse > grid.rmse:  # a local optimum worse than its own starting point
        return grid
    return LearningCurveFit(a, b, c, "curve_fit", rmse)


def _fit_grid(n: np.ndarray, y: np.ndarray) -> LearningCurveFit:
    # for a fixed c the model is linear in (a, b): a convex problem with two bounds,
    # whose optimum is the unconstrained one or lies on a bound; try all, keep the best
    x = n[None, :] ** -_C_GRID[:, None]  # (n_grid, n_points)
    xm, ym = x.mean(axis=1), y.mean()
    slope = ((x - xm[:, None]) * (y - ym)).sum(axis=1) / ((x - xm[:, None]) ** 2).sum(axis=1)
    free = (ym - slope * xm, -slope)  # y = a + slope * x, b = -slope
    on_a = (
        np.full_like(xm, _A_MAX),
        np.maximum(-(x * (y - _A_MAX)).sum(axis=1) / (x**2).sum(axis=1), 0.0),
    )
    on_b = (np.full_like(xm, min(ym, _A_MAX)), np.zeros_like(xm))
    best = (np.inf, 0.0, 0.0, 0.0)
    for a, b in (free, on_a, on_b):
        sse = ((a[:, None] - b[:, None] * x - y) ** 2).sum(axis=1)
        sse[(a > _A_MAX) | (b < 0)] = np.inf
        i = int(np.argmin(sse))
        if sse[i] < best[0]:
            best = (float(sse[i]), float(a[i]), float(b[i]), float(_C_GRID[i]))
    _, a, b, c = best
    b += 0.0  # no -0.0 in reports
    return LearningCurveFit(a, b, c, "grid", _rmse(n, y, a, b, c))


def _rmse(n: np.ndarray, y: np.ndarray, a: float, b: float, c: float) -> float:
    return float(np.sqrt(np.mean((_power_law(n, a, b, c) - y) ** 2)))


# --------------------------------------------------------------------------- decide


@dataclass(frozen=True)
class _State:
    """What every rule looks at: the history and the campaign's position."""

    history: Sequence[CycleRecord]
    labels: int
    cost: float
    pool_remaining: int
    next_batch: int  # requested
    batch: int  # clamped to the label budget and the pool


@dataclass(frozen=True)
class _Verdict:
    fired: bool
    reason: str
    details: dict[str, Any]


def decide(
    history: Sequence[CycleRecord],
    rules: StoppingRules,
    *,
    pool_remaining: int,
    next_batch: int,
    judge_model: bool = True,
) -> Decision:
    """Decide whether to stop the campaign after the last cycle of ``history``.

    Rules are checked in the order of :data:`RULE_ORDER`; the first that fires
    gives the decision. ``next_batch`` is clamped to what is left of
    ``max_labels`` and of the pool before the currency and marginal-gain rules
    price it. An empty history is judged on the pool and the budgets only.

    Parameters
    ----------
    history : sequence of CycleRecord
        Campaign history, oldest first; cycles increasing, labels and cost
        non-decreasing.
    rules : StoppingRules
    pool_remaining : int
        Unlabeled candidates left, >= 0.
    next_batch : int
        Labels the next cycle would buy, >= 1.
    judge_model : bool, default True
        False while the labels hold a single class: the metric then says nothing
        about what labels buy, so only the pool and the budgets (:data:`HARD_RULES`)
        can stop the campaign.

    Returns
    -------
    Decision
        ``details`` always holds ``cycle``, ``labels``, ``cost``, ``metric``,
        ``pool_remaining``, ``next_batch`` and ``next_batch_effective``, plus the
        fired rule's numbers (see the report of each rule).
    """
    if not isinstance(rules, StoppingRules):
        raise TypeError(f"rules must be a StoppingRules, got {type(rules).__name__}")
    history = _check_history(history)
    pool_remaining = _check_int(pool_remaining, "pool_remaining", minimum=0)
    next_batch = _check_int(next_batch, "next_batch", minimum=1)
    last = history[-1] if history else None
    labels, cost = (last.labels, last.cost) if last else (0, 0.0)
    batch = min(next_batch, pool_remaining)
    if rules.max_labels is not None:
        batch = min(batch, max(rules.max_labels - labels, 0))
    state = _State(history, labels, cost, pool_remaining, next_batch, batch)
    common = {
        "cycle": last.cycle if last else None,
        "labels": labels,
        "cost": cost,
        "metric": last.metric if last else None,
        "pool_remaining": pool_remaining,
        "next_batch": next_batch,
        "next_batch_effective": batch,
    }
    checks: dict[str, dict[str, Any]] = {}
    for name in RULE_ORDER:
        if not judge_model and name not in HARD_RULES:
            checks[name] = {"reason": f"{name} not judged: one class labeled so far, no model"}
            continue
        verdict = _RULES[name](state, rules)
        if verdict.fired:
            return Decision(True, verdict.reason, name, {**common, **verdict.details})
        checks[name] = {"reason": verdict.reason, **verdict.details}
    if last is None:
        reason = "continue: no cycle recorded yet, nothing to judge beyond the pool and the budgets"
    else:
        reason = f"continue at {labels} labels (metric {last.metric:.4f}): " + "; ".join(
            c["reason"] for c in checks.values()
        )
    return Decision(False, reason, CONTINUE, {**common, "checks": checks})


def _rule_pool_exhausted(s: _State, r: StoppingRules) -> _Verdict:
    if s.pool_remaining == 0:
        return _Verdict(
            True, f"the pool is exhausted: every candidate is labeled ({s.labels} labels)", {}
        )
    return _Verdict(False, f"{s.pool_remaining} candidates left in the pool", {})


def _rule_label_budget(s: _State, r: StoppingRules) -> _Verdict:
    if r.max_labels is None:
        return _Verdict(False, "no label budget", {})
    details = {"max_labels": r.max_labels}
    if s.labels >= r.max_labels:
        return _Verdict(
            True, f"label budget reached: {s.labels} labels >= max_labels {r.max_labels}", details
        )
    return _Verdict(False, f"{s.labels} of {r.max_labels} labels used", details)


def _rule_currency_budget(s: _State, r: StoppingRules) -> _Verdict:
    if r.max_cost is None:
        return _Verdict(False, "no currency budget", {})
    batch_cost = s.batch * r.cost_per_label
    details = {
        "max_cost": r.max_cost,
        "cost_per_label": r.cost_per_label,
        "next_batch_cost": batch_cost,
        "cost_after_next_batch": s.cost + batch_cost,
    }
    if s.cost >= r.max_cost:
        return _Verdict(
            True, f"currency budget spent: {s.cost:.2f} >= max_cost {r.max_cost:.2f}", details
        )
    if s.cost + batch_cost > r.max_cost:
        return _Verdict(
            True,
            f"the next {s.batch} labels would cost {batch_cost:.2f}, bringing spend from "
            f"{s.cost:.2f} to {s.cost + batch_cost:.2f} > max_cost {r.max_cost:.2f}",
            details,
        )
    return _Verdict(
        False, f"spent {s.cost:.2f} of {r.max_cost:.2f}, next batch {batch_cost:.2f}", details
    )


def _rule_target_metric(s: _State, r: StoppingRules) -> _Verdict:
    if r.target_metric is None:
        return _Verdict(False, "no target metric", {})
    details = {"target_metric": r.target_metric}
    if not s.history:
        return _Verdict(False, "target metric: no metric yet", details)
    metric = s.history[-1].metric
    if metric >= r.target_metric:
        return _Verdict(
            True, f"target metric reached: {metric:.4f} >= {r.target_metric:.4f}", details
        )
    return _Verdict(False, f"metric {metric:.4f} below target {r.target_metric:.4f}", details)


def _rule_plateau(s: _State, r: StoppingRules) -> _Verdict:
    w, eps = r.plateau_window, r.plateau_epsilon
    details: dict[str, Any] = {"plateau_window": w, "plateau_epsilon": eps}
    if len(s.history) < w + 1:
        return _Verdict(False, f"plateau: needs {w + 1} cycles, have {len(s.history)}", details)
    then, now = s.history[-1 - w].metric, s.history[-1].metric
    gain = now - then
    details.update(metric_window_start=then, metric_window_end=now, window_gain=gain)
    if gain < eps:
        return _Verdict(
            True,
            f"plateau: the metric gained {gain:+.4f} ({then:.4f} → {now:.4f}) over the last "
            f"{w} cycles < epsilon {eps:.4f}",
            details,
        )
    return _Verdict(False, f"metric gained {gain:+.4f} over the last {w} cycles", details)


def _rule_marginal_gain(s: _State, r: StoppingRules) -> _Verdict:
    if not r.marginal_gain or r.value_per_point <= 0:
        return _Verdict(
            False, "marginal gain off (needs marginal_gain and value_per_point > 0)", {}
        )
    details: dict[str, Any] = {
        "min_cycles_for_fit": r.min_cycles_for_fit,
        "value_per_point": r.value_per_point,
        "cost_per_label": r.cost_per_label,
    }
    points = [h for h in s.history if h.labels > 0]
    n_distinct = len({h.labels for h in points})
    if len(s.history) < r.min_cycles_for_fit or n_distinct < 3:
        return _Verdict(
            False,
            f"marginal gain: needs {r.min_cycles_for_fit} cycles and 3 distinct label counts "
            f"to fit the curve, have {len(s.history)} and {n_distinct}",
            details,
        )
    fit = fit_learning_curve([h.labels for h in points], [h.metric for h in points])
    gain = float(fit.predict(s.labels + s.batch) - fit.predict(s.labels)) if s.batch else 0.0
    value = gain * 100 * r.value_per_point
    cost = s.batch * r.cost_per_label
    details.update(
        fit=fit.to_dict(),
        projected_metric=float(fit.predict(s.labels + s.batch)),
        projected_gain=gain,
        projected_gain_points=gain * 100,
        projected_value=value,
        next_batch_cost=cost,
    )
    sentence = (
        f"projected gain of the next {s.batch} labels is {gain * 100:.2f} points worth "
        f"{value:.2f} {'<' if value < cost else '>='} their cost {cost:.2f}"
    )
    return _Verdict(value < cost, sentence, details)


def _rule_stabilizing_predictions(s: _State, r: StoppingRules) -> _Verdict:
    if r.kappa_threshold is None:
        return _Verdict(False, "no kappa threshold", {})
    k, threshold = r.kappa_cycles, r.kappa_threshold
    recent = [h.predictions_kappa for h in s.history[-k:]]
    details = {"kappa_threshold": threshold, "kappa_cycles": k, "recent_kappas": recent}
    if len(recent) == k and all(v is not None and v >= threshold for v in recent):
        shown = ", ".join(f"{v:.4f}" for v in recent)
        return _Verdict(
            True,
            f"predictions stabilized: kappa between consecutive models >= {threshold:.4f} "
            f"for the last {k} cycles ({shown})",
            details,
        )
    run = 0
    for v in reversed([h.predictions_kappa for h in s.history]):
        if v is None or v < threshold:
            break
        run += 1
    details["consecutive_cycles"] = run
    return _Verdict(False, f"kappa >= {threshold:.4f} for {run} of {k} consecutive cycles", details)


_RULES: dict[str, Callable[[_State, StoppingRules], _Verdict]] = {
    "pool_exhausted": _rule_pool_exhausted,
    "label_budget": _rule_label_budget,
    "currency_budget": _rule_currency_budget,
    "target_metric": _rule_target_metric,
    "plateau": _rule_plateau,
    "marginal_gain": _rule_marginal_gain,
    "stabilizing_predictions": _rule_stabilizing_predictions,
}


# --------------------------------------------------------------------------- hindsight


def hindsight_stop_point(
    history: Sequence[CycleRecord], value_per_point: float, cost_per_label: float
) -> int | None:
    """Position in ``history`` of the first cycle whose next batch was not worth its cost.

    For consecutive records ``i`` and ``i + 1`` the next batch bought
    ``labels[i+1] - labels[i]`` labels at ``cost_per_label`` each and gained
    ``metric[i+1] - metric[i]``, worth ``gain * 100 * value_per_point``. The
    hindsight stop point is the first ``i`` where that value is below that cost:
    stopping after cycle ``i`` would have saved money. Pairs without new labels
    are skipped. This is myopic, like the marginal-gain rule it benchmarks; on a
    noisy curve one unlucky batch sets it, so smooth (average seeds) first.

    Parameters
    ----------
    history : sequence of CycleRecord
        A finished campaign, oldest first.
    value_per_point : float
        Value of one point (0.01) of metric, >= 0.
    cost_per_label : float
        Price of one label, >= 0.

    Returns
    -------
    int or None
        The position ``i`` in ``history`` (its record is ``history[i]``; in a
        campaign, whose first trained cycle is 1, that is cycle ``i + 1``), or None
        if every batch was worth its cost.
    """
    history = _check_history(history)
    for name, v in (("value_per_point", value_per_point), ("cost_per_label", cost_per_label)):
        if not _is_real(v) or not math.isfinite(v) or v < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
    for i, (before, after) in enumerate(pairwise(history)):
        batch = after.labels - before.labels
        if batch == 0:
            continue
        value = (after.metric - before.metric) * 100 * value_per_point
        if value < batch * cost_per_label:
            return i
    return None


# --------------------------------------------------------------------------- helpers


def _check_history(history: Sequence[CycleRecord]) -> list[CycleRecord]:
    if isinstance(history, str | bytes) or not isinstance(history, Sequence):
        raise TypeError(f"history must be a sequence of CycleRecord, got {type(history).__name__}")
    history = list(history)
    for i, h in enumerate(history):
        if not isinstance(h, CycleRecord):
            raise TypeError(f"history[{i}] must be a CycleRecord, got {type(h).__name__}")
    for i, (before, after) in enumerate(pairwise(history), start=1):
        if after.cycle <= before.cycle:
            raise ValueError(
                f"history must be in cycle order: history[{i}].cycle = {after.cycle} after {before.cycle}"
            )
        if after.labels < before.labels or after.cost < before.cost:
            raise ValueError(
                f"labels and cost are totals so far and cannot decrease: history[{i}] has "
                f"labels {after.labels}, cost {after.cost} after {before.labels}, {before.cost}"
            )
    return history


def _check_int(v: Any, name: str, minimum: int) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {v!r} of type {type(v).__name__}")
    if v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    return int(v)


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)
