"""Query strategies: which unlabeled records are worth a label.

>>> from loopwise import strategies
>>> s = strategies.get("margin", random_state=0)
>>> idx = s.query(clf, X_pool, n=10, X_labeled=XL, y_labeled=yL)  # doctest: +SKIP

Every pool strategy follows one contract (:class:`QueryStrategy.query`): indices
into ``X_pool``, distinct, best first; the same ``random_state`` gives the same
batch; ``clf`` is never modified.
"""

from __future__ import annotations

from typing import Any

from loopwise.strategies._base import QueryStrategy, ScoreStrategy, top_n
from loopwise.strategies.cold_start import ColdStart
from loopwise.strategies.committee import QBCKullbackLeibler, QBCVoteEntropy
from loopwise.strategies.diversity import CoreSet, DensityWeighted, KMeansSampling
from loopwise.strategies.hybrid import ClusterMargin, DiverseMargin
from loopwise.strategies.model_change import ExpectedGradientLength
from loopwise.strategies.random import RandomSampling
from loopwise.strategies.stream import StreamSelector
from loopwise.strategies.uncertainty import Entropy, LeastConfidence, Margin

__all__ = [
    "DEFAULT",
    "REGISTRY",
    "QueryStrategy",
    "ScoreStrategy",
    "StreamSelector",
    "describe",
    "get",
    "names",
    "top_n",
]

REGISTRY: dict[str, type[QueryStrategy]] = {
    cls.name: cls
    for cls in (
        RandomSampling,
        LeastConfidence,
        Margin,
        Entropy,
        QBCVoteEntropy,
        QBCKullbackLeibler,
        ExpectedGradientLength,
        DensityWeighted,
        CoreSet,
        KMeansSampling,
        ClusterMargin,
        DiverseMargin,
        ColdStart,
    )
}

#: The strategy a campaign uses unless its config names another.
DEFAULT = DiverseMargin.name


def names() -> list[str]:
    """Every registered strategy name, sorted."""
    return sorted(REGISTRY)


def describe(name: str) -> str:
    """The one-line explanation of a registered strategy (its docstring's first line)."""
    doc = (REGISTRY[name].__doc__ or "").strip().splitlines()
    return doc[0].replace("``", "") if doc else ""


def get(name: str, **params: Any) -> QueryStrategy:
    """A new strategy by name, with its parameters (e.g. ``random_state=0``).

    Raises
    ------
    ValueError
        If ``name`` is not registered; the message lists the known names.
    TypeError
        If a parameter is not one the strategy takes.
    """
    if not isinstance(name, str) or name not in REGISTRY:
        raise ValueError(f"unknown strategy {name!r}; known strategies: {', '.join(names())}")
    return REGISTRY[name](**params)
