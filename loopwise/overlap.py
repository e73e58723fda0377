"""How many annotators an item gets, and whether a doubtful label is worth another answer.

Labels cost money twice: once for the item and again for every extra annotator on it.
This module decides, per item, from the answers so far, what each annotator is
estimated to be worth and what the model predicted:

- :func:`model_prior` — the model's prediction as a prior over the label set, mixed
  with a uniform guess (the model counts for less than an annotator);
- :func:`label_posterior` — the prior times one-coin likelihoods of the answers: an
  annotator of estimated accuracy ``a`` gives the true label with probability ``a`` and
  each wrong one with ``(1 - a) / (K - 1)``;
- :func:`label_value` — what a label with that posterior is worth to training, in clean
  labels: ``(2·max(posterior) − 1)²``, 0 below one half. Learning under random label
  noise of rate η needs about 1/(1 − 2η)² times the clean examples (Angluin & Laird,
  1988: the signal of a label shrinks by 1 − 2η, its noise does not), so a label right
  with probability p is worth (2p − 1)² of a clean one;
- :func:`answer_gain` — the expected rise of that value from one more answer by an
  annotator of the pool's mean accuracy ``ā``; :func:`new_item_value` — what the same
  answer buys spent on a new item instead: ``(2ā − 1)²``;
- :class:`OverlapPolicy` — ``fixed`` (every item gets ``annotators`` answers, more on a
  dispute: the agreement rule of :func:`loopwise.consensus.accept`) or ``adaptive``
  (one answer to start; another only while it is worth more on this item than on a new
  one: ``answer_gain > new_item_value``);
- :func:`relabel_or_new` — the same scale for an accepted label (another answer on it)
  and new items.

Every answer goes where it buys the most label value: no threshold on the posterior,
no constant fitted to a dataset. A trusted annotator's answer that agrees with the
model closes an item; a spammer's answer (estimated at chance) leaves it where a new
item starts, so it gets another; two answers that disagree are worth resolving.

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
    "accepted_gain",
    "annotator_accuracies",
    "answer_gain",
    "decide_items",
    "label_posterior",
    "label_value",
    "model_prior",
    "new_item_value",
    "overlapping",
    "pool_accuracy",
    "relabel_or_new",
]

POLICIES = ("fixed", "adaptive")
#: The accuracy assumed for an annotator with no estimate yet (a new annotator):
#: better than chance, well short of an expert; the estimate replaces it once made.
DEFAULT_ACCURACY = 0.7
#: Overlapping answers (on items answered more than once) an annotator needs before the
#: estimate of their accuracy counts for as much as the default: the weight of
#: :data:`DEFAULT_ACCURACY` in :func:`annotator_accuracies`. Until then, an item that
#: annotator answered alone gets a second answer (see :func:`decide_items`).
CALIBRATION_ANSWERS = 5
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


def label_value(posterior: np.ndarray) -> float:
    """What a label drawn from ``posterior`` (its best class) is worth to training, in clean
    labels: ``max(0, 2·max(posterior) − 1)²`` (see the module docstring)."""
    return max(0.0, 2.0 * float(np.max(posterior)) - 1.0) ** 2


def _clip(accuracy: float, k: int) -> float:
    return min(max(float(accuracy), 1.0 / k), _MAX_ACCURACY)


def answer_gain(posterior: np.ndarray, accuracy: float) -> float:
    """Expected rise of :func:`label_value` from one more answer by an annotator of
    ``accuracy`` (one-coin), averaged over the answers the posterior predicts."""
    post = np.asarray(posterior, dtype=np.float64)
    k = post.shape[0]
    a = _clip(accuracy, k)
    like = np.full((k, k), (1.0 - a) / (k - 1))
    np.fill_diagonal(like, a)
    joint = post[:, None] * like  # (true k, answer j)
    p_answer = joint.sum(axis=0)
    # sum_j P(j) * max(0, 2 max_k P(k | j) - 1)^2 = sum_j max(0, 2 M_j - P(j))^2 / P(j)
    gap = np.maximum(0.0, 2.0 * joint.max(axis=0) - p_answer)
    after = float((gap**2 / np.maximum(p_answer, 1e-300)).sum())
    return after - label_value(post)


def new_item_value(accuracy: float, k: int) -> float:
    """What one answer by an annotator of ``accuracy`` is worth on a new item (a uniform
    prior over ``k`` classes): ``max(0, 2a − 1)²``, its :func:`answer_gain` from nothing."""
    return answer_gain(np.full(k, 1.0 / k), accuracy)


@dataclass(frozen=True)
class ItemDecision:
    """What an item needs: ``accept`` (with ``label``), ``more`` (another annotator) or
    ``review`` (an expert: the annotators are used up without a usable label)."""

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
        with one annotator and gets another while that answer is worth more on it than
        on a new item (:func:`answer_gain` of its posterior — :func:`label_posterior`
        from :func:`model_prior` with the annotators' estimated accuracies — against
        :func:`new_item_value`).
    annotators : int >= 1
        The overlap of the fixed policy.
    max_annotations : int >= 1
        Never more answers per item than this; an item that reaches it without a usable
        label goes to expert review.
    model_weight : float in [0, 1]
        Adaptive: the weight of the model in the prior (:func:`model_prior`).
    """

    policy: Literal["fixed", "adaptive"] = "adaptive"
    annotators: int = 1
    max_annotations: int = 5
    model_weight: float = 0.5

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {self.policy!r}")
        check_n(self.annotators, "annotators")
        check_n(self.max_annotations, "max_annotations")
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
        pool_accuracy: float = DEFAULT_ACCURACY,
    ) -> ItemDecision:
        """Accept, ask once more or send to review, by the adaptive rule.

        ``pool_accuracy`` is the mean accuracy of whoever answers next. The label is the
        posterior's best one; it must be more likely right than wrong and have been given
        by at least one annotator: the model alone never labels an item.
        """
        n = len(answers)
        if n == 0:
            return ItemDecision("more", None, 0.0, 0, "no answer yet")
        prior = model_prior(classes, *prediction, weight=self.model_weight)
        post = label_posterior(prior, answers, accuracies, classes)
        best = int(np.argmax(post))
        label, conf = list(classes)[best], float(post[best])
        usable = conf > 0.5 and label in list(answers)
        gain, new = answer_gain(post, pool_accuracy), new_item_value(pool_accuracy, len(classes))
        if n >= self.max_annotations:
            if usable:
                return ItemDecision("accept", label, conf, n, f"posterior {conf:.3f}")
            return ItemDecision("review", label, conf, n, f"posterior {conf:.3f} after {n} answers")
        if gain > new or not usable:
            why = (
                f"another answer adds {gain:.3f} of a label here, {new:.3f} on a new item"
                if gain > new
                else f"posterior {conf:.3f}"
                + ("" if label in list(answers) else f", likeliest {label!r} given by nobody")
            )
            return ItemDecision("more", label, conf, n, why)
        return ItemDecision(
            "accept",
            label,
            conf,
            n,
            f"posterior {conf:.3f}; another answer adds {gain:.3f} here, {new:.3f} on a new item",
        )


