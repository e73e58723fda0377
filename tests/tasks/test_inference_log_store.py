"""storage.inference_log on a local store: group commit, rolling, the incremental reader.

The tests that take the ``store`` fixture also run on S3 (a moto server) in
``tests/integration/test_inference_log_s3.py``, which imports them.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from loopwise.inference_log import check_records, validate_record
from storage.inference_log import LogWriter, read_new
from storage.store import StorageError, Store

ROOT = Path(__file__).resolve().parents[2]


def rec(i: int | str, **extra) -> dict:
    return validate_record(
        {
            "request_id": f"r{i}",
            "time": "2025-03-01T10:00:00Z",
            "model_name": "m",
            "model_version": "1",
            "inputs": {"x": float(i) if isinstance(i, int) else 0.0},
            "proba": {"a": 0.6, "b": 0.4},
            "prediction": "a",
            **extra,
        }
    )


def ids(records) -> list[str]:
    return [raw["request_id"] for _, _, raw in records]


def read_all(store, cursor=None, **kw):
    return read_new(store, cursor or {}, **kw)


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(str(tmp_path / "store"))


# ------------------------------------------------------------------ the writer


def test_group_commit_writes_every_record_once_in_fewer_commits(store):
    n_threads, per_thread = 8, 25
    start = threading.Barrier(n_threads)
    errors = []
    with LogWriter(store, commit_interval=0.02) as writer:

        def work(t):
            start.wait()
            try:
                for i in range(per_thread):
                    assert writer.write([rec(f"{t}-{i}")]) == 1
            except Exception as err:  # pragma: no cover - reported below
                errors.append(err)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stats = writer.stats
    assert errors == []
    got = ids(read_all(store).records)
    expected = {f"r{t}-{i}" for t in range(n_threads) for i in range(per_thread)}
    assert sorted(got) == sorted(expected)  # every record, exactly once
    assert stats["records"] == n_threads * per_thread
    assert stats["commits"] < n_threads * per_thread  # writes were grouped
    assert stats["failures"] == 0


def test_write_fills_the_writer_and_blocks_until_durable(store):
    with LogWriter(store, writer_id="gw-1", commit_interval=0) as writer:
        writer.write([rec(0), rec(1, writer="external")])
        # durable when write() returns: a second reader (another process) already sees it
        on_disk = Store(store.uri("")).read_jsonl("stream/log/gw-1/000000.jsonl")
        assert [r["writer"] for r in on_disk] == ["gw-1", "external"]
        assert writer.write([]) == 0
        with pytest.raises(TypeError, match="list of dicts"):
            writer.write(rec(2))
        with pytest.raises(TypeError, match=r"records\[1\]"):
            writer.write([rec(2), "x"])
    with pytest.raises(RuntimeError, match="closed"):
        writer.write([rec(3)])
    writer.close()  # twice is fine


def test_segments_roll_after_segment_records(store):
    with LogWriter(store, writer_id="w", commit_interval=0, segment_records=5) as writer:
        for i in range(12):
            writer.write([rec(i)])
        writer.write([rec(f"big{i}") for i in range(7)])  # larger than the room left: alone
        writer.write([rec("last")])
    sizes = {
        key: len(store.read_jsonl(key)) for key in store.list("stream/log/w") if "closed" not in key
    }
    assert sizes == {
        "stream/log/w/000000.jsonl": 5,
        "stream/log/w/000001.jsonl": 5,
        "stream/log/w/000002.jsonl": 2,
        "stream/log/w/000003.jsonl": 7,
        "stream/log/w/000004.jsonl": 1,
    }
    assert store.exists("stream/log/w/closed.json")
    # a closed writer id is not reused (readers stop looking at its folder)
    with pytest.raises(ValueError, match="closed"):
        LogWriter(store, writer_id="w")


def test_two_writers_in_one_store_never_share_a_segment(store):
    a, b = LogWriter(store, commit_interval=0), LogWriter(store, commit_interval=0)
    assert a.writer_id != b.writer_id
    for i in range(5):
        a.write([rec(f"a{i}")])
        b.write([rec(f"b{i}")])
    a.close()
    b.close()
    out = read_all(store).records
    assert sorted(ids(out)) == sorted([f"r{w}{i}" for w in "ab" for i in range(5)])
    names = [name for name, _, _ in out]
    assert names == sorted(names)  # segments in name order, one writer's after the other's
    by_writer = {raw["writer"] for _, _, raw in out}
    assert by_writer == {a.writer_id, b.writer_id}


def test_a_failing_append_raises_to_every_writer_of_the_group(store, monkeypatch):
    real = store.append_jsonl
    fail = threading.Event()
    fail.set()

    def flaky(key, records, **kw):
        if fail.is_set():
            fail.clear()
            raise OSError("disk full")
        return real(key, records, **kw)

    monkeypatch.setattr(store, "append_jsonl", flaky)
    with LogWriter(store, writer_id="w", commit_interval=0.05) as writer:
        start = threading.Barrier(3)
        outcome = {}

        def work(t):
            start.wait()
            try:
                writer.write([rec(f"lost{t}")])
                outcome[t] = "ok"
            except StorageError as err:
                outcome[t] = str(err)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        failed = [t for t, o in outcome.items() if o != "ok"]
        assert failed  # the first group failed, and each of its writers heard of it
        assert all("disk full" in outcome[t] and "not written" in outcome[t] for t in failed)
        writer.write([rec("after")])
        stats = writer.stats
    assert stats["failures"] == 1
    got = ids(read_all(store).records)
    assert "rafter" in got
    assert not {f"rlost{t}" for t in failed} & set(got)  # nothing of the failed group
    # the writer rolled past the failed append: the next records are in a new segment
    assert "stream/log/w/000000.jsonl" not in store.list("stream/log/w")


# ------------------------------------------------------------------ the reader


def test_read_new_is_incremental_exactly_once_and_respects_limit(store):
    with LogWriter(store, writer_id="w", commit_interval=0, segment_records=4) as writer:
        writer.write([rec(i) for i in range(3)])
        writer.write([rec(i) for i in range(3, 10)])
        first = read_new(store, {}, limit=4)
        assert ids(first.records) == ["r0", "r1", "r2", "r3"]
        second = read_new(store, first.cursor, limit=4)
        assert ids(second.records) == ["r4", "r5", "r6", "r7"]
        writer.write([rec(10), rec(11)])
        third = read_new(store, second.cursor)
        assert ids(third.records) == ["r8", "r9", "r10", "r11"]
        fourth = read_new(store, third.cursor)
        assert fourth.records == [] and fourth.fetched == ()
    positions = [(n, p) for n, p, _ in first.records + second.records + third.records]
    assert positions == [
        ("w/000000.jsonl", 0),
        ("w/000000.jsonl", 1),
        ("w/000000.jsonl", 2),
        ("w/000001.jsonl", 0),
        ("w/000001.jsonl", 1),
        ("w/000001.jsonl", 2),
        ("w/000001.jsonl", 3),
        ("w/000001.jsonl", 4),
        ("w/000001.jsonl", 5),
        ("w/000001.jsonl", 6),
        ("w/000002.jsonl", 0),
        ("w/000002.jsonl", 1),
    ]
    json.dumps(third.cursor)  # JSON-safe


def test_sealed_segments_are_not_read_again(store):
    writer = LogWriter(store, writer_id="w", commit_interval=0, segment_records=3)
    for i in range(7):
        writer.write([rec(i)])
    first = read_all(store)
    assert len(first.records) == 7
    segs = first.cursor["segments"]
    assert segs["w/000000.jsonl"]["sealed"] and segs["w/000001.jsonl"]["sealed"]
    assert not segs["w/000002.jsonl"].get("sealed")  # the live one
    writer.write([rec(7)])
    second = read_all(store, first.cursor)
    assert ids(second.records) == ["r7"]
    assert second.fetched == ("w/000002.jsonl",)  # only the live segment was read
    writer.close()
    third = read_all(store, second.cursor)  # closed: its last segment is sealed too
    assert third.records == [] and third.cursor["closed"] == ["w"]
    assert third.cursor["segments"]["w/000002.jsonl"]["sealed"]
    assert read_all(store, third.cursor).fetched == ()


def test_a_torn_last_line_is_read_once_complete_and_skipped_once_sealed(store):
    writer = LogWriter(store, writer_id="w", commit_interval=0, segment_records=100)
    writer.write([rec(0)])
    path = store.path("stream/log/w/000000.jsonl")
    line = json.dumps(rec(1)) + "\n"
    with open(path, "ab") as f:  # a writer in the middle of its append
        f.write(line[:20].encode())
    first = read_all(store)
    assert ids(first.records) == ["r0"]
    with open(path, "ab") as f:
        f.write(line[20:].encode())
    second = read_all(store, first.cursor)
    assert [(n, p, raw["request_id"]) for n, p, raw in second.records] == [
        ("w/000000.jsonl", 1, "r1")
    ]
    # a crash mid-append in a segment that then got sealed: the fragment is skipped
    with open(path, "ab") as f:
        f.write(b'{"request_id": "r-torn", "ti')
    writer._seq += 1  # the writer rolls (as it does after a failed append)
    writer.write([rec(2)])
    writer.close()
    third = read_all(store, second.cursor)
    assert ids(third.records) == ["r2"]
    assert third.cursor["segments"]["w/000000.jsonl"]["sealed"]
    assert third.cursor["segments"]["w/000000.jsonl"]["records"] == 2  # the fragment not counted


def test_a_line_that_is_not_json_is_returned_as_text_for_the_quarantine(tmp_path):
    folder = tmp_path / "team"
    folder.mkdir()
    (folder / "a.jsonl").write_text(
        json.dumps(rec(0)) + "\n" + "not json at all\n" + "\n" + json.dumps(rec(1)) + "\n"
    )
    out = read_new(folder, {})
    assert [p for _, p, _ in out.records] == [0, 1, 2]
    good, bad = check_records([raw for _, _, raw in out.records])
    assert [g["request_id"] for g in good] == ["r0", "r1"]
    assert bad[0][0] == 1 and bad[0][2].startswith("record: a string ('not json at all')")


def _external_files(folder: Path) -> None:
    """A team's log: JSONL (no final newline), gzip JSONL, Parquet with maps and timestamps."""
    (folder / "2025-03-01").mkdir(parents=True)
    lines = [json.dumps(rec(f"j{i}", writer="external")) for i in range(3)]
    (folder / "2025-03-01" / "a.jsonl").write_text("\n".join(lines))  # last line unterminated
    with gzip.open(folder / "2025-03-01" / "b.jsonl.gz", "wt") as f:
        f.write("".join(json.dumps(rec(f"g{i}")) + "\n" for i in range(4)))
    frame = pd.DataFrame(
        {
            "request_id": ["p0", "p1"],
            "time": pd.to_datetime(["2025-03-01T10:00:00Z", "2025-03-01T11:00:00Z"], utc=True),
            "model_name": ["m", "m"],
            "model_version": [None, None],
            "inputs": [{"x": 1.0, "y": "u"}, {"x": 2.0, "y": "v"}],  # a struct column
            "proba": [json.dumps({"a": 0.5, "b": 0.5}), json.dumps({"a": 0.9, "b": 0.1})],
            "prediction": ["a", "a"],
        }
    )
    frame.to_parquet(folder / "c.parquet")
    (folder / "notes.txt").write_text("not a log")
    (folder / ".hidden.jsonl").write_text(json.dumps(rec("hidden")) + "\n")


