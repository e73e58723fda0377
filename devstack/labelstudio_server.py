"""Start and stop a real Label Studio server the same way everywhere.

Used by the make targets, the integration-test fixture and the demo::

    python -m devstack.labelstudio_server install
    python -m devstack.labelstudio_server start [--port N] [--data-dir DIR] [--show-token]
    python -m devstack.labelstudio_server status
    python -m devstack.labelstudio_server stop

Facts this module is built on (``shared/LABEL_STUDIO.md``, re-measured here):

* label-studio pins libraries Prefect cannot live with, so it gets its own
  ``uv tool`` environment inside the ignored work folder (``.loopwise/tools``).
* A fresh database runs migrations for ~40 s; they run once into a template
  folder (``label-studio version`` migrates and exits) that every start copies.
* ``label-studio --version`` starts a server on 0.0.0.0:8080: never call it.
* Settings are read as ``LABEL_STUDIO_X``, ``HEARTEX_X`` then bare ``X``, so the
  server runs with a whitelisted environment (no stray ``PORT``/``HOST``/``USERNAME``).
* A busy port makes it silently move to port+1: the listening socket is checked.

Nothing happens at import time. The API token is never logged or printed
(``ServerInfo`` hides it from ``repr``); the CLI prints it only with
``--show-token`` and writes it to a 0600 env file for the demo to source.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import secrets
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from devstack import processes

__all__ = [
    "DEFAULT_WORK_DIR",
    "LABEL_STUDIO_VERSION",
    "USERNAME",
    "LabelStudioError",
    "ServerInfo",
    "attach",
    "ensure",
    "install",
    "migrate_template",
    "start",
    "status",
    "stop",
]

log = logging.getLogger(__name__)

LABEL_STUDIO_VERSION = "1.23.2"
TOOL_PYTHON = "3.11"
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_WORK_DIR = REPO_ROOT / ".loopwise"
USERNAME = "admin@example.com"
HOST = "127.0.0.1"

START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 15.0
MIGRATE_TIMEOUT_S = 900.0
INSTALL_TIMEOUT_S = 900.0

# Only these variables of the caller's environment reach the server; everything else
# (PORT, HOST, USERNAME, DEBUG, DJANGO_DB, proxies, ...) could leak into its settings.
_PASSTHROUGH_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")
_CREDENTIALS_FILE = ".loopwise-credentials.json"  # token + password, 0600, per data dir
_PID_FILE = ".loopwise-server.json"  # which process serves this data dir
_MIGRATED_MARKER = ".loopwise-migrated.json"
_DB_FILE = "label_studio.sqlite3"


class LabelStudioError(RuntimeError):
    """Installing, migrating, starting or stopping Label Studio failed."""


@dataclass(frozen=True)
class ServerInfo:
    """A running Label Studio server. ``token`` and ``password`` are kept out of ``repr``."""

    url: str
    port: int
    pid: int
    token: str = field(repr=False)
    username: str
    data_dir: Path
    log_path: Path
    password: str = field(default="", repr=False)
    state_file: Path | None = None
    startup_seconds: float = 0.0

    @property
    def auth_header(self) -> dict[str, str]:
        """The header the REST API accepts (legacy token)."""
        return {"Authorization": f"Token {self.token}"}


# --------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class _Layout:
    work_dir: Path

    @property
    def tools(self) -> Path:
        return self.work_dir / "tools"

    @property
    def tool_bin(self) -> Path:
        return self.tools / "bin"

    @property
    def exe(self) -> Path:
        return self.tool_bin / "label-studio"

    @property
    def tool_python(self) -> Path:
        return self.tools / "label-studio" / "bin" / "python"

    @property
    def root(self) -> Path:
        return self.work_dir / "labelstudio"

    @property
    def template(self) -> Path:
        return self.root / "template"

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def state_file(self) -> Path:
        return self.root / "server.json"

    @property
    def env_file(self) -> Path:
        return self.work_dir / "labelstudio.env"

    @property
    def lock_file(self) -> Path:
        return self.work_dir / ".labelstudio.lock"


def _layout(work_dir: Path | str | None) -> _Layout:
    return _Layout(Path(work_dir or DEFAULT_WORK_DIR).resolve())


@contextlib.contextmanager
def _locked(lay: _Layout) -> Iterator[None]:
    """Serialise install/migration between concurrent processes (two pytest sessions)."""
    lay.work_dir.mkdir(parents=True, exist_ok=True)
    with open(lay.lock_file, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- install


def find_uv() -> Path:
    """uv on PATH, else the private copy the Makefile bootstraps into ``.tools/``."""
    found = shutil.which("uv")
    if found:
        return Path(found)
    private = REPO_ROOT / ".tools" / "bin" / "uv"
    if private.exists():
        return private
    raise LabelStudioError(f"uv not found on PATH nor at {private} (run `make install` first)")


def _installed_version(lay: _Layout) -> str | None:
    """The label-studio version in the tool environment, without starting Django.

    (``label-studio version`` would also work but it migrates a database wherever
    its data dir points: it is the migration step, see ``migrate_template``.)
    """
    if not (lay.exe.exists() and lay.tool_python.exists()):
        return None
    probe = "import importlib.metadata as m, label_studio; print(m.version('label-studio'))"
    try:
        out = subprocess.run(
            [str(lay.tool_python), "-c", probe],
            capture_output=True,
            text=True,
            timeout=120,
            env=_scrubbed_base_env(lay),
            cwd=lay.tools,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def install(work_dir: Path | str | None = None) -> Path:
    """``uv tool install label-studio==1.23.2`` into ``<work_dir>/tools``; idempotent.

    Returns the path of the ``label-studio`` executable.
    """
    lay = _layout(work_dir)
    if _installed_version(lay) == LABEL_STUDIO_VERSION:
        return lay.exe
    with _locked(lay):
        if _installed_version(lay) == LABEL_STUDIO_VERSION:  # another process won the race
            return lay.exe
        uv = find_uv()
        lay.tools.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        for var in ("VIRTUAL_ENV", "CONDA_PREFIX", "UV_PYTHON", "PYTHONPATH", "PYTHONHOME"):
            env.pop(var, None)
        env.update(
            UV_TOOL_DIR=str(lay.tools),
            UV_TOOL_BIN_DIR=str(lay.tool_bin),
            # If uv has to fetch a Python, keep it here too, not in the home directory.
            UV_PYTHON_INSTALL_DIR=str(lay.tools / "python"),
            UV_NO_PROGRESS="1",
        )
        cmd = [
            str(uv),
            "tool",
            "install",
            "--force",
            "--python",
            TOOL_PYTHON,
            f"label-studio=={LABEL_STUDIO_VERSION}",
        ]
        log_path = lay.tools / "install.log"
        log.info("installing label-studio %s into %s", LABEL_STUDIO_VERSION, lay.tools)
        t0 = time.monotonic()
        with open(log_path, "wb") as out:
            try:
                rc = subprocess.run(
                    cmd,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                    cwd=lay.tools,
                    timeout=INSTALL_TIMEOUT_S,
                ).returncode
            except subprocess.TimeoutExpired:
                rc = -1
        if rc != 0:
            raise LabelStudioError(
                f"`{' '.join(cmd)}` failed (rc={rc}):\n{_tail(log_path)}",
            )
        version = _installed_version(lay)
        if version != LABEL_STUDIO_VERSION:
            raise LabelStudioError(
                f"label-studio installed but reports version {version!r}:\n{_tail(log_path)}"
            )
        log.info("label-studio installed in %.1f s", time.monotonic() - t0)
        return lay.exe


# --------------------------------------------------------------------------- environment


def _scrubbed_base_env(lay: _Layout) -> dict[str, str]:
    env = {k: os.environ[k] for k in _PASSTHROUGH_ENV if k in os.environ}
    env.setdefault("PATH", os.defpath)
    env.setdefault("LANG", "C.UTF-8")
    lay.home.mkdir(parents=True, exist_ok=True)
    env["HOME"] = str(lay.home)  # nothing lands in the real home directory
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _server_env(
    lay: _Layout,
    data_dir: Path,
    *,
    token: str | None = None,
    password: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    env = _scrubbed_base_env(lay)
    env.update(
        LABEL_STUDIO_BASE_DATA_DIR=str(data_dir),
        XDG_CONFIG_HOME=str(data_dir / "xdg" / "config"),
        XDG_DATA_HOME=str(data_dir / "xdg" / "data"),
        XDG_CACHE_HOME=str(data_dir / "xdg" / "cache"),
        LATEST_VERSION_CHECK="false",
        COLLECT_ANALYTICS="false",
        SENTRY_DSN="",
        FRONTEND_SENTRY_DSN="",
    )
    if token is not None:
        env.update(
            LABEL_STUDIO_USERNAME=USERNAME,
            LABEL_STUDIO_PASSWORD=password or "",
            LABEL_STUDIO_USER_TOKEN=token,
            LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true",
        )
    if extra:
        env.update({str(k): str(v) for k, v in extra.items()})
    return env


# --------------------------------------------------------------------------- template


def _migrations_applied(db: Path) -> int:
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
            return int(con.execute("SELECT COUNT(*) FROM django_migrations").fetchone()[0])
    except sqlite3.Error:
        return 0


def _template_ready(lay: _Layout) -> bool:
    marker = lay.template / _MIGRATED_MARKER
    try:
        meta = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return meta.get("label_studio") == LABEL_STUDIO_VERSION and (lay.template / _DB_FILE).exists()


def migrate_template(work_dir: Path | str | None = None) -> Path:
    """Migrate a template data folder once (``label-studio version`` migrates and exits).

    Idempotent (a marker file records the version); returns the template folder.
    """
    lay = _layout(work_dir)
    if _template_ready(lay):
        return lay.template
    exe = install(lay.work_dir)
    with _locked(lay):
        if _template_ready(lay):
            return lay.template
        tmp = lay.root / f"template.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        log_path = lay.root / "template-migrate.log"
        log.info("migrating a Label Studio template database in %s (once, ~40 s)", lay.template)
        t0 = time.monotonic()
        with open(log_path, "wb") as out:
            try:
                rc = subprocess.run(
                    [str(exe), "version"],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=_server_env(lay, tmp),
                    cwd=tmp,
                    timeout=MIGRATE_TIMEOUT_S,
                ).returncode
            except subprocess.TimeoutExpired:
                rc = -1
        seconds = time.monotonic() - t0
        text = log_path.read_text(errors="replace")
        applied = _migrations_applied(tmp / _DB_FILE)
        if rc != 0 or f"Label Studio version: {LABEL_STUDIO_VERSION}" not in text or applied == 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise LabelStudioError(
                f"template migration failed (rc={rc}, {applied} migrations):\n{_tail(log_path)}"
            )
        # Each copy generates its own Django SECRET_KEY (kept in <data_dir>/.env).
        (tmp / ".env").unlink(missing_ok=True)
        (tmp / _MIGRATED_MARKER).write_text(
            json.dumps(
                {"label_studio": LABEL_STUDIO_VERSION, "migrations": applied, "seconds": seconds}
            )
        )
        shutil.rmtree(lay.template, ignore_errors=True)
        os.replace(tmp, lay.template)
        log.info("template migrated in %.1f s (%d migrations)", seconds, applied)
        return lay.template


# --------------------------------------------------------------------------- processes


def _is_label_studio(pid: int) -> bool:
    """``pid`` is alive and is a label-studio server (guards against pid reuse)."""
    if not processes.alive(pid):
        return False
    cmdline = processes.command_line(pid)
    if cmdline is None:
        return True  # no /proc: cannot tell, assume it is
    return b"label-studio" in cmdline or b"label_studio" in cmdline


def _terminate_group(pid: int, timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM the process group of ``pid`` (its own session), SIGKILL after ``timeout``."""
    try:
        processes.terminate_group(pid, timeout, name="label-studio")
    except PermissionError as exc:
        raise LabelStudioError(f"not allowed to signal process group {pid}") from exc


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _port_in_use(port: int) -> bool:
    """Something listens on ``port`` (what label-studio itself checks: a connect on localhost)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        if s.connect_ex((HOST, port)) == 0:
            return True
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not "in use"
        try:
            s.bind((HOST, port))
        except OSError:
            return True
    return False


def _listening_sockets(port: int) -> dict[int, str]:
    """inode -> local IPv4/IPv6 address of the LISTEN sockets on ``port`` (Linux /proc)."""
    found: dict[int, str] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            local, state, inode = parts[1], parts[3], int(parts[9])
            addr_hex, port_hex = local.split(":")
            if state != "0A" or int(port_hex, 16) != port:
                continue
            raw = bytes.fromhex(addr_hex)
            if len(raw) == 4:
                addr = socket.inet_ntop(socket.AF_INET, raw[::-1])
            else:
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                addr = socket.inet_ntop(socket.AF_INET6, words)
            found[inode] = addr
    return found


def _socket_inodes_of(pid: int) -> set[int]:
    inodes: set[int] = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    with contextlib.suppress(OSError):
        for fd in fd_dir.iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(int(target[8:-1]))
    return inodes


def _check_listener(pid: int, port: int, log_path: Path) -> None:
    """The server itself listens on 127.0.0.1:``port`` (not port+1, not 0.0.0.0)."""
    if not Path("/proc/net/tcp").exists():  # not Linux: fall back on the log line
        if f"http://{HOST}:{port}/" not in log_path.read_text(errors="replace"):
            raise LabelStudioError(f"label-studio did not report listening on {HOST}:{port}")
        return
    listeners = _listening_sockets(port)
    ours = {inode: addr for inode, addr in listeners.items() if inode in _socket_inodes_of(pid)}
    if not ours:
        raise LabelStudioError(
            f"port {port} answers but not from label-studio pid {pid} "
            f"(it may have moved to another port):\n{_tail(log_path)}"
        )
    wrong = sorted(addr for addr in ours.values() if addr != HOST)
    if wrong:
        raise LabelStudioError(f"label-studio listens on {wrong}, expected {HOST} only")


def _http_status(url: str, headers: Mapping[str, str] | None = None, timeout: float = 3.0) -> int:
    req = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return 0


def _tail(path: Path, n: int = 40) -> str:
    try:
        with open(path, errors="replace") as fh:
            return "".join(deque(fh, maxlen=n))
    except OSError:
        return f"(no log at {path})"


# --------------------------------------------------------------------------- files


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 (atomically, never world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _credentials(data_dir: Path) -> tuple[str, str]:
    """(token, password) for this data dir: random once, then reused on every restart."""
    path = data_dir / _CREDENTIALS_FILE
    if path.exists():
        creds = json.loads(path.read_text())
        return creds["token"], creds["password"]
    token, password = secrets.token_hex(20), secrets.token_urlsafe(18)
    _write_private(path, json.dumps({"token": token, "password": password}))
    return token, password


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_env_file(path: Path, info: ServerInfo) -> None:
    # `export K=V` lines: usable by `source`, by GNU make's `include` and by python-dotenv.
    _write_private(
        path,
        f"export LABEL_STUDIO_URL={info.url}\nexport LABEL_STUDIO_API_KEY={info.token}\n",
    )


# --------------------------------------------------------------------------- start / stop


def _prepare_data_dir(lay: _Layout, data_dir: Path | None) -> Path:
    if data_dir is None:
        lay.runs.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        data_dir = lay.runs / f"{stamp}-{secrets.token_hex(3)}"
    data_dir = Path(data_dir).resolve()
    if (data_dir / _DB_FILE).exists():
        return data_dir  # initialised: a restart keeps its projects and tasks
    template = migrate_template(lay.work_dir)
    shutil.copytree(
        template,
        data_dir,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns(".env", _MIGRATED_MARKER),
    )
    os.chmod(data_dir, 0o700)
    return data_dir


def _running_from(state_path: Path) -> dict | None:
    state = _read_json(state_path)
    if state and _is_label_studio(int(state.get("pid", -1))):
        return state
    return None


def start(
    work_dir: Path | str | None = None,
    port: int | None = None,
    *,
    data_dir: Path | str | None = None,
    state_file: Path | str | None = None,
    env_file: Path | str | None = None,
    timeout: float = START_TIMEOUT_S,
    extra_env: Mapping[str, str] | None = None,
) -> ServerInfo:
    """Start Label Studio on 127.0.0.1 and wait until ``/health`` answers 200.

    * ``work_dir``: holds the tool environment and the migrated template
      (default ``<repo>/.loopwise``); installed and migrated on first use.
    * ``port``: ``None`` picks a free port.
    * ``data_dir``: ``None`` makes a fresh copy of the template under
      ``<work_dir>/labelstudio/runs/``; an initialised folder is reused as is
      (restart: projects, tasks and the API token survive).
    * ``state_file``: JSON (pid, port, url, data_dir; never the token) for
      ``stop``/``status`` in other processes; default ``<work_dir>/labelstudio/server.json``.
    * ``env_file``: if given, a 0600 file with LABEL_STUDIO_URL / LABEL_STUDIO_API_KEY.
    * ``extra_env``: more settings for the server (e.g. ``SSRF_PROTECTION_ENABLED=false``).
    """
    lay = _layout(work_dir)
    state_path = Path(state_file).resolve() if state_file else lay.state_file
    running = _running_from(state_path)
    if running:
        raise LabelStudioError(
            f"a label-studio server is already running at {running['url']} "
            f"(pid {running['pid']}, state {state_path}); stop it first"
        )
    state_path.unlink(missing_ok=True)

    exe = install(lay.work_dir)
    data_path = _prepare_data_dir(lay, Path(data_dir) if data_dir else None)
    serving = _running_from(data_path / _PID_FILE)
    if serving:
        raise LabelStudioError(
            f"{data_path} is already served by pid {serving['pid']} at {serving['url']}"
        )
    token, password = _credentials(data_path)
    env = _server_env(lay, data_path, token=token, password=password, extra=extra_env)
    info = _launch_on_a_port(exe, env, data_path, port, token, password, timeout)
    info = ServerInfo(**{**asdict(info), "state_file": state_path})
    _record(info, state_path, env_file)
    log.info(
        "label-studio ready at %s (pid %d) in %.1f s", info.url, info.pid, info.startup_seconds
    )
    return info


def _launch_on_a_port(
    exe: Path,
    env: dict[str, str],
    data_path: Path,
    port: int | None,
    token: str,
    password: str,
    timeout: float,
) -> ServerInfo:
    """Launch on ``port``, or on a free port (three tries: another process may take it first)."""
    log_path = data_path / "label-studio.log"
    last_error: LabelStudioError | None = None
    for _ in range(3 if port is None else 1):
        chosen = _free_port() if port is None else int(port)
        if _port_in_use(chosen):
            last_error = LabelStudioError(f"port {chosen} on {HOST} is already in use")
            continue
        try:
            return _launch(exe, env, data_path, chosen, log_path, token, password, timeout)
        except _PortMoved as exc:  # lost a race for an auto-picked port: try another
            last_error = LabelStudioError(str(exc))
    assert last_error is not None
    raise last_error


def _record(info: ServerInfo, state_path: Path, env_file: Path | str | None) -> None:
    """The state file (for other processes), the data folder's pid file, the env file."""
    state = {
        "pid": info.pid,
        "port": info.port,
        "url": info.url,
        "data_dir": str(info.data_dir),
        "log_path": str(info.log_path),
        "username": info.username,
        "started_at": time.time(),
        "env_file": str(Path(env_file).resolve()) if env_file else None,
    }
    _write_private(state_path, json.dumps(state, indent=2))
    _write_private(info.data_dir / _PID_FILE, json.dumps(state, indent=2))
    if env_file:
        _write_env_file(Path(env_file), info)


