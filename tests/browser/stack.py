"""A private copy of the demo stack for the browser test, and a short real campaign on it.

Like ``devstack.demo.start_stack`` and ``run_demo``, but every server listens on a free
port of 127.0.0.1 and keeps its data in a temporary folder: the user's own demo
servers (4200, 5000, 8080) and their pid files under ``.loopwise/run/`` are never
touched. Every process started here is stopped by its process id (its whole process
group) when the context manager exits, whatever happened.

    python -m tests.browser.stack /tmp/somewhere   # start it, run the campaign, keep it up
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from devstack import labelstudio_server as lss
from devstack import servers

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CAMPAIGN = "digits-demo"  # `loopwise deploy` registers cycle/digits-demo


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return f"(no log at {path})"


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the process group (its own session), SIGKILL what is left after ``timeout``."""
        pgid = self.popen.pid
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=wait)
            if self.popen.poll() is not None and not _group_alive(pgid):
                return
        # The leader is gone but children may linger in its group: one last SIGKILL.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def wait_http(url: str, proc: Proc, timeout: float) -> None:
    """Wait until ``url`` answers below 500; fail early with the log if the process died."""
    servers.wait_http(url, timeout, proc.popen, proc.log)


@dataclass
class Stack:
    """The running servers and the campaign of one browser-test session."""

    tmp: Path
    env: dict[str, str]
    prefect_url: str
    mlflow_url: str
    labelstudio: lss.ServerInfo
    campaign_file: Path
    procs: list[Proc] = field(default_factory=list)
    campaign: dict[str, Any] = field(default_factory=dict)

    @property
    def prefect_api(self) -> str:
        return f"{self.prefect_url}/api"

    def spawn(self, name: str, argv: list[str]) -> Proc:
        log = self.tmp / f"{name}.log"
        with open(log, "ab") as out:
            popen = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=REPO,
                env={**os.environ, **self.env},
                start_new_session=True,  # its own process group: stopped exactly, by pid
            )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def prefect(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [str(BIN / "prefect"), *args],
            env={**os.environ, **self.env},
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"prefect {' '.join(args)} failed ({done.returncode}):\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        return done

    def logs(self) -> str:
        parts = [f"--- {p.name} ({p.log})\n{tail(p.log, 3000)}" for p in self.procs]
        return "\n".join(parts)


def campaign_yaml(tmp: Path, ls_url: str, mlflow_db: Path) -> Path:
    """A short private campaign on scikit-learn's bundled digits (no dataset download, no
    ``../shared``), its config and suite written by ``loopwise init`` as a user would."""
    from sklearn.datasets import load_digits
    from typer.testing import CliRunner

    from flows.cli import app

    digits = load_digits()
    frame = pd.DataFrame(digits.data.astype(int), columns=[f"px{i}" for i in range(64)])
    frame["digit"] = [f"d{v}" for v in digits.target]
    source = tmp / f"{CAMPAIGN}.csv"
    frame.to_csv(source, index=False)
    done = CliRunner().invoke(
        app,
        [
            "init",
            str(source),
            "--label-column",
            "digit",
            "--configs-dir",
            str(tmp),
            "--expectations-dir",
            str(tmp),
        ],
        env={"LABEL_STUDIO_URL": ls_url},
    )
    if done.exit_code != 0:
        raise RuntimeError(f"loopwise init failed:\n{done.output}")
    path = tmp / f"{CAMPAIGN}.yaml"
    cfg = yaml.safe_load(path.read_text())
    cfg.update(
        cold_start_size=30,
        batch_size=30,
        stop_set_size=500,
        annotators_per_item=2,
        max_annotations_per_item=4,
    )
    # Stops after two cycles: the currency budget (0.08 an annotation, 2 per item) leaves
    # room for the second batch but not the third.
    cfg["budget"] = {
        "labels": 90,
        "currency": 15.0,
        "cost_per_annotation": 0.08,
        "value_per_point": 4.0,
    }
    cfg["storage_root"] = str(tmp / "store")
    cfg["mlflow"] = {
        "tracking_uri": f"sqlite:///{mlflow_db}",
        "artifact_location": (tmp / "mlartifacts").as_uri(),
    }
    cfg["schedule"] = {"recheck_seconds": 3}
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@contextlib.contextmanager
def running_stack(tmp: Path, ls_work_dir: Path | None = None) -> Iterator[Stack]:
    """Label Studio, a Prefect server (with its UI), the MLflow server and a process worker.

    All on free ports of 127.0.0.1 with their data under ``tmp``; the campaign in ``tmp``
    registered on this Prefect server by ``loopwise deploy`` (``cycle/digits-demo``).
    Everything is stopped by process id on exit.
    """
    tmp.mkdir(parents=True, exist_ok=True)
    prefect_port, mlflow_port = free_port(), free_port()
    prefect_url = f"http://127.0.0.1:{prefect_port}"
    mlflow_url = f"http://127.0.0.1:{mlflow_port}"
    prefect_home = tmp / "prefect-home"
    prefect_home.mkdir()
    env = {
        "PREFECT_HOME": str(prefect_home),  # its database and profile: never the user's
        "PREFECT_API_URL": f"{prefect_url}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        # The server's SQLite waits up to 60 s for a lock (its busy_timeout): the flow
        # runs' client must wait longer than that before it calls the server gone.
        "PREFECT_API_REQUEST_TIMEOUT": "120",
        "DO_NOT_TRACK": "1",
        "GX_ANALYTICS_ENABLED": "false",
        "LOOPWISE_PROJECT_DIR": str(REPO),
        "LOOPWISE_MLFLOW_UI": mlflow_url,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    stack = Stack(
        tmp=tmp,
        env=env,
        prefect_url=prefect_url,
        mlflow_url=mlflow_url,
        labelstudio=None,  # type: ignore[arg-type]  # set below
        campaign_file=tmp / "campaign.yaml",
    )
    ls_info: lss.ServerInfo | None = None
    try:
        # The two slow starters first, in the background; Label Studio meanwhile.
        prefect_server = stack.spawn(
            "prefect-server",
            [
                str(BIN / "prefect"),
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(prefect_port),
            ],
        )
        mlflow_db = tmp / "mlflow.db"
        mlflow_server = stack.spawn(
            "mlflow-server",
            [
                str(BIN / "mlflow"),
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(mlflow_port),
                "--backend-store-uri",
                f"sqlite:///{mlflow_db}",
                "--default-artifact-root",
                (tmp / "mlartifacts").as_uri(),
                "--workers",
                "1",
            ],
        )
        ls_info = lss.start(
            ls_work_dir,
            data_dir=tmp / "labelstudio" / "data",
            state_file=tmp / "labelstudio" / "server.json",
        )
        stack.labelstudio = ls_info
        env["LABEL_STUDIO_API_KEY"] = ls_info.token
        stack.campaign_file = campaign_yaml(tmp, ls_info.url, mlflow_db)
        wait_http(f"{stack.prefect_api}/health", prefect_server, timeout=240)
        wait_http(f"{mlflow_url}/health", mlflow_server, timeout=240)
        stack.prefect("work-pool", "create", "loopwise", "--type", "process")
        deployed = subprocess.run(
            [str(BIN / "loopwise"), "deploy", str(stack.campaign_file), "--pool", "loopwise"],
            env={**os.environ, **env},
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )
        if deployed.returncode != 0:
            raise RuntimeError(f"loopwise deploy failed:\n{deployed.stdout}\n{deployed.stderr}")
        stack.spawn(
            "prefect-worker",
            [str(BIN / "prefect"), "worker", "start", "--pool", "loopwise", "--limit", "1"],
        )
        yield stack
    finally:
        # The worker first: it must not start runs against a stopping server.
        for proc in sorted(stack.procs, key=lambda p: p.name != "prefect-worker"):
            proc.stop()
        if ls_info is not None:
            lss.stop(ls_info)


# A server on a loaded 2-core machine (SQLite under the Prefect server, a flow run training
# beside it) can stall for tens of seconds: one slow answer is not a failure, only one
# that stays away for ``API_PATIENCE`` seconds is.
API_PATIENCE = 240.0


def api_json(
    url: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    patience: float = API_PATIENCE,
) -> Any:
    """GET (or POST ``body`` as JSON) and decode the answer, asking again through timeouts,
    refused connections and 5xx answers for up to ``patience`` seconds."""
    data = None if body is None else json.dumps(body).encode()
    deadline = time.monotonic() + patience
    delay = 1.0
    while True:
        req = urllib.request.Request(
            url, data=data, headers={"Content-Type": "application/json", **(headers or {})}
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                raise
            error: Exception = exc
        except (TimeoutError, urllib.error.URLError, ConnectionError) as exc:
            error = exc
        if time.monotonic() + delay > deadline:
            raise TimeoutError(f"{url} did not answer for {patience:.0f} s: {error!r}") from error
        time.sleep(delay)
        delay = min(delay * 2, 15.0)


def _failed_runs(stack: Stack) -> list[tuple[str, str]]:
    """(name, state) of every flow run that failed or crashed on this Prefect server."""
    return _runs_in(stack, ["FAILED", "CRASHED"])


def _runs_in(stack: Stack, states: list[str]) -> list[tuple[str, str]]:
    """(name, state) of every flow run in one of ``states`` on this Prefect server."""
    body = {"flow_runs": {"state": {"type": {"any_": states}}}}
    try:
        runs = api_json(f"{stack.prefect_api}/flow_runs/filter", body)
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}\n{stack.logs()}") from exc
    return [(run["name"], run["state_name"]) for run in runs]


def run_campaign(stack: Stack, timeout: float = 600.0) -> dict[str, Any]:
    """Start the campaign and play the annotators until its state says stopped (as ``make demo``)."""
    from devstack.annotators import load_profiles
    from devstack.demo import annotate_campaign, campaign_project_id, ground_truth
    from loopwise.config import load_campaign
    from tasks.state import campaign_store, read_state

    cfg = load_campaign(stack.campaign_file)
    store = campaign_store(cfg.storage_root, cfg.name)
    stack.prefect("deployment", "run", cfg.deployment, "--param", f"campaign={stack.campaign_file}")
    truth = ground_truth(cfg)
    profiles = load_profiles(REPO / "configs" / "annotators.yaml")
    project_id, seed = None, 0
    start = last_check = time.monotonic()
    while True:
        state = read_state(store)
        # Stopped, and the run that stopped it finished too (it writes the report last).
        if state.get("stopped") and not _runs_in(stack, ["RUNNING", "PENDING"]):
            break
        if time.monotonic() - start > timeout:
            raise TimeoutError(
                f"the campaign did not stop in {timeout:.0f} s; state {state}\n{stack.logs()}"
            )
        # The store is read every second; the Prefect server, busy with the flow run on a
        # 2-core machine, is asked about failures every 10 s.
        if time.monotonic() - last_check > 10:
            last_check = time.monotonic()
            failed = _failed_runs(stack)
            if failed:
                raise RuntimeError(f"flow runs failed: {failed}\n{stack.logs()}")
        if project_id is None:
            project_id = campaign_project_id(cfg, stack.labelstudio.token)
        if project_id is not None and state["stage"] == "waiting":
            seed += 1
            annotate_campaign(cfg, stack.labelstudio.token, project_id, truth, profiles, seed)
        time.sleep(1)
    stack.campaign = {
        "cfg": cfg,
        "state": state,
        "project_id": project_id,
        "seconds": time.monotonic() - start,
    }
    return stack.campaign


def main() -> int:  # pragma: no cover - a manual helper
    tmp = Path(sys.argv[1])
    with running_stack(tmp) as stack:
        print(
            "prefect",
            stack.prefect_url,
            "mlflow",
            stack.mlflow_url,
            "ls",
            stack.labelstudio.url,
            flush=True,
        )
        out = run_campaign(stack)
        print(
            "stopped after",
            f"{out['seconds']:.0f} s",
            out["state"]["decision"]["reason"],
            flush=True,
        )
        (tmp / "ready").write_text(
            f"{stack.prefect_url}\n{stack.mlflow_url}\n{stack.labelstudio.url}\n{out['project_id']}\n"
        )
        while not (tmp / "done").exists():
            time.sleep(1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
