"""Drift: PSI and KS between the labeled snapshot and the pool."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from loopwise.drift import DriftReport, drift_report, psi


def normal(n, loc=0.0, scale=1.0, seed=0):
    return np.random.RandomState(seed).normal(loc, scale, n)


# --------------------------------------------------------------------------- psi


def test_psi_is_near_zero_for_the_same_distribution():
    assert psi(normal(5000, seed=0), normal(5000, seed=1)) < 0.02
    x = normal(1000)
    assert psi(x, x) == pytest.approx(0.0, abs=1e-12)


def test_psi_exceeds_the_threshold_for_a_shifted_distribution():
    ref = normal(5000, seed=0)
    assert psi(ref, normal(5000, loc=0.6, seed=1)) > 0.2
    assert psi(ref, normal(5000, scale=2.0, seed=1)) > 0.2
    # a larger shift, a larger index
    assert psi(ref, normal(5000, loc=1.0, seed=1)) > psi(ref, normal(5000, loc=0.6, seed=1))


def test_psi_counts_values_outside_the_reference_range():
    ref = np.arange(100.0)
    assert psi(ref, np.full(100, 1000.0)) > 1.0
    assert psi(ref, np.full(100, -1000.0)) > 1.0


def test_psi_of_a_constant_column():
    assert psi(np.full(100, 3.0), np.full(50, 3.0)) == 0.0
    assert psi(np.full(100, 3.0), np.full(50, 4.0)) > 1.0
    assert psi(np.full(100, 3.0), np.full(50, 2.0)) > 1.0


def test_psi_of_a_binary_column_uses_one_bin_per_value():
    ref = np.r_[np.zeros(700), np.ones(300)]
    assert psi(ref, np.r_[np.zeros(70), np.ones(30)]) == pytest.approx(0.0, abs=1e-12)
    # 0.7/0.3 → 0.3/0.7: (0.4) ln(0.7/0.3) * 2
    expected = 2 * 0.4 * np.log(0.7 / 0.3)
    assert psi(ref, np.r_[np.zeros(30), np.ones(70)]) == pytest.approx(expected, rel=1e-6)


def test_psi_drops_nan_and_infinities():
    ref, cur = normal(2000, seed=0), normal(2000, loc=0.3, seed=1)
    with_nan = np.r_[cur, [np.nan] * 500, [np.inf]]
    assert psi(np.r_[ref, [np.nan] * 10], with_nan) == pytest.approx(psi(ref, cur))


@pytest.mark.parametrize(
    "expected, actual, kw, match",
    [
        ([np.nan, np.nan], [1.0, 2.0], {}, "expected has no finite value"),
        ([1.0, 2.0], [], {}, "actual has no finite value"),
        ([1.0, 2.0], [1.0], {"bins": 1}, "bins"),
        ([[1.0, 2.0]], [1.0], {}, "1-D"),
    ],
)
def test_psi_rejects_unusable_input(expected, actual, kw, match):
    with pytest.raises(ValueError, match=match):
        psi(expected, actual, **kw)


# --------------------------------------------------------------------------- drift_report


def tables(n=4000, shift=0.0, seed=0):
    rng = np.random.RandomState(seed)
    ref = pd.DataFrame(
        {
            "stable": rng.normal(size=n),
            "moving": rng.normal(size=n),
            "city": rng.choice(["a", "b"], size=n),
            "flag": rng.rand(n) < 0.3,
        }
    )
    cur = pd.DataFrame(
        {
            "stable": rng.normal(size=n),
            "moving": rng.normal(loc=shift, size=n),
            "city": rng.choice(["a", "b"], size=n),
            "flag": rng.rand(n) < 0.3,
        }
    )
    return ref, cur


def test_report_flags_the_shifted_feature_only():
    ref, cur = tables(shift=0.8, seed=1)
    r = drift_report(ref, cur)
    assert isinstance(r, DriftReport)
    assert r.drifted and r.drifted_features == ["moving"]
    by_name = {f["name"]: f for f in r.features}
    assert list(by_name) == ["stable", "moving", "flag"]
    assert by_name["moving"]["flagged_by"] == "psi" and by_name["moving"]["psi"] > 0.2
    assert by_name["moving"]["ks_pvalue"] < 1e-10 and by_name["moving"]["ks_statistic"] > 0.2
    assert not by_name["stable"]["drifted"] and by_name["stable"]["ks_pvalue"] > 0.01
    assert r.max_psi == by_name["moving"]["psi"]


def test_report_without_drift():
    r = drift_report(*tables(shift=0.0))
    assert not r.drifted and r.drifted_features == []
    assert r.max_psi < 0.05


def test_ks_lowers_the_psi_bar_to_half_the_threshold():
    # a shift whose PSI sits between threshold / 2 and threshold, clearly seen by KS
    ref = pd.DataFrame({"x": normal(20_000, seed=0)})
    cur = pd.DataFrame({"x": normal(20_000, loc=0.35, seed=1)})
    f = drift_report(ref, cur).features[0]
    assert 0.1 < f["psi"] < 0.2 and f["ks_pvalue"] < 0.01
    assert f["drifted"] and f["flagged_by"] == "ks+psi"
    # KS alone does not flag: significant on many rows, but a PSI far below the bar
    cur = pd.DataFrame({"x": normal(20_000, loc=0.08, seed=1)})
    f = drift_report(ref, cur).features[0]
    assert f["ks_pvalue"] < 0.01 and f["psi"] < 0.1
    assert not f["drifted"] and f["flagged_by"] is None


def test_non_numeric_and_current_only_columns_are_skipped_and_listed():
    ref, cur = tables()
    cur["new"] = 1.0
    r = drift_report(ref, cur)
    skipped = {s["name"]: s["reason"] for s in r.skipped}
    assert skipped.keys() == {"city", "new"}
    assert "not numeric" in skipped["city"] and skipped["new"] == "only in current"
    assert "city" not in [f["name"] for f in r.features]


def test_constant_and_nan_columns():
    n = 500
    ref = pd.DataFrame({"const": np.ones(n), "gappy": normal(n), "empty": np.full(n, np.nan)})
    cur = pd.DataFrame(
        {"const": np.ones(n), "gappy": normal(n, seed=1), "empty": np.full(n, np.nan)}
    )
    cur.loc[::3, "gappy"] = np.nan
    r = drift_report(ref, cur)
    by_name = {f["name"]: f for f in r.features}
    assert by_name["const"]["psi"] == 0.0 and not by_name["const"]["drifted"]
    assert by_name["gappy"]["psi"] == pytest.approx(
        psi(ref["gappy"], cur["gappy"].dropna()), abs=1e-12
    )
    assert r.skipped == [{"name": "empty", "reason": "no finite value in reference"}]


def test_a_constant_reference_that_moved_is_drift():
    r = drift_report(pd.DataFrame({"c": np.ones(200)}), pd.DataFrame({"c": np.full(200, 2.0)}))
    assert r.drifted_features == ["c"]


def test_arrays_with_and_without_feature_names():
    ref = np.column_stack([normal(1000, seed=0), normal(1000, seed=1)])
    cur = np.column_stack([normal(1000, seed=2), normal(1000, loc=1.0, seed=3)])
    assert drift_report(ref, cur).drifted_features == ["x1"]
    assert drift_report(ref, cur, feature_names=["age", "income"]).drifted_features == ["income"]
    with pytest.raises(ValueError, match="2 reference columns"):
        drift_report(ref, cur, feature_names=["age"])
    with pytest.raises(ValueError, match="3 columns"):
        drift_report(ref, np.column_stack([cur, cur[:, 0]]))


def test_feature_names_select_dataframe_columns_and_missing_ones_are_errors():
    ref, cur = tables(shift=0.8)
    r = drift_report(ref, cur, feature_names=["stable"])
    assert [f["name"] for f in r.features] == ["stable"] and not r.drifted
    with pytest.raises(ValueError, match="lacks the reference columns"):
        drift_report(ref, cur.drop(columns="moving"))


def test_nothing_to_compare_is_reported_not_raised():
    ref, cur = tables(shift=0.8)
    r = drift_report(ref, cur, feature_names=["city"])
    assert (r.features, r.max_psi, r.drifted, r.drifted_features) == ([], None, False, [])
    assert [s["name"] for s in r.skipped] == ["city"]
    json.dumps(r.to_dict(), allow_nan=False)
    # an exhausted pool: nothing left to compare with
    r = drift_report(ref, cur.iloc[:0])
    assert not r.drifted and r.max_psi is None
    reasons = {s["name"]: s["reason"] for s in r.skipped}
    assert reasons["stable"] == reasons["moving"] == "no finite value in current"
    assert reasons["city"].startswith("not numeric")


def test_subsampling_is_seeded():
    ref, cur = tables(n=3000, shift=0.3)
    a = drift_report(ref, cur, max_rows=1000, random_state=1)
    b = drift_report(ref, cur, max_rows=1000, random_state=1)
    c = drift_report(ref, cur, max_rows=1000, random_state=2)
    assert a.params["n_reference"] == a.params["n_current"] == 1000
    assert a.to_dict() == b.to_dict()
    assert a.features[1]["psi"] != c.features[1]["psi"]
    assert drift_report(ref, cur).params["n_reference"] == 3000


@pytest.mark.parametrize(
    "kw", [{"psi_threshold": 0}, {"ks_alpha": 1.5}, {"max_rows": 0}, {"bins": 1}]
)
def test_report_rejects_bad_parameters(kw):
    ref, cur = tables(n=100)
    with pytest.raises(ValueError, match=next(iter(kw))):
        drift_report(ref, cur, **kw)


def test_report_to_dict_is_strict_json():
    ref, cur = tables(shift=0.8)
    out = json.loads(json.dumps(drift_report(ref, cur).to_dict(), allow_nan=False))
    assert out["drifted"] is True and out["drifted_features"] == ["moving"]
    assert {"name", "psi", "ks_statistic", "ks_pvalue", "drifted"} <= out["features"][0].keys()
    assert out["params"]["psi_threshold"] == 0.2


def test_a_small_reference_gets_fewer_bins_and_no_false_alarm():
    # 20 labeled rows against a pool from the same distribution: 10 bins would read drift
    ref = pd.DataFrame({"x": normal(20, seed=0)})
    cur = pd.DataFrame({"x": normal(5000, seed=4)})
    assert drift_report(ref, cur, min_rows_per_bin=1).features[0]["psi"] > 0.2
    f = drift_report(ref, cur).features[0]
    assert f["bins"] == 2 and not f["drifted"]
    # a real shift is still seen on so few rows
    shifted = pd.DataFrame({"x": normal(5000, loc=1.5, seed=4)})
    assert drift_report(ref, shifted).drifted
    assert drift_report(pd.DataFrame({"x": normal(5000)}), cur).features[0]["bins"] == 10