def attach(
    work_dir: Path | str | None = None, *, state_file: Path | str | None = None
) -> ServerInfo | None:
    """The server recorded in the state file if it answers ``/health``, else None.

    Its token and password come from its data folder (the 0600 file ``start`` wrote).
    """
    state_path = Path(state_file).resolve() if state_file else _layout(work_dir).state_file
    state = _running_from(state_path)
    if not state or _http_status(f"{state['url']}/health") != 200:
        return None
    creds = _read_json(Path(state["data_dir"]) / _CREDENTIALS_FILE)
    if not creds:
        return None
    return ServerInfo(
        url=state["url"],
        port=int(state["port"]),
        pid=int(state["pid"]),
        token=creds["token"],
        username=state.get("username") or USERNAME,
        data_dir=Path(state["data_dir"]),
        log_path=Path(state["log_path"]),
        password=creds["password"],
        state_file=state_path,
    )


def ensure(
    work_dir: Path | str | None = None,
    port: int | None = None,
    *,
    data_dir: Path | str | None = None,
    state_file: Path | str | None = None,
    env_file: Path | str | None = None,
    timeout: float = START_TIMEOUT_S,
) -> ServerInfo:
    """The healthy server the state file records (whatever its data folder), else a new one.

    A recorded server that does not answer is stopped first. Arguments as :func:`start`;
    ``env_file`` is written for a reused server too.
    """
    info = attach(work_dir, state_file=state_file)
    if info is not None:
        if env_file and not Path(env_file).exists():
            _write_env_file(Path(env_file), info)
        return info
    stop(Path(state_file) if state_file else work_dir)
    return start(
        work_dir, port, data_dir=data_dir, state_file=state_file, env_file=env_file, timeout=timeout
    )


