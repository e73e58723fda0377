"""Pools larger than one machine: one cycle's data work over a partitioned pool (issue 16).

Pools are generated once as Parquet partitions (``bench/.scale/``, ignored by git):
``100k``, ``1m`` and ``10m`` rows × 20 float32 features, and ``emb1m``, 1M rows × one
384-float vector column (precomputed embeddings); 10 classes of Gaussian blobs, an id
column and a label column. Every measurement runs in a fresh child process, the *flow
process*, whose peak RSS is read from ``getrusage`` at its end; the Dask workers are
other processes (a ``distributed.LocalCluster`` of 1 or 2 worker processes, one thread
each), as they would be other machines.

One cycle's data work, as the cycle runs it, stage by stage:

- ``check`` — :func:`flows.stages.pool.load_partitioned`: every partition read where
  it lives, validated (great-expectations suite) only when its content hash is new,
  and the holdout, stop set and drift sample drawn;
- ``fit`` — the campaign's model on 1,000 labeled rows;
- ``select`` — :func:`flows.stages.pool.compose_partitioned`: every partition scored
  where it lives, its best candidates returned, the default strategy run on their
  union, the control share drawn (a batch of 100).

The first cycle on a pool validates it; the second finds every partition unchanged.
Both are measured, on a local folder, and for 100k and 1M rows on an S3-compatible
server on loopback (moto, which keeps objects in memory: 10M rows are not sent to it).

Peers hold the pool: modAL's ``margin_sampling`` (and Loopwise's own single-file
path, which reads the pool into the flow process) need the whole feature matrix in
one process; their peak RSS is measured the same way at the sizes that fit.

Writes bench/results/scale.{json,md}. About 15 minutes on this 2-core machine:

    OMP_NUM_THREADS=1 python bench/scale.py
    OMP_NUM_THREADS=1 python bench/scale.py --sizes 100k 1m --workers 2 --out /tmp/scale
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if not __package__:  # run as a script: this checkout's loopwise, not the venv's editable one
    sys.path.insert(0, str(ROOT))

SIZES = {
    "100k": (100_000, 20, False, 100_000),
    "1m": (1_000_000, 20, False, 100_000),
    "10m": (10_000_000, 20, False, 100_000),
    "emb1m": (1_000_000, 384, True, 25_000),
}
N_CLASSES = 10
BATCH = 100
N_LABELED = 1_000
BUCKET = "loopwise-scale"


# ------------------------------------------------------------------ the pools


def generate(name: str, where: Path) -> Path:
    """The pool ``name`` as Parquet partitions under ``where/name`` (made once)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows, dim, vector, per_part = SIZES[name]
    out = where / name
    if (out / "_done").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(16)
    centers = rng.normal(0, 1.5, size=(N_CLASSES, dim)).astype(np.float32)
    for p, start in enumerate(range(0, rows, per_part)):
        n = min(per_part, rows - start)
        y = rng.integers(0, N_CLASSES, n)
        X = centers[y] + rng.normal(0, 1.0, size=(n, dim)).astype(np.float32)
        cols: dict[str, Any] = {"uid": pa.array([f"i{start + i:09d}" for i in range(n)])}
        if vector:
            flat = pa.array(X.reshape(-1), type=pa.float32())
            cols["emb"] = pa.FixedSizeListArray.from_arrays(flat, dim)
        else:
            for j in range(dim):
                cols[f"f{j:02d}"] = pa.array(X[:, j])
        cols["y"] = pa.array([f"c{c}" for c in y])
        pq.write_table(pa.table(cols), out / f"part-{p:05d}.parquet")
    (out / "_done").write_text("ok")
    return out


def suite_for(name: str, where: Path) -> str | None:
    """A suite on the scalar features (not null, within ±50); none for the embeddings."""
    _, dim, vector, _ = SIZES[name]
    if vector:
        return None
    path = where / f"suite-{dim}.json"
    exps = []
    for j in range(dim):
        c = f"f{j:02d}"
        exps.append({"type": "expect_column_values_to_not_be_null", "kwargs": {"column": c}})
        exps.append(
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {"column": c, "min_value": -50, "max_value": 50},
            }
        )
    path.write_text(json.dumps({"name": f"scale_{dim}", "expectations": exps}))
    return str(path)


# ------------------------------------------------------------------ the flow process


