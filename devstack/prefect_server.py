"""One local Prefect server, started once on 127.0.0.1 and reused.

``loopwise run``, ``report`` and ``deploy`` with no Prefect API configured, ``make
prefect-start`` and ``make demo`` all call :func:`ensure`, so they share one server
instead of each starting a temporary one (10–20 s every time):

* port ``$LOOPWISE_PREFECT_PORT``, default 4200;
* its database and profile under ``$PREFECT_HOME``, default ``.loopwise/prefect``;
* its pid file and log in ``.loopwise/run/`` (``prefect-server.json``, ``.log``), so
  ``make prefect-stop`` or ``make down`` stops it by process id.

A server already answering ``/api/health`` on the port is used as it is.

    python -m devstack.prefect_server start|status|stop
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from devstack import servers

__all__ = [
    "DEFAULT_PORT",
    "NAME",
    "PORT_ENV",
    "PrefectServer",
    "default_home",
    "default_port",
    "ensure",
    "stop",
    "wait_ready",
]

NAME = "prefect-server"
HOST = "127.0.0.1"
DEFAULT_PORT = 4200
PORT_ENV = "LOOPWISE_PREFECT_PORT"
# `prefect server start` on SQLite is ready in about 10 s; a loaded 2-core machine is slower.
START_TIMEOUT_S = 240.0


@dataclass(frozen=True)
class PrefectServer:
    """A local Prefect server that answers; ``pid`` is None for one this module did not start."""

    url: str
    pid: int | None
    started: bool
    log: Path | None = None

    @property
    def api_url(self) -> str:
        """What ``PREFECT_API_URL`` must say."""
        return f"{self.url}/api"


def default_port() -> int:
    """``$LOOPWISE_PREFECT_PORT``, else 4200."""
    raw = os.environ.get(PORT_ENV) or str(DEFAULT_PORT)
    try:
        port = int(raw)
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise ValueError(f"{PORT_ENV}={raw!r}: expected a port number between 1 and 65535")
    return port


def default_home() -> Path:
    """``$PREFECT_HOME`` when set (the Makefile sets it), else ``.loopwise/prefect``."""
    return Path(os.environ.get("PREFECT_HOME") or servers.REPO / ".loopwise" / "prefect")


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/health", timeout=3) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        return s.connect_ex((HOST, port)) == 0


@contextlib.contextmanager
def _locked(run_dir: Path) -> Iterator[None]:
    """One starter at a time: two ``loopwise run`` at once must not start two servers."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / f"{NAME}.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure(
    port: int | None = None,
    *,
    home: Path | None = None,
    run_dir: Path = servers.RUN_DIR,
    env: Mapping[str, str] | None = None,
    wait: bool = True,
    timeout: float = START_TIMEOUT_S,
) -> PrefectServer:
    """The Prefect server on 127.0.0.1:``port``: the one answering there, else started now.

    ``port`` defaults to :func:`default_port`, ``home`` (its ``PREFECT_HOME``) to
    :func:`default_home`; ``run_dir`` holds its pid file and log; ``env`` adds settings
    for a server started here. With ``wait=False`` a starting server is not waited for
    (:func:`wait_ready` does it).
    """
    port = default_port() if port is None else int(port)
    url = f"http://{HOST}:{port}"
    run_dir = Path(run_dir)
    if _healthy(url):
        info = servers.running(NAME, run_dir)
        return PrefectServer(url, _pid_of(info, url), started=False)
    with _locked(run_dir):
        info = servers.running(NAME, run_dir)
        started = info is None
        if info is not None and info.get("url") != url:
            raise RuntimeError(
                f"the Prefect server recorded in {run_dir} runs at {info.get('url')}, not {url}: "
                f"`python -m devstack.prefect_server stop` (make prefect-stop) stops it"
            )
        if info is None:
            info = _start(port, url, Path(home or default_home()), run_dir, env)
    server = PrefectServer(url, int(info["pid"]), started=started, log=Path(info["log"]))
    if wait:
        wait_ready(server, run_dir, timeout)
    return server


def _pid_of(info: dict | None, url: str) -> int | None:
    return int(info["pid"]) if info and info.get("url") == url else None


def _start(port: int, url: str, home: Path, run_dir: Path, env: Mapping[str, str] | None) -> dict:
    if _port_taken(port):
        raise RuntimeError(
            f"port {port} on {HOST} is taken by something that is not a Prefect server; "
            f"set {PORT_ENV} to another port (or PREFECT_API_URL to a server of yours)"
        )
    home.mkdir(parents=True, exist_ok=True)
    argv = [str(servers.BIN / "prefect"), "server", "start", "--host", HOST, "--port", str(port)]
    settings = {
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        **(env or {}),
        "PREFECT_HOME": str(home),  # its database and profile
    }
    return servers.ensure_running(
        NAME,
        argv,
        health_url=f"{url}/api/health",
        env=settings,
        url=url,
        run_dir=run_dir,
        wait=False,
    )


def wait_ready(
    server: PrefectServer, run_dir: Path = servers.RUN_DIR, timeout: float = START_TIMEOUT_S
) -> None:
    """Wait until ``server`` answers ``/api/health`` (stopped, with its log, if it never does)."""
    info = servers.running(NAME, Path(run_dir))
    if info is None or info.get("url") != server.url:
        if not _healthy(server.url):
            log = Path(run_dir) / f"{NAME}.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"the Prefect server for {server.url} exited:\n{tail}")
        return
    servers.wait_healthy(info, timeout)


def stop(run_dir: Path = servers.RUN_DIR) -> bool:
    """Stop the recorded server by process id; True if it was running."""
    return servers.stop(NAME, run_dir=Path(run_dir))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.prefect_server", description=__doc__.split("\n")[0]
    )
    parser.add_argument("command", choices=["start", "status", "stop"])
    parser.add_argument("--port", type=int, default=None, help=f"default: ${PORT_ENV} or 4200")
    args = parser.parse_args(argv)
    if args.command == "stop":
        print("stopped" if stop() else "not running")
        return 0
    if args.command == "start":
        server = ensure(args.port)
        how = "started" if server.started else "already running"
        print(
            f"{how}: {server.url} (pid {server.pid or 'not ours'}); PREFECT_HOME {default_home()}"
        )
        print(f"export PREFECT_API_URL={server.api_url}")
        return 0
    port = default_port() if args.port is None else args.port
    url = f"http://{HOST}:{port}"
    healthy, info = _healthy(url), servers.running(NAME)
    pid = f" (pid {info['pid']})" if info else ""
    print(f"{url}: {'healthy' if healthy else 'not answering'}{pid}")
    return 0 if healthy else 3


if __name__ == "__main__":
    raise SystemExit(main())