def relabel_or_new(
    new_values: Sequence[float],
    accepted_values: Mapping[str, float],
    n_total: int,
    *,
    max_share: float = 0.5,
) -> tuple[int, list[str]]:
    """How many new items to take, and which accepted items get another answer instead.

    Both sides are on one scale, what one answer buys in clean labels: on a new item
    :func:`new_item_value`, on an accepted one its :func:`answer_gain` (from
    :func:`accepted_gain`: its answers, the annotators' current accuracies and the
    current model). The ``n_total`` highest values win, with at most ``max_share`` of
    the batch spent on relabels so that every cycle still brings new items.

    Parameters
    ----------
    new_values : sequence of float
        The values of the new picks, in the strategy's order (best first); the first
        ``n_total`` are the candidates.
    accepted_values : mapping
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
    ranked = sorted(accepted_values.items(), key=lambda kv: (-kv[1], str(kv[0])))[:cap]
    new = [float(v) for v in list(new_values)[:n_total]]
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
    prior_answers: int = CALIBRATION_ANSWERS,
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


def pool_accuracy(accuracies: Mapping[Hashable, float]) -> float:
    """The expected accuracy of whoever answers next: the mean over the annotators known
    (:data:`DEFAULT_ACCURACY` when none is)."""
    values = [float(v) for v in accuracies.values() if np.isfinite(v)]
    return float(np.mean(values)) if values else DEFAULT_ACCURACY


def decide_items(
    policy: OverlapPolicy,
    classes: Sequence[Hashable],
    answers: Mapping[Hashable, Sequence[tuple[Hashable, Hashable]]],
    accuracies: Mapping[Hashable, float],
    predictions: Mapping[Hashable, tuple[Hashable | None, float | None]],
    calibrated: Mapping[Hashable, int] | None = None,
) -> dict[Hashable, ItemDecision]:
    """:meth:`OverlapPolicy.decide` for every item of ``answers``.

    An accuracy is only learned from items answered more than once: an item answered
    by a single annotator who has fewer than :data:`CALIBRATION_ANSWERS` such answers
    (``calibrated``: annotator → overlapping answers; None skips the rule) gets a second
    answer, whatever its posterior. Without it, a spammer whose answers are all alone
    would never be found out.

    Parameters
    ----------
    answers : mapping
        Item → its answers as (annotator, label) pairs.
    accuracies : mapping
        Annotator → accuracy (:func:`annotator_accuracies`); a missing one gets
        :data:`DEFAULT_ACCURACY`. Their mean (:func:`pool_accuracy`) is the accuracy of
        the next answer.
    predictions : mapping
        Item → (model label, its probability) at dispatch; a missing item has none.
    """
    nxt = pool_accuracy(accuracies)
    out = {}
    for item, pairs in answers.items():
        labels = [label for _, label in pairs]
        acc = [accuracies.get(who, DEFAULT_ACCURACY) for who, _ in pairs]
        if calibrated is not None and len(pairs) == 1 and policy.max_annotations > 1:
            who = pairs[0][0]
            if calibrated.get(who, 0) < CALIBRATION_ANSWERS:
                out[item] = ItemDecision(
                    "more",
                    labels[0],
                    float("nan"),
                    1,
                    f"calibrating annotator {who}: {calibrated.get(who, 0)} of "
                    f"{CALIBRATION_ANSWERS} answers checked against another",
                )
                continue
        out[item] = policy.decide(
            classes,
            labels,
            acc,
            prediction=predictions.get(item, (None, None)),
            pool_accuracy=nxt,
        )
    return out


def accepted_gain(
    classes: Sequence[Hashable],
    current: Mapping[Hashable, Hashable],
    answers: Mapping[Hashable, Sequence[tuple[Hashable, Hashable]]],
    accuracies: Mapping[Hashable, float],
    predictions: Mapping[Hashable, tuple[Hashable | None, float | None]],
    *,
    model_weight: float = 0.5,
    max_annotations: int = 5,
) -> dict[Hashable, float]:
    """What one more answer on each accepted label would buy, for :func:`relabel_or_new`.

    The expected :func:`label_value` after the answer minus the value of the label
    trained on now (``(2·posterior(label) − 1)²``, 0 below one half), with the posterior from
    the item's answers, the annotators' *current* accuracies (a spammer found out since)
    and the *current* model's guess (which may have learned otherwise). Items with
    ``max_annotations`` answers already, or without answers (an expert's label), are
    left out: they cannot be asked again.

    Parameters
    ----------
    current : mapping
        Item → its accepted label.
    answers : mapping
        Item → its answers as (annotator, label) pairs.
    accuracies, predictions
        As in :func:`decide_items`.
    """
    nxt = pool_accuracy(accuracies)
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
        now = max(0.0, 2.0 * float(post[list(classes).index(label)]) - 1.0) ** 2
        out[item] = answer_gain(post, nxt) + label_value(post) - now
    return out
