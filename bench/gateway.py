"""Gateway throughput and latency, with the inference log on and off, and a kill under load.

Target (issue 15): logging every request durably before answering costs at most 15 % of
the gateway's throughput, and a gateway killed under load loses no acknowledged request.

Setup (not timed): a synthetic table (sklearn ``make_classification``, ``--rows`` rows,
16 float features, 4 classes) as the campaign's CSV pool; StandardScaler +
LogisticRegression fitted on it and registered as the campaign's champion in an MLflow
registry on SQLite in a temporary folder; the campaign's store (the inference log) is a
local folder there too.

Two gateways run side by side, each a real uvicorn server in its own process on
127.0.0.1 (``create_app(cfg)`` and ``create_app(cfg, log_requests=False)``, one worker,
FastAPI's thread pool): logging on (every record appended through the
group-committing ``LogWriter``, fsync'd, before the answer; the first record of each
request checked with ``validate_record``) and off. A client pool of
``--clients`` threads in this process (keep-alive ``http.client`` connections) sends
``POST /predict`` as fast as answers come, one record per request (single) or
``--batch`` records (batch). Each (mode, kind) is measured for ``--seconds`` after one
second of warm-up, interleaved over ``--rounds`` rounds; throughput = records answered
per second, latency = per request (p50, p99 over every round).

Logging cost = 1 − (records/s with logging) / (records/s without), per kind; target ≤ 15 %.

Kill under load: a third gateway (logging on) takes load from the client pool; after
``--kill-after`` seconds it is killed with SIGKILL; the request ids answered 200 are then
looked up in the log (``storage.inference_log.read_new``): acknowledged vs found.

Then one client alone (no queueing) measures the latency of a request, 3 s per
configuration.

``python bench/gateway.py`` → ``bench/results/gateway.{json,md}``; about 3 minutes.
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
N_FEATURES = 16


# ---------------------------------------------------------------- set-up


def make_campaign(tmp: Path, rows: int) -> Path:
    """Pool file, registered champion and campaign file in ``tmp``; the campaign file."""
    import mlflow
    import pandas as pd
    import yaml
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    from loopwise.config import CampaignConfig
    from loopwise.features import model_inputs
    from loopwise.model import build_model
    from tasks.evaluate import CHAMPION, model_name

    X, y = make_classification(
        n_samples=rows, n_features=N_FEATURES, n_informative=8, n_classes=4, random_state=0
    )
    cols = [f"x{i}" for i in range(N_FEATURES)]
    pool = pd.DataFrame(X, columns=cols).assign(y=[f"c{v}" for v in y])
    pool.to_csv(tmp / "pool.csv", index=False)
    raw = {
        "name": "gatewaybench",
        "data": {"source": str(tmp / "pool.csv"), "label_column": "y"},
        "labels": ["c0", "c1", "c2", "c3"],
        "budget": {"cost_per_annotation": 0.1},
        "storage_root": str(tmp / "store"),
        "mlflow": {
            "tracking_uri": f"sqlite:///{tmp / 'mlflow.db'}",
            "artifact_location": (tmp / "mlartifacts").as_uri(),
        },
    }
    cfg = CampaignConfig.model_validate(raw)
    (Xp,) = model_inputs(cfg, pool)
    model = build_model(LogisticRegression(max_iter=1000), kind="tabular").fit(Xp, pool["y"])
    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    client = mlflow.MlflowClient(cfg.mlflow.tracking_uri)
    exp = client.create_experiment(cfg.experiment, artifact_location=cfg.mlflow.artifact_location)
    with mlflow.start_run(experiment_id=exp):
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name=model_name(cfg),
            pip_requirements=["scikit-learn"],
            skops_trusted_types=None,
        )
    client.set_registered_model_alias(model_name(cfg), CHAMPION, info.registered_model_version)
    path = tmp / "campaign.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def serve_child(campaign: str, port: int, log_requests: bool, commit_interval_ms: float) -> None:
    """The server process: one campaign's gateway under uvicorn until killed."""
    import uvicorn

    from loopwise.config import load_campaign
    from serving.gateway import GatewaySettings, create_app

    cfg = load_campaign(campaign)
    settings = GatewaySettings.from_config(cfg)
    settings = dataclasses.replace(settings, commit_interval_ms=commit_interval_ms)
    app = create_app(cfg, log_requests=log_requests, settings=settings)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    campaign: Path, log_requests: bool, log_file: Path, commit_interval_ms: float
) -> tuple[Any, int]:
    """A gateway process answering /health; (Popen, port)."""
    port = free_port()
    argv = [sys.executable, __file__, "--serve", str(campaign), "--port", str(port)]
    argv += ["--commit-interval-ms", str(commit_interval_ms)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    with open(log_file, "wb") as out:
        proc = subprocess.Popen(
            [*argv, *([] if log_requests else ["--no-log"])],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.2)
    stop(proc)
    raise RuntimeError(f"gateway did not start: {log_file.read_text()[-3000:]}")


def stop(proc: Any) -> None:
    """Stop a server this bench started, by its process."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(20)


# ---------------------------------------------------------------- load


class Load:
    """A pool of client threads posting to one gateway until stopped."""

    def __init__(self, port: int, clients: int, batch: int, tag: str, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.rows = [
            {f"x{i}": float(v) for i, v in enumerate(rng.normal(size=N_FEATURES))}
            for _ in range(256)
        ]
        self.port, self.batch, self.tag = port, batch, tag
        self.stop = threading.Event()
        self.measuring = threading.Event()
        self.latencies: list[list[float]] = [[] for _ in range(clients)]
        self.records = [0] * clients
        self.acked: list[list[str]] = [[] for _ in range(clients)]
        self.errors = [0] * clients
        self.threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(clients)
        ]

    def _body(self, i: int, n: int) -> tuple[bytes, list[str]]:
        ids = [f"{self.tag}-{i}-{n}-{j}" for j in range(self.batch)]
        recs = [
            {"request_id": rid, "inputs": self.rows[(n * self.batch + j) % len(self.rows)]}
            for j, rid in enumerate(ids)
        ]
        body = recs[0] if self.batch == 1 else {"records": recs}
        return json.dumps(body).encode(), ids

    def _run(self, i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        headers = {"Content-Type": "application/json"}
        n = 0
        while not self.stop.is_set():
            body, ids = self._body(i, n)
            n += 1
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/predict", body, headers)
                resp = conn.getresponse()
                resp.read()
            except (OSError, http.client.HTTPException):
                self.errors[i] += 1
                return
            dt = time.perf_counter() - t0
            if resp.status != 200:
                self.errors[i] += 1
                continue
            self.acked[i].extend(ids)
            if self.measuring.is_set():
                self.latencies[i].append(dt)
                self.records[i] += len(ids)

    def start(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)


def measure(port: int, clients: int, batch: int, seconds: float, tag: str) -> dict[str, Any]:
    """Records/s and request latencies over ``seconds`` after 1 s of warm-up."""
    load = Load(port, clients, batch, tag).start()
    time.sleep(1.0)
    load.measuring.set()
    t0 = time.perf_counter()
    time.sleep(seconds)
    load.measuring.clear()
    wall = time.perf_counter() - t0
    load.finish()
    lat = [x for xs in load.latencies for x in xs]
    return {
        "records": sum(load.records),
        "requests": len(lat),
        "seconds": wall,
        "latencies": lat,
        "errors": sum(load.errors),
    }


def kill_under_load(
    campaign: Path, tmp: Path, clients: int, after: float, commit_interval_ms: float
) -> dict[str, Any]:
    """SIGKILL a logging gateway under load; acknowledged ids vs those in its log."""
    from loopwise.config import load_campaign
    from storage.campaign import campaign_store
    from storage.inference_log import read_new

    proc, port = start_server(campaign, True, tmp / "kill.log", commit_interval_ms)
    load = Load(port, clients, 1, "kill").start()
    time.sleep(after)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    for t in load.threads:  # each ends at its first request the dead server cannot answer
        t.join(60)
    acked = {x for xs in load.acked for x in xs}
    cfg = load_campaign(campaign)
    found = {
        raw["request_id"]
        for _, _, raw in read_new(campaign_store(cfg.storage_root, cfg.name), {}).records
        if isinstance(raw, dict) and raw.get("request_id", "").startswith("kill-")
    }
    return {
        "acknowledged": len(acked),
        "found_in_log": len(acked & found),
        "missing": len(acked - found),
        "logged_not_acknowledged": len(found - acked),
        "returncode": proc.returncode,
    }


# ---------------------------------------------------------------- report


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    lat = np.array([x for r in runs for x in r["latencies"]]) * 1000
    records = sum(r["records"] for r in runs)
    seconds = sum(r["seconds"] for r in runs)
    return {
        "records_per_s": records / seconds,
        "requests_per_s": sum(r["requests"] for r in runs) / seconds,
        "p50_ms": float(np.percentile(lat, 50)) if lat.size else None,
        "p99_ms": float(np.percentile(lat, 99)) if lat.size else None,
        "requests": int(lat.size),
        "errors": sum(r["errors"] for r in runs),
        "per_round_records_per_s": [r["records"] / r["seconds"] for r in runs],
    }


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def report(res: dict[str, Any]) -> str:
    a = res["args"]
    lines = [
        "# Gateway: throughput, latency, and the cost of logging every request",
        "",
        f"Model: StandardScaler + LogisticRegression, {N_FEATURES} numeric features, 4 classes "
        f"(trained on {a['rows']:,} synthetic rows), served from an MLflow registry on SQLite. "
        "One uvicorn process per gateway on 127.0.0.1 (one worker, FastAPI's thread pool); "
        f"{a['clients']} client threads with keep-alive connections in the bench process; "
        f"{a['rounds']} interleaved rounds of {a['seconds']:g} s per configuration after 1 s "
        "of warm-up. Logging on: every record appended (group commit, "
        f"{a['commit_interval_ms']:g} ms window, fsync'd local file; the first record of "
        "each request validated) before the answer. "
        f"Produced by `{res['command']}`.",
        "",
        f"Machine: {res['cpus']} CPUs, shared with the clients (and other work); load average "
        f"(1, 5, 15 min) {res['load_start']} at the start, {res['load_end']} at the end. "
        f"Python {res['python']}.",
        "",
        "| request | logging | records/s | requests/s | p50 (ms) | p99 (ms) | errors |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for kind in ("single", "batch"):
        for mode in ("off", "on"):
            s = res["results"][kind][mode]
            name = "1 record" if kind == "single" else f"batch of {a['batch']}"
            lines.append(
                f"| {name} | {mode} | {s['records_per_s']:,.0f} | {s['requests_per_s']:,.0f} | "
                f"{s['p50_ms']:.1f} | {s['p99_ms']:.1f} | {s['errors']} |"
            )
    lines += [
        "",
        "p50/p99 here are latencies at saturation (32 requests in flight: mostly queueing; "
        "see one client below). Logging cost = 1 − records/s (on) / records/s (off); "
        "target ≤ 15 %:",
        "",
    ]
    for kind in ("single", "batch"):
        c = res["cost"][kind]
        verdict = "met" if c["throughput_cost"] <= 0.15 else "MISSED"
        lines.append(
            f"- {'1 record' if kind == 'single' else 'batch of ' + str(a['batch'])} per request: "
            f"**{100 * c['throughput_cost']:.1f} %** ({verdict}); p50 latency × "
            f"{c['p50_ratio']:.2f}. Per round (off / on records/s): "
            + ", ".join(
                f"{x:,.0f} / {y:,.0f}"
                for x, y in zip(
                    res["results"][kind]["off"]["per_round_records_per_s"],
                    res["results"][kind]["on"]["per_round_records_per_s"],
                    strict=True,
                )
            )
            + "."
        )
    lines += [
        "",
        "## One client (no queueing): the latency of a request",
        "",
        "| request | logging | p50 (ms) | p99 (ms) | requests/s |",
        "|---|---|---:|---:|---:|",
    ]
    for kind in ("single", "batch"):
        for mode in ("off", "on"):
            s = res["one_client"][kind][mode]
            name = "1 record" if kind == "single" else f"batch of {a['batch']}"
            lines.append(
                f"| {name} | {mode} | {s['p50_ms']:.1f} | {s['p99_ms']:.1f} | "
                f"{s['requests_per_s']:,.0f} |"
            )
    lines += [
        "",
        "Alone, a logged request waits for its group: the commit window, then one fsync'd "
        "append. Under load the window fills with other requests and the fsync is shared.",
    ]
    k = res["kill"]
    lines += [
        "",
        "## Killed under load",
        "",
        f"A logging gateway under load from {a['clients']} threads (one record per request), "
        f"SIGKILLed after {a['kill_after']:g} s (exit {k['returncode']}): "
        f"**{k['acknowledged']:,} requests acknowledged, {k['found_in_log']:,} of them in the "
        f"log, {k['missing']} missing**; {k['logged_not_acknowledged']} logged but never "
        "answered (in flight when it died: the client saw no 200, so a retry with the same "
        "request_id is the caller's to make, and the log may then hold that id twice).",
        "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--kill-after", type=float, default=4.0)
    ap.add_argument(
        "--commit-interval-ms",
        type=float,
        default=0.0,
        help="the log's group-commit window (stream.commit_interval_ms)",
    )
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--no-log", action="store_true", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    load_start = loadavg()
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as d:
        tmp = Path(d)
        campaign = make_campaign(tmp, args.rows)
        servers = {
            mode: start_server(
                campaign, mode == "on", tmp / f"server-{mode}.log", args.commit_interval_ms
            )
            for mode in ("off", "on")
        }
        runs: dict[str, dict[str, list]] = {k: {"off": [], "on": []} for k in ("single", "batch")}
        try:
            for r in range(args.rounds):
                for kind, batch in (("single", 1), ("batch", args.batch)):
                    for mode in ("off", "on") if r % 2 == 0 else ("on", "off"):
                        port = servers[mode][1]
                        run = measure(port, args.clients, batch, args.seconds, f"{kind}{r}")
                        runs[kind][mode].append(run)
                        print(
                            f"round {r} {kind:6s} logging {mode:3s}: "
                            f"{run['records'] / run['seconds']:,.0f} records/s",
                            flush=True,
                        )
            light = {
                kind: {
                    mode: summarize([measure(servers[mode][1], 1, batch, 3.0, f"light-{kind}")])
                    for mode in ("off", "on")
                }
                for kind, batch in (("single", 1), ("batch", args.batch))
            }
        finally:
            for proc, _ in servers.values():
                stop(proc)
        kill = kill_under_load(
            campaign, tmp, args.clients, args.kill_after, args.commit_interval_ms
        )
        print(f"kill under load: {kill}", flush=True)
    results = {k: {m: summarize(v) for m, v in modes.items()} for k, modes in runs.items()}
    cost = {
        k: {
            "throughput_cost": 1 - r["on"]["records_per_s"] / r["off"]["records_per_s"],
            "p50_ratio": r["on"]["p50_ms"] / r["off"]["p50_ms"],
        }
        for k, r in results.items()
    }
    return {
        "args": {
            **{k: v for k, v in vars(args).items() if k not in ("serve", "port", "no_log", "out")},
        },
        "command": "python bench/gateway.py",
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_start": load_start,
        "load_end": loadavg(),
        "results": results,
        "cost": cost,
        "one_client": light,
        "kill": kill,
    }


def main() -> None:
    args = parse_args()
    if args.serve:
        serve_child(args.serve, args.port, not args.no_log, args.commit_interval_ms)
        return
    sys.path.insert(0, str(REPO))
    res = run_bench(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gateway.json").write_text(json.dumps(res, indent=2) + "\n")
    (args.out / "gateway.md").write_text(report(res))
    print(report(res))


if __name__ == "__main__":
    main()
