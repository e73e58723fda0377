"""`make demo`: the real loop on the embedded defaults, to its stopping decision.

Starts (or reuses) a local Label Studio, a Prefect server, a process worker and the
MLflow UI, all on 127.0.0.1; deploys ``prefect.yaml``; starts the campaign of
``configs/demo.yaml``; and plays the annotators (``configs/annotators.yaml``) in
Label Studio while the scheduled runs collect, retrain, decide and dispatch.
Progress is printed as the campaign's state moves; at the end it prints where to
look. ``make down`` stops every server by its process id.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from devstack import labelstudio_server as lss
from devstack import servers

REPO = servers.REPO
PREFECT_PORT, MLFLOW_PORT, LS_PORT = 4200, 5000, 8080
LS_DATA = REPO / ".loopwise" / "labelstudio" / "demo-data"


def _prefect(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(servers.BIN / "prefect"), *args],
        env={**os.environ, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        check=check,
    )


def start_stack() -> dict[str, str]:
    """Label Studio, Prefect server, MLflow UI and a worker; the environment the runs need."""
    print("• Label Studio (first time: install and migrate, about a minute)...", flush=True)
    env_file = lss.DEFAULT_WORK_DIR / "labelstudio.env"
    if not lss.status().get("healthy") or not env_file.exists():
        lss.stop()
        lss.start(port=LS_PORT, data_dir=LS_DATA, env_file=env_file)
    token = _read_env(env_file)["LABEL_STUDIO_API_KEY"]
    api = f"http://127.0.0.1:{PREFECT_PORT}/api"
    env = {
        "PREFECT_API_URL": api,
        "LABEL_STUDIO_API_KEY": token,
        "LOOPWISE_PROJECT_DIR": str(REPO),
        "LOOPWISE_MLFLOW_UI": f"http://127.0.0.1:{MLFLOW_PORT}",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    }
    print("• Prefect server...", flush=True)
    servers.ensure_running(
        "prefect-server",
        [
            str(servers.BIN / "prefect"),
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(PREFECT_PORT),
        ],
        health_url=f"{api}/health",
        env=env,
        timeout=180,
        url=f"http://127.0.0.1:{PREFECT_PORT}",
    )
    print("• MLflow UI...", flush=True)
    (REPO / ".loopwise").mkdir(exist_ok=True)
    servers.ensure_running(
        "mlflow-ui",
        [
            str(servers.BIN / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(MLFLOW_PORT),
            "--backend-store-uri",
            f"sqlite:///{REPO / '.loopwise' / 'mlflow.db'}",
            "--workers",
            "1",
        ],
        health_url=f"http://127.0.0.1:{MLFLOW_PORT}/health",
        env=env,
        timeout=180,
        url=f"http://127.0.0.1:{MLFLOW_PORT}",
    )
    print("• work pool, deployments and worker...", flush=True)
    _prefect("work-pool", "create", "loopwise", "--type", "process", env=env, check=False)
    done = _prefect("--no-prompt", "deploy", "--all", env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"prefect deploy failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    servers.ensure_running(
        "prefect-worker",
        [str(servers.BIN / "prefect"), "worker", "start", "--pool", "loopwise", "--limit", "1"],
        health_url=None,
        env=env,
    )
    return env


def _read_env(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        if key:
            out[key.strip()] = value.strip()
    return out


def ground_truth(cfg) -> dict[str, str]:
    """item id → the data's label column: what simulated annotators answer from."""
    from tasks.data import load_pool

    df = load_pool.fn(cfg)
    return dict(zip(df["item_id"], df[cfg.data.label_column].astype(str), strict=True))


def campaign_project_id(cfg, token: str) -> int | None:
    """The campaign's Label Studio project, or None before its first dispatch."""
    from tasks.labelstudio import connect

    client = connect(cfg.labelstudio.url, token)
    for p in client.projects.list(title=cfg.project_title):
        if p.title == cfg.project_title:
            return int(p.id)
    return None


