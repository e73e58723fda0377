"""``loopwise doctor`` on a campaign store in a temp folder (no service configured)."""

from __future__ import annotations

import socket

import pytest
import yaml
from typer.testing import CliRunner

from flows.cli import app
from flows.cli.doctor_checks import examine, repair
from loopwise.config import load_campaign
from storage.campaign import Ledgers, campaign_store, read_state, save_checkpoint

PID = 3
ROW = {"cycle": 1, "labels": 2, "annotations": 4, "cost": 0.4, "metric": 0.5, "macro_f1": 0.5}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def campaign(tmp_path, monkeypatch):
    """A campaign at cycle 1, waiting for its batch; no Label Studio token, no MLflow
    database, no Prefect server: those are noted as not checked."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("LOOPWISE_PREFECT_PORT", str(_free_port()))  # no local server there
    monkeypatch.delenv("LOOPWISE_TEST_DOCTOR_TOKEN", raising=False)
    raw = {
        "name": "doc",
        "data": {"source": str(tmp_path / "pool.csv"), "label_column": "label"},
        "labels": ["a", "b"],
        "storage_root": str(tmp_path / "store"),
        "labelstudio": {"token_env": "LOOPWISE_TEST_DOCTOR_TOKEN"},
        "mlflow": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
    }
    path = tmp_path / "doc.yaml"
    path.write_text(yaml.safe_dump(raw))
    cfg = load_campaign(path)
    store = campaign_store(cfg.storage_root, cfg.name)
    batch0 = [{"item_id": "i1"}, {"item_id": "i2"}]
    save_checkpoint(store, 0, "selected", {"strategy": "kmeans", "batch": batch0})
    save_checkpoint(store, 0, "dispatched", {"task_ids": {"i1": 1, "i2": 2}})
    save_checkpoint(store, 1, "trained", {"row": ROW, "logged": {}})
    save_checkpoint(store, 1, "decided", {"stop": False, "rule": "plateau", "reason": "go"})
    save_checkpoint(store, 1, "selected", {"strategy": "margin", "batch": [{"item_id": "i3"}]})
    save_checkpoint(store, 1, "dispatched", {"task_ids": {"i3": 3}})
    ledgers = Ledgers(store, PID)
    ledgers.append(
        "dispatch", [{"event": "sent", "item_id": f"i{n}", "task_id": n} for n in (1, 2, 3)]
    )
    ledgers.append("labels", [{"item_id": "i1", "label": "a"}, {"item_id": "i2", "label": "b"}])
    state = {
        "cycle": 1,
        "stage": "waiting",
        "history": [ROW],
        "project_id": PID,
        "open_batch": ["i3"],
    }
    store.write_json("state.json", state)
    return cfg, store, path


def _codes(exam):
    return [f.code for f in exam.findings]


def test_a_sound_store_has_no_finding_and_says_what_it_did_not_check(campaign):
    cfg, store, _ = campaign
    exam = examine(cfg, store)
    assert exam.findings == []
    assert any("Label Studio" in u for u in exam.unchecked)
    assert any("Prefect" in u for u in exam.unchecked)


def test_a_truncated_state_is_rebuilt_from_the_checkpoints(campaign):
    cfg, store, _ = campaign
    store.path("state.json").write_text('{"cycle": 1, "stage": "wai')
    exam = examine(cfg, store)
    assert _codes(exam) == ["state-unreadable"]
    done = repair(cfg, store, exam)
    state = read_state(store)
    assert (state.cycle, state.stage.value, state.open_batch) == (1, "waiting", ["i3"])
    assert state.history == [ROW] and state.project_id == PID
    assert any("rebuilt state.json" in line for line in done)
    (aside,) = store.list("doctor")
    assert store.read_bytes(aside) == b'{"cycle": 1, "stage": "wai'
    assert examine(cfg, store).findings == []


def test_a_label_for_an_undispatched_item_is_reported_and_not_repaired(campaign):
    cfg, store, _ = campaign
    Ledgers(store, PID).append("labels", [{"item_id": "stray", "label": "a"}])
    exam = examine(cfg, store)
    (f,) = exam.findings
    assert (f.code, f.ids, f.repair) == ("label-not-dispatched", ("stray",), None)
    before = store.read_jsonl(f"labels/{PID}.jsonl")
    repair(cfg, store, exam)
    assert store.read_jsonl(f"labels/{PID}.jsonl") == before, "no ledger record changed"


def test_a_state_claiming_a_stage_without_its_checkpoint_is_reported(campaign):
    cfg, store, _ = campaign
    store.write_json(
        "state.json", {"cycle": 2, "stage": "selected", "history": [ROW], "project_id": PID}
    )
    assert _codes(examine(cfg, store)) == ["state-without-checkpoint"]


def test_a_lapsed_lease_is_released(campaign):
    cfg, store, _ = campaign
    store.write_json(
        "lease/000000000001.json",
        {"holder": "flow run dead", "acquired_at": "2026-01-01T00:00:00+00:00",
         "expires_at": "2026-01-01T00:10:00+00:00", "released": False},
    )  # fmt: skip
    exam = examine(cfg, store)
    assert _codes(exam) == ["lease-lapsed"]
    repair(cfg, store, exam)
    assert store.read_json("lease/000000000001.json")["released"] is True
    assert examine(cfg, store).findings == []


def test_the_command_exits_0_when_healthy_and_1_with_a_problem(campaign):
    _, store, path = campaign
    ok = CliRunner().invoke(app, ["doctor", str(path)])
    assert ok.exit_code == 0 and "no problem found" in ok.output, ok.output
    store.path("state.json").write_text("{")
    bad = CliRunner().invoke(app, ["doctor", str(path)])
    assert bad.exit_code == 1 and "state-unreadable" in bad.output, bad.output
    assert "Traceback" not in bad.output and store.path("state.json").read_text() == "{"
    fixed = CliRunner().invoke(app, ["doctor", str(path), "--repair"])
    assert fixed.exit_code == 0 and "rebuilt state.json" in fixed.output, fixed.output


def test_repair_exits_1_when_a_problem_is_left(campaign):
    _, store, path = campaign
    Ledgers(store, PID).append("labels", [{"item_id": "stray", "label": "a"}])
    res = CliRunner().invoke(app, ["doctor", str(path), "--repair"])
    assert res.exit_code == 1 and "label-not-dispatched" in res.output, res.output


def test_a_repair_leaves_a_campaign_a_run_holds_alone(campaign):
    from storage.campaign import acquire_lease

    _, store, path = campaign
    store.path("state.json").write_text("{")
    acquire_lease(store, "flow run busy", 600)
    res = CliRunner().invoke(app, ["doctor", str(path), "--repair"])
    assert res.exit_code == 1 and "flow run busy" in res.output, res.output
    assert "Traceback" not in res.output and store.path("state.json").read_text() == "{"
