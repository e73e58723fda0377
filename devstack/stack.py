"""The development stack, one implementation for ``make demo`` and the browser test.

Label Studio, a Prefect server, the MLflow server and a Prefect process worker, all on
127.0.0.1, parametrised by their ports (:class:`Ports`) and folders (:class:`Folders`):

* ``make demo`` (:mod:`devstack.demo`): ``Ports()`` (4200, 5000, 8080) and
  ``Folders.demo()`` (pid files and logs in ``.loopwise/run/``, data under ``.loopwise/``).
  The servers outlive the demo; the next demo reuses them, ``loopwise run`` the Prefect
  server (:mod:`devstack.prefect_server`), and ``make down`` stops them by process id.
* the browser test (``tests/browser/stack.py``): ``Ports.free()`` and
  ``Folders.private(tmp)``; :func:`running_stack` stops every process by its id on exit.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from devstack import labelstudio_server as lss
from devstack import prefect_server, servers

__all__ = ["Folders", "Ports", "Stack", "free_port", "running_stack"]

REPO = servers.REPO
HOST = "127.0.0.1"
# Patience for a server's first answer on a loaded 2-core machine (not a performance bound).
START_TIMEOUT_S = 240.0


def free_port() -> int:
    """A port of 127.0.0.1 free at the time of asking."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Ports:
    """Where the servers listen; ``labelstudio=None`` lets Label Studio take a free port."""

    prefect: int = prefect_server.DEFAULT_PORT
    mlflow: int = 5000
    labelstudio: int | None = 8080

    @classmethod
    def free(cls) -> Ports:
        """Free ports: a stack beside the user's own servers."""
        return cls(prefect=free_port(), mlflow=free_port(), labelstudio=None)


@dataclass(frozen=True)
class Folders:
    """Where the stack keeps its pid files, logs and data."""

    run_dir: Path  # pid files and logs of the Prefect server, MLflow and the worker
    prefect_home: Path  # Prefect's database and profile (PREFECT_HOME)
    mlflow_db: Path
    labelstudio_data: Path
    mlflow_artifacts: Path | None = None  # None: MLflow's default (campaigns name their own)
    labelstudio_state: Path | None = None  # None: <labelstudio_work_dir>/labelstudio/server.json
    labelstudio_work_dir: Path | None = None  # its tool environment and template; None: .loopwise
    labelstudio_env_file: Path | None = None  # LABEL_STUDIO_URL and _API_KEY for `source`

    @classmethod
    def demo(cls) -> Folders:
        """The demo's: ``.loopwise/`` (the Prefect server the one ``loopwise run`` uses)."""
        work = REPO / ".loopwise"
        return cls(
            run_dir=servers.RUN_DIR,
            prefect_home=prefect_server.default_home(),
            mlflow_db=work / "mlflow.db",
            labelstudio_data=work / "labelstudio" / "demo-data",
            labelstudio_env_file=lss.DEFAULT_WORK_DIR / "labelstudio.env",
        )

    @classmethod
    def private(cls, root: Path, labelstudio_work_dir: Path | None = None) -> Folders:
        """Everything under ``root``; Label Studio's tool environment may be shared."""
        return cls(
            run_dir=root / "run",
            prefect_home=root / "prefect-home",
            mlflow_db=root / "mlflow.db",
            labelstudio_data=root / "labelstudio" / "data",
            mlflow_artifacts=root / "mlartifacts",
            labelstudio_state=root / "labelstudio" / "server.json",
            labelstudio_work_dir=labelstudio_work_dir,
        )


def _quiet(_: str) -> None:
    pass


