"""Stream-based selective sampling with an adaptive threshold."""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
from sklearn.utils import check_random_state

from loopwise.strategies.diversity import UNCERTAINTY

__all__ = ["StreamSelector"]


class StreamSelector:
    """Decide query-or-skip for records arriving one at a time, at a target rate.

    The threshold is the ``1 - target_rate`` quantile of the utilities of the
    last ``window`` records: a record is queried when fewer than
    ``target_rate · window`` recent records scored higher than it (ties drawn at
    random). Because the reference is the recent past, the threshold follows a
    drifting utility distribution and the query rate comes back to the target
    within about one window after a shift, whatever the scale of the utilities.

    Parameters
    ----------
    target_rate : float in (0, 1)
        Share of records to query in the long run.
    utility : {"margin", "entropy", "least_confidence"}
        How :meth:`decide_proba` and :meth:`select` score class probabilities.
    window : int, optional
        Records remembered; defaults to ``max(100, ceil(20 / target_rate))`` so that
        about 20 recent queries anchor the threshold. Shorter follows drift faster.
    random_state : int, RandomState instance or None
        Seeds the tie-breaking.

    Attributes
    ----------
    threshold_ : float
        The utility a record must exceed to be queried now.
    n_seen_, n_queried_ : int
    """

    def __init__(
        self,
        target_rate: float = 0.1,
        utility: str = "margin",
        window: int | None = None,
        random_state: Any = None,
    ) -> None:
        self.target_rate = target_rate
        self.utility = utility
        self.window = window
        self.random_state = random_state

    def _check(self) -> None:
        if not (isinstance(self.target_rate, float | int) and 0 < self.target_rate < 1):
            raise ValueError(f"target_rate must be in (0, 1), got {self.target_rate!r}")
        if self.utility not in UNCERTAINTY:
            raise ValueError(f"utility must be one of {sorted(UNCERTAINTY)}, got {self.utility!r}")
        if self.window is not None and not (isinstance(self.window, int) and self.window >= 2):
            raise ValueError(f"window must be an integer >= 2 or None, got {self.window!r}")

    def reset(self) -> StreamSelector:
        """Forget everything seen; the next record starts afresh."""
        self._check()
        self._rng = check_random_state(self.random_state)
        self._window = self.window or max(100, math.ceil(20 / self.target_rate))
        self._recent: deque[float] = deque()
        self._sorted: list[float] = []
        self.n_seen_ = 0
        self.n_queried_ = 0
        return self

    def get_state(self) -> dict[str, Any]:
        """What the selector remembers, as plain JSON types: the recent utilities in
        arrival order, the counters and the tie-breaking generator's state.

        :meth:`set_state` on a selector with the same parameters restores it
        exactly: the same records then get the same decisions.
        """
        if not hasattr(self, "_rng"):
            self.reset()
        kind, keys, pos, has_gauss, cached = self._rng.get_state()
        return {
            "recent": [float(v) for v in self._recent],
            "n_seen": int(self.n_seen_),
            "n_queried": int(self.n_queried_),
            "rng": [str(kind), [int(k) for k in keys], int(pos), int(has_gauss), float(cached)],
        }

    def set_state(self, state: dict[str, Any]) -> StreamSelector:
        """Restore what :meth:`get_state` saved (the recent utilities beyond
        ``window`` are dropped, oldest first)."""
        self.reset()
        try:
            recent = [float(v) for v in state["recent"]][-self._window :]
            kind, keys, pos, has_gauss, cached = state["rng"]
            self._rng.set_state(
                (
                    str(kind),
                    np.asarray(keys, dtype=np.uint32),
                    int(pos),
                    int(has_gauss),
                    float(cached),
                )
            )
            self.n_seen_ = int(state["n_seen"])
            self.n_queried_ = int(state["n_queried"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a StreamSelector state: {exc}") from exc
        if not all(math.isfinite(v) for v in recent):
            raise ValueError("not a StreamSelector state: a recent utility is not finite")
        self._recent = deque(recent)
        self._sorted = sorted(recent)
        return self

    @property
    def threshold_(self) -> float:
        """The ``1 - target_rate`` quantile of the recent utilities (inf before any)."""
        if not getattr(self, "_sorted", None):
            return math.inf
        k = min(len(self._sorted) - 1, int(len(self._sorted) * (1 - self.target_rate)))
        return self._sorted[k]

    @property
    def query_rate_(self) -> float:
        """Share of the records seen so far that were queried."""
        return self.n_queried_ / self.n_seen_ if self.n_seen_ else 0.0

    def decide(self, score: float) -> bool:
        """Query (True) or skip (False) one record with utility ``score``."""
        if not hasattr(self, "_rng"):
            self.reset()
        score = float(score)
        if not math.isfinite(score):
            raise ValueError(f"score must be a finite number, got {score!r}")
        recent = self._sorted
        higher = len(recent) - bisect.bisect_right(recent, score)
        equal = bisect.bisect_right(recent, score) - bisect.bisect_left(recent, score)
        rank = higher + self._rng.random_sample() * (equal + 1)
        query = rank < self.target_rate * (len(recent) + 1)
        self._recent.append(score)
        bisect.insort(recent, score)
        if len(self._recent) > self._window:
            old = self._recent.popleft()
            del recent[bisect.bisect_left(recent, old)]
        self.n_seen_ += 1
        self.n_queried_ += int(query)
        return bool(query)

    def decide_proba(self, proba_row: Any) -> bool:
        """Query or skip one record from its class probabilities (shape (C,))."""
        self._check()
        row = np.asarray(proba_row, dtype=np.float64).reshape(1, -1)
        return self.decide(float(UNCERTAINTY[self.utility](row)[0]))

    def stream(self, clf: Any, records: Iterable[Any]) -> Iterator[tuple[int, bool, float]]:
        """Yield ``(position, queried, utility)`` for each record, predicting one at a time."""
        self._check()
        score_fn = UNCERTAINTY[self.utility]
        for i, x in enumerate(records):
            proba = clf.predict_proba(np.asarray(x).reshape(1, -1))
            score = float(score_fn(proba)[0])
            yield i, self.decide(score), score

    def select(self, clf: Any, X_stream: Any) -> np.ndarray:
        """Run one pass over the rows of ``X_stream`` in order; the positions queried.

        Scores are computed in one vectorised call, then decided strictly in order,
        exactly as if the rows had arrived one by one.
        """
        self._check()
        scores = UNCERTAINTY[self.utility](clf.predict_proba(X_stream))
        return np.flatnonzero([self.decide(s) for s in scores])
