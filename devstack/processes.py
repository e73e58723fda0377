"""The dev stack's server processes: alive or not, and stopped by process group.

Every server of the dev stack runs in its own session (``start_new_session=True``), so
its process id is also its process group id: stopping the group stops the server and
what it spawned (workers, reloaders), and nothing else. Used by
:mod:`devstack.labelstudio_server` and :mod:`devstack.servers`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from pathlib import Path

__all__ = ["alive", "command_line", "group_alive", "start_time", "terminate_group", "track"]

log = logging.getLogger(__name__)

# Popen objects of the servers this process started, so that they are polled and reaped.
_CHILDREN: dict[int, subprocess.Popen] = {}


def track(proc: subprocess.Popen) -> None:
    """Remember a server this process started (it is then reaped when it exits)."""
    _CHILDREN[proc.pid] = proc


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (reaps it if it is our child)."""
    if pid <= 0:
        return False
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        del _CHILDREN[pid]  # exited and reaped
        return False
    with contextlib.suppress(ChildProcessError, OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust kill(0)
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def command_line(pid: int) -> bytes | None:
    """The NUL-separated command line of ``pid``; None where /proc cannot tell."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None


def start_time(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot; None where /proc cannot tell.

    Set at fork and never changed: a pid file that records it recognises its process
    even before the child has exec'd, and never mistakes a reused pid for it.
    """
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def group_alive(pgid: int) -> bool:
    """Some process of group ``pgid`` still runs (zombies do not count, orphans do)."""
    if alive(pgid):
        return True
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    proc = Path("/proc")
    if not proc.exists():
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def terminate_group(pgid: int, timeout: float = 15.0, name: str = "server") -> None:
    """SIGTERM the process group ``pgid``, SIGKILL what is left after ``timeout`` seconds.

    Raises ``PermissionError`` if the group belongs to another user.
    """
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and group_alive(pgid):
            time.sleep(0.1)
        if not group_alive(pgid):
            break
        log.warning("%s (pid %d) ignored %s", name, pgid, sig.name)
    child = _CHILDREN.pop(pgid, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=1)