@dataclass
class Stack:
    """The servers of one stack: their URLs, the environment runs need, and how to stop them."""

    ports: Ports = field(default_factory=Ports)
    folders: Folders = field(default_factory=Folders.demo)
    extra_env: Mapping[str, str] = field(default_factory=dict)
    labelstudio: lss.ServerInfo | None = None

    @property
    def prefect_url(self) -> str:
        return f"http://{HOST}:{self.ports.prefect}"

    @property
    def prefect_api(self) -> str:
        return f"{self.prefect_url}/api"

    @property
    def mlflow_url(self) -> str:
        return f"http://{HOST}:{self.ports.mlflow}"

    @property
    def env(self) -> dict[str, str]:
        """What flow runs, the worker, ``prefect`` and ``loopwise`` commands need."""
        env = {
            "PREFECT_HOME": str(self.folders.prefect_home),
            "PREFECT_API_URL": self.prefect_api,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
            # The server's SQLite waits up to 60 s for a lock (its busy_timeout): the flow
            # runs' client must wait longer than that before it calls the server gone.
            "PREFECT_API_REQUEST_TIMEOUT": "120",
            "DO_NOT_TRACK": "1",
            "GX_ANALYTICS_ENABLED": "false",
            "LOOPWISE_PROJECT_DIR": str(REPO),
            "LOOPWISE_MLFLOW_UI": self.mlflow_url,
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }
        if self.labelstudio is not None:
            env["LABEL_STUDIO_API_KEY"] = self.labelstudio.token
        return {**env, **self.extra_env}

    def start(self, say: Callable[[str], None] = _quiet) -> Stack:
        """Start (or reuse) the servers; the worker comes later (:meth:`start_worker`)."""
        f = self.folders
        f.run_dir.mkdir(parents=True, exist_ok=True)
        f.mlflow_db.parent.mkdir(parents=True, exist_ok=True)
        say("• Prefect server and MLflow UI (in the background)...")
        # The two slow starters first; Label Studio starts meanwhile.
        prefect = prefect_server.ensure(
            self.ports.prefect, home=f.prefect_home, run_dir=f.run_dir, env=self.env, wait=False
        )
        mlflow = servers.ensure_running(
            "mlflow-ui",
            self._mlflow_argv(),
            health_url=f"{self.mlflow_url}/health",
            env=self.env,
            url=self.mlflow_url,
            run_dir=f.run_dir,
            wait=False,
        )
        say("• Label Studio (first time: install and migrate, about a minute)...")
        self.labelstudio = lss.ensure(
            f.labelstudio_work_dir,
            self.ports.labelstudio,
            data_dir=f.labelstudio_data,
            state_file=f.labelstudio_state,
            env_file=f.labelstudio_env_file,
        )
        say("• waiting for Prefect and MLflow to answer...")
        prefect_server.wait_ready(prefect, f.run_dir, START_TIMEOUT_S)
        servers.wait_healthy(mlflow, START_TIMEOUT_S)
        return self

    def _mlflow_argv(self) -> list[str]:
        argv = [
            str(servers.BIN / "mlflow"),
            "server",
            "--host",
            HOST,
            "--port",
            str(self.ports.mlflow),
            "--backend-store-uri",
            f"sqlite:///{self.folders.mlflow_db}",
            "--workers",
            "1",
        ]
        if self.folders.mlflow_artifacts is not None:
            argv += ["--default-artifact-root", self.folders.mlflow_artifacts.as_uri()]
        return argv

    def run(self, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """Run a command of the venv (``prefect``, ``loopwise``) against this stack; fail loudly."""
        done = subprocess.run(
            [str(servers.BIN / argv[0]), *argv[1:]],
            env={**os.environ, **self.env},
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv)} failed ({done.returncode}):\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        return done

    def prefect(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """``prefect ARGS`` against this stack's server; fails loudly."""
        return self.run("prefect", *args, timeout=timeout)

    def ensure_work_pool(self, pool: str = "loopwise") -> None:
        """A process work pool named ``pool`` (kept if it exists)."""
        with contextlib.suppress(RuntimeError):  # it exists already
            self.prefect("work-pool", "create", pool, "--type", "process")

    def start_worker(self, pool: str = "loopwise") -> dict:
        """A process worker on ``pool``, one flow run at a time (reused if it runs)."""
        return servers.ensure_running(
            "prefect-worker",
            [str(servers.BIN / "prefect"), "worker", "start", "--pool", pool, "--limit", "1"],
            health_url=None,
            env=self.env,
            run_dir=self.folders.run_dir,
        )

    def logs(self) -> str:
        """The end of each server's log, for an error message."""
        text = servers.logs(self.folders.run_dir)
        if self.labelstudio is not None:
            tail = self.labelstudio.log_path.read_text(errors="replace")[-3000:]
            text += f"\n--- label-studio ({self.labelstudio.log_path})\n{tail}"
        return text

    def stop(self) -> list[str]:
        """Stop every process of this stack by its id (the worker first); the names stopped."""
        stopped = servers.stop_all(self.folders.run_dir)
        target = self.labelstudio or self.folders.labelstudio_state
        if target is not None and lss.stop(target):
            stopped.append("label-studio")
        return stopped


@contextlib.contextmanager
def running_stack(
    ports: Ports,
    folders: Folders,
    extra_env: Mapping[str, str] | None = None,
    say: Callable[[str], None] = _quiet,
) -> Iterator[Stack]:
    """A started :class:`Stack`, stopped by process id on exit whatever happened."""
    stack = Stack(ports, folders, dict(extra_env or {}))
    try:
        yield stack.start(say)
    finally:
        stack.stop()
