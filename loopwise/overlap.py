"""How many annotators an item gets, and whether a doubtful label is worth another answer.

Labels cost money twice: once for the item and again for every extra annotator on it.
This module decides, per item, from the answers so far, what each annotator is
estimated to be worth and what the model predicted:

- :func:`model_prior` — the model's prediction as a prior over the label set, mixed
  with a uniform guess (the model counts for less than an annotator);
- :func:`label_posterior` — the prior times one-coin likelihoods of the answers: an
  annotator of estimated accuracy ``a`` gives the true label with probability ``a`` and
  each wrong one with ``(1 - a) / (K - 1)``;
- :class:`OverlapPolicy` — ``fixed`` (every item gets ``annotators`` answers, more on a
  dispute: the agreement rule of :func:`loopwise.consensus.accept`) or ``adaptive``
  (one answer to start; another only while the posterior of the best label is below
  ``target_confidence``);
- :func:`relabel_or_new` — one scale for a new item and another answer on an accepted
  one: the probability that the label the model would learn from is wrong.

Pure: no I/O. The consensus stage (``tasks/qc.py``) and ``bench/spending.py`` use it.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from loopwise._validation import check_n

__all__ = [
    "DEFAULT_ACCURACY",
    "POLICIES",
    "ItemDecision",
    "OverlapPolicy",
    "accepted_doubt",
    "annotator_accuracies",
    "decide_items",
    "label_posterior",
    "model_prior",
    "overlapping",
    "relabel_or_new",
]

POLICIES = ("fixed", "adaptive")
#: The accuracy assumed for an annotator with no estimate yet (a new annotator):
#: better than chance, well short of an expert; the estimate replaces it once made.
DEFAULT_ACCURACY = 0.7
#: Estimated accuracies are clipped into [chance, this]: no annotator is certain.
_MAX_ACCURACY = 0.99


def model_prior(
    classes: Sequence[Hashable],
    label: Hashable | None,
    score: float | None,
    *,
    weight: float = 0.5,
) -> np.ndarray:
    """The model's guess as a prior over ``classes``: ``weight`` × its distribution +
    (1 − ``weight``) × uniform.

    The model's distribution puts ``score`` on ``label`` and spreads the rest evenly
    (dispatch keeps only the top class and its probability). No prediction (None), a
    label outside ``classes`` or ``weight=0`` gives the uniform prior.

    Parameters
    ----------
    classes : sequence
        The label set, K ≥ 2 labels.
    label : hashable or None
        The model's predicted label.
    score : float in [0, 1] or None
        The model's probability of ``label``.
    weight : float in [0, 1]
        How much the model counts against a uniform guess.

    Returns
    -------
    prior : ndarray of shape (K,), sums to 1
    """
    k = len(classes)
    if k < 2:
        raise ValueError(f"classes must hold at least 2 labels, got {list(classes)!r}")
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be in [0, 1], got {weight!r}")
    uniform = np.full(k, 1.0 / k)
    if label is None or score is None or weight == 0.0 or label not in list(classes):
        return uniform
    score = float(score)
    if not 0.0 <= score <= 1.0:
        raise ValueError(f"score must be a probability in [0, 1], got {score!r}")
    guess = np.full(k, (1.0 - score) / (k - 1))
    guess[list(classes).index(label)] = score
    return weight * guess + (1.0 - weight) * uniform


def label_posterior(
    prior: np.ndarray,
    answers: Sequence[Hashable],
    accuracies: Sequence[float],
    classes: Sequence[Hashable],
) -> np.ndarray:
    """P(true label | answers) under one-coin annotators, from ``prior``.

    An annotator of accuracy ``a`` gives the true label with probability ``a`` and each
    of the K − 1 others with ``(1 − a) / (K − 1)``. Accuracies are clipped into
    [1/K, 0.99]: an annotator no better than chance (a spammer) leaves the posterior
    where it was, and none is taken for infallible.

    Parameters
    ----------
    prior : ndarray of shape (K,)
        Prior probabilities (e.g. :func:`model_prior`); must sum to 1.
    answers : sequence of labels
        The item's answers, one per annotator.
    accuracies : sequence of float
        The estimated accuracy of the annotator of each answer (same length).
    classes : sequence
        The label set; every answer must be in it.

    Returns
    -------
    posterior : ndarray of shape (K,), sums to 1
    """
    classes = list(classes)
    k = len(classes)
    prior = np.asarray(prior, dtype=np.float64)
    if prior.shape != (k,) or not np.isclose(prior.sum(), 1.0) or (prior < 0).any():
        raise ValueError(f"prior must be {k} probabilities summing to 1, got {prior!r}")
    if len(answers) != len(accuracies):
        raise ValueError(
            f"answers ({len(answers)}) and accuracies ({len(accuracies)}) must have one "
            "entry per answer"
        )
    log_post = np.log(np.maximum(prior, 1e-300))
    for answer, acc in zip(answers, accuracies, strict=True):
        if answer not in classes:
            raise ValueError(f"answer {answer!r} is not in the label set {classes!r}")
        a = min(max(float(acc), 1.0 / k), _MAX_ACCURACY)
        wrong = (1.0 - a) / (k - 1)
        like = np.full(k, math.log(wrong))
        like[classes.index(answer)] = math.log(a)
        log_post += like
    log_post -= log_post.max()
    post = np.exp(log_post)
    return post / post.sum()


@dataclass(frozen=True)
class ItemDecision:
    """What an item needs: ``accept`` (with ``label``), ``more`` (another annotator) or
    ``review`` (an expert: the annotators are used up without a confident label)."""

    status: Literal["accept", "more", "review"]
    label: Hashable | None
    confidence: float
    n_answers: int
    reason: str


@dataclass(frozen=True)
class OverlapPolicy:
    """How many annotators an item gets.

    Parameters
    ----------
    policy : {"fixed", "adaptive"}
        ``fixed``: every item is dispatched to ``annotators`` annotators; a dispute gets
        more (the agreement rule decides, not this class). ``adaptive``: every item starts
        with one annotator and gets another only while the posterior of its best label
        (:func:`label_posterior` from :func:`model_prior`, with the annotators' estimated
        accuracies) is below ``target_confidence``.
    annotators : int >= 1
        The overlap of the fixed policy.
    target_confidence : float in (0, 1)
        Adaptive: the posterior an accepted label must reach.
    max_annotations : int >= 1
        Never more answers per item than this; an item that reaches it unresolved goes
        to expert review.
    model_weight : float in [0, 1]
        Adaptive: the weight of the model in the prior (:func:`model_prior`).
    """

    policy: Literal["fixed", "adaptive"] = "adaptive"
    annotators: int = 1
    target_confidence: float = 0.9
    max_annotations: int = 5
    model_weight: float = 0.5

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {self.policy!r}")
        check_n(self.annotators, "annotators")
        check_n(self.max_annotations, "max_annotations")
        if not 0.0 < self.target_confidence < 1.0:
            raise ValueError(f"target_confidence must be in (0, 1), got {self.target_confidence}")
        if not 0.0 <= self.model_weight <= 1.0:
            raise ValueError(f"model_weight must be in [0, 1], got {self.model_weight}")

    @property
    def initial(self) -> int:
        """Annotators asked when an item is dispatched."""
        return 1 if self.policy == "adaptive" else min(self.annotators, self.max_annotations)

    def decide(
        self,
        classes: Sequence[Hashable],
        answers: Sequence[Hashable],
        accuracies: Sequence[float],
        *,
        prediction: tuple[Hashable | None, float | None] = (None, None),
    ) -> ItemDecision:
        """Accept, ask once more or send to review, by the adaptive rule.

        The label is the posterior's best one and must have been given by at least one
        annotator: the model alone never labels an item.
        """
        n = len(answers)
        if n == 0:
            return ItemDecision("more", None, 0.0, 0, "no answer yet")
        prior = model_prior(classes, *prediction, weight=self.model_weight)
        post = label_posterior(prior, answers, accuracies, classes)
        best = int(np.argmax(post))
        label, conf = list(classes)[best], float(post[best])
        if conf >= self.target_confidence and label in list(answers):
            return ItemDecision("accept", label, conf, n, f"posterior {conf:.3f}")
        reason = (
            f"posterior {conf:.3f} < {self.target_confidence}"
            if label in list(answers)
            else f"no annotator gave the likeliest label {label!r}"
        )
        if n >= self.max_annotations:
            return ItemDecision("review", label, conf, n, f"{reason} after {n} answers")
        return ItemDecision("more", label, conf, n, reason)


def relabel_or_new(
    new_wrong: Sequence[float],
    accepted_wrong: Mapping[str, float],
    n_total: int,
    *,
    max_share: float = 0.5,
) -> tuple[int, list[str]]:
    """How many new items to take, and which accepted items get another answer instead.

    Both sides are on one scale: the probability that the label the model would learn
    from is wrong. For a new item that is 1 − the model's top-class probability (what
    the model believes without a label); for an accepted item, 1 − the posterior of
    its accepted label given its answers, the annotators' estimated accuracies and the
    current model. The ``n_total`` highest values win, with at most ``max_share`` of the
    batch spent on relabels so that every cycle still brings new items.

    Parameters
    ----------
    new_wrong : sequence of float
        The values of the new picks, in the strategy's order (best first); the first
        ``n_total`` are the candidates.
    accepted_wrong : mapping
        Accepted item id → value, for the items that may get another answer.
    n_total : int >= 0
        The batch size.
    max_share : float in [0, 1]
        The largest share of the batch given to relabels.

    Returns
    -------
    (n_new, relabel) : the number of new picks kept (the first ones) and the accepted
        items to ask again, most doubtful first.
    """
    if n_total < 0:
        raise ValueError(f"n_total must be >= 0, got {n_total}")
    if not 0.0 <= max_share <= 1.0:
        raise ValueError(f"max_share must be in [0, 1], got {max_share}")
    cap = math.floor(n_total * max_share)
    ranked = sorted(accepted_wrong.items(), key=lambda kv: (-kv[1], str(kv[0])))[:cap]
    new = [float(v) for v in list(new_wrong)[:n_total]]
    # A relabel replaces the last new pick (the strategy's weakest) when it beats it.
    taken: list[str] = []
    n_new = len(new)
    for item, value in ranked:
        if n_new + len(taken) < n_total:  # room left (a small pool): fill it
            taken.append(item)
        elif n_new > 0 and value > new[n_new - 1]:
            n_new -= 1
            taken.append(item)
        else:
            break
    return n_new, taken


def overlapping(answers: pd.DataFrame, item: str = "item_id") -> pd.DataFrame:
    """The answers on items with two or more of them: the only ones that tell an
    annotator's accuracy (on an item answered once, any consensus method can only agree
    with the answer, so single answers would make every annotator look infallible)."""
    if answers.empty:
        return answers
    return answers.loc[answers.groupby(item)[item].transform("size") >= 2]


def annotator_accuracies(
    estimates: Mapping[Hashable, float],
    answers_per_annotator: Mapping[Hashable, int],
    *,
    default: float = DEFAULT_ACCURACY,
    prior_answers: int = 5,
) -> dict[Hashable, float]:
    """Each annotator's accuracy for :func:`label_posterior`: the consensus estimate,
    shrunk towards ``default`` by ``prior_answers`` pseudo-answers (an annotator seen on
    three items is not yet known to be an expert or a spammer).

    Parameters
    ----------
    estimates : mapping
        Annotator → estimated accuracy (e.g. Dawid–Skene's); missing ones get ``default``.
    answers_per_annotator : mapping
        Annotator → number of answers the estimate rests on.
    default : float in (0, 1)
        The accuracy of an annotator with no estimate.
    prior_answers : int >= 0
        The weight of ``default``, in answers.
    """
    out = {}
    for who, n in answers_per_annotator.items():
        est = estimates.get(who)
        if est is None or not np.isfinite(est):
            out[who] = default
        else:
            out[who] = (n * float(est) + prior_answers * default) / (n + prior_answers)
    return out


def decide_items(
    policy: OverlapPolicy,
    classes: Sequence[Hashable],
    answers: Mapping[Hashable, Sequence[tuple[Hashable, Hashable]]],
    accuracies: Mapping[Hashable, float],
    predictions: Mapping[Hashable, tuple[Hashable | None, float | None]],
) -> dict[Hashable, ItemDecision]:
    """:meth:`OverlapPolicy.decide` for every item of ``answers``.

    Parameters
    ----------
    answers : mapping
        Item → its answers as (annotator, label) pairs.
    accuracies : mapping
        Annotator → accuracy (:func:`annotator_accuracies`); a missing one gets
        :data:`DEFAULT_ACCURACY`.
    predictions : mapping
        Item → (model label, its probability) at dispatch; a missing item has none.
    """
    out = {}
    for item, pairs in answers.items():
        labels = [label for _, label in pairs]
        acc = [accuracies.get(who, DEFAULT_ACCURACY) for who, _ in pairs]
        out[item] = policy.decide(
            classes, labels, acc, prediction=predictions.get(item, (None, None))
        )
    return out


def accepted_doubt(
    classes: Sequence[Hashable],
    current: Mapping[Hashable, Hashable],
    answers: Mapping[Hashable, Sequence[tuple[Hashable, Hashable]]],
    accuracies: Mapping[Hashable, float],
    predictions: Mapping[Hashable, tuple[Hashable | None, float | None]],
    *,
    model_weight: float = 0.5,
    max_annotations: int = 5,
) -> dict[Hashable, float]:
    """The probability that each accepted label is wrong, for :func:`relabel_or_new`.

    1 − the posterior of the item's current label given its answers, the annotators'
    accuracies and the *current* model's guess (which may have learned better since the
    label was accepted). Items with ``max_annotations`` answers already, or without
    answers (an expert's label), are left out: they cannot be asked again.

    Parameters
    ----------
    current : mapping
        Item → its accepted label.
    answers : mapping
        Item → its answers as (annotator, label) pairs.
    accuracies, predictions
        As in :func:`decide_items`.
    """
    out = {}
    for item, label in current.items():
        pairs = answers.get(item) or []
        if not pairs or len(pairs) >= max_annotations or label not in list(classes):
            continue
        prior = model_prior(classes, *predictions.get(item, (None, None)), weight=model_weight)
        post = label_posterior(
            prior,
            [lab for _, lab in pairs],
            [accuracies.get(who, DEFAULT_ACCURACY) for who, _ in pairs],
            classes,
        )
        out[item] = float(1.0 - post[list(classes).index(label)])
    return out
