"""A gateway process killed (SIGKILL) under load from several threads loses no request it
acknowledged: every request answered 200 is in the log."""

from __future__ import annotations

import http.client
import json
import os
import signal
import threading

import pytest

from tests.serving.campaigns import (
    FEATURES,
    campaign,
    campaign_file,
    fitted,
    free_port,
    logged,
    numeric_pool,
    register,
    start_gateway,
    wait_until,
)

pytestmark = pytest.mark.integration


def _send(port: int, name: str, acked: list[str], failed: list[str], stop: threading.Event) -> None:
    """POST records until the server goes; the ids answered 200 in ``acked``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    n = 0
    while not stop.is_set():
        rid = f"{name}-{n}"
        n += 1
        records = [
            {"request_id": f"{rid}.{j}", "inputs": dict.fromkeys(FEATURES, 0.1 * j)}
            for j in range(3)
        ]
        body = (
            {"records": records} if n % 2 else {"request_id": rid, "inputs": records[0]["inputs"]}
        )
        try:
            conn.request("POST", "/predict", json.dumps(body), {"Content-Type": "application/json"})
            resp = conn.getresponse()
            answer = json.loads(resp.read())
        except (OSError, http.client.HTTPException):
            failed.append(rid)  # the server is gone (or going): not acknowledged
            return
        if resp.status == 200:
            got = answer["records"] if "records" in answer else [answer]
            acked.extend(a["request_id"] for a in got)


def test_every_acknowledged_request_survives_a_sigkill(tmp_path, registry):
    cfg = campaign(tmp_path, registry, "killed")
    register(cfg, fitted(cfg, numeric_pool(tmp_path / "killed.csv")))
    proc = start_gateway(
        campaign_file(cfg, tmp_path / "killed.yaml"), port := free_port(), tmp_path / "gw.log"
    )
    acked: list[str] = []
    failed: list[str] = []
    stop = threading.Event()
    threads = [
        threading.Thread(target=_send, args=(port, f"t{i}", acked, failed, stop), daemon=True)
        for i in range(4)
    ]
    try:
        for t in threads:
            t.start()
        assert wait_until(lambda: len(acked) >= 400, timeout=120), "no load reached the gateway"
        os.kill(proc.pid, signal.SIGKILL)  # mid-load: no flush, no close
        proc.wait(30)
        for t in threads:  # each ends at its first request the dead server cannot answer
            t.join(60)
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        for t in threads:
            t.join(60)
    assert proc.returncode == -signal.SIGKILL
    assert len(failed) == len(threads)  # every client was still sending when it died
    found = {r["request_id"] for r in logged(cfg)}
    missing = sorted(set(acked) - found)
    assert not missing, f"{len(missing)} acknowledged request(s) not in the log: {missing[:5]}"
    assert len(found) >= len(set(acked)) >= 400
