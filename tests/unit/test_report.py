"""The campaign report's numbers (loopwise/report.py) and the control share (loopwise/{items,features,model,scoring,batch}.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import BaseModel

from loopwise import report as rp
from loopwise import strategies
from loopwise.batch import control_count, draw_control
from loopwise.config import CampaignConfig
from loopwise.plots import report_figures


def _cfg(**extra) -> CampaignConfig:
    return CampaignConfig(
        name="rep",
        data={"source": "x.csv", "label_column": "y"},
        labels=["a", "b", "c"],
        budget={"cost_per_annotation": 0.5},
        **extra,
    )


@pytest.mark.parametrize(
    ("n", "fraction", "expected"),
    [(50, 0.1, 5), (20, 0.1, 2), (5, 0.1, 1), (1, 0.1, 0), (2, 0.5, 1), (30, 0.0, 0), (3, 0.9, 2)],
)
def test_control_count_keeps_at_least_one_of_each_kind(n, fraction, expected):
    assert control_count(n, fraction) == expected


def test_draw_control_is_uniform_reproducible_and_avoids_the_picked_rows():
    picked = list(range(0, 1000, 2))
    a = draw_control(1000, picked, 50, seed=3)
    assert a == draw_control(1000, picked, 50, seed=3) != draw_control(1000, picked, 50, seed=4)
    assert len(set(a)) == 50 and not set(a) & set(picked)
    # uniform: over many draws every free row comes up about equally often
    counts = np.zeros(1000)
    for s in range(400):
        counts[draw_control(1000, picked, 50, seed=s)] += 1
    free = counts[1::2]
    assert counts[::2].sum() == 0 and free.min() > 0
    assert free.std() / free.mean() < 0.35  # Poisson(20) spread: about 0.22
    assert draw_control(3, [0, 1, 2], 5, seed=0) == []


def test_control_estimates_compare_the_guess_at_selection_with_the_consensus_label():
    batches = {
        0: [{"item_id": "c0", "control": True, "prediction_label": None}],  # cold start: no model
        1: [
            {"item_id": "p1", "control": False, "prediction_label": "a"},
            {"item_id": "c1", "control": True, "prediction_label": "a"},
            {"item_id": "c2", "control": True, "prediction_label": "b"},
            {"item_id": "c3", "control": True, "prediction_label": "c"},
            {"item_id": "c4", "control": True, "prediction_label": "c"},  # not labeled yet
        ],
    }
    accepted = {"c0": "a", "p1": "b", "c1": "a", "c2": "c", "c3": "c"}
    (est,) = rp.control_estimates(batches, accepted)
    assert (est["cycle"], est["n"], est["correct"]) == (1, 3, 2)
    assert est["accuracy"] == pytest.approx(2 / 3)
    assert 0 < est["ci_low"] < 2 / 3 < est["ci_high"] < 1
    pooled = rp.pooled_control_estimate([est, {**est, "cycle": 2, "n": 7, "correct": 7}])
    assert pooled["n"] == 10 and pooled["accuracy"] == pytest.approx(0.9)


def _curve(a, b, c, ns, key="metric"):
    return [{"cycle": i + 1, "labels": n, key: a - b * n**-c} for i, n in enumerate(ns)]


def test_random_equivalent_compares_where_both_were_measured():
    # Campaign: 0.9 - 1.2 n^-0.5; random: 0.9 - 1.2 (n/2)^-0.5, i.e. it needs twice the labels.
    history = _curve(0.9, 1.2, 0.5, [40, 80, 160, 320])
    rand = [{"labels": n, "accuracy": 0.9 - 1.2 * (n / 2) ** -0.5} for n in (4, 8, 16, 32)]
    out = rp.random_equivalent(history, rand)
    assert out["control_labels"] == 32
    assert out["random_accuracy"] == pytest.approx(0.9 - 1.2 * 16**-0.5, abs=1e-3)
    assert out["campaign_labels_for_it"] == pytest.approx(16, rel=0.02)
    assert out["ratio"] == pytest.approx(0.5, rel=0.02)
    assert out["labels"] == pytest.approx(640, rel=0.02) and not out["beyond_pool"]
    capped = rp.random_equivalent(history, rand, pool_size=500)
    assert capped["labels"] == 500 and capped["beyond_pool"]


def test_random_equivalent_claims_nothing_when_random_does_as_well_or_data_is_short():
    history = _curve(0.9, 1.2, 0.5, [40, 80, 160, 320])
    same = [{"labels": n, "accuracy": 0.9 - 1.2 * n**-0.5} for n in (4, 8, 16, 32)]
    out = rp.random_equivalent(history, same)
    assert out["ratio"] == pytest.approx(1.0, rel=0.02) or out["ratio"] > 1.0
    better = [{"labels": n, "accuracy": 0.9 - 1.2 * (2 * n) ** -0.5} for n in (4, 8, 16, 32)]
    assert rp.random_equivalent(history, better)["labels"] is None
    assert rp.random_equivalent(history[:2], same) is None
    assert rp.random_equivalent(history, same[:2]) is None


def test_random_curve_trains_on_control_labels_only_and_grows_with_them():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 4))
    y = np.array(["a", "b", "c"])[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0.8).astype(int)]
    df = pd.DataFrame(X, columns=list("pqrs")).assign(y=y, item_id=[f"i{i}" for i in range(600)])
    pool, holdout = df.iloc[:450], df.iloc[450:]
    cfg = _cfg()
    batches = {
        k: [{"item_id": f"i{30 * k + j}", "control": j < 10} for j in range(30)] for k in range(5)
    }
    labels = [
        {"item_id": f"i{30 * k + j}", "label": y[30 * k + j], "cycle": k}
        for k in range(5)
        for j in range(30)
    ]
    # Wrong labels on the non-control items: a model that used them would be poor.
    for r in labels:
        if int(r["item_id"][1:]) % 30 >= 10:
            r["label"] = "a"
    pts = rp.random_curve(cfg, pool, holdout, batches, labels, cycles=[1, 2, 3, 4, 5])
    assert [p["labels"] for p in pts] == [10, 20, 30, 40, 50]
    assert pts[-1]["accuracy"] > 0.7  # learned from the control labels alone
    assert pts[-1]["accuracy"] >= pts[0]["accuracy"]


def test_build_report_counts_from_the_records_and_renders_a_self_contained_page():
    cfg = _cfg()
    history = [
        {
            "cycle": 1,
            "labels": 10,
            "annotations": 12,
            "cost": 6.0,
            "metric": 0.5,
            "macro_f1": 0.4,
            "kappa": None,
        },
        {
            "cycle": 2,
            "labels": 20,
            "annotations": 23,
            "cost": 11.5,
            "metric": 0.7,
            "macro_f1": 0.6,
            "kappa": 0.8,
        },
    ]
    labels = [{"item_id": f"i{i}", "label": "a", "cycle": 0} for i in range(20)]
    annotations = [
        {
            "annotation_id": i,
            "item_id": f"i{i % 20}",
            "annotator": "ann" if i % 2 else "bob",
            "label": "a" if i % 5 else "b",
            "status": "accepted",
        }
        for i in range(23)
    ] + [
        {
            "annotation_id": 99,
            "item_id": "i3",
            "annotator": "ann",
            "label": None,
            "status": "skipped",
        }
    ]
    decisions = {
        1: {
            "stop": False,
            "rule": None,
            "reason": "go <on>",
            "drift": {
                "max_psi": 0.1,
                "drifted": False,
                "features": [{"name": "f1", "psi": 0.1}, {"name": "f2", "psi": 0.05}],
                "drifted_features": [],
            },
        },
        2: {"stop": True, "rule": "label_budget", "reason": "budget <script>alert(1)</script>"},
    }
    history.append(
        {
            "cycle": 3,
            "labels": 30,
            "annotations": 33,
            "cost": 16.5,
            "metric": 0.8,
            "macro_f1": 0.7,
            "kappa": 0.9,
        }
    )
    labels += [{"item_id": f"i{i}", "label": "a", "cycle": 2} for i in range(20, 30)]
    annotations += [
        {
            "annotation_id": 100 + i,
            "item_id": f"i{20 + i}",
            "annotator": "cyd",
            "label": "a",
            "status": "accepted",
        }
        for i in range(10)
    ]
    pts = [
        {"cycle": k, "labels": n, "accuracy": acc}
        for k, n, acc in ((2, 2, 0.05), (3, 4, 0.1), (4, 6, 0.15))
    ]
    r = rp.build_report(
        cfg,
        history=history,
        batches={},
        labels=labels,
        annotations=annotations,
        decisions=decisions,
        random_points=pts,
        quality={"ann": 0.9},
        stopped=True,
        pool_size=10_000,
        annotator_names={"ann": "Ann Lee", "zed": "nobody here"},
    )
    assert (r["labels"], r["annotations"], r["spent"]) == (30, 33, 16.5)
    # the report names the strategy that chose the batches, with its one-line explanation
    assert r["strategy"]["name"] == cfg.strategy.name
    assert r["strategy"]["summary"] == strategies.describe(cfg.strategy.name) != ""
    assert r["strategy"]["default"] is (cfg.strategy.name == strategies.DEFAULT)
    assert r["cost_per_label"] == pytest.approx(16.5 / 30)
    assert r["metric"] == 0.8 and r["metric_labels"] == 30
    need = r["random_needed"]
    assert 0 < need["ratio"] < 1  # the campaign beat random where both were measured
    assert need["labels"] == pytest.approx(30 / need["ratio"])
    assert r["saved_labels"] == pytest.approx(need["labels"] - 30)
    assert r["saved_money"] == pytest.approx(r["saved_labels"] * 16.5 / 30)
    ann = {a["annotator"]: a for a in r["annotators"]}
    assert ann["ann"]["submitted"] == 11 and ann["ann"]["skipped"] == 1
    assert ann["bob"]["submitted"] == 12 and ann["ann"]["estimated_accuracy"] == 0.9
    agree_bob = sum(1 for i in range(0, 23, 2) if i % 5) / 12
    assert ann["bob"]["agreement"] == pytest.approx(agree_bob)
    assert ann["ann"]["name"] == "Ann Lee" and ann["bob"]["name"] is None and "zed" not in ann
    assert r["drift"] == [
        {
            "cycle": 1,
            "drifted": False,
            "max_psi": 0.1,
            "worst_feature": "f1",
            "drifted_features": [],
        }
    ]
    page = rp.render_html(r, report_figures(r), {"MLflow": "http://x/#/runs/1"})
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert page.count("data:image/png;base64,") == 2
    assert "16.50" in page and "label_budget" in page and "http://x/#/runs/1" in page
    assert "Ann Lee (#ann)" in page and "<td>#bob</td>" in page
    assert f"{r['saved_money']:,.2f}" in page
    assert f"Batches chosen by <b>{cfg.strategy.name}</b>" in page


def test_random_curve_with_one_class_seen_predicts_that_class():
    df = pd.DataFrame(
        {"p": range(40), "y": ["a"] * 30 + ["b"] * 10, "item_id": [f"i{i}" for i in range(40)]}
    )
    pool, holdout = df.iloc[:20], df.iloc[20:]  # holdout: 10 a, 10 b
    batches = {0: [{"item_id": "i0", "control": True}, {"item_id": "i1", "control": True}]}
    labels = [
        {"item_id": "i0", "label": "a", "cycle": 0},
        {"item_id": "i1", "label": "a", "cycle": 0},
    ]
    (pt,) = rp.random_curve(_cfg(), pool, holdout, batches, labels, cycles=[1])
    assert pt == {"cycle": 1, "labels": 2, "accuracy": 0.5}


# --- money and the champion gate ---------------------------------------------------------------


class _Overlap(BaseModel):
    """Stands in for the campaign's coming ``overlap:`` section."""

    policy: str = "adaptive"


