"""The store's invariants as pure checks, on hand-built records."""

from __future__ import annotations

import datetime as dt

import pytest

from loopwise import invariants as inv
from loopwise.state import CampaignState, Stage

NOW = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)


def _sent(item, task, cycle=0):
    return {"event": "sent", "item_id": item, "task_id": task, "cycle": cycle}


def _codes(findings):
    return [f.code for f in findings]


def _cycle(k, *, stop=False, dispatched=True):
    row = {"cycle": k, "labels": 10 * k, "annotations": 20 * k, "cost": 2.0 * k, "metric": 0.5}
    c = {
        "trained": {"row": row, "logged": {"run_id": f"r{k}"}},
        "decided": {"stop": stop, "rule": "plateau", "reason": "why"},
    }
    if not stop:
        c["selected"] = {
            "strategy": "margin",
            "batch": [{"item_id": f"i{k}a"}, {"item_id": f"i{k}b"}],
        }
        if dispatched:
            c["dispatched"] = {"task_ids": {f"i{k}a": 1, f"i{k}b": 2}}
    return c


COLD = {
    "selected": {"strategy": "kmeans", "batch": [{"item_id": "x"}, {"item_id": "y"}]},
    "dispatched": {"task_ids": {"x": 1, "y": 2}},
}


# --- state.json -------------------------------------------------------------------------------


def test_a_missing_state_is_no_finding():
    assert inv.parse_state(None) == []


def test_a_sound_state_is_no_finding():
    assert inv.parse_state(CampaignState(cycle=2, stage=Stage.WAITING).model_dump_json()) == []


def test_a_truncated_state_is_unreadable_and_repairable():
    (f,) = inv.parse_state('{"cycle": 3, "stage": "wai', "store/state.json")
    assert f.code == "state-unreadable" and "store/state.json" in f.message and f.repair


def test_a_state_with_an_unknown_stage_is_invalid():
    (f,) = inv.parse_state('{"cycle": 3, "stage": "dancing"}')
    assert f.code == "state-invalid" and "stage" in f.message


# --- rebuilding the state ---------------------------------------------------------------------


def test_no_checkpoint_rebuilds_a_new_campaign():
    state = inv.rebuild_state({}, project_id=4)
    assert (state.cycle, state.stage, state.project_id) == (-1, Stage.NEW, 4)


def test_a_cold_start_rebuilds_waiting_for_its_batch():
    state = inv.rebuild_state({0: COLD}, project_id=7)
    assert (state.cycle, state.stage, state.open_batch, state.history) == (
        0,
        Stage.WAITING,
        ["x", "y"],
        [],
    )
    assert not state.cold_start and state.project_id == 7


def test_the_last_cycle_and_stage_and_the_history_are_rebuilt():
    state = inv.rebuild_state({0: COLD, 1: _cycle(1), 2: {"trained": _cycle(2)["trained"]}})
    assert (state.cycle, state.stage) == (2, Stage.TRAINED)
    assert [h["cycle"] for h in state.history] == [1, 2]


def test_a_stop_decision_rebuilds_a_stopped_campaign():
    state = inv.rebuild_state({0: COLD, 1: _cycle(1), 2: _cycle(2, stop=True)})
    assert (state.cycle, state.stage, state.stopped) == (2, Stage.STOPPED, True)
    assert state.decision["rule"] == "plateau"


def test_a_cycle_selected_but_not_dispatched_rebuilds_selected():
    state = inv.rebuild_state({0: COLD, 1: _cycle(1, dispatched=False)})
    assert (state.stage, state.open_batch) == (Stage.SELECTED, None)


# --- state against checkpoints ----------------------------------------------------------------


def test_a_state_its_checkpoints_back_is_no_finding():
    state = CampaignState(cycle=1, stage=Stage.WAITING, history=[_cycle(1)["trained"]["row"]])
    assert inv.state_vs_checkpoints(state, {0: COLD, 1: _cycle(1)}) == []


def test_the_cold_start_needs_no_trained_checkpoint():
    assert inv.state_vs_checkpoints(CampaignState(cycle=0, stage=Stage.WAITING), {0: COLD}) == []


def test_a_stage_claimed_without_its_checkpoint_is_found():
    state = CampaignState(cycle=1, stage=Stage.WAITING, history=[_cycle(1)["trained"]["row"]])
    (f,) = inv.state_vs_checkpoints(state, {0: COLD, 1: _cycle(1, dispatched=False)})
    assert f.code == "state-without-checkpoint" and f.ids == ("cycles/0001/dispatched.json",)


def test_a_history_row_without_its_trained_checkpoint_is_found():
    state = CampaignState(cycle=0, stage=Stage.WAITING, history=[{"cycle": 3}])
    assert _codes(inv.state_vs_checkpoints(state, {0: COLD})) == ["history-without-checkpoint"]


# --- the ledgers ------------------------------------------------------------------------------


def test_labels_of_dispatched_items_are_no_finding():
    assert inv.labels_outside_dispatch([{"item_id": "a"}], [_sent("a", 1)]) == []


def test_a_label_for_an_undispatched_item_is_found():
    intent = {"event": "intent", "items": ["b"]}
    (f,) = inv.labels_outside_dispatch(
        [{"item_id": "a"}, {"item_id": "b"}], [_sent("a", 1), intent]
    )
    assert f.code == "label-not-dispatched" and f.ids == ("b",)


def test_an_item_receipted_for_two_tasks_is_found():
    found = inv.receipt_conflicts([_sent("a", 1), _sent("a", 1), _sent("a", 2), _sent("b", 3)])
    assert [(f.code, f.ids) for f in found] == [("item-sent-twice", ("a",))]


