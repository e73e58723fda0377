"""Query by committee: vote entropy and mean Kullback-Leibler divergence."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.base import clone

from loopwise._validation import num_rows, take_rows
from loopwise.exceptions import NotEnoughLabelsError
from loopwise.strategies._base import QueryStrategy, iter_chunks, top_n

__all__ = [
    "QBCKullbackLeibler",
    "QBCVoteEntropy",
    "bootstrap_committee",
    "kl_divergence_scores",
    "vote_entropy_scores",
]


def vote_entropy_scores(member_proba: npt.ArrayLike) -> np.ndarray:
    """Entropy of the committee's hard votes.

    Parameters
    ----------
    member_proba : array-like of shape (M, N, C)
        Class probabilities of each of the M members, columns aligned.

    Returns
    -------
    scores : ndarray of shape (N,), in [0, log min(M, C)]
    """
    member_proba = np.asarray(member_proba)
    n_members, n_rows, n_classes = member_proba.shape
    votes = member_proba.argmax(axis=2)  # (M, N)
    counts = np.zeros((n_rows, n_classes), dtype=np.float64)
    rows = np.arange(n_rows)
    for m in range(n_members):
        counts[rows, votes[m]] += 1.0
    share = counts / n_members
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(share > 0, share * np.log(share), 0.0)
    return -terms.sum(axis=1)


def kl_divergence_scores(member_proba: npt.ArrayLike) -> np.ndarray:
    """Mean KL divergence of each member from the committee's consensus.

    Parameters
    ----------
    member_proba : array-like of shape (M, N, C)

    Returns
    -------
    scores : ndarray of shape (N,), >= 0
    """
    member_proba = np.asarray(member_proba, dtype=np.float64)
    consensus = member_proba.mean(axis=0)
    eps = np.finfo(np.float64).tiny
    log_ratio = np.log(np.maximum(member_proba, eps)) - np.log(np.maximum(consensus, eps))
    kl = np.where(member_proba > 0, member_proba * log_ratio, 0.0).sum(axis=2)
    return kl.mean(axis=0)


def bootstrap_committee(
    clf: Any, X_labeled: Any, y_labeled: Any, n_members: int, rng: np.random.RandomState
) -> list[Any]:
    """Fit ``n_members`` clones of ``clf`` on stratified bootstrap resamples.

    Resampling within each class keeps every class in every member, so the
    members' probability columns line up with the labeled classes.
    """
    y = np.asarray(y_labeled)
    classes = np.unique(y)
    if classes.size < 2:
        raise NotEnoughLabelsError(
            f"a bootstrap committee needs labels of at least 2 classes, got {classes.size}"
        )
    by_class = [np.flatnonzero(y == c) for c in classes]
    members = []
    for _ in range(n_members):
        idx = np.concatenate([rng.choice(rows, size=rows.size, replace=True) for rows in by_class])
        members.append(clone(clf).fit(take_rows(X_labeled, idx), y[idx]))
    return members


def _aligned_proba(member: Any, X: Any, classes: np.ndarray) -> np.ndarray:
    proba = member.predict_proba(X)
    member_classes = np.asarray(member.classes_)
    if member_classes.shape == classes.shape and np.array_equal(member_classes, classes):
        return proba
    out = np.zeros((proba.shape[0], classes.size), dtype=proba.dtype)
    out[:, np.searchsorted(classes, member_classes)] = proba
    return out


class _Committee(QueryStrategy):
    def __init__(
        self,
        committee: Sequence[Any] | None = None,
        n_members: int = 5,
        random_state: Any = None,
    ) -> None:
        self.committee = committee
        self.n_members = n_members
        self.random_state = random_state

    @staticmethod
    def disagreement(member_proba: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _members(self, clf, X_labeled, y_labeled, rng) -> list[Any]:
        if self.committee is not None:
            members = list(self.committee)
            if len(members) < 2:
                raise ValueError(f"a committee needs at least 2 members, got {len(members)}")
            return members
        if not isinstance(self.n_members, int) or self.n_members < 2:
            raise ValueError(f"n_members must be an integer >= 2, got {self.n_members!r}")
        if X_labeled is None:
            raise NotEnoughLabelsError(
                f"strategy {self.name!r} builds its committee from the labeled set: "
                "pass X_labeled and y_labeled, or a fitted committee=[...]"
            )
        return bootstrap_committee(clf, X_labeled, y_labeled, self.n_members, rng)

    def _query(self, clf, X_pool, n, X_labeled, y_labeled, rng):
        members = self._members(clf, X_labeled, y_labeled, rng)
        classes = np.unique(np.concatenate([np.asarray(m.classes_) for m in members]))
        n_rows = num_rows(X_pool)
        scores = np.empty(n_rows, dtype=np.float32)
        for sl in iter_chunks(n_rows):
            rows = X_pool.iloc[sl] if hasattr(X_pool, "iloc") else X_pool[sl]
            member_proba = np.stack([_aligned_proba(m, rows, classes) for m in members])
            scores[sl] = self.disagreement(member_proba)
        idx = top_n(scores, n, rng)
        return idx, scores[idx]


class QBCVoteEntropy(_Committee):
    """Query where the committee's hard votes disagree most (vote entropy).

    The committee is ``committee`` (fitted estimators) if given, otherwise
    ``n_members`` clones of ``clf`` fitted on stratified bootstrap resamples of
    the labeled set.
    """

    name = "qbc_vote_entropy"
    disagreement = staticmethod(vote_entropy_scores)


class QBCKullbackLeibler(_Committee):
    """Query where members' distributions diverge most from the consensus (mean KL)."""

    name = "qbc_kl"
    disagreement = staticmethod(kl_divergence_scores)
