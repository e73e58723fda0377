"""A campaign over a partitioned pool through the cycle flow, on a real Label Studio, Prefect's
test harness and MLflow: cold start, cycles, a crash after dispatch and its rerun, the
report; the flow never reads the pool whole."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest
import yaml

from loopwise.items import holdout_mask
from storage.store import Store
from tests.integration.test_cycle_flow import (
    PLANTED,
    _annotate,
    _arm,
    _Crash,
    _server_items,
    _write_campaign,
)

pytestmark = pytest.mark.integration

_names = itertools.count()


def test_a_partitioned_campaign_runs_cycles_and_a_rerun_after_a_crash_sends_nothing_twice(
    harness, label_studio, ls_client, tmp_path, monkeypatch
):
    from flows.cycle import cycle
    from flows.report import report
    from flows.stages import context
    from loopwise.config import load_campaign

    monkeypatch.setenv("LOOPWISE_TEST_LS_TOKEN", label_studio.token)
    path = _write_campaign(tmp_path, label_studio, name=f"parts-{next(_names)}")
    doc = yaml.safe_load(path.read_text())
    doc["data"] |= {"partitioned": True, "partition_rows": 300}
    path.write_text(yaml.safe_dump(doc))
    cfg = load_campaign(path)
    store = Store(f"{cfg.storage_root}/{cfg.name}")

    def whole_pool_read(*_a, **_k):
        raise AssertionError("a partitioned campaign read the whole pool into the flow")

    monkeypatch.setattr(context, "load_pool", whole_pool_read)

    assert cycle(campaign=str(path))["status"] != "stopped"  # the cold start
    cold = _server_items(ls_client, cfg.project_title)
    assert len(cold) == cfg.cold_start_size
    for seed in range(1, 8):  # until the batch is in and the next one is sent: the crash
        _annotate(label_studio, path, seed=seed)
        with pytest.MonkeyPatch.context() as inject:
            _arm(inject, ("flows.stages.dispatch", "dispatch_batch", "after"))
            try:
                cycle(campaign=str(path))
            except _Crash:
                break
    else:
        pytest.fail("no cycle reached its dispatch")
    after_crash = _server_items(ls_client, cfg.project_title)
    cycle(campaign=str(path))  # the rerun: collects, finds its batch sent, sends nothing
    items = _server_items(ls_client, cfg.project_title)
    assert sorted(items) == sorted(after_crash)
    assert len(items) == len(set(items)) == cfg.cold_start_size + cfg.batch_size
    for seed in range(10, 17):
        _annotate(label_studio, path, seed=seed)
        cycle(campaign=str(path))
        if len(store.read_json("state.json")["history"]) == 2:
            break
    items = _server_items(ls_client, cfg.project_title)
    assert len(items) == len(set(items))
    state = store.read_json("state.json")
    assert [h["cycle"] for h in state["history"]] == [1, 2]
    # The planted bad rows were quarantined (in their partition's ledger) and never sent.
    ledgers = [k for k in store.list("quarantine") if k.endswith(".jsonl")]
    quarantined = {r.get("id") for k in ledgers for r in store.read_jsonl(k)}
    assert set(PLANTED) <= quarantined
    assert not set(PLANTED) & set(items)
    # No item sent is on the holdout side; every partition was checked once.
    uids = pd.read_csv(cfg.data.source)["uid"].astype(str).tolist()
    holdout = {u for u, h in zip(uids, holdout_mask(uids, 0.3), strict=True) if h}
    assert not holdout & set(items)
    assert not holdout & set(store.read_json("stop_set.json"))
    assert len(store.list("pool/checked")) == 4  # 903 rows in partitions of 300
    rep = report(campaign=str(path))
    assert [h["cycle"] for h in rep["report"]["history"]] == [1, 2]
    assert rep["report"]["labels"] == len(store.read_jsonl(f"labels/{state['project_id']}.jsonl"))
