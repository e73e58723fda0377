"""A partitioned pool (issue 16) on Prefect's test harness: partitions checked once per
content, scored where they live (in the flow process, on a real local Dask cluster of
worker processes, on an S3-compatible server), the same batch the single-file pool gets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.datasets import make_classification

from flows.stages.context import CampaignRun, PoolData
from flows.stages.pool import PartitionedData, load_partitioned
from flows.stages.select import _compose
from loopwise.batch import plan_batch
from loopwise.config import CampaignConfig
from loopwise.features import model_inputs
from storage.campaign import campaign_store, read_state
from storage.store import Store, quarantine_key
from tasks.labelstudio import LabelStudioTarget
from tasks.partitions import numeric_features
from tasks.train import fit
from tasks.validate import ValidationFailed

pytestmark = pytest.mark.integration

LABELS = ["ant", "bee", "cat", "dog"]


def _table(n: int, seed: int = 7, start: int = 0) -> pd.DataFrame:
    X, y = make_classification(
        n_samples=n,
        n_features=6,
        n_informative=5,
        n_redundant=0,
        n_classes=4,
        n_clusters_per_class=1,
        random_state=seed,
    )
    df = pd.DataFrame(X.round(4), columns=[f"f{i}" for i in range(6)])
    df.insert(0, "uid", [f"u{start + i:05d}" for i in range(n)])
    df["truth"] = np.asarray(LABELS)[y]
    return df


def _suite(tmp: Path) -> str:
    exps = [
        {
            "type": "expect_column_values_to_be_between",
            "kwargs": {"column": f"f{i}", "min_value": -50, "max_value": 50},
        }
        for i in range(6)
    ]
    path = tmp / "suite.json"
    path.write_text(json.dumps({"name": "pool", "expectations": exps}))
    return str(path)


def _cfg(tmp: Path, source: str, *, name: str = "pp", **data: Any) -> CampaignConfig:
    settings = {
        "source": source,
        "id_column": "uid",
        "label_column": "truth",
        "holdout": {"fraction": 0.3},
        **data,
    }
    extra = {k: data.pop(k) for k in ("dask_address", "storage_root") if k in data}
    settings = {k: v for k, v in settings.items() if k not in extra}
    return CampaignConfig.model_validate(
        {
            "name": name,
            "data": settings,
            "labels": LABELS,
            "batch_size": 20,
            "stop_set_size": 100,
            "storage_root": extra.get("storage_root", str(tmp / "store")),
            "dask_address": extra.get("dask_address"),
        }
    )


def _run(cfg: CampaignConfig) -> CampaignRun:
    store = campaign_store(cfg.storage_root, cfg.name)
    run = CampaignRun(
        cfg, store, read_state(store), LabelStudioTarget("http://127.0.0.1:1", ""), {}
    )
    run.use_project(1)
    run.save(cycle=1)
    return run


def _select(run: CampaignRun, data: Any, strategy: str | None = None) -> list[dict[str, Any]]:
    """The batch the select stage composes, with a model fit on 60 holdout rows, in a flow
    (as the cycle runs it)."""
    from prefect import flow

    return flow(name="select", validate_parameters=False)(_select_in_flow)(run, data, strategy)


def _select_in_flow(run: CampaignRun, data: Any, strategy: str | None) -> list[dict[str, Any]]:
    cfg = run.cfg
    lab = data.holdout.sort_values("uid").iloc[:60]
    X_lab = model_inputs(cfg, numeric_features(cfg, lab.drop(columns=["truth"]), where="t"))[0]
    y_lab = lab["truth"].astype(str).to_numpy()
    model = fit.fn(cfg, X_lab, y_lab)
    name = strategy or cfg.strategy.name
    plan = plan_batch(
        20, 0.1, strategy=name, params={}, cold_start="cold_start", drift_fallback=None
    )
    X_pool = None
    if not data.partitioned:
        X_pool = model_inputs(cfg, data.pool)[0]
    return _compose(run, data, plan, X_pool, model, (X_lab, y_lab))["batch"]


def _picked(batch: list[dict[str, Any]]) -> list[str]:
    return [b["item_id"] for b in batch if not b["control"]]


def _write_parts(folder: Path, df: pd.DataFrame, rows: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, start in enumerate(range(0, len(df), rows)):
        path = folder / f"part-{i:03d}.parquet"
        df.iloc[start : start + rows].to_parquet(path, index=False)
        paths.append(path)
    return paths


# ------------------------------------------------------------------ the same batch


@pytest.mark.parametrize("strategy", ["margin", None])
def test_the_partitioned_pool_picks_what_the_single_file_pool_picks(harness, tmp_path, strategy):
    _table(3000).to_csv(tmp_path / "pool.csv", index=False)
    src = str(tmp_path / "pool.csv")
    whole = _run(_cfg(tmp_path, src, name="whole"))
    parts = _run(_cfg(tmp_path, src, name="parts", partitioned=True, partition_rows=1000))
    a, b = whole.load_data(), parts.load_data()
    assert isinstance(a, PoolData) and isinstance(b, PartitionedData)
    assert (a.n_pool, len(a.holdout)) == (b.n_pool, len(b.holdout))
    assert sorted(a.holdout["item_id"]) == sorted(b.holdout["item_id"])
    batch_a, batch_b = _select(whole, a, strategy), _select(parts, b, strategy)
    assert [(x["item_id"], x["control"]) for x in batch_a] == [
        (x["item_id"], x["control"]) for x in batch_b
    ]
    # The control share: the undispatched pool rows with the smallest draw keys.
    control = [x["item_id"] for x in batch_b if x["control"]]
    assert len(control) == len(batch_a) - len(_picked(batch_a)) > 0
    assert not set(control) & (set(b.holdout["item_id"]) | set(_picked(batch_b)))


def test_the_same_batch_with_and_without_a_dask_cluster_of_worker_processes(harness, tmp_path):
    from distributed import LocalCluster

    _write_parts(tmp_path / "pool", _table(3000), 750)
    src = str(tmp_path / "pool") + "/"
    local = _run(_cfg(tmp_path, src, name="inproc"))
    in_process = _select(local, local.load_data())
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as c:
        on_dask = _run(_cfg(tmp_path, src, name="ondask", dask_address=c.scheduler_address))
        data = on_dask.load_data()
        batch = _select(on_dask, data)
    assert [x["item_id"] for x in batch] == [x["item_id"] for x in in_process]
    assert [x["control"] for x in batch] == [x["control"] for x in in_process]
    assert sum(bool(f.get("validated")) for f in data.facts) == 4  # checked on the workers
    assert on_dask.store.list("pool/checked")  # written by the workers to the campaign store


# ------------------------------------------------------------------ validated once


def test_only_a_changed_partition_is_validated_again(harness, tmp_path):
    paths = _write_parts(tmp_path / "pool", _table(2000), 500)
    cfg = _cfg(tmp_path, str(tmp_path / "pool"), validation_suite=_suite(tmp_path))
    store = campaign_store(cfg.storage_root, cfg.name)
    first = load_partitioned(cfg, store, [], 1)
    assert [bool(f["validated"]) for f in first.facts] == [True] * 4
    again = load_partitioned(cfg, store, [], 2)
    assert [bool(f["validated"]) for f in again.facts] == [False] * 4
    edited = pd.read_parquet(paths[2])
    edited.loc[3, "f1"] = 999.0  # out of the suite's range: quarantined when revalidated
    edited.to_parquet(paths[2], index=False)
    third = load_partitioned(cfg, store, [], 3)
    assert [bool(f["validated"]) for f in third.facts] == [False, False, True, False]
    assert third.quarantined == 1 and third.n_pool == again.n_pool - 1
    bad = store.read_jsonl(quarantine_key(str(paths[2])))
    assert [r["id"] for r in bad] == [edited.loc[3, "uid"]]
    assert "f1" in bad[0]["reason"]


def test_a_corrupt_partition_is_quarantined_with_its_path_and_the_rest_goes_on(harness, tmp_path):
    paths = _write_parts(tmp_path / "pool", _table(2000), 200)
    paths[4].write_bytes(b"PAR1 this is not a parquet file")
    cfg = _cfg(tmp_path, str(tmp_path / "pool"), min_valid_fraction=0.85)
    store = campaign_store(cfg.storage_root, cfg.name)
    data = load_partitioned(cfg, store, [], 1)
    (broken,) = [f for f in data.facts if f.get("error")]
    assert broken["partition"] == str(paths[4])
    (record,) = store.read_jsonl(quarantine_key(str(paths[4])))
    assert str(paths[4]) in record["values"]["partition"]
    assert "cannot read as Parquet" in record["reason"]
    assert data.n_pool + len(data.known) > 0 and data.quarantined == 200
    load_partitioned(cfg, store, [], 2)  # seen again: quarantined once
    assert len(store.read_jsonl(quarantine_key(str(paths[4])))) == 1
    strict = _cfg(tmp_path, str(tmp_path / "pool"), name="strict", min_valid_fraction=0.95)
    with pytest.raises(ValidationFailed, match=r"part-004\.parquet"):
        load_partitioned(strict, campaign_store(strict.storage_root, strict.name), [], 1)


# ------------------------------------------------------------------ a single file, converted


def test_a_grown_csv_converts_only_its_new_rows_and_an_edit_revalidates_one_partition(
    harness, tmp_path
):
    csv = tmp_path / "pool.csv"
    _table(3000).to_csv(csv, index=False)
    cfg = _cfg(
        tmp_path,
        str(csv),
        partitioned=True,
        partition_rows=1000,
        validation_suite=_suite(tmp_path),
    )
    store = campaign_store(cfg.storage_root, cfg.name)
    first = load_partitioned(cfg, store, [], 1)
    keys = [r.key for r in first.refs]
    blobs = [store.read_bytes(k) for k in keys]
    assert len(keys) == 3
    more = _table(1500, seed=8, start=3000)
    with open(csv, "a") as f:
        more.to_csv(f, index=False, header=False)
    grown = load_partitioned(cfg, store, [], 2)
    assert [r.key for r in grown.refs][:3] == keys  # the old partitions kept as they were
    assert [store.read_bytes(k) for k in keys] == blobs
    assert [bool(f["validated"]) for f in grown.facts] == [False, False, False, True, True]
    assert sum(f["rows"] for f in grown.facts) == 4500
    # An edit inside the file converts it again; only the partition whose rows changed
    # has new content, so only it is validated.
    df = pd.read_csv(csv)
    df.loc[1500, "f0"] = 1.2345
    df.to_csv(csv, index=False)
    edited = load_partitioned(cfg, store, [], 3)
    assert [bool(f["validated"]) for f in edited.facts] == [False, True, False, False, False]
    assert not any(k.startswith("pool/parts/v1/") for k in store.list("pool/parts"))


# ------------------------------------------------------------------ wide features


def test_a_vector_column_is_a_feature_without_a_column_per_dimension(harness, tmp_path):
    df = _table(2000)
    emb = df[[f"f{i}" for i in range(6)]].to_numpy(np.float32)
    emb = np.hstack([emb, emb[:, :2] * 0.5])  # 8 dimensions
    table = pa.table(
        {
            "uid": df["uid"],
            "emb": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), 8),
            "truth": df["truth"],
        }
    )
    (tmp_path / "parts").mkdir()
    for i in range(4):
        pq.write_table(table.slice(i * 500, 500), tmp_path / "parts" / f"p{i}.parquet")
    pq.write_table(table, tmp_path / "pool.parquet")
    whole = _run(_cfg(tmp_path, str(tmp_path / "pool.parquet"), name="flat"))
    parts = _run(_cfg(tmp_path, str(tmp_path / "parts"), name="vec"))
    a, b = whole.load_data(), parts.load_data()
    assert "emb_7" in a.pool.columns  # the single-file path spreads the vector
    batch_a, batch_b = _select(whole, a, "margin"), _select(parts, b, "margin")
    assert [x["item_id"] for x in batch_a] == [x["item_id"] for x in batch_b]
    record = batch_b[0]["data"]["record"]
    assert list(record) == ["uid", "emb"] and len(record["emb"]) == 8
    # The gateway serves it with the fields the single-file pool has, reading one partition.
    from serving.inputs import InputSchema
    from tasks.data import pool_head

    fields = list(InputSchema.from_pool(parts.cfg, pool_head(parts.cfg)).fields)
    assert fields == [f"emb_{i}" for i in range(8)]
    assert fields == list(InputSchema.from_pool(whole.cfg, pool_head(whole.cfg)).fields)


# ------------------------------------------------------------------ on S3


def test_partitions_on_s3_are_checked_once_and_scored(harness, tmp_path, s3_server):
    import boto3

    bucket = s3_server["bucket"]
    client = boto3.client("s3", endpoint_url=s3_server["endpoint_url"])
    df = _table(2000)
    for i in range(4):
        buf = df.iloc[i * 500 : (i + 1) * 500].to_parquet(index=False)
        client.put_object(Bucket=bucket, Key=f"lake/pool/part-{i}.parquet", Body=buf)
    src = f"s3://{bucket}/lake/pool/"
    cfg = _cfg(tmp_path, src, name="ons3", storage_root=f"s3://{bucket}/stores")
    run = _run(cfg)
    first = run.load_data()
    assert [bool(f["validated"]) for f in first.facts] == [True] * 4
    assert first.facts[0]["partition"] == f"{src}part-0.parquet"
    batch = _select(run, first)
    second = run.load_data()
    assert [bool(f["validated"]) for f in second.facts] == [False] * 4
    assert Store(f"s3://{bucket}/stores/ons3").list("pool/checked")
    assert len(batch) == 20 and len({b["item_id"] for b in batch}) == 20
    assert not {b["item_id"] for b in batch} & set(first.holdout["item_id"])


def test_a_partition_holding_more_of_the_shortlist_than_its_share_is_asked_again(
    harness, tmp_path, monkeypatch
):
    import flows.pool
    from loopwise.items import holdout_mask

    # The pool sorted by uncertainty, so that the first partition holds the whole shortlist
    # of the default strategy (200 rows for a batch of one pick and one control) while each
    # partition sends 3 x its share of it (60 rows of 10 partitions).
    df = _table(3000)
    hold = holdout_mask(df["uid"].tolist(), 0.3)
    lab = df[hold].sort_values("uid").iloc[:60]
    cfg0 = _cfg(tmp_path, "x.csv")
    X_lab = model_inputs(cfg0, lab.drop(columns=["truth"]))[0]
    model = fit.fn(cfg0, X_lab, lab["truth"].to_numpy())
    proba = np.sort(model.predict_proba(model_inputs(cfg0, df.drop(columns=["truth"]))[0]))
    df = df.iloc[np.argsort(proba[:, -1] - proba[:, -2], kind="stable")]
    df.to_csv(tmp_path / "pool.csv", index=False)
    src = str(tmp_path / "pool.csv")
    whole = _run(_cfg(tmp_path, src, name="sorted-whole"))
    parts = _run(_cfg(tmp_path, src, name="sorted-parts", partitioned=True, partition_rows=300))
    calls: list[int] = []
    real = flows.pool.map_partitions

    def spy(cfg, which, *args):
        if which == "score":
            calls.append(len(args[1]))
        return real(cfg, which, *args)

    monkeypatch.setattr(flows.pool, "map_partitions", spy)
    small = {"batch_size": 2}
    whole.cfg = whole.cfg.model_copy(update=small)
    parts.cfg = parts.cfg.model_copy(update=small)
    a = _select_n(whole, whole.load_data(), 2)
    b = _select_n(parts, parts.load_data(), 2)
    assert calls[0] == 10 and len(calls) == 2 and 0 < calls[1] < 10  # asked again: a few
    assert [x["item_id"] for x in a] == [x["item_id"] for x in b]


def _select_n(run: CampaignRun, data: Any, n: int) -> list[dict[str, Any]]:
    from prefect import flow

    def body(run, data):
        cfg = run.cfg
        lab = data.holdout.sort_values("uid").iloc[:60]
        X_lab = model_inputs(cfg, numeric_features(cfg, lab.drop(columns=["truth"]), where="t"))[0]
        y_lab = lab["truth"].astype(str).to_numpy()
        model = fit.fn(cfg, X_lab, y_lab)
        plan = plan_batch(
            n,
            0.2,
            strategy=cfg.strategy.name,
            params={},
            cold_start="cold_start",
            drift_fallback=None,
        )
        X_pool = None if data.partitioned else model_inputs(cfg, data.pool)[0]
        return _compose(run, data, plan, X_pool, model, (X_lab, y_lab))["batch"]

    return flow(name="select-n", validate_parameters=False)(body)(run, data)