class _AdaptiveCampaign(CampaignConfig):
    overlap: _Overlap = _Overlap()


_HISTORY = [
    {"cycle": 0, "labels": 10, "annotations": 12, "cost": 6.0, "metric": 0.5},
    {"cycle": 1, "labels": 20, "annotations": 23, "cost": 11.5, "metric": 0.62},
    {"cycle": 2, "labels": 30, "annotations": 33, "cost": 16.5, "metric": 0.8},
]
_GATE = {
    "decision": "challenger",
    "version": "3",
    "champion_version": "2",
    "challenger_version": "3",
    "previous_champion": "2",
    "fallback": False,
    "test": "mcnemar",
    "alpha": 0.05,
    "p_value": 0.25,
    "accuracy_delta": 0.02,
    "interval": [0.0, 0.04],
    "interval_level": 0.9,
    "champion_only": 0,
    "challenger_only": 2,
    "reason": "v3 is the challenger; v2 stays the champion. <noise>",
    "cycle": 2,
}


def _money_report(cfg, **extra):
    labels = [{"item_id": f"i{i}", "label": "a", "cycle": 0} for i in range(30)]
    labels += [
        {"item_id": "i3", "label": "b", "cycle": 2, "supersedes": "i3@0"},
        {"item_id": "i4", "label": "b", "cycle": 2, "supersedes": "i4@0"},
        {"item_id": "i5", "label": "a", "cycle": 2, "supersedes": None},
    ]
    annotations = [
        {"annotation_id": i, "item_id": f"i{i % 30}", "annotator": "ann", "label": "a"}
        | {"status": "accepted"}
        for i in range(33)
    ]
    return rp.build_report(
        cfg,
        history=_HISTORY,
        batches={},
        labels=labels,
        annotations=annotations,
        decisions={},
        random_points=[],
        **extra,
    )


