"""Whether a new model has earned the ``champion`` alias: a paired test on the holdout.

The champion and the challenger (the newly trained model) are scored on the same holdout
rows, so the comparison is paired: only the *discordant* rows tell them apart, the rows
one model gets right and the other wrong. Two tests, both one-sided (the question is
"is the challenger better?", never "are they different?"):

- ``"mcnemar"`` — the exact McNemar test: under "no better", each discordant row is a
  fair coin between the two models, so the rows the challenger alone gets right follow
  Binomial(discordant, 1/2); the p-value is the chance of at least as many.
- ``"bootstrap"`` — the paired bootstrap of the accuracy difference: rows are resampled
  with replacement (the pair of answers stays together); the p-value is the share of
  resamples in which the challenger is not ahead.

Either way the challenger is promoted only when ``p_value < alpha``. The interval
reported is the paired bootstrap's central ``1 - 2 alpha`` interval of the accuracy
difference (90 % at ``alpha = 0.05``): its lower end is the one-sided ``1 - alpha``
lower confidence bound, the one the decision is about.

A gain of a couple of rows on a small holdout is noise: two discordant rows, both won by
the challenger, give p = 0.25 and no promotion; it takes five of five (p = 1/32) at
``alpha = 0.05``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy.stats import binomtest
from sklearn.utils import check_random_state

__all__ = ["TESTS", "accuracy_rule", "discordant_counts", "gate"]

#: The paired tests :func:`gate` knows.
TESTS = ("mcnemar", "bootstrap")


def _correctness(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one entry per holdout row), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty: there is no holdout row to compare the models on")
    if arr.dtype != np.bool_:
        raise TypeError(
            f"{name} must hold booleans (prediction == label per holdout row), got dtype "
            f"{arr.dtype}"
        )
    return arr


def _check_pair(champion_correct: Any, challenger_correct: Any) -> tuple[np.ndarray, np.ndarray]:
    a = _correctness(champion_correct, "champion_correct")
    b = _correctness(challenger_correct, "challenger_correct")
    if a.size != b.size:
        raise ValueError(
            f"champion_correct and challenger_correct must cover the same holdout rows, got "
            f"{a.size} and {b.size} entries"
        )
    return a, b


def discordant_counts(
    champion_correct: npt.ArrayLike, challenger_correct: npt.ArrayLike
) -> tuple[int, int]:
    """The discordant rows: (champion alone right, challenger alone right).

    Parameters
    ----------
    champion_correct, challenger_correct : array-like of bool of shape (n_rows,)
        Per holdout row, whether each model's prediction equals the label.

    Returns
    -------
    champion_only, challenger_only : int
    """
    a, b = _check_pair(champion_correct, challenger_correct)
    return int(np.sum(a & ~b)), int(np.sum(~a & b))


def _mcnemar_p(champion_only: int, challenger_only: int) -> float:
    """One-sided exact McNemar: P(X >= challenger_only), X ~ Binomial(discordant, 1/2)."""
    n = champion_only + challenger_only
    if n == 0:
        return 1.0
    return float(binomtest(challenger_only, n, 0.5, alternative="greater").pvalue)


def _bootstrap_deltas(
    n: int, champion_only: int, challenger_only: int, n_resamples: int, rng: np.random.RandomState
) -> np.ndarray:
    """Accuracy differences (challenger - champion) of ``n_resamples`` paired resamples.

    Resampling ``n`` rows with replacement only matters through how many of each kind
    (champion alone right, challenger alone right, concordant) are drawn: a multinomial
    draw, exact and O(n_resamples) whatever the holdout's size.
    """
    probs = np.array([champion_only, challenger_only, n - champion_only - challenger_only]) / n
    counts = rng.multinomial(n, probs, size=n_resamples)
    return (counts[:, 1] - counts[:, 0]) / n


def _check_params(test: str, alpha: Any, n_resamples: Any) -> None:
    if test not in TESTS:
        raise ValueError(f"test must be one of {', '.join(TESTS)}, got {test!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0 < alpha < 0.5:
        raise ValueError(f"alpha must be a number in (0, 0.5), got {alpha!r}")
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, numbers.Integral):
        raise TypeError(f"n_resamples must be an integer, got {n_resamples!r}")
    if n_resamples < 100:
        raise ValueError(f"n_resamples must be at least 100, got {n_resamples}")


def gate(
    champion_correct: npt.ArrayLike,
    challenger_correct: npt.ArrayLike,
    *,
    test: Literal["mcnemar", "bootstrap"] = "mcnemar",
    alpha: float = 0.05,
    n_resamples: int = 10_000,
    random_state: int | np.random.RandomState | None = 0,
) -> dict[str, Any]:
    """Whether the holdout evidences that the challenger is more accurate than the champion.

    Parameters
    ----------
    champion_correct, challenger_correct : array-like of bool of shape (n_rows,)
        Per holdout row (the same rows, in the same order), whether the current
        champion's / the new model's prediction equals the label.
    test : {"mcnemar", "bootstrap"}, default="mcnemar"
        The one-sided paired test whose p-value decides (see the module docstring).
    alpha : float in (0, 0.5), default=0.05
        Promote only when the p-value is below it.
    n_resamples : int, default=10_000
        Paired bootstrap resamples (the interval, and the p-value of ``"bootstrap"``).
    random_state : int, RandomState instance or None, default=0
        Seeds the bootstrap: the same inputs and seed give the same result.

    Returns
    -------
    dict
        ``promote`` (bool), ``test``, ``alpha``, ``p_value``, ``n`` (rows),
        ``champion_accuracy``, ``challenger_accuracy``, ``accuracy_delta``
        (challenger - champion), ``interval`` ([low, high] of the delta),
        ``interval_level`` (``1 - 2 alpha``), ``champion_only`` and ``challenger_only``
        (the discordant counts) and ``reason`` (one sentence with the numbers). Plain
        JSON types.

    Raises
    ------
    TypeError
        If a correctness vector is not boolean, or ``n_resamples`` not an integer.
    ValueError
        If the vectors differ in length, are empty or not 1-D, ``test`` is unknown or
        ``alpha`` is outside (0, 0.5).
    """
    _check_params(test, alpha, n_resamples)
    a, b = _check_pair(champion_correct, challenger_correct)
    rng = check_random_state(random_state)
    n = int(a.size)
    champion_only, challenger_only = int(np.sum(a & ~b)), int(np.sum(~a & b))
    delta = (challenger_only - champion_only) / n
    deltas = _bootstrap_deltas(n, champion_only, challenger_only, int(n_resamples), rng)
    low, high = np.quantile(deltas, [alpha, 1 - alpha])
    if test == "mcnemar":
        p_value = _mcnemar_p(champion_only, challenger_only)
    else:  # the share of resamples where the challenger is not ahead (never exactly 0)
        p_value = float((np.sum(deltas <= 0) + 1) / (deltas.size + 1))
    promote = bool(p_value < alpha)
    out = {
        "promote": promote,
        "test": test,
        "alpha": float(alpha),
        "p_value": p_value,
        "n": n,
        "champion_accuracy": float(a.mean()),
        "challenger_accuracy": float(b.mean()),
        "accuracy_delta": float(delta),
        "interval": [float(low), float(high)],
        "interval_level": float(1 - 2 * alpha),
        "champion_only": champion_only,
        "challenger_only": challenger_only,
    }
    out["reason"] = _reason(out)
    return out


def _points(x: float) -> str:
    """An accuracy difference in points (0.01), signed."""
    return f"{100 * x:+.2f}"


def _reason(g: dict[str, Any]) -> str:
    name = "exact McNemar" if g["test"] == "mcnemar" else "paired bootstrap"
    low, high = g["interval"]
    verdict = (
        "the improvement is evidenced"
        if g["promote"]
        else "not evidence of a better model (the champion stays)"
    )
    return (
        f"On {g['n']} holdout rows the new model alone is right on {g['challenger_only']} and "
        f"the champion alone on {g['champion_only']}: {_points(g['accuracy_delta'])} points "
        f"({g['interval_level']:.0%} interval {_points(low)} to {_points(high)}), one-sided "
        f"{name} p = {g['p_value']:.3g} {'<' if g['promote'] else '>='} {g['alpha']:g}: "
        f"{verdict}."
    )


def accuracy_rule(challenger_accuracy: float, champion_accuracy: float | None) -> dict[str, Any]:
    """The rule without a paired test: promote on any gain of the recorded holdout accuracy.

    The fallback when the champion's predictions cannot be had (its model cannot be
    loaded): no p-value, no interval.

    Parameters
    ----------
    challenger_accuracy : float
        The new model's holdout accuracy.
    champion_accuracy : float or None
        The champion's recorded holdout accuracy; None when none is recorded (promote).

    Returns
    -------
    dict
        The keys of :func:`gate`, ``p_value`` and ``interval`` None, ``test`` is
        ``"accuracy"``.
    """
    if not isinstance(challenger_accuracy, numbers.Real) or not math.isfinite(challenger_accuracy):
        raise ValueError(
            f"challenger_accuracy must be a finite number, got {challenger_accuracy!r}"
        )
    best = -math.inf if champion_accuracy is None else float(champion_accuracy)
    promote = bool(challenger_accuracy > best)
    delta = None if champion_accuracy is None else float(challenger_accuracy - best)
    recorded = "none recorded" if champion_accuracy is None else f"{best:.4f}"
    return {
        "promote": promote,
        "test": "accuracy",
        "alpha": None,
        "p_value": None,
        "n": None,
        "champion_accuracy": None if champion_accuracy is None else best,
        "challenger_accuracy": float(challenger_accuracy),
        "accuracy_delta": delta,
        "interval": None,
        "interval_level": None,
        "champion_only": None,
        "challenger_only": None,
        "reason": (
            f"Holdout accuracy {challenger_accuracy:.4f} against the champion's recorded "
            f"{recorded}, compared without a paired test: "
            f"{'higher' if promote else 'not higher'}."
        ),
    }
