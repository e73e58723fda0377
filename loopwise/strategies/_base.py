"""The query-strategy contract, the shared selector and helpers for chunked scoring."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from sklearn.pipeline import Pipeline
from sklearn.utils import check_random_state

from loopwise._validation import check_n, check_pool, num_rows, take_rows

#: Rows scored per ``predict_proba`` call: big enough to amortise Python overhead,
#: small enough for the chunk's probabilities to stay in cache while they are scored.
CHUNK_ROWS = 16_384

ScoreFn = Callable[[np.ndarray], np.ndarray]


def top_n(scores: npt.ArrayLike, n: int, random_state: Any = None) -> np.ndarray:
    """Indices of the ``n`` highest scores, best first, ties broken by a seeded draw.

    Runs in O(N + n log n): a partition finds the cut, only the ties *at* the cut are
    drawn at random, and only the ``n`` winners are sorted.

    Parameters
    ----------
    scores : array-like of shape (N,)
        Higher is better. NaN counts as the lowest possible score.
    n : int
        How many indices to return; clipped to N.
    random_state : int, RandomState instance or None
        Seeds the tie-breaking.

    Returns
    -------
    indices : ndarray of shape (min(n, N),)
    """
    scores = np.asarray(scores)
    if scores.ndim != 1:
        raise ValueError(f"scores must be one-dimensional, got shape {scores.shape}")
    n = min(check_n(n), scores.shape[0])
    rng = check_random_state(random_state)
    if np.isnan(scores).any():
        scores = np.where(np.isnan(scores), -np.inf, scores)
    N = scores.shape[0]
    if n < N:
        cut = np.partition(scores, N - n)[N - n]
        above = np.flatnonzero(scores > cut)
        at_cut = np.flatnonzero(scores == cut)
        chosen_ties = rng.choice(at_cut, size=n - above.size, replace=False)
        chosen = np.concatenate([above, chosen_ties])
    else:
        chosen = np.arange(N)
    # Sort winners by score, ties in a seeded random order rather than by index.
    jitter = rng.permutation(chosen.size)
    order = np.lexsort((jitter, -scores[chosen]))
    return chosen[order].astype(np.intp, copy=False)


def iter_chunks(n_rows: int, chunk: int = CHUNK_ROWS) -> Iterator[slice]:
    """Consecutive row slices covering ``range(n_rows)``."""
    for start in range(0, n_rows, chunk):
        yield slice(start, min(start + chunk, n_rows))


def predict_proba_chunked(clf: Any, X: Any, chunk: int = CHUNK_ROWS) -> Iterator[np.ndarray]:
    """Yield ``clf.predict_proba`` over ``X`` chunk by chunk."""
    n_rows = num_rows(X)
    for sl in iter_chunks(n_rows, chunk):
        rows = X[sl] if not hasattr(X, "iloc") else X.iloc[sl]
        yield clf.predict_proba(rows)


def score_pool(clf: Any, X: Any, score_fn: ScoreFn, chunk: int = CHUNK_ROWS) -> np.ndarray:
    """Apply ``score_fn`` to the class probabilities of every row, in chunks, as float32."""
    n_rows = num_rows(X)
    out = np.empty(n_rows, dtype=np.float32)
    for sl, proba in zip(
        iter_chunks(n_rows, chunk), predict_proba_chunked(clf, X, chunk), strict=True
    ):
        out[sl] = score_fn(proba)
    return out


#: Sparse features wider than this (a TF-IDF vocabulary of a large corpus) are not
#: made dense: distances are measured in a seeded sparse random projection instead.
WIDE_SPARSE = 20_000
#: Dimensions of that projection (distances kept within about ±10 % for most pairs).
PROJECTED_DIMS = 1_024


@functools.lru_cache(maxsize=4)
def _projection(n_features: int) -> Any:
    from sklearn.random_projection import SparseRandomProjection

    proj = SparseRandomProjection(n_components=PROJECTED_DIMS, dense_output=True, random_state=0)
    return proj.fit(sp.csr_matrix((1, n_features), dtype=np.float32))


def _narrow(X: sp.csr_matrix) -> np.ndarray:
    """``X`` (sparse, wide) in ``PROJECTED_DIMS`` dense float32 columns: a sparse random
    projection (Li et al. 2006), the same matrix for every call with the same width,
    so that rows projected in different calls stay comparable."""
    X = X.astype(np.float32, copy=False)
    return np.asarray(_projection(X.shape[1]).transform(X), dtype=np.float32)


def feature_space(clf: Any, X: Any) -> np.ndarray:
    """The rows of ``X`` in the space the model's last step sees, as dense float32.

    Distance-based strategies measure diversity where the model does: after the
    transforms of a :class:`~sklearn.pipeline.Pipeline` (scaling, TF-IDF, ...), on
    the raw features otherwise (``clf`` may then be None). A DataFrame without a
    pipeline contributes its numeric columns. Sparse features wider than
    ``WIDE_SPARSE`` columns (a large TF-IDF vocabulary) come back as a
    ``PROJECTED_DIMS``-column random projection, never as a dense copy.
    """
    if isinstance(clf, Pipeline) and len(clf.steps) > 1:
        X = clf[:-1].transform(X)
    elif hasattr(X, "select_dtypes"):
        X = X.select_dtypes("number").to_numpy()
    if sp.issparse(X):
        X = _narrow(X.tocsr()) if X.shape[1] > WIDE_SPARSE else X.toarray()
    X = np.asarray(X)
    if X.dtype.kind not in "fiub":
        raise TypeError(
            "distance-based strategies need numeric features; got an array of dtype "
            f"{X.dtype}. Pass a Pipeline whose first steps turn the records into numbers "
            "(e.g. TfidfVectorizer) or numeric X."
        )
    if X.ndim == 1:
        X = X.reshape(-1, 1)
    return np.ascontiguousarray(X, dtype=np.float32)


def n_classes_of(clf: Any) -> int:
    """Number of classes a fitted classifier has seen (``classes_``), or -1 if unknown."""
    classes = getattr(clf, "classes_", None)
    return -1 if classes is None else len(classes)


class QueryStrategy:
    """Base of every pool-based strategy: validation at the boundary, then ``_query``.

    Subclasses set ``name`` and implement ``_query(clf, X_pool, n, X_labeled,
    y_labeled, rng) -> (indices, scores)`` on validated input (``1 <= n <= len(X_pool)``).
    """

    name: ClassVar[str] = ""
    #: True for strategies that need ``clf.predict_proba``.
    needs_model: ClassVar[bool] = True

    def __init__(self, random_state: Any = None) -> None:
        self.random_state = random_state

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    def get_params(self) -> dict[str, Any]:
        """The constructor parameters, as given."""
        return {
            k: v for k, v in vars(self).items() if not k.endswith("_") and not k.startswith("_")
        }

    def query(
        self,
        clf: Any,
        X_pool: Any,
        n: int,
        *,
        X_labeled: Any = None,
        y_labeled: Any = None,
        return_scores: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Pick the ``n`` candidates of ``X_pool`` most worth a label.

        Parameters
        ----------
        clf : fitted classifier with ``predict_proba``, or None for strategies that need no model
            Never modified; strategies that must fit something fit a clone.
        X_pool : array-like of shape (N, ...)
            The unlabeled candidates.
        n : int
            Batch size; a batch larger than the pool returns the whole pool, ranked.
        X_labeled, y_labeled : array-like of shape (L, ...) and (L,), optional
            The labeled set, used by committee, core-set and hybrid strategies.
        return_scores : bool
            Also return the score of each returned index (higher is better).

        Returns
        -------
        indices : ndarray of shape (min(n, N),)
            Distinct indices into ``X_pool``, best first.
        scores : ndarray of shape (min(n, N),), only if ``return_scores``
        """
        n_pool = check_pool(X_pool)
        n = min(check_n(n), n_pool)
        if (X_labeled is None) != (y_labeled is None):
            raise ValueError("give both X_labeled and y_labeled, or neither")
        if X_labeled is not None and num_rows(X_labeled) != num_rows(y_labeled):
            raise ValueError(
                f"X_labeled has {num_rows(X_labeled)} rows but y_labeled has {num_rows(y_labeled)}"
            )
        rng = check_random_state(self.random_state)
        if self.needs_model:
            if clf is None or not hasattr(clf, "predict_proba"):
                raise TypeError(
                    f"strategy {self.name!r} needs a fitted classifier with predict_proba, "
                    f"got {type(clf).__name__}"
                )
            if n_classes_of(clf) == 1:
                idx, scores = self._one_class_fallback(clf, X_pool, n, rng)
                return (idx, scores) if return_scores else idx
        idx, scores = self._query(clf, X_pool, n, X_labeled, y_labeled, rng)
        idx = np.asarray(idx, dtype=np.intp)
        return (idx, np.asarray(scores, dtype=np.float32)) if return_scores else idx

    def _one_class_fallback(
        self, clf: Any, X_pool: Any, n: int, rng: np.random.RandomState
    ) -> tuple[np.ndarray, np.ndarray]:
        # A model that has seen one class is certain about everything: its
        # probabilities carry no information, so pick representatives instead.
        warnings.warn(
            f"strategy {self.name!r}: the model has seen a single class, so its "
            "uncertainty is uninformative; falling back to cold-start selection "
            "(k-means++ representatives)",
            UserWarning,
            stacklevel=3,
        )
        from loopwise.strategies.cold_start import representatives

        X = feature_space(clf, X_pool)
        idx = representatives(X, n, rng)
        return idx, np.zeros(idx.size, dtype=np.float32)

    def _query(
        self,
        clf: Any,
        X_pool: Any,
        n: int,
        X_labeled: Any,
        y_labeled: Any,
        rng: np.random.RandomState,
    ) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


class ScoreStrategy(QueryStrategy):
    """A strategy that is a utility over class probabilities plus the top-n selector."""

    @staticmethod
    def utility(proba: np.ndarray) -> np.ndarray:
        """Utility of each row of ``proba`` (shape (N, C) → (N,)); higher is better."""
        raise NotImplementedError

    def _query(self, clf, X_pool, n, X_labeled, y_labeled, rng):
        scores = score_pool(clf, X_pool, self.utility)
        idx = top_n(scores, n, rng)
        return idx, scores[idx]


__all__ = [
    "CHUNK_ROWS",
    "QueryStrategy",
    "ScoreStrategy",
    "feature_space",
    "iter_chunks",
    "predict_proba_chunked",
    "score_pool",
    "take_rows",
    "top_n",
]