def test_cost_per_label_and_per_point_since_the_first_model():
    r = _money_report(_cfg())
    assert r["spent"] == 16.5 and r["labels"] == 30
    assert r["cost_per_label"] == pytest.approx(16.5 / 30)
    cpp = r["cost_per_point"]
    # 10.5 spent after the first model (16.5 - 6.0) bought 30 points (0.50 -> 0.80).
    assert cpp["money"] == pytest.approx(10.5) and cpp["points"] == pytest.approx(30.0)
    assert cpp["value"] == pytest.approx(0.35) and cpp["from_cycle"] == 0
    assert rp.cost_per_point(_HISTORY[:1]) is None
    flat = [dict(_HISTORY[0]), {**_HISTORY[1], "metric": 0.5}]
    assert rp.cost_per_point(flat)["value"] is None
    page = rp.render_html(r, {})
    assert "Cost per point of holdout accuracy: <b>0.35</b>" in page
    assert "Cost per accepted label: <b>0.550</b>" in page


def test_the_overlap_saving_is_shown_only_for_a_policy_other_than_fixed():
    fixed = _money_report(_cfg(annotators_per_item=3))
    assert fixed["overlap"]["policy"] == "fixed" and fixed["overlap"]["saved"] is None
    assert "Overlap policy" not in rp.render_html(fixed, {})

    adaptive = _AdaptiveCampaign(
        name="rep",
        data={"source": "x.csv", "label_column": "y"},
        labels=["a", "b", "c"],
        budget={"cost_per_annotation": 0.5},
        annotators_per_item=3,
    )
    r = _money_report(adaptive)
    # A fixed 3 per item: 30 labels x 3 x 0.5 = 45.00, against 16.50 spent.
    assert r["overlap"] == {
        "policy": "adaptive",
        "fixed_annotators_per_item": 3,
        "fixed_cost": pytest.approx(45.0),
        "saved": pytest.approx(28.5),
    }
    page = rp.render_html(r, {})
    assert "Overlap policy <b>adaptive</b>" in page and "saved <b>28.50</b>" in page


