"""The local stack of the demo: a Prefect server, a process worker and the MLflow UI.

Each is a child process bound to 127.0.0.1, with its log and a pid file under
``.loopwise/run/``; ``stop_all`` stops them by process id. Label Studio has its
own module (:mod:`devstack.labelstudio_server`).

    python -m devstack.servers status
    python -m devstack.servers stop
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["RUN_DIR", "ensure_running", "running", "stop", "stop_all", "wait_http"]

REPO = Path(__file__).resolve().parents[1]
RUN_DIR = REPO / ".loopwise" / "run"
BIN = Path(sys.executable).parent


def _pid_file(name: str) -> Path:
    return RUN_DIR / f"{name}.json"


def running(name: str) -> dict | None:
    """The recorded process of ``name`` if it is still alive."""
    path = _pid_file(name)
    if not path.exists():
        return None
    info = json.loads(path.read_text())
    try:
        os.kill(int(info["pid"]), 0)
    except (ProcessLookupError, PermissionError):
        path.unlink(missing_ok=True)
        return None
    return info


def wait_http(
    url: str, timeout: float, proc: subprocess.Popen | None = None, log: Path | None = None
) -> None:
    """Wait until ``url`` answers (any HTTP status below 500)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}:\n{tail}")
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


def ensure_running(
    name: str,
    argv: Sequence[str],
    *,
    health_url: str | None,
    env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
    url: str | None = None,
) -> dict:
    """Start ``argv`` in the background unless ``name`` already runs; wait for its health URL."""
    info = running(name)
    if info is not None:
        return info
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    log = RUN_DIR / f"{name}.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=REPO,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    info = {"name": name, "pid": proc.pid, "url": url, "log": str(log), "argv": list(argv)}
    _pid_file(name).write_text(json.dumps(info))
    if health_url:
        try:
            wait_http(health_url, timeout, proc, log)
        except BaseException:
            stop(name)
            raise
    return info


def stop(name: str, timeout: float = 15.0) -> bool:
    """Stop ``name`` (its whole process group) by the recorded pid; True if it was running."""
    info = running(name)
    if info is None:
        return False
    pid = int(info["pid"])
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            try:  # reap it if it is our child
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.2)
        else:
            continue
        break
    _pid_file(name).unlink(missing_ok=True)
    return True


def stop_all() -> list[str]:
    """Stop every process recorded under ``.loopwise/run/``; the names stopped."""
    if not RUN_DIR.exists():
        return []
    # The worker first: it must not start runs against a stopping server.
    names = sorted((p.stem for p in RUN_DIR.glob("*.json")), key=lambda n: n != "prefect-worker")
    return [n for n in names if stop(n)]


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
