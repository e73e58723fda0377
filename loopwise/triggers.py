"""When the production stream asks for a retrain, with the reason and the numbers behind it.

Each rule returns a :class:`TriggerDecision`: whether it fired, a sentence with its
numbers (for logs and run notes), the numbers, and the idempotency ``key`` of the
retrain it asks for — the same evidence gives the same key, so a re-run of the same
evaluation asks for the same run and never starts a second one.

- ``accuracy_decay`` — the served version's online accuracy, measured on the control
  labels only (uniform draws, :func:`online_accuracy`), is below its holdout accuracy
  minus ``max_drop`` even at the upper end of its Wilson interval.
- ``input_drift`` — PSI / KS of a numeric input over the last ``drift_window`` records
  against the training snapshot (:func:`loopwise.drift.drift_report`).
- ``prediction_drift`` — PSI of the predicted-class mix against the snapshot's label mix.
- ``new_labels`` — ``min_new_labels`` accepted stream labels since the last retrain.

:func:`evaluate_triggers` checks them in :data:`TRIGGER_ORDER`; the first that fired
names the retrain. Accuracies are fractions in [0, 1].
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from scipy.stats import norm

from loopwise.drift import drift_report
from loopwise.jsonsafe import json_safe

__all__ = [
    "TRIGGER_ORDER",
    "TriggerDecision",
    "TriggerRules",
    "accuracy_decay",
    "evaluate_triggers",
    "first_fired",
    "input_drift",
    "new_labels",
    "online_accuracy",
    "prediction_drift",
    "wilson_interval",
]

#: The rules :func:`evaluate_triggers` checks, in this order; the first that fired wins.
TRIGGER_ORDER = ("accuracy_decay", "input_drift", "prediction_drift", "new_labels")
#: Version key of records served by a model whose version is not known.
UNKNOWN_VERSION = "unknown"
#: Floor of the class shares in the prediction PSI (as :func:`loopwise.drift.psi`).
_EPS = 1e-4


class TriggerRules(BaseModel):
    """Thresholds of the retrain triggers (``cfg.stream.triggers``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    min_new_labels: int = Field(default=100, ge=1, strict=True)
    drift_window: int = Field(default=500, ge=10, strict=True)
    psi_threshold: float = Field(default=0.2, gt=0.0)
    ks_alpha: float = Field(default=0.01, gt=0.0, lt=1.0)
    max_drop: float = Field(default=0.05, ge=0.0, lt=1.0)
    min_control: int = Field(default=30, ge=1, strict=True)


@dataclass(frozen=True)
class TriggerDecision:
    """Whether one trigger fired, why, and the retrain it asks for.

    Attributes
    ----------
    name : str
        One of :data:`TRIGGER_ORDER`.
    fired : bool
    sentence : str
        What the rule saw, with the numbers, for logs and run notes.
    numbers : dict
        The numbers behind the sentence.
    key : str or None
        Idempotency key of the retrain it asks for (None when it did not fire).
    """

    name: str
    fired: bool
    sentence: str
    numbers: dict[str, Any] = field(default_factory=dict)
    key: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The decision as plain JSON types (NaN and infinities become None)."""
        return {
            "name": self.name,
            "fired": bool(self.fired),
            "sentence": self.sentence,
            "numbers": json_safe(self.numbers),
            "key": self.key,
        }


# --------------------------------------------------------------------------- online accuracy


def wilson_interval(correct: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``correct / n``; ``(0, 1)`` when ``n`` is 0.

    Unlike the normal interval it stays inside [0, 1] and keeps close to its nominal
    coverage on the few tens of control labels a new version has.
    """
    if not (_is_int(n, 0) and _is_int(correct, 0) and correct <= n):
        raise ValueError(f"need integers 0 <= correct <= n, got correct={correct!r}, n={n!r}")
    if not (_is_real(confidence) and 0 < confidence < 1):
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if n == 0:
        return 0.0, 1.0
    z = float(norm.ppf(0.5 + confidence / 2))
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low = 0.0 if correct == 0 else max(0.0, centre - half)
    high = 1.0 if correct == n else min(1.0, centre + half)  # exact at the edges
    return low, high


def online_accuracy(
    records: Sequence[Mapping[str, Any]], *, confidence: float = 0.95
) -> dict[str, dict[str, Any]]:
    """Accuracy of each served model version on its control labels.

    Parameters
    ----------
    records : sequence of mappings
        Labeled stream records with ``decision``, ``model_version``, ``prediction``
        and ``label`` (the accepted answer). Only ``decision == "control"`` counts:
        the queried records were chosen for being hard, their accuracy is biased.
        Records without a label or a prediction are left out.
    confidence : float, default 0.95
        Of the Wilson interval.

    Returns
    -------
    dict
        Version (``"unknown"`` for None) → ``{n, correct, accuracy, low, high}``
        (``accuracy`` None when ``n`` is 0), versions in first-seen order.
    """
    tally: dict[str, list[int]] = {}
    for r in records:
        if not isinstance(r, Mapping):
            raise TypeError(f"a record must be a mapping, got {type(r).__name__}")
        if r.get("decision") != "control" or r.get("label") is None or r.get("prediction") is None:
            continue
        version = r.get("model_version")
        counts = tally.setdefault(UNKNOWN_VERSION if version is None else str(version), [0, 0])
        counts[0] += 1
        counts[1] += str(r["prediction"]) == str(r["label"])
    out = {}
    for version, (n, correct) in tally.items():
        low, high = wilson_interval(correct, n, confidence)
        out[version] = {
            "n": n,
            "correct": correct,
            "accuracy": correct / n if n else None,
            "low": low,
            "high": high,
        }
    return out


# --------------------------------------------------------------------------- rules


def accuracy_decay(
    online: Mapping[str, Mapping[str, Any]],
    version: str | None,
    holdout_accuracy: float | None,
    rules: TriggerRules,
    *,
    retrain_count: int = 0,
) -> TriggerDecision:
    """Fire when the served ``version``'s online accuracy is surely below its holdout's.

    Fires when the upper end of the Wilson interval is below ``holdout_accuracy -
    max_drop`` on at least ``min_control`` control labels. Key
    ``accuracy:<version>:<retrain_count>``: one retrain per decayed version between
    retrains.
    """
    name = "accuracy_decay"
    version = UNKNOWN_VERSION if version is None else str(version)
    if holdout_accuracy is None:
        return TriggerDecision(
            name, False, f"accuracy decay: no holdout accuracy of version {version}"
        )
    if not (_is_real(holdout_accuracy) and 0 <= holdout_accuracy <= 1):
        raise ValueError(f"holdout_accuracy is a fraction in [0, 1], got {holdout_accuracy!r}")
    stats = online.get(version) or {"n": 0, "correct": 0, "accuracy": None, "low": 0.0, "high": 1.0}
    bar = holdout_accuracy - rules.max_drop
    numbers_ = {
        "version": version,
        "holdout_accuracy": float(holdout_accuracy),
        "max_drop": rules.max_drop,
        "bar": bar,
        "min_control": rules.min_control,
        **{k: stats[k] for k in ("n", "correct", "accuracy", "low", "high")},
    }
    n = int(stats["n"])
    if n < rules.min_control:
        return TriggerDecision(
            name,
            False,
            f"accuracy decay: {n} control labels on version {version}, needs {rules.min_control}",
            numbers_,
        )
    shown = (
        f"online accuracy of version {version} {stats['accuracy']:.3f} on {n} control labels "
        f"(95 % interval {stats['low']:.3f}–{stats['high']:.3f})"
    )
    if stats["high"] < bar:
        return TriggerDecision(
            name,
            True,
            f"accuracy decay: {shown} is below holdout {holdout_accuracy:.3f} − "
            f"{rules.max_drop:.3f} = {bar:.3f}",
            numbers_,
            f"accuracy:{version}:{_count(retrain_count, 'retrain_count')}",
        )
    return TriggerDecision(
        name,
        False,
        f"{shown} is compatible with holdout {holdout_accuracy:.3f} − {rules.max_drop:.3f}",
        numbers_,
    )


def input_drift(
    reference: pd.DataFrame | np.ndarray | Sequence[Mapping[str, Any]] | None,
    current: pd.DataFrame | np.ndarray | Sequence[Mapping[str, Any]] | None,
    window_index: int,
    rules: TriggerRules,
    *,
    feature_names: Sequence[str] | None = None,
) -> TriggerDecision:
    """Fire when a numeric input of the last ``drift_window`` records drifted.

    ``reference`` is the training snapshot's inputs, ``current`` the served inputs
    (records' ``inputs`` as mappings, or a table); only the last ``drift_window``
    rows of ``current`` are compared, and fewer rows than that are not judged. The
    snapshot must be a sample of what the model was meant to serve (the pool, the
    served inputs at training time), not the actively selected labeled rows: those
    are the uncertain ones, drifted from the stream by design. Key
    ``drift:<window_index>``.
    """
    name = "input_drift"
    window_index = _count(window_index, "window_index")
    if reference is None or current is None:
        return TriggerDecision(name, False, "input drift: no training snapshot or no records")
    ref, cur = _table(reference, feature_names), _table(current, feature_names)
    cur = cur.iloc[-rules.drift_window :]
    base = {"window_index": window_index, "drift_window": rules.drift_window, "n_current": len(cur)}
    if len(cur) < rules.drift_window or len(ref) == 0:
        return TriggerDecision(
            name,
            False,
            f"input drift: {len(cur)} records in the window, needs {rules.drift_window} "
            f"(snapshot of {len(ref)} rows)",
            base,
        )
    report = drift_report(
        ref,
        cur,
        feature_names=feature_names,
        psi_threshold=rules.psi_threshold,
        ks_alpha=rules.ks_alpha,
    )
    numbers_ = {
        **base,
        "n_reference": len(ref),
        "max_psi": report.max_psi,
        "drifted_features": report.drifted_features,
        "features": {
            f["name"]: {k: f[k] for k in ("psi", "ks_pvalue", "flagged_by")}
            for f in report.features
        },
    }
    if report.max_psi is None:
        return TriggerDecision(name, False, "input drift: no numeric input to compare", numbers_)
    if report.drifted:
        worst = max((f for f in report.features if f["drifted"]), key=lambda f: f["psi"])
        more = len(report.drifted_features) - 1
        return TriggerDecision(
            name,
            True,
            f"input drift in window {window_index}: {worst['name']} PSI {worst['psi']:.3f} "
            f"(KS p {worst['ks_pvalue']:.2g}, threshold {rules.psi_threshold})"
            + (f" and {more} more input{'s' if more > 1 else ''}" if more else "")
            + f" over the last {len(cur)} records",
            numbers_,
            f"drift:{window_index}",
        )
    return TriggerDecision(
        name,
        False,
        f"no input drift in window {window_index}: max PSI {report.max_psi:.3f} "
        f"<= {rules.psi_threshold} over {len(report.features)} inputs",
        numbers_,
    )


def prediction_drift(
    reference_labels: Sequence[Any] | np.ndarray | None,
    predictions: Sequence[Any] | np.ndarray | None,
    window_index: int,
    rules: TriggerRules,
) -> TriggerDecision:
    """Fire when the predicted-class mix of the last ``drift_window`` records moved.

    PSI over the classes (shares floored at 1e-4) between the snapshot's label mix
    and the predictions; fires when it exceeds what sampling alone gives, about
    ``(k - 1)(1/n_reference + 1/n_window)`` over ``k`` classes, by ``psi_threshold``. Key
    ``prediction_drift:<window_index>``.
    """
    name = "prediction_drift"
    window_index = _count(window_index, "window_index")
    if reference_labels is None or predictions is None:
        return TriggerDecision(name, False, "prediction drift: no label mix or no predictions")
    ref = [str(v) for v in reference_labels]
    cur = [str(v) for v in predictions][-rules.drift_window :]
    base = {"window_index": window_index, "drift_window": rules.drift_window, "n_current": len(cur)}
    if len(cur) < rules.drift_window or not ref:
        return TriggerDecision(
            name,
            False,
            f"prediction drift: {len(cur)} predictions in the window, needs "
            f"{rules.drift_window} (snapshot of {len(ref)} labels)",
            base,
        )
    classes = sorted(set(ref) | set(cur))
    pe = np.array([ref.count(c) for c in classes], dtype=float) / len(ref)
    pa = np.array([cur.count(c) for c in classes], dtype=float) / len(cur)
    pe, pa = np.maximum(pe, _EPS), np.maximum(pa, _EPS)
    value = float(max(np.sum((pa - pe) * np.log(pa / pe)), 0.0))
    # Sampling alone gives a PSI of about (k - 1)(1/n_ref + 1/n_cur) over k classes: 0.125
    # for 26 classes and two windows of 400. Only what exceeds it is drift.
    noise = (len(classes) - 1) * (1 / len(ref) + 1 / len(cur))
    numbers_ = {
        **base,
        "psi": value,
        "sampling_psi": noise,
        "psi_threshold": rules.psi_threshold,
        "reference_mix": dict(zip(classes, pe.round(4).tolist(), strict=True)),
        "current_mix": dict(zip(classes, pa.round(4).tolist(), strict=True)),
    }
    if value - noise > rules.psi_threshold:
        moved = classes[int(np.argmax(np.abs(pa - pe)))]
        i = classes.index(moved)
        return TriggerDecision(
            name,
            True,
            f"prediction drift in window {window_index}: PSI {value:.3f} ({noise:.3f} from "
            f"sampling alone) > {rules.psi_threshold} over {len(classes)} classes (class "
            f"{moved} {pe[i]:.1%} → {pa[i]:.1%} of the records)",
            numbers_,
            f"prediction_drift:{window_index}",
        )
    return TriggerDecision(
        name,
        False,
        f"no prediction drift in window {window_index}: PSI {value:.3f} ({noise:.3f} from "
        f"sampling alone) <= {rules.psi_threshold}",
        numbers_,
    )


def new_labels(accepted: int, retrain_count: int, rules: TriggerRules) -> TriggerDecision:
    """Fire when ``accepted`` stream labels since the last retrain reach ``min_new_labels``.

    Key ``labels:<retrain_count>``: one retrain per retrain generation, however many
    labels arrive while it runs.
    """
    accepted = _count(accepted, "accepted")
    retrain_count = _count(retrain_count, "retrain_count")
    numbers_ = {
        "new_labels": accepted,
        "min_new_labels": rules.min_new_labels,
        "retrain_count": retrain_count,
    }
    if accepted >= rules.min_new_labels:
        return TriggerDecision(
            "new_labels",
            True,
            f"{accepted} new labels since retrain {retrain_count} >= {rules.min_new_labels}",
            numbers_,
            f"labels:{retrain_count}",
        )
    return TriggerDecision(
        "new_labels",
        False,
        f"{accepted} of {rules.min_new_labels} new labels since retrain {retrain_count}",
        numbers_,
    )


def evaluate_triggers(
    rules: TriggerRules,
    *,
    new_label_count: int,
    retrain_count: int,
    window_index: int = 0,
    reference: Any = None,
    current: Any = None,
    feature_names: Sequence[str] | None = None,
    reference_labels: Sequence[Any] | None = None,
    predictions: Sequence[Any] | None = None,
    online: Mapping[str, Mapping[str, Any]] | None = None,
    version: str | None = None,
    holdout_accuracy: float | None = None,
) -> list[TriggerDecision]:
    """Every trigger, in :data:`TRIGGER_ORDER`; a rule without its inputs does not fire.

    Parameters
    ----------
    rules : TriggerRules
    new_label_count : int
        Accepted stream labels since the last retrain.
    retrain_count : int
        Retrains so far (the generation of the served model).
    window_index : int
        Index of the drift window evaluated (records seen // ``drift_window``).
    reference, current, feature_names
        Of :func:`input_drift`.
    reference_labels, predictions
        Of :func:`prediction_drift`.
    online, version, holdout_accuracy
        Of :func:`accuracy_decay` (``online`` from :func:`online_accuracy`).

    Returns
    -------
    list of TriggerDecision
        One per rule; :func:`first_fired` picks the one that names the retrain.
    """
    if not isinstance(rules, TriggerRules):
        raise TypeError(f"rules must be a TriggerRules, got {type(rules).__name__}")
    return [
        accuracy_decay(online or {}, version, holdout_accuracy, rules, retrain_count=retrain_count),
        input_drift(reference, current, window_index, rules, feature_names=feature_names),
        prediction_drift(reference_labels, predictions, window_index, rules),
        new_labels(new_label_count, retrain_count, rules),
    ]


def first_fired(decisions: Sequence[TriggerDecision]) -> TriggerDecision | None:
    """The first decision that fired (it names the retrain), or None."""
    return next((d for d in decisions if d.fired), None)


# --------------------------------------------------------------------------- helpers


def _table(x: Any, feature_names: Sequence[str] | None) -> pd.DataFrame:
    """A table of inputs: a DataFrame as is, an array with columns ``feature_names``
    (default ``x0, x1, …``), records' ``inputs`` mappings as rows."""
    if isinstance(x, pd.DataFrame):
        return x
    if isinstance(x, np.ndarray):
        arr = x[:, None] if x.ndim == 1 else x
        names = [f"x{j}" for j in range(arr.shape[1])] if feature_names is None else feature_names
        return pd.DataFrame(arr, columns=list(names))
    rows = list(x)
    if rows and not all(isinstance(r, Mapping) for r in rows):
        raise TypeError("records' inputs must be mappings (feature name → value)")
    return pd.DataFrame.from_records(rows)


def _count(v: Any, name: str) -> int:
    if not _is_int(v, 0):
        raise ValueError(f"{name} must be an integer >= 0, got {v!r}")
    return int(v)


def _is_int(v: Any, low: int) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= low


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)