class _PortMoved(Exception):
    pass


def _launch(
    exe: Path,
    env: dict[str, str],
    data_dir: Path,
    port: int,
    log_path: Path,
    token: str,
    password: str,
    timeout: float,
) -> ServerInfo:
    cmd = [str(exe), "start", "--no-browser", "--internal-host", HOST, "--port", str(port)]
    with open(log_path, "ab") as out:
        out.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n".encode())
        out.flush()
        t0 = time.monotonic()
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=data_dir,
            start_new_session=True,  # its own process group: stop() kills exactly it
            close_fds=True,
        )
    processes.track(proc)
    url = f"http://{HOST}:{port}"
    try:
        _wait_healthy(proc, url, log_path, t0, timeout)
        startup = time.monotonic() - t0
        try:
            _check_listener(proc.pid, port, log_path)
        except LabelStudioError as exc:
            raise _PortMoved(str(exc)) from exc
        code = _http_status(
            f"{url}/api/current-user/whoami", {"Authorization": f"Token {token}"}, timeout=10.0
        )
        if code != 200:
            raise LabelStudioError(
                f"label-studio is up but its API token is refused (HTTP {code}); "
                f"was {data_dir} initialised with another token?"
            )
    except BaseException:
        _terminate_group(proc.pid, timeout=5.0)
        raise
    return ServerInfo(
        url=url,
        port=port,
        pid=proc.pid,
        token=token,
        username=USERNAME,
        data_dir=data_dir,
        log_path=log_path,
        password=password,
        startup_seconds=startup,
    )


