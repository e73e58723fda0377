"""Query by committee and expected gradient length."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.neighbors import KNeighborsClassifier

from loopwise import strategies
from loopwise.exceptions import NotEnoughLabelsError
from loopwise.strategies.committee import kl_divergence_scores, vote_entropy_scores
from loopwise.strategies.model_change import expected_gradient_length_scores, is_linear_softmax
from tests.conftest import fixed, id_pool

A = [[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.2, 0.8]]
B = [[0.9, 0.1], [0.1, 0.9], [0.4, 0.6], [0.2, 0.8]]
C = [[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.3, 0.7]]


def test_vote_entropy_counts_hard_votes():
    s = vote_entropy_scores(np.array([A, B, C]))
    # row 0: all vote 0; row 1: 1 vs 2; row 2: 2 vs 1; row 3: all vote 1
    h = -(1 / 3 * np.log(1 / 3) + 2 / 3 * np.log(2 / 3))
    np.testing.assert_allclose(s, [0, h, h, 0])


def test_kl_is_zero_when_members_agree_and_grows_with_disagreement():
    s = kl_divergence_scores(np.array([A, B, C]))
    assert s[0] == pytest.approx(0) and s[3] > 0 and s[1] > s[3]


def test_given_committee_is_used_as_is():
    members = [fixed(A), fixed(B), fixed(C)]
    idx = strategies.get("qbc_kl", committee=members, random_state=0).query(fixed(A), id_pool(4), 1)
    np.testing.assert_array_equal(idx, [1])  # row 1: the members split 0.9 vs 0.1


def test_committee_without_labels_or_members_is_a_clear_error(blobs):
    clf, X, *_ = blobs
    with pytest.raises(NotEnoughLabelsError, match="pass X_labeled and y_labeled"):
        strategies.get("qbc_vote_entropy").query(clf, X, 3)
    with pytest.raises(ValueError, match="at least 2 members"):
        strategies.get("qbc_kl", committee=[clf]).query(clf, X, 3)


def test_bootstrap_committee_prefers_the_class_boundary(blobs):
    clf, X, XL, yL, _ = blobs
    idx = strategies.get("qbc_kl", random_state=0).query(clf, X, 20, X_labeled=XL, y_labeled=yL)
    margin = 1 - np.diff(np.sort(clf.predict_proba(X), axis=1)[:, -2:], axis=1).ravel()
    assert np.median(margin[idx]) > np.quantile(margin, 0.75)


def _brute_force_egl(clf, X):
    """E_y ||d logloss / d(W, b)||, from the explicit gradient matrix."""
    proba = clf.predict_proba(X)
    out = []
    for x, p in zip(X, proba, strict=True):
        xb = np.append(x, 1.0)
        total = 0.0
        for k in range(len(p)):
            e = np.eye(len(p))[k]
            total += p[k] * np.linalg.norm(np.outer(p - e, xb))
        out.append(total)
    return np.array(out)


def test_egl_is_exact_for_multinomial_logistic_regression(blobs):
    _, X, XL, yL, _ = blobs
    lr = LogisticRegression(max_iter=1000).fit(XL, yL)
    got = expected_gradient_length_scores(lr.predict_proba(X[:30]), X[:30])
    np.testing.assert_allclose(got, _brute_force_egl(lr, X[:30]), rtol=1e-6)
    idx = strategies.get("expected_gradient_length").query(lr, X, 5)
    np.testing.assert_array_equal(np.sort(idx), np.sort(np.argsort(-_brute_force_egl(lr, X))[:5]))


def test_egl_flags_exact_and_approximate_models(blobs):
    _, X, XL, yL, _ = blobs
    assert is_linear_softmax(SGDClassifier(loss="log_loss"))
    assert not is_linear_softmax(KNeighborsClassifier())
    knn = KNeighborsClassifier(3).fit(XL, yL)
    s = strategies.get("expected_gradient_length")
    idx = s.query(knn, X, 5)
    assert s.is_exact_ is False and np.unique(idx).size == 5
