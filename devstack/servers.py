"""Background servers of the dev stack (Prefect server, MLflow, a Prefect worker), by pid file.

Each is a child process bound to 127.0.0.1 in its own session, with its log and a pid
file (``<name>.json``) in a run folder: ``.loopwise/run/`` for the servers the demo and
``loopwise run`` share, a temporary folder for the browser test's private ones.
``stop``/``stop_all`` stop them by process id (their whole process group). Label Studio
has its own module (:mod:`devstack.labelstudio_server`), the Prefect server its entry
point (:mod:`devstack.prefect_server`).

    python -m devstack.servers status
    python -m devstack.servers stop
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from devstack import processes

__all__ = [
    "BIN",
    "REPO",
    "RUN_DIR",
    "ensure_running",
    "logs",
    "running",
    "stop",
    "stop_all",
    "wait_healthy",
    "wait_http",
]

REPO = Path(__file__).resolve().parents[1]
RUN_DIR = REPO / ".loopwise" / "run"
BIN = Path(sys.executable).parent


def _pid_file(name: str, run_dir: Path) -> Path:
    return Path(run_dir) / f"{name}.json"


def running(name: str, run_dir: Path = RUN_DIR) -> dict | None:
    """The recorded process of ``name`` if it is still alive (and still the one recorded)."""
    path = _pid_file(name, run_dir)
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    pid = int(info["pid"])
    if not processes.alive(pid) or _pid_reused(pid, info.get("started")):
        path.unlink(missing_ok=True)
        return None
    return info


def _pid_reused(pid: int, recorded: int | None) -> bool:
    """A pid file that outlived its process may name another one since: compare start times."""
    started = processes.start_time(pid)
    return None not in (started, recorded) and started != recorded


def wait_http(url: str, timeout: float, pid: int | None = None, log: Path | None = None) -> None:
    """Wait until ``url`` answers (any HTTP status below 500); fail early if ``pid`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid is not None and not processes.alive(pid):
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"process {pid} exited before {url} answered:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status < 500:
                    return
        except urllib.error.HTTPError as err:
            if err.code < 500:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def wait_healthy(info: Mapping, timeout: float) -> None:
    """Wait for the health URL recorded by :func:`ensure_running`; stop the process if it fails."""
    if not info.get("health_url"):
        return
    try:
        wait_http(info["health_url"], timeout, int(info["pid"]), Path(info["log"]))
    except BaseException:
        stop(info["name"], run_dir=Path(info["run_dir"]))
        raise


def ensure_running(
    name: str,
    argv: Sequence[str],
    *,
    health_url: str | None,
    env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
    url: str | None = None,
    run_dir: Path = RUN_DIR,
    wait: bool = True,
) -> dict:
    """Start ``argv`` in the background unless ``name`` already runs; wait for its health URL.

    With ``wait=False`` it returns at once; :func:`wait_healthy` waits later.
    """
    info = running(name, run_dir)
    if info is None:
        info = _spawn(name, argv, health_url, env, url, Path(run_dir))
    if wait:
        wait_healthy(info, timeout)
    return info


def _spawn(
    name: str,
    argv: Sequence[str],
    health_url: str | None,
    env: Mapping[str, str] | None,
    url: str | None,
    run_dir: Path,
) -> dict:
    run_dir.mkdir(parents=True, exist_ok=True)
    log = run_dir / f"{name}.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=REPO,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # its own process group: stopped exactly, by pid
        )
    processes.track(proc)
    info = {
        "name": name,
        "pid": proc.pid,
        "url": url,
        "health_url": health_url,
        "log": str(log),
        "run_dir": str(run_dir),
        "argv": list(argv),
        "started": processes.start_time(proc.pid),
    }
    _pid_file(name, run_dir).write_text(json.dumps(info))
    return info


def stop(name: str, timeout: float = 15.0, run_dir: Path = RUN_DIR) -> bool:
    """Stop ``name`` (its whole process group) by the recorded pid; True if it was running."""
    info = running(name, run_dir)
    if info is None:
        return False
    processes.terminate_group(int(info["pid"]), timeout, name=name)
    _pid_file(name, run_dir).unlink(missing_ok=True)
    return True


def stop_all(run_dir: Path = RUN_DIR) -> list[str]:
    """Stop every process recorded in ``run_dir``; the names stopped."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        return []
    # The worker first: it must not start runs against a stopping server.
    names = sorted((p.stem for p in run_dir.glob("*.json")), key=lambda n: n != "prefect-worker")
    return [n for n in names if stop(n, run_dir=run_dir)]


def logs(run_dir: Path = RUN_DIR, n: int = 3000) -> str:
    """The end of each log in ``run_dir`` (for an error message)."""
    parts = []
    for log in sorted(Path(run_dir).glob("*.log")):
        text = log.read_text(errors="replace")[-n:] if log.exists() else ""
        parts.append(f"--- {log.stem} ({log})\n{text}")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.servers", description=__doc__.split("\n")[0]
    )
    parser.add_argument("command", choices=["status", "stop"])
    args = parser.parse_args(argv)
    if args.command == "stop":
        stopped = stop_all()
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        return 0
    for p in sorted(RUN_DIR.glob("*.json")) if RUN_DIR.exists() else []:
        info = running(p.stem)
        print(
            f"{p.stem}: {'running pid ' + str(info['pid']) if info else 'not running'}"
            f"{' at ' + info['url'] if info and info.get('url') else ''}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
