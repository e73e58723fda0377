"""The champion gate (loopwise/gating.py): paired tests on constructed correctness vectors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

from loopwise.gating import accuracy_rule, discordant_counts, gate


def _pair(n: int, champion_only: int, challenger_only: int, both_wrong: int = 10):
    """Correctness vectors with the given discordant counts (the rest right for both)."""
    champ = np.ones(n, dtype=bool)
    chall = np.ones(n, dtype=bool)
    i = 0
    for count, (c, h) in (
        (champion_only, (True, False)),
        (challenger_only, (False, True)),
        (both_wrong, (False, False)),
    ):
        champ[i : i + count], chall[i : i + count] = c, h
        i += count
    return champ, chall


@pytest.mark.parametrize("test", ["mcnemar", "bootstrap"])
def test_two_discordant_rows_for_the_new_model_are_noise(test):
    champ, chall = _pair(100, 0, 2)
    g = gate(champ, chall, test=test)
    assert g["promote"] is False
    assert (g["champion_only"], g["challenger_only"]) == (0, 2)
    assert g["accuracy_delta"] == pytest.approx(0.02)
    assert g["p_value"] > 0.05
    assert "not evidence" in g["reason"]


@pytest.mark.parametrize("test", ["mcnemar", "bootstrap"])
def test_a_real_improvement_promotes(test):
    champ, chall = _pair(200, 2, 20)
    g = gate(champ, chall, test=test)
    assert g["promote"] is True and g["p_value"] < 0.05
    assert g["accuracy_delta"] == pytest.approx(18 / 200)
    low, high = g["interval"]
    assert 0 < low < g["accuracy_delta"] < high
    assert g["interval_level"] == pytest.approx(0.9)
    assert "evidenced" in g["reason"]


@pytest.mark.parametrize(("b", "c"), [(0, 2), (3, 9), (5, 5), (7, 1), (0, 5), (0, 0)])
def test_the_mcnemar_p_value_is_the_exact_one_sided_binomial_on_the_discordant_rows(b, c):
    champ, chall = _pair(80, b, c)
    g = gate(champ, chall, test="mcnemar")
    expected = 1.0 if b + c == 0 else binomtest(c, b + c, 0.5, alternative="greater").pvalue
    assert g["p_value"] == pytest.approx(expected)
    assert g["promote"] is bool(expected < 0.05)


def test_five_of_five_discordant_rows_is_the_least_that_promotes_at_five_percent():
    assert gate(*_pair(100, 0, 4))["promote"] is False  # p = 1/16
    assert gate(*_pair(100, 0, 5))["promote"] is True  # p = 1/32
    assert gate(*_pair(100, 0, 5), alpha=0.01)["promote"] is False


def test_a_worse_model_is_never_promoted_and_the_interval_says_so():
    g = gate(*_pair(200, 20, 2), test="bootstrap")
    assert g["promote"] is False and g["p_value"] > 0.99
    assert g["interval"][1] < 0


def test_the_bootstrap_is_seeded():
    champ, chall = _pair(150, 4, 10)
    a = gate(champ, chall, test="bootstrap", random_state=3)
    assert a == gate(champ, chall, test="bootstrap", random_state=3)
    b = gate(champ, chall, test="bootstrap", random_state=4)
    assert (a["p_value"], a["interval"]) != (b["p_value"], b["interval"])


def test_discordant_counts():
    assert discordant_counts([True, True, False, False], [True, False, True, False]) == (1, 1)


@pytest.mark.parametrize(
    ("champ", "chall", "kwargs", "error", "match"),
    [
        ([True, False], [True], {}, ValueError, "same holdout rows"),
        ([], [], {}, ValueError, "empty"),
        ([1, 0], [1, 1], {}, TypeError, "booleans"),
        ([[True]], [[True]], {}, ValueError, "1-D"),
        ([True], [True], {"test": "ttest"}, ValueError, "mcnemar, bootstrap"),
        ([True], [True], {"alpha": 0.5}, ValueError, r"\(0, 0.5\)"),
        ([True], [True], {"alpha": 0}, ValueError, "alpha"),
        ([True], [True], {"n_resamples": 10}, ValueError, "at least 100"),
        ([True], [True], {"n_resamples": 1e4}, TypeError, "integer"),
    ],
)
def test_bad_inputs_are_refused_with_what_was_given(champ, chall, kwargs, error, match):
    with pytest.raises(error, match=match):
        gate(champ, chall, **kwargs)


def test_the_accuracy_rule_is_the_old_promote_on_any_gain():
    assert accuracy_rule(0.81, 0.80)["promote"] is True
    assert accuracy_rule(0.80, 0.80)["promote"] is False
    first = accuracy_rule(0.5, None)
    assert first["promote"] is True and first["accuracy_delta"] is None
    assert accuracy_rule(0.81, 0.80)["p_value"] is None
    with pytest.raises(ValueError, match="finite"):
        accuracy_rule(float("nan"), 0.8)
