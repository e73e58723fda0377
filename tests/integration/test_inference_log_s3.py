"""storage.inference_log on S3 (a real moto_server on 127.0.0.1): our own segments as
ledgers of objects, and a team's own ``s3://`` prefix of JSONL / gzip / Parquet files.

The store-level tests of ``tests/tasks/test_inference_log_store.py`` run here again with
the ``store`` fixture pointing at a fresh prefix of the moto bucket.
"""

from __future__ import annotations

import gzip
import io
import json
import uuid

import boto3
import pandas as pd
import pytest

from loopwise.inference_log import check_records
from storage.inference_log import LogWriter, read_new
from storage.store import Store
from tests.tasks.test_inference_log_store import (  # noqa: F401 -- collected here on S3
    ids,
    rec,
    test_a_failing_append_raises_to_every_writer_of_the_group,
    test_group_commit_writes_every_record_once_in_fewer_commits,
    test_read_new_is_incremental_exactly_once_and_respects_limit,
    test_sealed_segments_are_not_read_again,
    test_segments_roll_after_segment_records,
    test_two_writers_in_one_store_never_share_a_segment,
    test_write_fills_the_writer_and_blocks_until_durable,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def store(s3_server) -> Store:
    """A fresh prefix in the moto bucket."""
    return Store(f"s3://{s3_server['bucket']}/t-{uuid.uuid4().hex[:12]}")


def test_a_segment_on_s3_is_a_ledger_of_objects_read_part_by_part(store, s3_server):
    writer = LogWriter(store, writer_id="w", commit_interval=0)
    for i in range(5):
        writer.write([rec(i)])
    client = boto3.client("s3", endpoint_url=s3_server["endpoint_url"])
    prefix = store._backend.obj("stream/log/w/000000.jsonl.d/")
    listed = client.list_objects_v2(Bucket=s3_server["bucket"], Prefix=prefix)
    assert listed["KeyCount"] == 5  # one object per append
    first = read_new(store, {}, limit=3)
    second = read_new(store, first.cursor)
    writer.write([rec(5)])
    writer.close()
    third = read_new(store, second.cursor)
    assert ids(first.records + second.records + third.records) == [f"r{i}" for i in range(6)]
    assert third.cursor["closed"] == ["w"]
    assert read_new(store, third.cursor).fetched == ()


def test_reading_a_teams_s3_prefix_of_jsonl_gzip_and_parquet(s3_server):
    bucket = s3_server["bucket"]
    prefix = f"team-{uuid.uuid4().hex[:8]}/log"
    client = boto3.client("s3", endpoint_url=s3_server["endpoint_url"])

    def put(name, data):
        client.put_object(Bucket=bucket, Key=f"{prefix}/{name}", Body=data)

    put("a.jsonl", "".join(json.dumps(rec(f"j{i}")) + "\n" for i in range(3)))
    put("b.jsonl.gz", gzip.compress((json.dumps(rec("g0")) + "\n").encode()))
    buf = io.BytesIO()
    pd.DataFrame(
        {
            "request_id": ["p0"],
            "time": ["2025-03-01T10:00:00+01:00"],
            "model_name": ["m"],
            "model_version": ["2"],
            "inputs": [json.dumps({"x": 1.5})],
            "proba": [None],
        }
    ).to_parquet(buf)
    put("c.parquet", buf.getvalue())
    put("readme.txt", b"not a log")
    source = f"s3://{bucket}/{prefix}"
    first = read_new(source, {})
    assert ids(first.records) == ["rj0", "rj1", "rj2", "rg0", "p0"]
    good, bad = check_records([raw for _, _, raw in first.records])
    assert bad == [] and good[-1]["time"] == "2025-03-01T09:00:00.000000Z"
    assert read_new(source, first.cursor).fetched == ()
    put("a.jsonl", "".join(json.dumps(rec(f"j{i}")) + "\n" for i in range(5)))  # it grew
    second = read_new(source, first.cursor)
    assert ids(second.records) == ["rj3", "rj4"] and second.fetched == ("a.jsonl",)