def _wait_healthy(
    proc: subprocess.Popen, url: str, log_path: Path, t0: float, timeout: float
) -> None:
    """Until ``/health`` answers 200; fail with the log if the server exits or the time is up."""
    deadline = t0 + timeout
    while True:
        if proc.poll() is not None:
            raise LabelStudioError(
                f"label-studio exited with code {proc.returncode} before it was ready:\n"
                f"{_tail(log_path)}"
            )
        if _http_status(f"{url}/health", timeout=2.0) == 200:
            return
        if time.monotonic() > deadline:
            raise LabelStudioError(
                f"label-studio not healthy after {timeout:.0f} s on {url}:\n{_tail(log_path)}"
            )
        time.sleep(0.25)


def stop(target: ServerInfo | Path | str | None = None, *, timeout: float = STOP_TIMEOUT_S) -> bool:
    """Stop a server by process id; idempotent. Returns True if something was running.

    ``target`` is a ``ServerInfo``, a work dir (its default state file), a state
    file (``*.json``) or ``None`` (the default work dir).
    """
    if isinstance(target, ServerInfo):
        state_path = target.state_file
        state = (_read_json(state_path) if state_path else None) or {}
        if state.get("pid") not in (None, target.pid):
            state = {}  # the state file describes another server: leave it alone
            state_path = None
        pid, data_dir = target.pid, target.data_dir
    else:
        path = Path(target) if target is not None else None
        if path is not None and path.suffix == ".json":
            state_path = path.resolve()
        else:
            state_path = _layout(path).state_file
        state = _read_json(state_path) or {}
        pid = int(state.get("pid", -1))
        data_dir = Path(state["data_dir"]) if state.get("data_dir") else None

    was_running = _is_label_studio(pid)
    if was_running:
        log.info("stopping label-studio pid %d", pid)
        _terminate_group(pid, timeout=timeout)
    if state_path is not None:
        state_path.unlink(missing_ok=True)
    if state.get("env_file"):
        Path(state["env_file"]).unlink(missing_ok=True)
    if data_dir is not None:
        marker = data_dir / _PID_FILE
        if (_read_json(marker) or {}).get("pid") == pid:
            marker.unlink(missing_ok=True)
    return was_running


