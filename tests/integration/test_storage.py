"""storage.store.Store on both backends: a local folder and S3 on a real moto_server.

Only what touches the moto server is marked ``integration`` (the ``s3`` parameter of
the ``store`` fixture and the S3-only tests): the local half runs in ``make test-fast``.
"""

from __future__ import annotations

import json
import os
import pickle
import threading
import uuid

import numpy as np
import pandas as pd
import pytest

from storage import store as storage
from storage.store import Store, open_store
from storage.tables import read_table

needs_moto = pytest.mark.integration  # the s3_server fixture: a moto_server on 127.0.0.1


@pytest.fixture(params=["local", pytest.param("s3", marks=needs_moto)])
def store(request, tmp_path) -> Store:
    """An empty store: a fresh folder, or a fresh prefix in the moto bucket."""
    if request.param == "local":
        return Store(str(tmp_path / "store"))
    s3 = request.getfixturevalue("s3_server")
    return Store(f"s3://{s3['bucket']}/t-{uuid.uuid4().hex[:12]}")


def _s3(store: Store):
    return store._backend.client


def _frame(seed=0, n=5):
    rng = np.random.RandomState(seed)
    return pd.DataFrame(
        {
            "item_id": [f"r{i}" for i in range(n)],
            "x": rng.normal(size=n),
            "label": ["a", "b", None, "a", "b"][:n],
        }
    )


# ------------------------------------------------------------------ ledgers


def test_append_and_read_keep_append_order(store):
    key = "annotations/7.jsonl"
    assert store.read_jsonl(key) == [] and not store.exists(key)
    assert store.append_jsonl(key, []) == 0
    assert not store.exists(key)
    assert store.append_jsonl(key, [{"n": 0}, {"n": 1}]) == 2
    assert store.append_jsonl(key, ({"n": i} for i in range(2, 5))) == 3
    for i in range(5, 15):
        store.append_jsonl(key, [{"n": i, "nested": {"b": [1, 2]}}])
    assert [r["n"] for r in store.read_jsonl(key)] == list(range(15))
    assert store.exists(key)
    # a second Store on the same root (another process) sees and extends the same ledger
    other = Store(store.uri("").rstrip("/"))
    other.append_jsonl(key, [{"n": 15}])
    store.append_jsonl(key, [{"n": 16}])
    assert [r["n"] for r in other.read_jsonl(key)] == list(range(17))


