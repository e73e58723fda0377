"""`make demo-stream`: the production stream on one machine, with a drift injected midway.

1. The dev stack of ``make demo`` (Label Studio, Prefect server and worker, MLflow UI).
2. A first champion from the pool path of ``configs/demo-stream.yaml``: its cold start,
   answered by the simulated annotators, then one cycle.
3. The stream and retrain deployments (``loopwise deploy-stream``: a stream run every 20 s
   on the worker) and the gateway (``loopwise serve``, a background server that ``make
   down`` stops by its process id).
4. A traffic generator replays rows of the dataset the pool did not use as requests to the
   gateway; halfway a drift starts (half the classes four times as frequent, a third of
   the inputs moved by two units); a few users send feedback. The simulated annotators
   answer the stream's Label Studio tasks as they come.

It prints the timeline (traffic, labeling, triggers, retrains, what the gateway serves)
until a retrain that followed the drift has been gated, then where to look.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from devstack import servers
from devstack.servers import REPO

CAMPAIGN = "configs/demo-stream.yaml"
GATEWAY = "gateway-letter-stream"
GATEWAY_PORT = 8010
STREAM_EVERY = 20  # seconds between stream runs
CALM, DRIFTED = 2000, 2800  # requests before and after the drift
RATE = 40.0  # requests per second, in batches of BATCH
BATCH = 10
FEEDBACK_SHARE = 0.01


@dataclass
class Traffic:
    """What the generator sent so far (read by the timeline)."""

    sent: int = 0
    drift_at: float | None = None
    done: bool = False
    truth: dict[str, str] = field(default_factory=dict)  # stream item id → true label
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def _rows(cfg) -> tuple[pd.DataFrame, list[str]]:
    """The rows the pool did not use (``data.max_rows`` on), and the feature columns."""
    df = pd.read_csv(cfg.data.source, encoding="utf-8-sig")
    label = cfg.data.label_column
    live = df.iloc[6000:].reset_index(drop=True)
    return live, [c for c in df.columns if c != label]


def _drifted(live: pd.DataFrame, features: list[str], label: str, n: int, seed: int):
    """``n`` rows after the drift: half the classes four times as likely, a third of the
    inputs moved by two units."""
    rng = np.random.RandomState(seed)
    classes = sorted(live[label].unique())
    heavy = set(rng.choice(classes, len(classes) // 2, replace=False))
    weight = live[label].map(lambda c: 4.0 if c in heavy else 1.0).to_numpy()
    rows = live.iloc[rng.choice(len(live), n, p=weight / weight.sum())].copy()
    moved = list(rng.choice(features, len(features) // 3, replace=False))
    rows[moved] = rows[moved] + 2
    return rows, sorted(heavy), moved


def generate(cfg, url: str, traffic: Traffic, seed: int = 0) -> None:
    """Replay the live rows to the gateway: calm, then drifted; a little feedback."""
    label = cfg.data.label_column
    live, features = _rows(cfg)
    rng = np.random.RandomState(seed)
    calm = live.iloc[:CALM]
    drifted, heavy, moved = _drifted(live.iloc[CALM:], features, label, DRIFTED, seed)
    print(
        f"  traffic: {CALM} calm requests, then {DRIFTED} with a drift (classes "
        f"{''.join(heavy)} 4x as frequent; inputs {', '.join(moved)} +2)",
        flush=True,
    )
    n = 0
    for phase, rows in (("calm", calm), ("drift", drifted)):
        if phase == "drift":
            traffic.drift_at = time.monotonic()
        for start in range(0, len(rows), BATCH):
            chunk = rows.iloc[start : start + BATCH]
            records = []
            for _, row in chunk.iterrows():
                rid = f"r{n}"
                n += 1
                records.append({"request_id": rid, "inputs": {f: float(row[f]) for f in features}})
                with traffic.lock:
                    traffic.truth[f"s-{rid}"] = str(row[label])
            try:
                _post(f"{url}/predict", {"records": records})
                for r in records:
                    if rng.random_sample() < FEEDBACK_SHARE:
                        true = traffic.truth[f"s-{r['request_id']}"]
                        _post(f"{url}/feedback", {"request_id": r["request_id"], "label": true})
            except Exception as exc:  # a demo keeps going; the timeline shows it
                traffic.errors.append(f"{type(exc).__name__}: {exc}")
            with traffic.lock:
                traffic.sent += len(records)
            time.sleep(BATCH / RATE)
    traffic.done = True


def _first_champion(cfg, campaign: str, token: str) -> None:
    """The pool path once: cold start, answers, one cycle (skipped when a champion exists)."""
    from devstack.annotators import load_profiles
    from devstack.campaign import annotate_campaign, campaign_project_id, ground_truth
    from flows.cycle import cycle
    from tasks.evaluate import _client, model_name

    _, client = _client(cfg)
    try:
        client.get_model_version_by_alias(model_name(cfg), "champion")
        print("• a champion is registered already: serving it", flush=True)
        return
    except Exception:
        pass
    print("• a first champion from the pool: cold start, answers, one cycle...", flush=True)
    profiles = load_profiles(REPO / "configs" / "annotators.yaml")
    cycle(campaign=campaign)
    pid = campaign_project_id(cfg, token)
    annotate_campaign(cfg, token, pid, ground_truth(cfg), profiles, 1)
    cycle(campaign=campaign, close_batch=True)


def _annotate_stream(cfg, token: str, truth: dict[str, str], seed: int) -> None:
    from devstack.annotators import load_profiles, simulate_annotators
    from devstack.campaign import campaign_project_id

    pid = campaign_project_id(cfg, token)
    if pid is None or not truth:
        return
    simulate_annotators(
        cfg.labelstudio.url,
        token,
        pid,
        truth,
        load_profiles(REPO / "configs" / "annotators.yaml"),
        labels=cfg.labels,
        data_kind=cfg.data.kind,
        random_state=seed,
    )


def _events(store, seen: dict[str, int]) -> Iterator[str]:
    """New lines of the stream's ledgers since the last call."""
    from tasks.stream import REQUESTED, RETRAINS, TRIGGERS

    for key, say in (
        (TRIGGERS, lambda t: f"TRIGGER {t['rule']}: {t['sentence']}"),
        (
            REQUESTED,
            lambda r: (
                f"RETRAIN RUN {r.get('flow_run_name') or r.get('reason')} created for {r['key']}"
            ),
        ),
        (
            RETRAINS,
            lambda r: (
                f"RETRAIN {r['key']}: {r['labels']} labels ({r['stream_labels']} from the "
                f"stream), holdout accuracy {r['accuracy']:.4f}, v{r['model_version']}: {r['gate']}"
            ),
        ),
    ):
        rows = store.read_jsonl(key)
        for r in rows[seen.get(key, 0) :]:
            yield say(r)
        seen[key] = len(rows)