def test_corrections_are_counted_from_the_ledger_or_taken_as_given():
    assert _money_report(_cfg())["corrections"] == 2
    r = _money_report(_cfg(), corrections=7)
    assert r["corrections"] == 7
    assert "after they were accepted: <b>7</b>" in rp.render_html(r, {})


def test_the_latest_gate_decision_is_in_the_report_and_its_page():
    r = _money_report(_cfg(), gate=_GATE)
    g = r["gate"]
    assert (g["champion_version"], g["challenger_version"], g["decision"]) == (
        "2",
        "3",
        "challenger",
    )
    assert g["p_value"] == 0.25 and g["interval"] == [0.0, 0.04]
    page = rp.render_html(r, {})
    assert "<b>champion v2</b>, <b>challenger v3</b>" in page
    assert "p = 0.25" in page and "90% interval +0.00 to +4.00" in page
    assert "&lt;noise&gt;" in page and "<noise>" not in page
    assert _money_report(_cfg())["gate"] is None
    assert "No model version has been compared" in rp.render_html(_money_report(_cfg()), {})
    first = _money_report(
        _cfg(), gate={"decision": "first", "champion_version": "1", "reason": "x"}
    )
    assert "<b>champion v1</b> (decision: first)" in rp.render_html(first, {})


def test_the_stream_section_shows_traffic_online_accuracy_windows_triggers_and_retrains():
    from loopwise.streaming import attribution, batch_record, stream_summary

    def rec(rid, decision, version, prediction):
        return batch_record(
            {
                "request_id": rid,
                "time": "2026-12-03T00:00:00Z",
                "model_version": version,
                "inputs": {"x": 1.0},
                "proba": {"a": 0.6, "b": 0.4},
                "prediction": prediction,
                "decision": decision,
            }
        )

    selected = [rec("c1", "control", "1", "a"), rec("c2", "control", "1", "b")]
    selected.append(rec("q1", "query", "2", "a"))
    labels = {"s-c1": {"label": "a"}, "s-c2": {"label": "a"}, "s-q1": {"label": "b"}}
    window = {
        "window": 3,
        "end": "2026-12-03T01:00:00Z",
        "records": 400,
        "reference": "holdout",
        "max_psi": 0.9,
        "prediction_psi": 0.1,
        "input_drift": {"fired": True},
        "prediction_drift": {"fired": False},
    }
    trigger = {
        "time": "t",
        "rule": "input_drift",
        "sentence": "input drift in window 3",
        "key": "k",
    }
    retrain = {"key": "k", "labels": 40, "stream_labels": 12, "accuracy": 0.8, "model_version": "2"}
    retrain["gate"] = "promoted"
    requested = [{"key": "k", "created": True, "flow_run_name": "brave-otter"}]
    runs = [{"records": 50, "quarantined": 1, "decisions": {"query": 1, "control": 2, "skip": 47}}]
    st = stream_summary(
        runs, attribution(selected, labels), [window], [trigger], [retrain], requested
    )
    page = rp.render_html(_money_report(_cfg(), stream=st), {})
    assert "<h2>Production stream</h2>" in page
    assert "50 request(s) read from the inference log (1 quarantined)" in page
    assert "labeling rate of 6.00%" in page
    assert "<td>v1</td><td>2</td><td>1</td><td>0.500</td>" in page  # controls only
    assert "<td>v2</td>" not in page.split("Drift per window")[0].split("online accuracy")[-1]
    assert "brave-otter" in page and "input drift in window 3" in page
    assert "promoted" in page
    assert "<h2>Production stream</h2>" not in rp.render_html(_money_report(_cfg()), {})