def test_concurrent_appends_never_overwrite_each_other(store):
    key = "dispatch/9.jsonl"
    writers = [Store(store.uri("").rstrip("/")) for _ in range(6)]

    def work(w, s):
        for i in range(5):
            s.append_jsonl(key, [{"w": w, "i": i}])

    threads = [threading.Thread(target=work, args=(w, s)) for w, s in enumerate(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = store.read_jsonl(key)
    assert sorted((r["w"], r["i"]) for r in rows) == [(w, i) for w in range(6) for i in range(5)]
    for w in range(6):  # each writer's own records stay in its order
        assert [r["i"] for r in rows if r["w"] == w] == list(range(5))


def test_local_ledger_with_a_crash_cut_last_line(tmp_path, caplog):
    store = Store(tmp_path)
    store.append_jsonl("labels/1.jsonl", [{"n": 1}, {"n": 2}])
    with open(store.path("labels/1.jsonl"), "a", encoding="utf-8") as f:
        f.write('{"n": 3, "cut')  # the process died mid-append
    assert store.read_jsonl("labels/1.jsonl") == [{"n": 1}, {"n": 2}]
    assert "incomplete last line ignored" in caplog.text
    # a bad line that is not the last is damage, named by file and line
    store.path("labels/2.jsonl").write_text('{"n": 1}\nnot json\n{"n": 3}\n')
    with pytest.raises(ValueError, match=r"2\.jsonl line 2: not valid JSON"):
        store.read_jsonl("labels/2.jsonl")


@needs_moto
def test_s3_ledger_layout_legacy_object_and_segments(s3_server):
    store = Store(f"s3://{s3_server['bucket']}/lay-{uuid.uuid4().hex[:8]}/")
    bucket, prefix = store._backend.bucket, store._backend.prefix
    # a ledger copied from a local store: one object, read first
    _s3(store).put_object(Bucket=bucket, Key=f"{prefix}qc/3.jsonl", Body=b'{"n": 0}\n{"n": 1}\n')
    store.append_jsonl("qc/3.jsonl", [{"n": 2}])
    store.append_jsonl("qc/3.jsonl", [{"n": 3}, {"n": 4}])
    assert [r["n"] for r in store.read_jsonl("qc/3.jsonl")] == [0, 1, 2, 3, 4]
    listed = _s3(store).list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]
    assert sorted(o["Key"][len(prefix) :] for o in listed) == [
        "qc/3.jsonl",
        "qc/3.jsonl.d/000000000000.jsonl",
        "qc/3.jsonl.d/000000000001.jsonl",
    ]
    assert store.list("qc") == ["qc/3.jsonl"]
    # a damaged segment is an error naming it (a segment is one put: no crash tail)
    _s3(store).put_object(
        Bucket=bucket, Key=f"{prefix}qc/3.jsonl.d/000000000002.jsonl", Body=b'{"n": 5, "cu'
    )
    with pytest.raises(ValueError, match=r"3\.jsonl\.d/000000000002\.jsonl line 1"):
        store.read_jsonl("qc/3.jsonl")


@needs_moto
def test_s3_append_takes_the_next_segment_when_its_number_is_taken(s3_server, monkeypatch):
    root = f"s3://{s3_server['bucket']}/race-{uuid.uuid4().hex[:8]}"
    a, b = Store(root), Store(root)
    a.append_jsonl("l.jsonl", [{"by": "a", "n": 0}])
    b.append_jsonl("l.jsonl", [{"by": "b", "n": 1}])
    # a's hint says the next number is 1: it must find that taken (412) and move on
    real_next = a._backend._next_seq
    calls = []

    def stale_next(seg_prefix):
        calls.append(1)
        return 1 if len(calls) == 1 else real_next(seg_prefix)

    monkeypatch.setattr(a._backend, "_next_seq", stale_next)
    a.append_jsonl("l.jsonl", [{"by": "a", "n": 2}])
    assert len(calls) == 2
    assert [r["n"] for r in b.read_jsonl("l.jsonl")] == [0, 1, 2]


@needs_moto
def test_s3_append_retried_after_a_lost_response_is_not_duplicated(s3_server, monkeypatch):
    """botocore retries a put whose response was lost; the retry sees 412 on its own segment."""
    from botocore.exceptions import ClientError

    store = Store(f"s3://{s3_server['bucket']}/lost-{uuid.uuid4().hex[:8]}")
    client = _s3(store)
    real_put = client.put_object

    def put_then_lose_response(**kw):
        real_put(**kw)  # landed...
        real_put(**kw)  # ...and the retry finds it taken: 412

    monkeypatch.setattr(client, "put_object", put_then_lose_response)
    with pytest.raises(ClientError):
        put_then_lose_response(
            Bucket=store._backend.bucket, Key="probe", Body=b"x", IfNoneMatch="*"
        )
    store.append_jsonl("l.jsonl", [{"n": 0}])
    store.append_jsonl("l.jsonl", [{"n": 1}])
    assert [r["n"] for r in store.read_jsonl("l.jsonl")] == [0, 1]


# ------------------------------------------------------------------ documents and bytes


def test_write_json_replaces_atomically(store):
    assert store.read_json("state.json") is None
    assert store.read_json("state.json", {"cycle": 0}) == {"cycle": 0}
    store.write_json("state.json", {"cycle": 1, "when": pd.Timestamp("2024-01-01")})
    store.write_json("state.json", {"cycle": 2})
    assert store.read_json("state.json") == {"cycle": 2}
    store.write_json("checkpoints/poll/3.json", [1, 2, 3])
    assert store.read_json("checkpoints/poll/3.json") == [1, 2, 3]
    assert store.list() == ["checkpoints/poll/3.json", "state.json"]


def test_local_write_json_that_fails_keeps_the_old_document(tmp_path, monkeypatch):
    store = Store(tmp_path)
    store.write_json("state.json", {"cycle": 1})

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        store.write_json("state.json", {"cycle": 2})
    monkeypatch.undo()
    assert store.read_json("state.json") == {"cycle": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]  # no temp file left


def test_bytes_exists_and_missing_objects(store):
    assert not store.exists("blobs/a.bin")
    with pytest.raises(FileNotFoundError, match=r"blobs/a\.bin"):
        store.read_bytes("blobs/a.bin")
    store.write_bytes("blobs/a.bin", b"\x00\x01")
    store.write_bytes("blobs/a.bin", b"\x02")
    assert store.read_bytes("blobs/a.bin") == b"\x02" and store.exists("blobs/a.bin")
    store.write_bytes("bad.json", b"{nope")
    with pytest.raises(ValueError, match=r"bad\.json: not valid JSON"):
        store.read_json("bad.json")


def test_list_returns_keys_under_a_folder(store):
    store.write_json("state.json", {})
    store.write_bytes("models/m1/model.pkl", b"m")
    store.write_bytes("models/m2.pkl", b"m")
    store.write_bytes("models_old/x", b"m")
    store.append_jsonl("labels/1.jsonl", [{"a": 1}])
    store.append_jsonl("labels/1.jsonl", [{"a": 2}])
    assert store.list("models") == ["models/m1/model.pkl", "models/m2.pkl"]
    assert store.list("models/") == ["models/m1/model.pkl", "models/m2.pkl"]
    assert store.list("labels") == ["labels/1.jsonl"]
    assert store.list("nothing") == []
    assert store.list() == [
        "labels/1.jsonl",
        "models/m1/model.pkl",
        "models/m2.pkl",
        "models_old/x",
        "state.json",
    ]


@pytest.mark.parametrize("bad", ["", ".", "../x", "a/../../b", "/etc/passwd", "a/../b", "s3://b/k"])
def test_bad_keys_are_refused(store, bad):
    calls = [
        lambda: store.append_jsonl(bad, [{"a": 1}]),
        lambda: store.read_jsonl(bad),
        lambda: store.write_json(bad, {}),
        lambda: store.read_json(bad),
        lambda: store.write_bytes(bad, b""),
        lambda: store.read_bytes(bad),
        lambda: store.exists(bad),
        lambda: store.read_parquet(bad),
    ]
    if bad not in ("", "."):  # the root itself is a valid folder / uri
        calls += [
            lambda: store.uri(bad),
            lambda: store.list(bad),
            lambda: store.write_snapshot(bad, _frame()),
        ]
    for call in calls:
        with pytest.raises(ValueError, match="relative path inside the root"):
            call()
    assert store.list() == []


def test_uri_and_repr(store):
    uri = store.uri("labels/1.jsonl")
    if store.is_local:
        assert uri == str(store.root / "labels" / "1.jsonl")
        assert store.path("labels/1.jsonl") == store.root / "labels" / "1.jsonl"
    else:
        assert uri == f"{store.root}/labels/1.jsonl" and uri.startswith("s3://")
        with pytest.raises(TypeError, match="not a local folder"):
            store.path("labels/1.jsonl")
        store.write_json("x.json", {})  # the client exists now: still nothing secret shown
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
    if secret:
        assert secret not in repr(store) and secret not in str(vars(store))
    assert repr(store) == f"Store({str(store.root)!r})"
    again = pickle.loads(pickle.dumps(store))
    again.write_json("y.json", {"ok": 1})
    assert store.read_json("y.json") == {"ok": 1}
    assert open_store(store) is store and open_store().root == storage.DEFAULT_ROOT


def test_default_root_is_local():
    assert Store().root == storage.DEFAULT_ROOT and Store().is_local


# ------------------------------------------------------------------ snapshots


def test_snapshot_key_is_the_content_hash(store, monkeypatch):
    df = _frame(0)
    key = store.write_snapshot("snapshots/pool", df)
    assert key.startswith("snapshots/pool/") and key.endswith(".parquet")
    assert len(key.rsplit("/", 1)[1]) == len("0123456789abcdef.parquet")
    pd.testing.assert_frame_equal(store.read_parquet(key), df)
    # same content: same key, and nothing is written again
    writes = []
    real = type(store._backend).write

    def spy(self, k, data, **kw):
        written = real(self, k, data, **kw)
        writes.append((k, written))
        return written

    monkeypatch.setattr(type(store._backend), "write", spy)
    assert store.write_snapshot("snapshots/pool", _frame(0)) == key
    assert writes == [(key, False)]
    other = store.write_snapshot("snapshots/pool", _frame(1))
    assert other != key
    assert store.list("snapshots") == sorted([key, other])
    pd.testing.assert_frame_equal(store.read_parquet(other), _frame(1))
    assert store.write_snapshot("", df) == key.rsplit("/", 1)[1]


def test_read_parquet_of_something_else_names_it(store):
    store.write_bytes("snap/x.parquet", b"not parquet")
    with pytest.raises(ValueError, match=r"snap/x\.parquet: cannot read as Parquet"):
        store.read_parquet("snap/x.parquet")


# ------------------------------------------------------------------ quarantine


def test_quarantine_records_a_reason_per_row(store):
    df = pd.DataFrame(
        {
            "item_id": ["a", "b", "c"],
            "x": [1.5, np.nan, 3.0],
            "n": np.array([1, 2, 3], dtype=np.int64),
            "t": pd.to_datetime(["2024-01-01", None, "2024-01-03"]),
        },
        index=[10, 11, 12],
    )
    bad = df.loc[[11, 12]]
    n = store.quarantine("s3://raw/pool.csv", bad, ["x is missing", "t in the future"], cycle=3)
    assert n == 2
    reasons = pd.Series({12: "dup", 10: "empty"})  # a Series aligns on the index
    assert store.quarantine("data/pool.csv", df.loc[[10, 12]], reasons, cycle=None) == 2
    assert store.quarantine("data/pool.csv", df.iloc[:0], [], cycle=4) == 0
    assert store.list("quarantine") == ["quarantine/pool.jsonl"]
    recs = store.read_jsonl("quarantine/pool.jsonl")
    assert [(r["row"], r["id"], r["reason"], r["cycle"]) for r in recs] == [
        (11, "b", "x is missing", 3),
        (12, "c", "t in the future", 3),
        (10, "a", "empty", None),
        (12, "c", "dup", None),
    ]
    assert recs[0]["values"] == {"item_id": "b", "x": None, "n": 2, "t": None}
    assert recs[1]["values"]["t"].startswith("2024-01-03")
    assert recs[0]["source"] == "s3://raw/pool.csv" and recs[0]["time"]
    json.dumps(recs)  # plain JSON all through
    with pytest.raises(ValueError, match="1 reasons for 2 rows"):
        store.quarantine("data/pool.csv", bad, ["only one"], cycle=1)
    assert store.quarantine("weird name?.parquet", bad, "schema", cycle=1) == 2
    assert store.exists("quarantine/weird_name.jsonl")


# ------------------------------------------------------------------ data sources


def test_read_table_csv_and_parquet(store, tmp_path):
    df = _frame(2)
    store.write_bytes("raw/pool.csv", df.to_csv(index=False).encode())
    store.write_bytes("raw/pool.tsv", df.to_csv(index=False, sep="\t").encode())
    snap = store.write_snapshot("raw", df)
    pd.testing.assert_frame_equal(read_table(store.uri("raw/pool.csv")), df)
    pd.testing.assert_frame_equal(read_table(store.uri("raw/pool.tsv")), df)
    pd.testing.assert_frame_equal(read_table(store.uri(snap)), df)
    # an explicit format (config ``data.format``) beats the file name
    store.write_bytes("raw/export.txt", df.to_csv(index=False).encode())
    store.write_bytes("raw/export.bin", store.read_bytes(snap))
    pd.testing.assert_frame_equal(read_table(store.uri("raw/export.txt"), format="csv"), df)
    pd.testing.assert_frame_equal(read_table(store.uri("raw/export.bin"), format="parquet"), df)
    if store.is_local:
        pd.testing.assert_frame_equal(read_table(store.path("raw/pool.csv")), df)  # a Path


def test_read_table_errors_name_the_file(store):
    with pytest.raises(FileNotFoundError, match=r"raw/missing\.csv"):
        read_table(store.uri("raw/missing.csv"))
    store.write_bytes("raw/broken.parquet", b"PAR1 garbage")
    with pytest.raises(ValueError, match=r"raw/broken\.parquet: cannot read as Parquet"):
        read_table(store.uri("raw/broken.parquet"))
    with pytest.raises(ValueError, match=r"raw/pool\.xlsx: unknown table format"):
        read_table(store.uri("raw/pool.xlsx"))
    with pytest.raises(ValueError, match=r"raw/pool\.csv: unknown table format 'xlsx'"):
        read_table(store.uri("raw/pool.csv"), format="xlsx")


@needs_moto
def test_read_table_from_a_missing_bucket_names_it(s3_server):
    with pytest.raises(FileNotFoundError, match=r"s3://no-such-bucket-xyz/pool\.csv"):
        read_table("s3://no-such-bucket-xyz/pool.csv")


# ------------------------------------------------------------------ client configuration


@needs_moto
def test_standard_aws_endpoint_variables_are_honoured(s3_server, monkeypatch):
    """Without LOOPWISE_S3_ENDPOINT_URL, boto3 itself reads AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL."""
    monkeypatch.delenv("LOOPWISE_S3_ENDPOINT_URL")
    for var in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        monkeypatch.setenv(var, s3_server["endpoint_url"])
        store = Store(f"s3://{s3_server['bucket']}/env-{uuid.uuid4().hex[:8]}")
        store.write_json("a.json", {"via": var})
        assert store.read_json("a.json") == {"via": var}
        assert store._backend.client.meta.endpoint_url == s3_server["endpoint_url"]
        monkeypatch.delenv(var)
    cfg = storage._s3_client().meta.config
    assert cfg.retries["mode"] == "standard"


@needs_moto
def test_s3_append_retries_the_same_segment_after_a_409(s3_server, monkeypatch):
    """409 ConditionalRequestConflict: a write of that name is in flight and may fail -- no gap."""
    from botocore.exceptions import ClientError

    store = Store(f"s3://{s3_server['bucket']}/c409-{uuid.uuid4().hex[:8]}")
    client = _s3(store)
    real_put, calls = client.put_object, []

    def conflict_once(**kw):
        calls.append(kw["Key"])
        if len(calls) == 1:
            raise ClientError(
                {
                    "Error": {"Code": "ConditionalRequestConflict", "Message": "in flight"},
                    "ResponseMetadata": {"HTTPStatusCode": 409},
                },
                "PutObject",
            )
        return real_put(**kw)

    monkeypatch.setattr(client, "put_object", conflict_once)
    store.append_jsonl("l.jsonl", [{"n": 0}])
    assert calls[0] == calls[1] and calls[0].endswith("l.jsonl.d/000000000000.jsonl")
    store.append_jsonl("l.jsonl", [{"n": 1}])
    assert calls[2].endswith("l.jsonl.d/000000000001.jsonl")
    assert [r["n"] for r in store.read_jsonl("l.jsonl")] == [0, 1]


# --- one run per campaign: the lease ---------------------------------------------------------


def test_create_json_creates_once_whoever_races(store):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        won = list(pool.map(lambda i: store.create_json("lease/x.json", {"by": i}), range(8)))
    assert won.count(True) == 1, won
    assert store.read_json("lease/x.json") == {"by": won.index(True)}
    assert [k for k in store.list("lease")] == ["lease/x.json"], "no temp file left behind"


def test_a_campaign_lease_has_one_holder_among_racing_runs(store):
    from concurrent.futures import ThreadPoolExecutor

    from storage.campaign import CampaignBusy, acquire_lease

    def take(i):
        try:
            return acquire_lease(store, f"run-{i}", 60).holder
        except CampaignBusy as busy:
            return busy

    with ThreadPoolExecutor(6) as pool:
        got = list(pool.map(take, range(6)))
    holders = [g for g in got if isinstance(g, str)]
    assert len(holders) == 1, got
    assert all(b.holder["holder"] == holders[0] for b in got if isinstance(b, CampaignBusy))
