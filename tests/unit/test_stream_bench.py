"""The stream bench's core on a tiny synthetic stream: its result structure and determinism."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from sklearn.datasets import make_classification

from loopwise.simulate import default_model
from loopwise.triggers import TriggerRules

BENCH = Path(__file__).resolve().parents[2] / "bench" / "stream.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_stream", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_stream"] = module  # dataclasses look the module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny(bench):
    X, y = make_classification(
        n_samples=2500, n_features=6, n_informative=4, n_classes=3, random_state=0
    )
    cfg = bench.Config(
        stream=1200,
        rate=0.1,
        init_labels=30,
        retrain_every=10,
        boost_records=200,
        rules=TriggerRules(drift_window=200),
        max_test=300,
        chunk=50,
    )
    return X, y, cfg


def _cell(bench, tiny, seed, drift):
    X, y, cfg = tiny
    return bench.run_cell(X, y, default_model(), seed, cfg, drift)


def test_a_drifted_cell_has_every_arm_curve_and_recovery(bench, tiny):
    cell = _cell(bench, tiny, 0, drift=True)
    assert cell["drift_at"] == 600 and cell["shifted_inputs"] and cell["heavy_classes"]
    assert set(cell["arms"]) == set(bench.ARMS)
    for result in cell["arms"].values():
        positions = [p["position"] for p in result["curve"]]
        assert positions == sorted(positions) and positions[0] == 0
        assert 0 < result["final"]["labels"] <= 1200 and 0 <= result["final"]["accuracy"] <= 1
        assert set(result["recovery"]) >= {"accuracy_at_drift", *(f"{q:g}" for q in bench.RECOVER)}
    # the fixed-rate arms spend about the rate; the drift boost fires and spends more
    assert abs(cell["arms"]["random"]["final"]["labels"] - 120) < 30
    boosted = cell["arms"]["stream+boost"]
    assert any(600 < at <= 1000 for at in boosted["drift_events"])  # seen within 2 windows
    assert boosted["final"]["labels"] > cell["arms"]["stream"]["final"]["labels"]
    assert not cell["arms"]["stream"]["drift_events"]


def test_a_stationary_cell_has_no_recovery_and_no_drift_boost(bench, tiny):
    cell = _cell(bench, tiny, 0, drift=False)
    assert cell["drift_at"] is None
    assert all(r["recovery"] is None for r in cell["arms"].values())
    fixed, boosted = cell["arms"]["stream"], cell["arms"]["stream+boost"]
    if boosted["drift_events"]:  # a false alarm on small windows boosts the rate
        assert boosted["final"]["labels"] > fixed["final"]["labels"]
    else:  # without a trigger the two arms are the same policy
        assert boosted["final"] == fixed["final"]


def test_the_bench_is_deterministic_for_a_seed(bench, tiny):
    first = json.dumps(_cell(bench, tiny, 1, drift=True), default=bench._plain)
    assert first == json.dumps(_cell(bench, tiny, 1, drift=True), default=bench._plain)
    assert first != json.dumps(_cell(bench, tiny, 2, drift=True), default=bench._plain)


def test_summary_and_page_from_cells(bench, tiny):
    cells = {
        "stationary": {0: _cell(bench, tiny, 0, drift=False)},
        "drift": {0: _cell(bench, tiny, 0, drift=True)},
    }
    summary = bench.summarize(cells, bench.ARMS)
    assert summary["drift"]["target_2"]["0.95"]["seeds"] == 1
    assert summary["stationary"]["paired"]["stream - random"]["seeds"] == 1
    report = {
        "config": tiny[2].to_dict(),
        "seeds": [0],
        "arms": list(bench.ARMS),
        "seconds": 1.0,
        "datasets": {"tiny": {"summary": summary}},
    }
    page = bench.render(report)
    assert "| tiny | stationary |" in page and "| tiny | stream+boost |" in page
    json.dumps(report, default=bench._plain)