def _campaign(job: dict[str, Any]) -> Any:
    from loopwise.config import CampaignConfig

    return CampaignConfig.model_validate(
        {
            "name": "scale",
            "data": {
                "source": job["source"],
                "id_column": "uid",
                "label_column": "y",
                "validation_suite": job["suite"],
                "holdout": {"fraction": 0.2},
            },
            "labels": [f"c{c}" for c in range(N_CLASSES)],
            "batch_size": BATCH,
            "storage_root": job["store"],
            "dask_address": job.get("address"),
            "stop_set_size": 1000,
        }
    )


def child(job: dict[str, Any]) -> dict[str, Any]:
    """One cycle's data work in this process (the flow process), per stage."""
    import logging

    logging.disable(logging.WARNING)
    from flows.stages.pool import compose_partitioned, load_partitioned
    from loopwise.batch import plan_batch
    from storage.campaign import campaign_store
    from tasks.partitions import numeric_features
    from tasks.train import fit

    cfg = _campaign(job)
    store = campaign_store(cfg.storage_root, cfg.name)
    if job.get("warm"):  # and has run a cycle's tasks before (the pool is unchanged)
        load_partitioned(cfg, store, [], 1)
    times: dict[str, float] = {}
    rss: dict[str, float] = {}
    t = time.perf_counter()
    data = load_partitioned(cfg, store, [], 1)
    times["check"] = time.perf_counter() - t
    rss["check"] = _rss_mb()
    validating = sum(float(f.get("check_seconds") or 0.0) for f in data.facts)
    t = time.perf_counter()
    lab = data.holdout.iloc[:N_LABELED]
    from loopwise.features import model_inputs

    X_lab, y_lab = model_inputs(cfg, numeric_features(cfg, lab, where="holdout"))[0], lab["y"]
    model = fit.fn(cfg, X_lab, y_lab.astype(str).to_numpy())
    times["fit"] = time.perf_counter() - t
    s = cfg.strategy
    plan = plan_batch(
        BATCH,
        cfg.control_fraction,
        strategy=s.name,
        params=s.params,
        cold_start=s.cold_start,
        drift_fallback=None,
    )
    t = time.perf_counter()
    batch = compose_partitioned(
        cfg, store, data, plan, model, (X_lab, y_lab.to_numpy()), [], cfg.seed
    )
    times["select"] = time.perf_counter() - t
    rss["select"] = _rss_mb()
    total = sum(times.values())
    return {
        "times": times,
        "total": total,
        "validated_partitions": sum(bool(f.get("validated")) for f in data.facts),
        "partitions": len(data.facts),
        "validating_seconds_in_workers": validating,
        "picked": [b["item_id"] for b in batch if not b["control"]],
        "n_batch": len(batch),
        "rss_after_mb": rss,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        line = next(ln for ln in f if ln.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


class Cluster:
    """A Dask scheduler and ``n`` worker processes of one thread each, other processes than
    the flow process (as another machine would be); stopped by their process ids."""

    def __init__(self, n: int, where: Path, env: dict[str, str]) -> None:
        self.file = where / f"scheduler-{n}.json"
        self.file.unlink(missing_ok=True)
        dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
        self.procs = [
            subprocess.Popen(
                [
                    *dask,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                    "--dashboard-address",
                    ":0",
                    "--scheduler-file",
                    str(self.file),
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=ROOT,
            )
        ]
        while not self.file.exists():
            time.sleep(0.2)
        time.sleep(0.5)
        self.address = json.loads(self.file.read_text())["address"]
        worker = [sys.executable, "-m", "distributed.cli.dask_worker", self.address]
        self.procs.append(
            subprocess.Popen(
                [
                    *worker,
                    "--nworkers",
                    str(n),
                    "--nthreads",
                    "1",
                    "--memory-limit",
                    "6GiB",
                    "--no-dashboard",
                    "--preload",
                    "tasks.partitions",
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=ROOT,
            )
        )
        from distributed import Client

        with Client(self.address) as client:
            client.wait_for_workers(n, timeout=120)

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.terminate()
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def peer_child(job: dict[str, Any]) -> dict[str, Any]:
    """modAL's margin sampling over the whole pool, held in this process."""
    import pandas as pd
    from modAL.uncertainty import margin_sampling
    from sklearn.linear_model import LogisticRegression

    t = time.perf_counter()
    df = pd.read_parquet(job["source"])
    X = df[[c for c in df.columns if c.startswith("f")]].to_numpy(np.float32)
    y = df["y"].to_numpy()
    load = time.perf_counter() - t
    clf = LogisticRegression(max_iter=1000).fit(X[:N_LABELED], y[:N_LABELED])
    t = time.perf_counter()
    idx = margin_sampling(clf, X, n_instances=BATCH)
    idx = idx[0] if isinstance(idx, tuple) else idx  # (indices, rows) in modAL 0.4
    return {
        "times": {"load": load, "select": time.perf_counter() - t},
        "picked": [str(df["uid"].iloc[i]) for i in np.ravel(idx)],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _spawn(kind: str, job: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, f"--{kind}", json.dumps(job)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"{kind} {job}: exit {out.returncode}\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


# ------------------------------------------------------------------ the campaign of runs


def _s3_server() -> tuple[Any, dict[str, str]]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "LOOPWISE_S3_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    return server, env


def _upload(folder: Path, name: str, env: dict[str, str]) -> str:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=env["LOOPWISE_S3_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )
    try:
        client.create_bucket(Bucket=BUCKET)
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass
    for f in sorted(folder.glob("*.parquet")):
        client.upload_file(str(f), BUCKET, f"pools/{name}/{f.name}")
    return f"s3://{BUCKET}/pools/{name}/"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    ap.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--s3-sizes", nargs="*", default=["100k", "1m"])
    ap.add_argument("--data", type=Path, default=HERE / ".scale")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument(
        "--unchanged-only",
        action="store_true",
        help="keep the stores of an earlier run and measure only cycles on an unchanged pool",
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--peer", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child or args.peer:
        result = child(json.loads(args.child)) if args.child else peer_child(json.loads(args.peer))
        print("RESULT " + json.dumps(result))
        return 0

    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    args.data.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    server, s3_env = _s3_server() if args.s3_sizes else (None, {})
    with prefect_test_harness(server_startup_timeout=120):
        env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), **s3_env}
        env.setdefault("OMP_NUM_THREADS", "1")
        env["PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW"] = "ignore"
        for name in args.sizes:
            t = time.perf_counter()
            folder = generate(name, args.data)
            print(f"{name}: pool ready in {time.perf_counter() - t:.0f} s", flush=True)
            places = [("local", str(folder) + "/", str(args.data / f"store-{name}"))]
            if name in args.s3_sizes:
                src = _upload(folder, name, s3_env)
                places.append(("s3", src, f"s3://{BUCKET}/stores/{name}"))
            for place, source, store in places:
                if not args.unchanged_only:
                    _fresh(store, args.data)
                job = {"source": source, "store": store, "suite": suite_for(name, args.data)}
                for w in sorted(args.workers, reverse=True):
                    cluster = Cluster(w, args.data, env)
                    try:
                        job["address"] = cluster.address
                        if w == max(args.workers) and not args.unchanged_only:
                            first = _spawn("child", job, env)
                            rows.append(_row(name, place, w, "first (validates)", first))
                            print(_say(rows[-1]), flush=True)
                        again = _spawn("child", {**job, "warm": True}, env)
                        rows.append(_row(name, place, w, "unchanged pool", again))
                        print(_say(rows[-1]), flush=True)
                    finally:
                        cluster.stop()
            if not SIZES[name][2] and SIZES[name][0] <= 1_000_000:
                peer = _spawn("peer", {"source": str(folder)}, env)
                rows.append(
                    {
                        "pool": name,
                        "place": "local",
                        "who": "modAL margin_sampling",
                        "workers": 0,
                        "cycle": "holds the pool",
                        **peer,
                    }
                )
                print(_say(rows[-1]), flush=True)
    if server is not None:
        server.stop()
    (args.out / "scale.json").write_text(json.dumps(rows, indent=1))
    (args.out / "scale.md").write_text(report(rows))
    print(report(rows))
    return 0


def _fresh(store: str, data: Path) -> None:
    """A new campaign store for a pool's first cycle."""
    import shutil

    if store.startswith("s3://"):
        return  # a new bucket prefix per run of the bench (moto starts empty)
    shutil.rmtree(store, ignore_errors=True)


def _row(name: str, place: str, workers: int, cycle: str, r: dict[str, Any]) -> dict[str, Any]:
    return {
        "pool": name,
        "place": place,
        "who": "loopwise (partitioned)",
        "workers": workers,
        "cycle": cycle,
        **r,
    }


def _say(r: dict[str, Any]) -> str:
    t = " ".join(f"{k} {v:.1f}s" for k, v in r["times"].items())
    after = r.get("rss_after_mb") or {}
    return (
        f"{r['pool']:>6} {r['place']:>5} {r['who']} w={r['workers']} {r['cycle']}: {t}, "
        f"peak RSS {r['peak_rss_mb']:.0f} MB (after: {after})"
    )


def report(rows: list[dict[str, Any]]) -> str:
    """The markdown table of every run, and the claims of issue 16 read off it."""
    out = [
        "# One cycle's data work over a partitioned pool (bench/scale.py)",
        "",
        "Flow-process peak RSS; workers are separate processes (a LocalCluster, one thread each).",
        "",
        "| pool | store | who | workers | cycle | check s | fit s | select s | total s | "
        "validating (share) | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t = r["times"]
        total = sum(t.values())
        v = r.get("validating_seconds_in_workers")
        share = (
            "—"
            if v is None
            else f"{v:.1f} s worker time ({r.get('validated_partitions', 0)}/{r.get('partitions', 0)} partitions)"
        )
        out.append(
            f"| {r['pool']} | {r['place']} | {r['who']} | {r['workers']} | {r['cycle']} | "
            f"{t.get('check', t.get('load', 0)):.1f} | {t.get('fit', 0):.1f} | {t['select']:.1f} | "
            f"{total:.1f} | {share} | {r['peak_rss_mb']:.0f} |"
        )
    out += ["", *claims(rows)]
    return "\n".join(out) + "\n"


def claims(rows: list[dict[str, Any]]) -> list[str]:
    """The measured claims: RSS ceiling and flatness, validation share, speed-up, batches."""
    lw = [r for r in rows if r["who"].startswith("loopwise")]
    lines = ["## Claims", ""]
    if lw:
        top = max(r["peak_rss_mb"] for r in lw)
        lines.append(
            f"- Flow-process peak RSS at most {top:.0f} MB over every Loopwise run (limit 1,024)."
        )
    by = {(r["pool"], r["place"], r["workers"], r["cycle"]): r for r in lw}
    a = by.get(("1m", "local", 2, "unchanged pool"))
    b = by.get(("10m", "local", 2, "unchanged pool"))
    if a and b:
        lines.append(
            f"- 1M → 10M rows, unchanged pool, 2 workers: peak RSS {a['peak_rss_mb']:.0f} → "
            f"{b['peak_rss_mb']:.0f} MB ({b['peak_rss_mb'] / a['peak_rss_mb'] - 1:+.0%}; flat means ±20 %)."
        )
    for r in lw:
        if r["cycle"] == "unchanged pool" and r["validated_partitions"] == 0:
            pass
    unchanged = [r for r in lw if r["cycle"] == "unchanged pool"]
    if unchanged:
        worst = max(r["validating_seconds_in_workers"] / max(r["total"], 1e-9) for r in unchanged)
        lines.append(
            f"- Unchanged pools: {sum(r['validated_partitions'] for r in unchanged)} partitions "
            f"validated again; validation at most {worst:.1%} of a cycle (limit 5 %)."
        )
    for pool in sorted({r["pool"] for r in lw}):
        one = by.get((pool, "local", 1, "unchanged pool"))
        two = by.get((pool, "local", 2, "unchanged pool"))
        if one and two:
            lines.append(
                f"- {pool}: 1 → 2 worker processes, data work {one['total']:.1f} → "
                f"{two['total']:.1f} s: speed-up {one['total'] / two['total']:.2f}× "
                f"(check {one['times']['check'] / two['times']['check']:.2f}×, select "
                f"{one['times']['select'] / two['times']['select']:.2f}×)."
            )
    for pool in sorted({r["pool"] for r in rows}):
        peer = next((r for r in rows if r["pool"] == pool and r["who"].startswith("modAL")), None)
        ours = by.get((pool, "local", 2, "unchanged pool"))
        if peer and ours:
            lines.append(
                f"- {pool}: modAL holds the pool, peak RSS {peer['peak_rss_mb']:.0f} MB against "
                f"{ours['peak_rss_mb']:.0f} MB for the flow process."
            )
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
