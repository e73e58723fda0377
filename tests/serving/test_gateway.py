"""The gateway in process (FastAPI's TestClient) against a real MLflow registry: what it
answers, what it logs (read back with the log reader), what it refuses, and how it follows
the champion alias."""

from __future__ import annotations

import logging
import re
import uuid

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sklearn.dummy import DummyClassifier
from sklearn.pipeline import make_pipeline

from loopwise.features import model_inputs
from loopwise.inference_log import validate_record
from loopwise.stream_policy import StreamPolicy
from serving.champion import ChampionUnavailable, ChampionWatcher
from serving.gateway import GatewaySettings, create_app
from serving.inputs import InputSchema, UnservableCampaign
from tests.serving.campaigns import (
    FEATURES,
    campaign,
    fitted,
    logged,
    numeric_pool,
    register,
    text_pool,
    wait_until,
)

ROW = {"x1": 0.5, "x2": -1.0, "x3": 2, "x4": 0.0}


@pytest.fixture
def numeric(tmp_path, registry):
    """A numeric campaign (its own registered model) with v1 champion."""
    name = f"num-{uuid.uuid4().hex[:8]}"
    cfg = campaign(tmp_path, registry, name)
    pool = numeric_pool(tmp_path / f"{name}.csv")
    model = fitted(cfg, pool)
    assert register(cfg, model) == "1"
    return cfg, model


def _client(cfg, **kw) -> TestClient:
    kw.setdefault("policy", StreamPolicy(target_rate=0.3, control_share=0.5, random_state=1))
    return TestClient(create_app(cfg, **kw))


def test_one_record_is_answered_and_logged_before_the_answer(numeric):
    cfg, model = numeric
    with _client(cfg) as client:
        r = client.post("/predict", json={"request_id": "req-1", "inputs": ROW})
        assert r.status_code == 200, r.text
        body = r.json()
        # Acknowledged means logged: the record is there before the client is closed.
        records = logged(cfg)
    X = np.array([[ROW[c] for c in FEATURES]], dtype=np.float32)
    expected = model.predict_proba(X)[0]
    assert body["request_id"] == "req-1" and body["model_version"] == "1"
    assert body["prediction"] == model.predict(X)[0]
    assert body["proba"] == pytest.approx(dict(zip(model.classes_, expected, strict=True)))
    assert body["decision"] in {"query", "control", "skip"}
    [rec] = records
    assert validate_record(rec) == rec
    assert rec["request_id"] == "req-1" and rec["model_name"] == f"loopwise-{cfg.name}"
    assert rec["inputs"] == {k: float(v) for k, v in ROW.items()}
    assert rec["prediction"] == body["prediction"] and rec["decision"] == body["decision"]
    assert rec["model_version"] == "1" and rec["writer"]
    assert rec["time"].endswith("Z")


def test_a_batch_is_answered_in_order_and_every_record_logged(numeric):
    cfg, model = numeric
    rng = np.random.default_rng(0)
    rows = [dict(zip(FEATURES, map(float, rng.normal(size=4)), strict=True)) for _ in range(40)]
    records = [
        {"inputs": r} if i % 2 else {"request_id": f"b-{i}", "inputs": r}
        for i, r in enumerate(rows)
    ]
    with _client(cfg) as client:
        r = client.post("/predict", json={"records": records})
        assert r.status_code == 200, r.text
        health = client.get("/health").json()
    answers = r.json()["records"]
    X = np.array([[row[c] for c in FEATURES] for row in rows], dtype=np.float32)
    assert [a["prediction"] for a in answers] == list(model.predict(X))
    ids = [a["request_id"] for a in answers]
    assert ids[0::2] == [f"b-{i}" for i in range(0, 40, 2)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids[1::2])  # made by the gateway
    assert len(set(ids)) == 40
    log = {rec["request_id"]: rec for rec in logged(cfg)}
    assert set(log) == set(ids)
    assert all(validate_record(rec) == rec for rec in log.values())  # only one was checked
    assert [log[i]["decision"] for i in ids] == [a["decision"] for a in answers]
    # 40 records at a 0.3 labeling rate: the policy asked about some and skipped others
    assert {a["decision"] for a in answers} >= {"skip"}
    assert health["records_served"] == health["records_logged"] == 40
    assert health["model_version"] == "1" and health["campaign"] == cfg.name


