"""Which served records to ask a human about: the selection policy of the production stream.

A :class:`StreamPolicy` sees the class probabilities of each served record, in order,
and returns a :class:`Decision`:

- ``"control"`` with probability ``rate · control_share``, a uniform draw that never
  looks at the model: the unbiased sample behind the online accuracy
  (:func:`loopwise.triggers.online_accuracy`) and the counterfactual of random labeling;
- otherwise ``"query"`` or ``"skip"`` from a :class:`~loopwise.strategies.StreamSelector`
  (adaptive threshold: the recent utilities' quantile), aimed so that controls and
  queries together ask about ``rate`` of the records.

``rate`` is ``target_rate``, or ``target_rate · boost`` (at most :data:`MAX_RATE`) for the
records after :meth:`StreamPolicy.boost_for` — after drift, labels are worth more.
Every record's utility enters the selector's window, controls included, so the
threshold is the quantile of the whole stream.

Everything the policy remembers is in :meth:`StreamPolicy.state` (JSON types): a policy
rebuilt by :meth:`StreamPolicy.from_state` with the same parameters gives the same
decisions to the same records — the stream flow re-decides a batch after a crash.
:func:`rate_for_budget` turns a labeling budget into a target rate.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from loopwise.jsonsafe import json_safe
from loopwise.strategies.diversity import UNCERTAINTY
from loopwise.strategies.stream import StreamSelector

__all__ = ["DECISIONS", "MAX_RATE", "Decision", "StreamPolicy", "rate_for_budget"]

#: The values of :attr:`Decision.decision` (and of the inference log's ``decision``).
DECISIONS = ("query", "control", "skip")
#: Largest share of records a policy asks about, boosted or from a budget.
MAX_RATE = 0.5
_STATE_VERSION = 1


@dataclass(frozen=True)
class Decision:
    """What to do with one record, and the numbers behind it.

    Attributes
    ----------
    decision : {"query", "control", "skip"}
    score : float
        The record's utility (higher is more uncertain).
    threshold : float or None
        The utility a record had to exceed to be queried at that moment (None before
        the first record: nothing to compare with).
    """

    decision: str
    score: float
    threshold: float | None

    def to_dict(self) -> dict[str, Any]:
        """The decision as plain JSON types (the inference log's ``decision``,
        ``score`` and ``threshold``)."""
        return json_safe(
            {"decision": self.decision, "score": self.score, "threshold": self.threshold}
        )


class StreamPolicy:
    """Query, control or skip each served record, at a target labeling rate.

    Parameters
    ----------
    target_rate : float in (0, 1)
        Share of records asked about (queries and controls together) in the long run.
    control_share : float in [0, 1]
        Share of the asked records drawn uniformly at random. 1 gives random
        selection at ``target_rate``; 0 no control.
    utility : {"margin", "entropy", "least_confidence"}
        How class probabilities are scored.
    window : int, optional
        Records the selector remembers (see :class:`~loopwise.strategies.StreamSelector`).
    boost : float >= 1
        Rate multiplier of :meth:`boost_for`.
    boost_records : int >= 1
        Records a :meth:`boost_for` without a count lasts.
    random_state : int
        Seeds the control draws and the selector's tie-breaking.

    Attributes
    ----------
    n_seen_, n_query_, n_control_ : int
        Records decided so far, and how many were queried / drawn as control.
    boost_left_ : int
        Records still decided at the boosted rate.
    """

    def __init__(
        self,
        target_rate: float = 0.05,
        control_share: float = 0.2,
        utility: str = "margin",
        window: int | None = None,
        boost: float = 3.0,
        boost_records: int = 1000,
        random_state: int = 0,
    ) -> None:
        self.target_rate = target_rate
        self.control_share = control_share
        self.utility = utility
        self.window = window
        self.boost = boost
        self.boost_records = boost_records
        self.random_state = random_state
        self._check()
        self._start()

    # ------------------------------------------------------------------ set-up

    def get_params(self) -> dict[str, Any]:
        """The constructor's parameters (what :meth:`from_state` takes as ``params``)."""
        return {
            "target_rate": self.target_rate,
            "control_share": self.control_share,
            "utility": self.utility,
            "window": self.window,
            "boost": self.boost,
            "boost_records": self.boost_records,
            "random_state": self.random_state,
        }

    def _check(self) -> None:
        if not (_is_real(self.target_rate) and 0 < self.target_rate < 1):
            raise ValueError(f"target_rate must be in (0, 1), got {self.target_rate!r}")
        if not (_is_real(self.control_share) and 0 <= self.control_share <= 1):
            raise ValueError(f"control_share must be in [0, 1], got {self.control_share!r}")
        if self.utility not in UNCERTAINTY:
            raise ValueError(f"utility must be one of {sorted(UNCERTAINTY)}, got {self.utility!r}")
        if not (_is_real(self.boost) and math.isfinite(self.boost) and self.boost >= 1):
            raise ValueError(f"boost must be a finite number >= 1, got {self.boost!r}")
        if not _is_int(self.boost_records, 1):
            raise ValueError(f"boost_records must be an integer >= 1, got {self.boost_records!r}")
        if not _is_int(self.random_state, 0):
            raise ValueError(f"random_state must be an integer >= 0, got {self.random_state!r}")

    def _start(self) -> None:
        seeds = np.random.SeedSequence(int(self.random_state)).generate_state(2)
        self._rng = np.random.RandomState(seeds[0])
        # the selector's rate is set before each record (it depends on the boost)
        self._selector = StreamSelector(
            target_rate=self._selector_rate(self.target_rate) or 0.5,
            utility=self.utility,
            window=self.window,
            random_state=int(seeds[1]),
        ).reset()
        self.n_seen_ = 0
        self.n_query_ = 0
        self.n_control_ = 0
        self.boost_left_ = 0

    def _selector_rate(self, rate: float) -> float:
        """Query share among the records not drawn as control, so that controls and
        queries together make ``rate``."""
        control = rate * self.control_share
        return rate * (1 - self.control_share) / (1 - control)

    # ------------------------------------------------------------------ deciding

    @property
    def rate_(self) -> float:
        """The labeling rate now: boosted while :attr:`boost_left_` > 0."""
        if self.boost_left_ > 0:
            return max(self.target_rate, min(self.target_rate * self.boost, MAX_RATE))
        return float(self.target_rate)

    def _aim(self) -> None:
        """Point the selector at the query share of the current rate."""
        # 0 when every asked record is a control: the selector then only keeps the window
        self._selector.target_rate = self._selector_rate(self.rate_) or 0.5

    @property
    def threshold_(self) -> float | None:
        """The utility a record must exceed to be queried now (None before any record)."""
        self._aim()
        t = self._selector.threshold_
        return None if math.isinf(t) else float(t)

    def boost_for(self, n_records: int | None = None) -> None:
        """Ask about ``rate · boost`` of the next ``n_records`` records (default
        ``boost_records``), then go back to ``target_rate``. A boost running longer
        is not shortened."""
        n = self.boost_records if n_records is None else n_records
        if not _is_int(n, 0):
            raise ValueError(f"n_records must be an integer >= 0, got {n_records!r}")
        self.boost_left_ = max(self.boost_left_, int(n))

    def decide_score(self, score: float) -> Decision:
        """Decide one record from its utility ``score`` (a finite number)."""
        if not (_is_real(score) and math.isfinite(score)):
            raise ValueError(f"score must be a finite number, got {score!r}")
        score = float(score)
        rate = self.rate_
        threshold = self.threshold_
        control = self._rng.random_sample() < rate * self.control_share
        query = self._selector.decide(score)  # every record enters the window
        if control:
            decision = "control"
        elif query and self.control_share < 1:
            decision = "query"
        else:
            decision = "skip"
        self.n_seen_ += 1
        self.n_control_ += decision == "control"
        self.n_query_ += decision == "query"
        self.boost_left_ = max(self.boost_left_ - 1, 0)
        return Decision(decision, score, threshold)

    def decide(self, proba_row: npt.ArrayLike | Mapping[Any, float]) -> Decision:
        """Decide one record from its class probabilities: shape (C,), or a mapping
        class → probability (the inference log's ``proba``)."""
        return self.decide_score(self._scores(proba_row, one=True)[0])

    def decide_many(self, proba: npt.ArrayLike | Sequence[Mapping[Any, float]]) -> list[Decision]:
        """Decide the rows of ``proba`` (shape (N, C), or mappings) in order, exactly as
        if they had come one by one."""
        return [self.decide_score(s) for s in self._scores(proba, one=False)]

    def _scores(self, proba: Any, *, one: bool) -> list[float]:
        rows = [proba] if one else proba
        if not isinstance(rows, np.ndarray):
            rows = [list(r.values()) if isinstance(r, Mapping) else r for r in rows]
        try:
            arr = np.asarray(rows, dtype=np.float64)
        except ValueError as exc:  # ragged rows
            raise ValueError(f"every record needs the same number of classes: {exc}") from exc
        if arr.size == 0:
            return []
        if arr.ndim != 2:
            raise ValueError(f"proba must be 2-D (records, classes), got shape {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError("proba has a value that is not finite")
        return [float(s) for s in UNCERTAINTY[self.utility](arr)]

    # ------------------------------------------------------------------ state

    def state(self) -> dict[str, Any]:
        """Everything the policy remembers, as plain JSON types: the selector's window,
        counters and generator, the control draws' generator, the boost left."""
        kind, keys, pos, has_gauss, cached = self._rng.get_state()
        return {
            "version": _STATE_VERSION,
            "n_seen": int(self.n_seen_),
            "n_query": int(self.n_query_),
            "n_control": int(self.n_control_),
            "boost_left": int(self.boost_left_),
            "rng": [str(kind), [int(k) for k in keys], int(pos), int(has_gauss), float(cached)],
            "selector": self._selector.get_state(),
        }

    @classmethod
    def from_state(cls, params: Mapping[str, Any], state: Mapping[str, Any]) -> StreamPolicy:
        """A policy with ``params`` (see :meth:`get_params`) remembering ``state``.

        With the parameters the state was saved under, the next decisions are those
        the saved policy would have made. With others (a new target rate), the window
        and counters carry over and the new parameters apply from the next record.
        """
        policy = cls(**dict(params))
        if not isinstance(state, Mapping) or state.get("version") != _STATE_VERSION:
            raise ValueError(f"not a StreamPolicy state of version {_STATE_VERSION}")
        try:
            kind, keys, pos, has_gauss, cached = state["rng"]
            policy._rng.set_state(
                (
                    str(kind),
                    np.asarray(keys, dtype=np.uint32),
                    int(pos),
                    int(has_gauss),
                    float(cached),
                )
            )
            policy._selector.set_state(state["selector"])
            policy.n_seen_ = int(state["n_seen"])
            policy.n_query_ = int(state["n_query"])
            policy.n_control_ = int(state["n_control"])
            policy.boost_left_ = int(state["boost_left"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a StreamPolicy state: {exc}") from exc
        return policy


def rate_for_budget(labels_per_hour: float, requests_per_hour: float) -> float:
    """The target rate that spends ``labels_per_hour`` on ``requests_per_hour``.

    Clipped to ``(0, MAX_RATE]``: asking about more than half of the traffic is not
    selection any more.
    """
    for name, v in (("labels_per_hour", labels_per_hour), ("requests_per_hour", requests_per_hour)):
        if not (_is_real(v) and math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
    return float(min(labels_per_hour / requests_per_hour, MAX_RATE))


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _is_int(v: Any, low: int) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= low