def run(timeout: float) -> int:
    import os

    from devstack.demo import start_stack
    from loopwise.config import load_campaign
    from storage.campaign import campaign_store

    cfg = load_campaign(CAMPAIGN)
    stack = start_stack()
    os.environ.update(stack.env)
    token = stack.env["LABEL_STUDIO_API_KEY"]
    _first_champion(cfg, CAMPAIGN, token)
    print("• stream and retrain deployments (a stream run every 20 s on the worker)...")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "flows.cli",
            "deploy-stream",
            CAMPAIGN,
            "--every",
            str(STREAM_EVERY),
        ],
        cwd=REPO,
        check=True,
        env={**os.environ},
    )
    url = f"http://127.0.0.1:{GATEWAY_PORT}"
    print(f"• the gateway on {url} (loopwise serve)...", flush=True)
    servers.ensure_running(
        GATEWAY,
        [sys.executable, "-m", "flows.cli", "serve", CAMPAIGN, "--port", str(GATEWAY_PORT)],
        health_url=f"{url}/health",
        env=stack.env,
        url=url,
        timeout=180,
    )
    store = campaign_store(cfg.storage_root, cfg.name)
    traffic = Traffic()
    threading.Thread(target=generate, args=(cfg, url, traffic), daemon=True).start()
    start, seen, version, seed, done_after = time.monotonic(), {}, None, 100, None
    at_drift = None  # retrains done when the drift started
    ticks = 0
    while time.monotonic() - start < timeout:
        t = time.monotonic() - start
        health = _get(f"{url}/health")
        if health["model_version"] != version:
            version = health["model_version"]
            print(f"[{t:6.1f}s] the gateway serves v{version}", flush=True)
        if traffic.drift_at and at_drift is None:
            at_drift = len(store.read_jsonl("stream/retrains.jsonl"))
            print(f"[{t:6.1f}s] DRIFT starts in the traffic", flush=True)
        for line in _events(store, seen):
            print(f"[{t:6.1f}s] {line}", flush=True)
        ticks += 1
        if ticks % 5 == 1:
            st = store.read_json("stream/state.json") or {}
            print(
                f"[{t:6.1f}s] {traffic.sent} requests sent; the gateway asks about "
                f"{health['rate_now']:.1%} now ({health['boosts']} drift boost(s)); stream run "
                f"{st.get('run', 0)} has read {st.get('records', 0)}",
                flush=True,
            )
        with traffic.lock:
            truth = dict(traffic.truth)
        seed += 1
        _annotate_stream(cfg, token, truth, seed)
        retrains = store.read_jsonl("stream/retrains.jsonl")
        after = retrains[at_drift:] if at_drift is not None else []
        if any("drift" in r["key"] for r in after) and traffic.done and done_after is None:
            done_after = time.monotonic()
        if done_after is not None and time.monotonic() - done_after > 3 * cfg.stream.reload_seconds:
            print(f"[{t:6.1f}s] the gateway serves v{_get(f'{url}/health')['model_version']}")
            break
        time.sleep(2)
    else:
        print(f"(stopped after {timeout:.0f} s without a retrain after the drift)")
    if traffic.errors:
        print(f"{len(traffic.errors)} request error(s), first: {traffic.errors[0]}")
    subprocess.run(
        [sys.executable, "-m", "flows.cli", "report", CAMPAIGN], cwd=REPO, env=os.environ
    )
    print(
        "\nWhere to look:\n"
        f"  Prefect      {stack.prefect_url}  (flows 'stream' and 'retrain', deployment "
        f"stream/{cfg.name})\n"
        f"  MLflow       {stack.mlflow_url}  (experiment {cfg.experiment}: cycle and retrain runs, "
        f"model loopwise-{cfg.name} and its aliases)\n"
        f"  Label Studio {cfg.labelstudio.url}  (project {cfg.project_title}: tasks s-r…)\n"
        f"  Gateway      {url}/docs\n"
        f"  Report       {store.uri('reports/report.html')}  (section 'Production stream')\n"
        "`make down` stops every server, the gateway included."
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=900.0, help="give up after this long")
    args = parser.parse_args(argv)
    return run(args.timeout)


if __name__ == "__main__":
    sys.exit(main())