def annotate_campaign(
    cfg, token: str, project_id: int, truth: dict[str, str], profiles, seed: int
) -> dict:
    """One round of simulated annotators on the campaign's open tasks (seeded)."""
    from devstack.annotators import simulate_annotators

    return simulate_annotators(
        cfg.labelstudio.url,
        token,
        project_id,
        truth,
        profiles,
        labels=cfg.labels,
        data_kind=cfg.data.kind,
        random_state=seed,
    )


def run_demo(campaign: str, timeout: float) -> int:
    from devstack.annotators import load_profiles
    from loopwise.config import load_campaign
    from tasks.state import campaign_store, read_state

    cfg = load_campaign(campaign)
    env = start_stack()
    os.environ.update(env)
    store = campaign_store(cfg.storage_root, cfg.name)
    state = read_state(store)
    if state.get("stopped"):
        print(f"\nThe campaign {cfg.name} already stopped: {state['decision']['reason']}")
        print("(`make demo-clean` forgets it and its servers' data, to run it again.)")
    else:
        out = _prefect("deployment", "run", cfg.deployment, env=env)
        print("• started:", out.stdout.strip().splitlines()[0] if out.stdout else cfg.deployment)
        truth = ground_truth(cfg)
        profiles = load_profiles(REPO / "configs" / "annotators.yaml")
        shown: set = set()
        start, seed = time.monotonic(), 0
        while time.monotonic() - start < timeout:
            state = read_state(store)
            _report(state, shown)
            if state.get("stopped"):
                break
            pid = campaign_project_id(cfg, env["LABEL_STUDIO_API_KEY"])
            if pid is not None and state["stage"] == "waiting":
                seed += 1
                annotate_campaign(cfg, env["LABEL_STUDIO_API_KEY"], pid, truth, profiles, seed)
            time.sleep(1)
        else:
            print(
                f"\nThe campaign did not stop within {timeout:.0f} s; it goes on in the background."
            )
    pid = campaign_project_id(cfg, env["LABEL_STUDIO_API_KEY"])
    print(
        "\nWhere to look (the servers keep running; `make down` stops them):\n"
        f"  Prefect UI    http://127.0.0.1:{PREFECT_PORT}  (deployment {cfg.deployment}, flow runs, "
        "summary artifacts)\n"
        f"  MLflow UI     http://127.0.0.1:{MLFLOW_PORT}  (experiment {cfg.experiment}, "
        f"model loopwise-{cfg.name}@champion)\n"
        f"  Label Studio  {cfg.labelstudio.url}/projects/{pid}  (login {lss.USERNAME}; password in "
        f"{LS_DATA}/.loopwise-credentials.json)\n"
        f"  State         {store.uri('state.json')}\n"
        f"  Report        {store.uri('reports/report.html')}  (written at the stop; "
        f"`uv run loopwise report {campaign}` rebuilds it)"
    )
    return 0


def _report(state: dict, shown: set) -> None:
    """Print what is new in the campaign's state: trained cycles, decisions, open batches."""
    for h in state.get("history") or []:
        if ("trained", h["cycle"]) not in shown:
            shown.add(("trained", h["cycle"]))
            print(
                f"  cycle {h['cycle']}: {h['labels']} labels, {h['annotations']} annotations, "
                f"cost {h['cost']:.2f}, holdout accuracy {h['metric']:.4f}",
                flush=True,
            )
    d, k = state.get("decision"), state["cycle"]
    if (
        d
        and state["stage"] in ("decided", "selected", "waiting", "stopped")
        and ("decided", k) not in shown
    ):
        shown.add(("decided", k))
        print(f"  cycle {k}: {'STOP' if d['stop'] else 'go on'} — {d['reason'][:400]}", flush=True)
    if state["stage"] == "waiting" and ("waiting", k) not in shown:
        shown.add(("waiting", k))
        print(
            f"  cycle {k}: batch of {len(state.get('open_batch') or [])} out with annotators",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.demo", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--campaign", default="configs/demo.yaml")
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds, default %(default)s"
    )
    args = parser.parse_args(argv)
    return run_demo(args.campaign, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
