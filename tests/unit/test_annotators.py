"""loopwise.annotators: the simulated annotators' profile and answers."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from loopwise.annotators import SKIPPED, AnnotatorProfile, draw_answers


def test_answers_follow_accuracy_confusion_and_skip_rate_and_are_seeded():
    profiles = [
        AnnotatorProfile(1.0),
        AnnotatorProfile(0.0, {"a": "c"}),
        AnnotatorProfile(0.0),
        AnnotatorProfile(1.0, skip_rate=0.5, name="sk"),
    ]
    who = np.repeat([0, 1, 2, 3], 2000)
    truth = np.zeros_like(who)  # every item is "a"
    out = draw_answers(profiles, who, truth, ["a", "b", "c"], random_state=0)
    assert (out[who == 0] == 0).all()  # always right
    assert (out[who == 1] == 2).all()  # always its confusion
    wrong = out[who == 2]
    assert set(wrong) == {1, 2} and abs((wrong == 1).mean() - 0.5) < 0.05  # uniform wrong
    skipped = out[who == 3] == SKIPPED
    assert abs(skipped.mean() - 0.5) < 0.05 and (out[who == 3][~skipped] == 0).all()
    again = draw_answers(profiles, who, truth, ["a", "b", "c"], random_state=0)
    np.testing.assert_array_equal(out, again)
    # one class: nothing to get wrong
    assert (draw_answers([AnnotatorProfile(0.0)], [0, 0], [0, 0], ["a"], 0) == 0).all()


def test_profile_and_confusion_are_validated():
    with pytest.raises(ValidationError, match="less than or equal to 1"):
        AnnotatorProfile(1.5)
    with pytest.raises(ValidationError, match="name"):
        AnnotatorProfile(0.9, name="two words")
    # a label outside the set: ignored (the wrong answer is drawn uniformly instead)
    got = draw_answers([AnnotatorProfile(0.0, {"a": "z"})], [0] * 50, [0] * 50, ["a", "b"], 0)
    assert (got == 1).all()


def test_a_confusion_of_another_label_set_is_ignored_and_a_self_confusion_refused():
    import pandas as pd

    from loopwise.annotators import _confusion_codes

    classes = pd.Index(["a", "b", "c"])
    shared = AnnotatorProfile(0.5, {"ENTY": "DESC", "a": "c", "b": "ZZZ"})
    assert _confusion_codes([shared], classes).tolist() == [[2, -1, -1]]
    with pytest.raises(ValueError, match="maps 'a' to itself"):
        _confusion_codes([AnnotatorProfile(0.5, {"a": "a"})], classes)
    assert np.all(_confusion_codes([AnnotatorProfile(0.5)], classes) == -1)