def test_a_task_receipted_for_two_items_is_found():
    found = inv.receipt_conflicts([_sent("a", 1), _sent("b", 1)])
    assert [(f.code, f.ids) for f in found] == [("task-two-items", ("1",))]


# --- receipts against Label Studio ------------------------------------------------------------


def test_receipts_matching_the_project_are_no_finding():
    tasks = [{"id": 1, "item_id": "a"}, {"id": 2, "item_id": "b"}, {"id": 9, "item_id": None}]
    assert inv.receipts_vs_tasks([_sent("a", 1), _sent("b", 2)], tasks) == []


def test_a_receipt_for_a_task_the_project_lacks_is_found():
    (f,) = inv.receipts_vs_tasks([_sent("a", 1), _sent("b", 2)], [{"id": 1, "item_id": "a"}])
    assert f.code == "receipt-without-task" and f.ids == ("b→2",) and f.repair is None


def test_a_task_without_a_receipt_is_found_and_repairable():
    tasks = [{"id": 1, "item_id": "a"}, {"id": 5, "item_id": "z"}]
    (f,) = inv.receipts_vs_tasks([_sent("a", 1)], tasks)
    assert f.code == "task-without-receipt" and f.ids == ("z",) and f.repair


def test_an_item_on_the_server_twice_is_found():
    tasks = [{"id": 1, "item_id": "a"}, {"id": 4, "item_id": "a"}]
    assert "item-on-server-twice" in _codes(inv.receipts_vs_tasks([_sent("a", 1)], tasks))


def test_missing_receipts_are_the_unreceipted_tasks_lowest_id_first():
    tasks = [{"id": 1, "item_id": "a"}, {"id": 8, "item_id": "z"}, {"id": 6, "item_id": "z"}]
    assert inv.missing_receipts([_sent("a", 1)], tasks, cycle=3) == [
        {
            "event": "sent",
            "item_id": "z",
            "task_id": 6,
            "cycle": 3,
            "reconciled": True,
            "by": "doctor",
        }
    ]


def test_annotations_the_ledger_holds_are_no_finding():
    rows = [{"annotation_id": 1}, {"annotation_id": 1}, {"annotation_id": 2}]
    assert inv.annotations_behind(rows, 2) == []


def test_annotations_the_ledger_lacks_are_found():
    (f,) = inv.annotations_behind([{"annotation_id": 1}, {"annotation_id": 1}], 3)
    assert f.code == "annotations-not-collected" and "3" in f.message and "holds 1" in f.message


# --- MLflow -----------------------------------------------------------------------------------


RUNS = [{"run_id": "r1", "cycle": "1"}, {"run_id": "r2", "cycle": "2"}]
VERSIONS = [{"version": "1", "run_id": "r1"}, {"version": "2", "run_id": "r2"}]


def test_one_run_and_version_per_cycle_with_a_champion_is_no_finding():
    assert inv.mlflow_findings(RUNS, VERSIONS, "2", {1: "r1", 2: "r2"}) == []


def test_two_runs_of_one_cycle_are_found():
    runs = [*RUNS, {"run_id": "r2b", "cycle": "2"}]
    (f,) = inv.mlflow_findings(runs, VERSIONS, "2", {})
    assert f.code == "mlflow-runs-per-cycle" and f.ids == ("r2", "r2b")


def test_two_versions_of_one_run_are_found():
    (f,) = inv.mlflow_findings(RUNS, [*VERSIONS, {"version": "3", "run_id": "r2"}], "1", {})
    assert f.code == "mlflow-versions-per-run" and f.ids == ("2", "3")


@pytest.mark.parametrize("champion", [None, "7"])
def test_no_champion_among_the_versions_is_found(champion):
    assert _codes(inv.mlflow_findings(RUNS, VERSIONS, champion, {})) == ["champion-missing"]


def test_no_version_needs_no_champion():
    assert inv.mlflow_findings([], [], None, {}) == []


def test_a_trained_cycle_whose_run_is_gone_is_found():
    (f,) = inv.mlflow_findings(RUNS, VERSIONS, "1", {3: "r3"})
    assert f.code == "mlflow-run-missing" and f.ids == ("cycle 3: r3",)


# --- the lease and the next runs --------------------------------------------------------------


def _lease(expires: dt.datetime, released=False):
    return {
        "holder": "flow run x",
        "acquired_at": "t0",
        "expires_at": expires.isoformat(),
        "released": released,
    }


def test_a_running_or_released_lease_is_no_finding():
    assert inv.lapsed_lease("lease/1.json", _lease(NOW + dt.timedelta(minutes=1)), NOW) == []
    assert inv.lapsed_lease("lease/1.json", _lease(NOW - dt.timedelta(hours=1), True), NOW) == []
    assert inv.lapsed_lease("lease/1.json", None, NOW) == []


def test_a_lapsed_unreleased_lease_is_found_and_repairable():
    (f,) = inv.lapsed_lease("lease/1.json", _lease(NOW - dt.timedelta(seconds=1)), NOW)
    assert f.code == "lease-lapsed" and f.ids == ("lease/1.json",) and "flow run x" in f.message
    assert f.repair == "release it"


def test_one_waiting_next_run_is_no_finding():
    assert inv.waiting_next_runs([{"id": "a", "name": "a", "created": "2026-01-01T00:00:00"}]) == []


def test_surplus_waiting_next_runs_are_all_but_the_newest():
    runs = [
        {"id": "new", "name": "fresh-run", "created": "2026-01-01T00:00:03+00:00"},
        {"id": "old", "name": "old-run", "created": "2026-01-01T00:00:01+00:00"},
        {"id": "mid", "name": "mid-run", "created": "2026-01-01T00:00:02+00:00"},
    ]
    (f,) = inv.waiting_next_runs(runs)
    assert f.code == "next-runs-waiting" and f.ids == ("old", "mid") and "fresh-run" in f.repair