MALFORMED = [
    ({"inputs": {"x1": 0.5, "x2": 1, "x3": 2}}, ["body", "inputs", "x4"]),  # missing
    ({"inputs": {**ROW, "x9": 1}}, ["body", "inputs", "x9"]),  # unknown
    ({"inputs": {**ROW, "x3": "2"}}, ["body", "inputs", "x3"]),  # a string
    ({"inputs": {**ROW, "x3": True}}, ["body", "inputs", "x3"]),  # a boolean
    ({"inputs": {**ROW, "x3": None}}, ["body", "inputs", "x3"]),  # null
    ({"request_id": "no spaces", "inputs": ROW}, ["body", "request_id"]),
    (
        {"records": [{"inputs": ROW}, {"inputs": {**ROW, "x2": []}}]},
        ["body", "records", 1, "inputs", "x2"],
    ),
    ({"records": []}, ["body", "records"]),
    ({"records": [{"inputs": ROW}] * 4}, ["body", "records"]),  # over max_batch
    ({"inputs": ROW, "records": [{"inputs": ROW}]}, ["body"]),
    ({"records": [{"request_id": "a", "inputs": ROW}] * 2}, ["body"]),  # repeated id
    ({}, ["body"]),
]


def test_a_malformed_request_is_a_422_naming_the_field_and_nothing_is_logged(numeric):
    cfg, _ = numeric
    with _client(cfg, settings=GatewaySettings(max_batch=3)) as client:
        for body, loc in MALFORMED:
            r = client.post("/predict", json=body)
            assert r.status_code == 422, (body, r.text)
            assert loc in [d["loc"] for d in r.json()["detail"]], (body, r.json())
        assert client.get("/health").json()["records_served"] == 0
    assert logged(cfg) == []


def test_feedback_is_logged_durably_and_an_unknown_label_refused(numeric):
    cfg, _ = numeric
    with _client(cfg) as client:
        fix = {
            "request_id": "req-1",
            "label": "b",
            "user": "ana",
            "time": "2025-01-02T03:04:05+01:00",
        }
        assert client.post("/feedback", json=fix).status_code == 200
        assert (
            client.post("/feedback", json={"request_id": "req-2", "correct": False}).status_code
            == 200
        )
        bad = client.post("/feedback", json={"request_id": "req-3", "label": "zebra"})
        assert bad.status_code == 422
        [detail] = bad.json()["detail"]
        assert detail["loc"] == ["body", "label"] and "zebra" in detail["msg"]
        both = client.post("/feedback", json={"request_id": "req-4", "label": "a", "correct": True})
        assert both.status_code == 422
        rating = client.post("/feedback", json={"request_id": "req-5", "correct": "yes"})
        assert rating.status_code == 422 and rating.json()["detail"][0]["loc"] == [
            "body",
            "correct",
        ]
        records = logged(cfg, "stream/feedback")
    by_id = {r["request_id"]: r for r in records}
    assert set(by_id) == {"req-1", "req-2"}
    assert by_id["req-1"]["label"] == "b" and by_id["req-1"]["user"] == "ana"
    assert by_id["req-1"]["time"] == "2025-01-02T02:04:05.000000Z"  # normalised to UTC
    assert by_id["req-2"]["correct"] is False and by_id["req-2"]["label"] is None
    assert logged(cfg) == []  # feedback is not an inference record


def test_without_logging_the_gateway_serves_and_writes_nothing(numeric):
    cfg, _ = numeric
    with _client(cfg, log_requests=False) as client:
        assert client.post("/predict", json={"inputs": ROW}).status_code == 200
        assert client.get("/health").json()["logging"] is False
    assert logged(cfg) == []