def test_reading_a_teams_jsonl_gzip_and_parquet_folder(tmp_path):
    folder = tmp_path / "team"
    _external_files(folder)
    first = read_new(str(folder), {})
    names = [n for n, _, _ in first.records]
    assert names == sorted(names)
    assert ids(first.records) == ["rj0", "rj1", "rj2", "rg0", "rg1", "rg2", "rg3", "p0", "p1"]
    good, bad = check_records([raw for _, _, raw in first.records])
    assert bad == []
    assert good[-1]["time"] == "2025-03-01T11:00:00.000000Z"
    assert good[-1]["inputs"] == {"x": 2.0, "y": "v"} and good[-1]["proba"] == {"a": 0.9, "b": 0.1}
    assert read_new(str(folder), first.cursor).fetched == ()  # nothing changed: nothing read
    # the team appends to its JSONL (newline first: the last line had none) and adds a file
    with open(folder / "2025-03-01" / "a.jsonl", "a") as f:
        f.write("\n" + json.dumps(rec("j3")) + "\n")
    with gzip.open(folder / "2025-03-01" / "d.jsonl.gz", "wt") as f:
        f.write(json.dumps(rec("g9")) + "\n")
    second = read_new(str(folder), first.cursor, limit=1)
    third = read_new(str(folder), second.cursor)
    assert ids(second.records) == ["rj3"] and ids(third.records) == ["rg9"]
    assert [(n, p) for n, p, _ in second.records + third.records] == [
        ("2025-03-01/a.jsonl", 3),
        ("2025-03-01/d.jsonl.gz", 0),
    ]
    assert set(third.fetched) == {"2025-03-01/d.jsonl.gz"}
    with pytest.raises(FileNotFoundError, match="no such folder"):
        read_new(str(tmp_path / "missing"), {})