def status(work_dir: Path | str | None = None, *, state_file: Path | str | None = None) -> dict:
    """``{"running": bool, "healthy": bool, "url", "pid", "port", "data_dir"}`` (no token)."""
    state_path = Path(state_file).resolve() if state_file else _layout(work_dir).state_file
    state = _read_json(state_path)
    if not state:
        return {"running": False, "healthy": False, "url": None, "state_file": str(state_path)}
    running = _is_label_studio(int(state.get("pid", -1)))
    healthy = running and _http_status(f"{state['url']}/health") == 200
    return {
        "running": running,
        "healthy": healthy,
        "url": state.get("url"),
        "pid": state.get("pid"),
        "port": state.get("port"),
        "data_dir": state.get("data_dir"),
        "log_path": state.get("log_path"),
        "state_file": str(state_path),
    }


# --------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.labelstudio_server",
        description="Install, start, stop a local Label Studio (127.0.0.1 only).",
    )
    parser.add_argument(
        "--work-dir", type=Path, default=DEFAULT_WORK_DIR, help="default: %(default)s"
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("install", help="install label-studio and migrate the template database")
    p_start = sub.add_parser("start", help="start a server (fresh data dir unless --data-dir)")
    p_start.add_argument("--port", type=int, default=None, help="default: a free port")
    p_start.add_argument("--data-dir", type=Path, default=None, help="reuse/initialise this dir")
    p_start.add_argument("--timeout", type=float, default=START_TIMEOUT_S)
    p_start.add_argument(
        "--env-file", type=Path, default=None, help="default: <work-dir>/labelstudio.env"
    )
    p_start.add_argument("--show-token", action="store_true", help="print the API token")
    sub.add_parser("stop", help="stop the server recorded in the state file")
    sub.add_parser("status", help="exit 0 if running, 3 if not")
    return parser


def _cli_install(lay: _Layout) -> int:
    t0 = time.monotonic()
    exe = install(lay.work_dir)
    t1 = time.monotonic()
    template = migrate_template(lay.work_dir)
    t2 = time.monotonic()
    print(f"label-studio {LABEL_STUDIO_VERSION}: {exe} ({t1 - t0:.1f} s)")
    print(f"template: {template} ({t2 - t1:.1f} s)")
    return 0


def _cli_start(lay: _Layout, args: argparse.Namespace) -> int:
    env_file = args.env_file or lay.env_file
    info = start(
        lay.work_dir, args.port, data_dir=args.data_dir, env_file=env_file, timeout=args.timeout
    )
    print(f"url: {info.url}")
    print(f"pid: {info.pid}")
    print(f"username: {info.username}")
    print(f"data_dir: {info.data_dir}")
    print(f"log: {info.log_path}")
    print(f"env file (0600): {env_file}")
    print(f"ready in: {info.startup_seconds:.1f} s")
    if args.show_token:
        print(f"token: {info.token}")
    return 0


def _cli_status(lay: _Layout) -> int:
    st = status(lay.work_dir)
    if st["running"]:
        print(f"running: {st['url']} (pid {st['pid']}, healthy={st['healthy']})")
        return 0
    print("not running")
    return 3


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(message)s",
    )
    lay = _layout(args.work_dir)
    try:
        if args.command == "install":
            return _cli_install(lay)
        if args.command == "start":
            return _cli_start(lay, args)
        if args.command == "stop":
            print("stopped" if stop(lay.work_dir) else "not running")
            return 0
        return _cli_status(lay)
    except LabelStudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