def test_a_text_campaign_takes_its_text(tmp_path, registry):
    cfg = campaign(tmp_path, registry, "texts", text_column="text", labels=["neg", "pos"])
    model = fitted(cfg, text_pool(tmp_path / "texts.csv"))
    register(cfg, model)
    with _client(cfg) as client:
        ok = client.post("/predict", json={"inputs": {"text": "great and good"}})
        assert ok.status_code == 200, ok.text
        assert (
            ok.json()["prediction"] == model.predict(np.array(["great and good"], dtype=object))[0]
        )
        bad = client.post("/predict", json={"inputs": {"text": 3}})
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == [
            "body",
            "inputs",
            "text",
        ]
    assert [r["inputs"] for r in logged(cfg)] == [{"text": "great and good"}]


def test_categorical_features_are_refused_at_start_naming_the_columns(tmp_path, registry):
    cfg = campaign(tmp_path, registry, "cats")
    pool = pd.DataFrame({"x1": [1.0, 2.0], "colour": ["red", "blue"], "y": ["a", "b"]})
    with pytest.raises(UnservableCampaign, match=r"categorical feature column\(s\) \['colour'\]"):
        InputSchema.from_pool(cfg, pool)
    only_numeric = cfg.model_copy(
        update={"data": cfg.data.model_copy(update={"feature_columns": ["x1"]})}
    )
    assert InputSchema.from_pool(only_numeric, pool).fields == {"x1": "number"}


def test_a_champion_reading_other_columns_is_refused_at_start(tmp_path, registry):
    cfg = campaign(tmp_path, registry, "narrow")
    pool = numeric_pool(tmp_path / "narrow.csv")
    register(cfg, fitted(cfg, pool[["x1", "x2", "y"]]))  # trained on two columns of four
    with pytest.raises(
        ChampionUnavailable, match="reads 2 features where the pool's columns give 4"
    ):
        create_app(cfg)


def test_without_a_champion_the_gateway_does_not_start(tmp_path, registry):
    cfg = campaign(tmp_path, registry, "nochamp")
    pool = numeric_pool(tmp_path / "nochamp.csv")
    register(cfg, fitted(cfg, pool), champion=False)
    with pytest.raises(ChampionUnavailable, match="champion"):
        create_app(cfg)


def _always(label: str):
    return make_pipeline(DummyClassifier(strategy="constant", constant=label)).fit(
        np.zeros((2, 4)), ["a", "b"]
    )


def test_the_gateway_follows_the_champion_alias(numeric, caplog):
    cfg, _ = numeric
    settings = GatewaySettings(reload_seconds=0.05)
    with (
        caplog.at_level(logging.WARNING, logger="loopwise.serving"),
        _client(cfg, settings=settings) as client,
    ):
        assert client.post("/predict", json={"inputs": ROW}).json()["model_version"] == "1"
        assert register(cfg, _always("b")) == "2"
        assert wait_until(lambda: client.get("/health").json()["model_version"] == "2")
        after = client.post("/predict", json={"request_id": "after", "inputs": ROW}).json()
        # A version reading other columns holds the alias: refused, v2 keeps serving.
        narrow = pd.read_csv(cfg.data.source)[["x1", "y"]]
        assert register(cfg, fitted(cfg, narrow)) == "3"
        assert wait_until(lambda: "v3 holds the champion alias but cannot be served" in caplog.text)
        still = client.post("/predict", json={"inputs": ROW}).json()
    assert after["model_version"] == "2" and after["prediction"] == "b"
    assert after["proba"] == {"a": 0.0, "b": 1.0}
    assert still["model_version"] == "2"
    assert "v1 → v2" in caplog.text
    assert {r["model_version"] for r in logged(cfg) if r["request_id"] == "after"} == {"2"}


