"""Items keep their identity, in the tasks: which id scheme a campaign uses, the snapshot
built from what was sent, pool edits recorded once, and where they are shown."""

from __future__ import annotations

import logging

import pandas as pd
import pytest

from loopwise.config import CampaignConfig
from loopwise.items import assign_ids
from loopwise.state import CampaignState
from storage.campaign import Ledgers, campaign_store, write_state
from storage.store import Store
from tasks.data import id_scheme, load_pool, record_pool_edits
from tasks.train import label_time_records, labeled_snapshot


def _cfg(tmp_path, **data) -> CampaignConfig:
    pd.DataFrame({"x": [0.5, 1.5, 2.5, 3.5], "y": ["a", "b", "a", "b"]}).to_csv(
        tmp_path / "pool.csv", index=False
    )
    return CampaignConfig.model_validate(
        {
            "name": "ids",
            "data": {"source": str(tmp_path / "pool.csv"), "label_column": "y", **data},
            "labels": ["a", "b"],
            "storage_root": str(tmp_path / "store"),
        }
    )


def _sent(cfg: CampaignConfig, ids: list[str]) -> None:
    store = campaign_store(cfg.storage_root, cfg.name)
    write_state(store, CampaignState(), project_id=3)
    Ledgers(store, 3).append("dispatch", [{"event": "sent", "item_id": i} for i in ids])


def test_a_new_campaign_names_its_items_by_content(tmp_path):
    cfg = _cfg(tmp_path)
    assert id_scheme(cfg) == "content"
    assert all(i.startswith("f") for i in load_pool.fn(cfg)["item_id"])


def test_a_campaign_started_with_row_numbers_keeps_them_and_is_warned(tmp_path, caplog):
    cfg = _cfg(tmp_path)
    _sent(cfg, ["r0000001", "r0000003"])
    with caplog.at_level(logging.WARNING, logger="loopwise.data"):
        pool = load_pool.fn(cfg)
    assert list(pool["item_id"]) == ["r0000000", "r0000001", "r0000002", "r0000003"]
    (warning,) = [r.getMessage() for r in caplog.records if "row-number" in r.getMessage()]
    assert "moves its labels onto other rows" in warning and "data.id_column" in warning


def test_a_campaign_that_sent_content_ids_keeps_content_ids(tmp_path):
    cfg = _cfg(tmp_path)
    ids = list(load_pool.fn(cfg)["item_id"])
    _sent(cfg, ids[:2])
    assert id_scheme(cfg) == "content" and list(load_pool.fn(cfg)["item_id"]) == ids


def test_the_snapshot_holds_every_label_with_the_values_sent(tmp_path):
    store = Store(tmp_path / "s")
    pool = assign_ids(pd.DataFrame({"x": [0.5, 1.5], "y": ["a", "b"]}), None, label_column="y")
    i0 = pool["item_id"][0]
    store.write_json(
        "cycles/0000/selected.json",
        {"batch": [{"item_id": i0, "data": {"record": {"x": 7.5}}}]},
    )
    store.write_json(
        "cycles/0001/selected.json",
        {"batch": [{"item_id": "gone", "data": {"record": {"x": 9.5}}}]},
    )
    records = label_time_records(store, 2)
    assert records == {i0: {"record": {"x": 7.5}}, "gone": {"record": {"x": 9.5}}}
    labels = [{"item_id": i0, "label": "a"}, {"item_id": "gone", "label": "b"}]
    snap = labeled_snapshot.fn(store, 2, pool, labels, records)
    assert (snap["rows"], snap["missing"]) == (2, 0)
    rows = store.read_parquet(snap["key"]).set_index("item_id")
    assert rows.loc[i0, "x"] == 7.5 and rows.loc["gone", "label"] == "b"


def _pool_with_ids() -> pd.DataFrame:
    return assign_ids(pd.DataFrame({"id": ["u1", "u2"], "x": [1.0, 2.0]}), "id")


def test_pool_edits_are_recorded_and_warned_about_once(tmp_path, caplog):
    ledgers = Ledgers(Store(tmp_path / "s"), 3)
    ledgers.append("dispatch", [{"event": "sent", "item_id": i} for i in ("u1", "u2", "u3")])
    ledgers.append("labels", [{"item_id": "u3", "label": "a"}, {"item_id": "u1", "label": "b"}])
    records = {"u1": {"record": {"id": "u1", "x": 1.5}}}
    with caplog.at_level(logging.WARNING, logger="loopwise.data"):
        fresh = record_pool_edits.fn(ledgers, 4, [_pool_with_ids()], records)
        again = record_pool_edits.fn(ledgers, 5, [_pool_with_ids()], records)
    assert {(e["item_id"], e["kind"], e["labeled"], e["cycle"]) for e in fresh} == {
        ("u3", "removed", True, 4),
        ("u1", "changed", True, 4),
    }
    assert again == []
    assert len(Ledgers(Store(tmp_path / "s"), 3).read("edits")) == 2
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 2
    assert any("1 item(s) already sent to annotators (1 labeled) no longer" in w for w in warned)
    assert any("u1" in w and "changed in the pool" in w for w in warned)


def test_status_and_report_show_the_pool_edits():
    from flows.cli.watch import _edits_line
    from loopwise import report as rp
    from loopwise.plots import report_figures

    edits = [
        {"item_id": f"f{i:016x}", "kind": "removed", "labeled": i < 4, "cycle": 2} for i in range(7)
    ] + [{"item_id": "u9", "kind": "changed", "columns": ["x"], "labeled": True, "cycle": 3}]
    line = _edits_line(edits)
    assert line.startswith("7 sent item(s) removed from the pool, 1 changed (5 labeled")
    assert line.endswith("and 3 more")
    cfg = CampaignConfig(name="r", data={"source": "x.csv", "label_column": "y"}, labels=["a", "b"])
    r = rp.build_report(
        cfg,
        history=[],
        batches={},
        labels=[],
        annotations=[],
        decisions={},
        random_points=[],
        edits=edits,
    )
    pe = r["pool_edits"]
    assert (pe["items"], pe["removed"], pe["changed"], pe["labeled"]) == (8, 7, 1, 5)
    page = rp.render_html(r, report_figures(r))
    assert "Pool edits" in page and "u9" in page and "8 item(s) sent to annotators" in page
    quiet = rp.render_html(
        rp.build_report(
            cfg,
            history=[],
            batches={},
            labels=[],
            annotations=[],
            decisions={},
            random_points=[],
        ),
        {},
    )
    assert "No item sent to annotators was removed or changed" in quiet


@pytest.mark.parametrize("text", [None, "body"])
def test_no_record_no_pool_row_is_left_out_and_counted(tmp_path, text):
    store = Store(tmp_path / "s")
    pool = assign_ids(pd.DataFrame({"body": ["a b"], "y": ["a"]}), None, label_column="y")
    labels = [{"item_id": "lost", "label": "a"}, {"item_id": pool["item_id"][0], "label": "a"}]
    snap = labeled_snapshot.fn(store, 1, pool, labels, {}, text)
    assert (snap["rows"], snap["missing"]) == (1, 1)