def test_a_gzip_file_being_written_yields_its_complete_lines_only(tmp_path):
    folder = tmp_path / "team"
    folder.mkdir()
    data = gzip.compress("".join(json.dumps(rec(i)) + "\n" for i in range(50)).encode())
    target = folder / "live.jsonl.gz"
    target.write_bytes(data[: len(data) // 2])
    first = read_new(folder, {})
    n = len(first.records)
    assert 0 < n < 50 and ids(first.records) == [f"r{i}" for i in range(n)]
    target.write_bytes(data)
    second = read_new(folder, first.cursor)
    assert ids(second.records) == [f"r{i}" for i in range(n, 50)]


def test_bad_cursor_and_limit_are_refused(store):
    with pytest.raises(ValueError, match="cursor"):
        read_new(store, {"segments": ["x"]})
    with pytest.raises(ValueError, match="records"):
        read_new(store, {"segments": {"w/000000.jsonl": {"records": -1}}})
    with pytest.raises(ValueError, match="limit"):
        read_new(store, {}, limit=0)


# ------------------------------------------------------------------ a crash


CRASH_WRITER = textwrap.dedent(
    """
    import sys, threading
    from storage.inference_log import LogWriter
    from storage.store import Store
    from loopwise.inference_log import validate_record

    writer = LogWriter(Store(sys.argv[1]), writer_id="crash", commit_interval=0.002,
                       segment_records=50)
    out = threading.Lock()

    def work(t):
        for i in range(100_000):
            rid = f"c{t}-{i}"
            writer.write([validate_record({"request_id": rid, "time": "2025-01-01T00:00:00Z",
                          "model_name": "m", "model_version": None, "inputs": {"x": i}})])
            with out:
                sys.stdout.write(rid + "\\n")
                sys.stdout.flush()

    for t in range(4):
        threading.Thread(target=work, args=(t,), daemon=True).start()
    threading.Event().wait()
    """
)


def test_every_acknowledged_record_survives_a_kill(tmp_path):
    root = tmp_path / "store"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASH_WRITER, str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tmp_path,
    )
    acked: list[str] = []
    try:
        deadline = time.monotonic() + 120  # a guard against a hang, not a measurement
        while len(acked) < 400 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            acked.append(line.decode().strip())
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        rest, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    acked += [x for x in rest.decode().split("\n")[:-1]]  # acknowledged before the kill landed
    assert len(acked) >= 400, err.decode()[-2000:]
    logged = ids(read_new(Store(str(root)), {}).records)
    assert len(logged) == len(set(logged))  # nothing twice
    missing = set(acked) - set(logged)
    assert missing == set()
