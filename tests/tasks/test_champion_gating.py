"""The champion gate against a real MLflow store (SQLite in a temporary folder).

Each "model" is a logistic regression fit on the holdout rows themselves (one-hot row
ids: a weight per row, barely regularized) with chosen labels, so its holdout predictions
are exactly those labels: which rows it gets wrong is set by the test.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from loopwise.config import CampaignConfig
from loopwise.model import evaluate_model
from tasks.evaluate import CHALLENGER, CHAMPION, log_cycle, model_name

N = 60
X_HOLD = np.eye(N)
Y_HOLD = np.array(["a", "b"] * (N // 2))


def _cfg(tmp_path: Path, **extra) -> CampaignConfig:
    return CampaignConfig(
        name="gate",
        data={"source": str(tmp_path / "pool.csv"), "label_column": "y"},
        labels=["a", "b"],
        budget={"cost_per_annotation": 0.1},
        mlflow={
            "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
            "artifact_location": (tmp_path / "mlartifacts").as_uri(),
        },
        **extra,
    )


def _model_wrong_on(rows) -> LogisticRegression:
    """A model whose holdout predictions are right except on ``rows``."""
    y = Y_HOLD.copy()
    y[list(rows)] = np.where(y[list(rows)] == "a", "b", "a")
    model = LogisticRegression(C=1e6, max_iter=5000).fit(X_HOLD, y)
    assert (model.predict(X_HOLD) == y).all()
    return model


def _log(cfg: CampaignConfig, cycle: int, model, history: list[dict]) -> dict:
    metrics = evaluate_model(model, X_HOLD, Y_HOLD, cfg.labels)
    labels = 10 * (cycle + 1)
    history.append(
        {"cycle": cycle, "labels": labels, "cost": labels * 0.1, "metric": metrics["accuracy"]}
    )
    snapshot = pd.DataFrame(
        {"x": np.arange(labels, dtype=float), "label": ["a", "b"] * (labels // 2)}
    )
    info = {"uri": f"/tmp/snapshots/{cycle:04d}.parquet", "key": f"snapshots/{cycle:04d}.parquet"}
    return log_cycle.fn(
        cfg,
        cycle,
        model,
        metrics,
        list(history),
        snapshot,
        info,
        {"ann": 0.9},
        X_holdout=X_HOLD,
        y_holdout=Y_HOLD,
    )


def _aliases(client, cfg) -> dict[str, str]:
    return {a: str(v) for a, v in client.get_registered_model(model_name(cfg)).aliases.items()}


def test_a_noise_level_gain_makes_a_challenger_a_real_one_a_champion(tmp_path):
    import mlflow

    cfg = _cfg(tmp_path)
    client = mlflow.MlflowClient(cfg.mlflow.tracking_uri)
    history: list[dict] = []

    first = _log(cfg, 0, _model_wrong_on(range(10)), history)  # 50 / 60
    assert first["champion"] is True and first["gate"]["decision"] == "first"
    assert _aliases(client, cfg) == {CHAMPION: "1"}
    assert client.get_run(first["run_id"]).data.tags["loopwise.gate"] == "first"

    # Right on 2 more rows, wrong on none the champion gets right: p = 0.25, no promotion.
    noise = _log(cfg, 1, _model_wrong_on(range(2, 10)), history)
    gate = noise["gate"]
    assert noise["champion"] is False and gate["decision"] == "challenger"
    assert (gate["champion_only"], gate["challenger_only"]) == (0, 2)
    assert gate["p_value"] == pytest.approx(0.25)
    assert gate["champion_version"] == "1" and gate["challenger_version"] == "2"
    assert _aliases(client, cfg) == {CHAMPION: "1", CHALLENGER: "2"}
    run = client.get_run(noise["run_id"]).data
    assert run.metrics["gate_p_value"] == pytest.approx(0.25)
    assert run.metrics["gate_accuracy_delta"] == pytest.approx(2 / N)
    assert {"gate_delta_low", "gate_delta_high"} <= set(run.metrics)
    assert run.tags["loopwise.gate"] == "challenger"
    assert "v1 stays the champion" in run.tags["loopwise.gate_reason"]

    # Re-running a logged cycle returns its result and moves nothing.
    assert _log(cfg, 1, _model_wrong_on(range(2, 10)), history[:1]) == noise
    assert _aliases(client, cfg) == {CHAMPION: "1", CHALLENGER: "2"}

    # Right on all 10 rows the champion misses: p = 2**-10, promoted; the old challenger goes.
    better = _log(cfg, 2, _model_wrong_on([]), history[:2])
    assert better["champion"] is True and better["gate"]["decision"] == "promoted"
    assert better["gate"]["previous_champion"] == "1"
    assert better["gate"]["p_value"] == pytest.approx(2.0**-10)
    assert _aliases(client, cfg) == {CHAMPION: "3"}
    assert client.get_run(better["run_id"]).data.tags["loopwise.gate"] == "promoted"


def test_a_run_that_died_after_the_aliases_moved_applies_the_same_decision(tmp_path):
    import mlflow

    cfg = _cfg(tmp_path)
    client = mlflow.MlflowClient(cfg.mlflow.tracking_uri)
    history: list[dict] = []
    _log(cfg, 0, _model_wrong_on(range(10)), history)
    done = _log(cfg, 1, _model_wrong_on([]), history)
    assert _aliases(client, cfg) == {CHAMPION: "2"}

    # The run crashed before it was marked logged: the re-run resumes it. Tested again,
    # v2 would face itself (the champion now) and lose; the kept decision is applied instead.
    client.set_tag(done["run_id"], "loopwise.logged", "false")
    again = _log(cfg, 1, _model_wrong_on([]), history[:1])
    assert again == done
    assert _aliases(client, cfg) == {CHAMPION: "2"}
    versions = client.search_model_versions(f"name='{model_name(cfg)}'")
    assert sorted(str(v.version) for v in versions) == ["1", "2"]


def test_a_champion_whose_model_is_gone_falls_back_to_the_accuracy_tag(tmp_path, caplog):
    cfg = _cfg(tmp_path, champion={"test": "bootstrap", "alpha": 0.1})
    history: list[dict] = []
    _log(cfg, 0, _model_wrong_on(range(10)), history)
    shutil.rmtree(tmp_path / "mlartifacts")  # every artifact, the champion's model among them

    with caplog.at_level(logging.WARNING, logger="loopwise.evaluate"):
        out = _log(cfg, 1, _model_wrong_on(range(2, 10)), history)
    gate = out["gate"]
    # The old rule: any gain of the recorded accuracy promotes, and the decision says so.
    assert gate["fallback"] is True and gate["decision"] == "promoted"
    assert gate["test"] == "accuracy" and gate["p_value"] is None
    assert "could not be loaded" in gate["reason"]
    assert gate["accuracy_delta"] == pytest.approx(2 / N, abs=1e-6)
    assert any("falls back" in r.getMessage() for r in caplog.records)
