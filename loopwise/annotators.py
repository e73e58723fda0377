"""Simulated annotators: how one behaves, and the answers a group of them gives.

:class:`AnnotatorProfile` describes one annotator (accuracy, a systematic confusion,
skip rate, latency, a name); :func:`draw_answers` draws their answers, vectorised and
seeded. Both the adaptive-overlap simulation (:mod:`loopwise.consensus`) and the
annotators of the dev stack (``devstack/annotators.py``, who post their answers to
Label Studio) use them.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass
from sklearn.utils import check_random_state

__all__ = ["SKIPPED", "AnnotatorProfile", "draw_answers"]

#: The code :func:`draw_answers` gives a skipped task.
SKIPPED = -1


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class AnnotatorProfile:
    """A simulated annotator; the fields are validated on construction.

    Parameters
    ----------
    accuracy : float in [0, 1]
        Probability of giving the true label.
    confusion : mapping, optional
        ``true label → wrong label`` given when the annotator errs on an item of that
        class (a systematic confusion). Classes not in the mapping get a uniformly drawn
        wrong label.
    skip_rate : float in [0, 1], default 0
        Probability of skipping a task instead of answering.
    latency : float > 0, default 5
        Mean seconds per task (the dev stack records it as the annotation's lead time).
    name : str, optional
        Letters, digits, ``_``, ``.`` and ``-`` (at most 40): the Label Studio user name
        of a dev-stack annotator. The simulations do not need one.
    """

    accuracy: float = Field(ge=0.0, le=1.0)
    confusion: dict[Hashable, Hashable] = Field(default_factory=dict)
    skip_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    latency: float = Field(default=5.0, gt=0.0)
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,40}$")


def _confusion_codes(profiles: Sequence[AnnotatorProfile], classes: pd.Index) -> np.ndarray:
    """``out[a, k]``: the class code annotator ``a`` gives for true class ``k`` when wrong, or -1."""
    out = np.full((len(profiles), len(classes)), -1, dtype=np.intp)
    for a, p in enumerate(profiles):
        for true, wrong in p.confusion.items():
            k, w = classes.get_indexer([true, wrong])
            if k < 0 or w < 0:
                continue  # a profile file shared by campaigns: a pair of another label set
            if k == w:
                raise ValueError(
                    f"annotator_profiles[{a}].confusion maps {true!r} to itself; a confusion "
                    "names the wrong label given for a true one"
                )
            out[a, k] = w
    return out


def draw_answers(
    profiles: Sequence[AnnotatorProfile],
    who: npt.ArrayLike,
    truth: npt.ArrayLike,
    classes: Sequence[Hashable] | pd.Index,
    random_state: int | np.random.RandomState | None = None,
) -> np.ndarray:
    """The answers the annotators ``who`` give to items of true class ``truth``.

    An annotator gives the true class with probability ``accuracy``, else its
    ``confusion`` class for that true class, else a wrong class drawn uniformly; then,
    with probability ``skip_rate``, it skips the task instead.

    Parameters
    ----------
    profiles : sequence of AnnotatorProfile
    who : array-like of int
        Positions in ``profiles``, one per answer, any shape.
    truth : array-like of int
        The true class code (position in ``classes``) of each answer; broadcast
        against ``who``.
    classes : sequence or Index
        The label set. A ``confusion`` pair naming a label outside it is ignored (one
        profile file serves campaigns with different label sets).
    random_state : int, RandomState instance or None
        Seeds the answers (drawn in this order: right or wrong, the uniform wrong class,
        then the skips if any annotator skips).

    Returns
    -------
    answers : ndarray of int, shape of ``who``
        Class codes; ``-1`` for a skipped task.

    Raises
    ------
    ValueError
        If a ``confusion`` maps a label to itself.
    """
    classes = pd.Index(classes)
    who = np.asarray(who, dtype=np.intp)
    truth = np.broadcast_to(np.asarray(truth, dtype=np.intp), who.shape)
    biased = _confusion_codes(profiles, classes)[who, truth]
    rng = check_random_state(random_state)
    n_classes = len(classes)
    accuracy = np.array([p.accuracy for p in profiles])
    correct = rng.random_sample(who.shape) < accuracy[who]
    if n_classes > 1:
        uniform = (truth + rng.randint(1, n_classes, size=who.shape)) % n_classes
    else:  # nothing to get wrong
        uniform = truth
    answers = np.where(correct, truth, np.where(biased >= 0, biased, uniform))
    skip_rate = np.array([p.skip_rate for p in profiles])
    if skip_rate.any():
        answers = np.where(rng.random_sample(who.shape) < skip_rate[who], SKIPPED, answers)
    return answers