def test_the_watcher_keeps_the_model_when_the_registry_cannot_be_read(numeric, caplog, tmp_path):
    cfg, _ = numeric
    watcher = ChampionWatcher(cfg, start=False)
    model, version = watcher.current()
    # The registry moves to a store that does not answer (nothing listens on port 9).
    watcher.cfg = cfg.model_copy(
        update={"mlflow": cfg.mlflow.model_copy(update={"tracking_uri": "http://127.0.0.1:9"})}
    )
    with caplog.at_level(logging.WARNING, logger="loopwise.serving"):
        assert watcher.check() is False
        assert watcher.check() is False
    assert watcher.current() == (model, version)
    assert caplog.text.count("still serving v1") == 1  # warned once, not at every check
    with _client(cfg, watcher=watcher) as client:
        r = client.post("/predict", json={"inputs": ROW})
        assert r.status_code == 200 and r.json()["model_version"] == "1"
    # It answers again: the alias that moved meanwhile is picked up.
    register(cfg, _always("a"))
    watcher.cfg = cfg
    with caplog.at_level(logging.WARNING, logger="loopwise.serving"):
        assert watcher.check() is True
    assert watcher.current()[1] == "2" and "MLflow answers again" in caplog.text


def test_request_rows_encode_as_training_does(tmp_path, registry):
    """The gateway's direct rows equal what training's feature_matrix makes of them."""
    cfg = campaign(tmp_path, registry, "rows")
    pool = pd.DataFrame({"x1": [1.5, 2.0], "flag": [True, False], "n": [3, 4], "y": ["a", "b"]})
    schema = InputSchema.from_pool(cfg, pool)
    assert schema.fields == {"x1": "number", "flag": "bool", "n": "number"}
    inputs = [{"x1": 0.25, "flag": True, "n": 7}, {"x1": -1e6, "flag": False, "n": 0}]
    np.testing.assert_array_equal(schema.rows(inputs), schema.frame_rows(inputs))
    assert schema.rows(inputs).dtype == np.float32
    (trained,) = model_inputs(cfg, pd.DataFrame(inputs).assign(y="a"))
    np.testing.assert_array_equal(schema.rows(inputs), trained)
    text = campaign(tmp_path, registry, "rowtext", text_column="text", labels=["neg", "pos"])
    tschema = InputSchema.from_pool(text, pd.DataFrame({"text": ["a b"], "y": ["pos"]}))
    docs = [{"text": "good day"}, {"text": ""}]
    assert list(tschema.rows(docs)) == list(tschema.frame_rows(docs)) == ["good day", ""]


def test_a_labels_per_hour_budget_sets_the_rate_from_the_measured_traffic(numeric):
    cfg, _ = numeric
    settings = GatewaySettings(labels_per_hour=2.0, rate_warmup_seconds=0.0)
    with _client(cfg, settings=settings) as client:
        before = client.get("/health").json()["target_rate"]
        for _ in range(5):
            assert client.post("/predict", json={"inputs": ROW}).status_code == 200
        health = client.get("/health").json()
    assert before == 0.3  # the policy's own rate until traffic is measured
    # Thousands of records an hour at this pace: 2 labels an hour is a tiny share of them.
    assert 0 < health["target_rate"] < 0.01
    assert health["target_rate"] == pytest.approx(2.0 / health["records_per_hour"], rel=0.5)


def test_a_drift_boost_written_after_the_start_raises_the_labeling_rate_once(numeric):
    from storage.campaign import campaign_store
    from tasks.stream import BOOST

    cfg, _ = numeric
    store = campaign_store(cfg.storage_root, cfg.name)
    store.write_json(BOOST, {"since": "old", "records": 50, "factor": 3.0, "window": 0})
    with _client(cfg) as client:
        gw = client.app.state.gateway
        base = gw.policy.rate_
        assert not gw.check_boost(), "a boost written before the start is not applied"
        store.write_json(BOOST, {"since": "new", "records": 50, "factor": 3.0, "window": 4})
        assert gw.check_boost()
        boosted = client.get("/health").json()
        assert not gw.check_boost(), "the same boost is applied once"
        for _ in range(60):
            assert client.post("/predict", json={"inputs": ROW}).status_code == 200
        after = gw.policy.rate_
    assert boosted["boosts"] == 1
    assert boosted["rate_now"] > base
    assert after == pytest.approx(base), "back to the target after the boosted records"
