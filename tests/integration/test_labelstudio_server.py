"""The dev stack's servers on 127.0.0.1: a real Label Studio (health, the SDK round trip,
loopback only, restart, reuse) and the local Prefect server that commands reuse."""

from __future__ import annotations

import contextlib
import fcntl
import json
import socket
import stat
import struct
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from devstack import labelstudio_server as lss

pytestmark = pytest.mark.integration

LABEL_CONFIG = """
<View>
  <Text name="text" value="$text"/>
  <Choices name="label" toName="text" choice="single">
    <Choice value="positive"/>
    <Choice value="negative"/>
  </Choices>
</View>
"""

TASKS = [
    {"data": {"text": "great product", "item_id": "item-1"}},
    {"data": {"text": "terrible service", "item_id": "item-2"}},
    {"data": {"text": "it was fine", "item_id": "item-3"}},
]


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _make_project(client, title: str) -> int:
    project = client.projects.create(title=title, label_config=LABEL_CONFIG)
    client.projects.import_tasks(id=project.id, request=TASKS, return_task_ids=True)
    return project.id


def _item_ids(client, project_id: int) -> list[str]:
    return sorted(t.data["item_id"] for t in client.tasks.list(project=project_id, page_size=100))


def _non_loopback_addresses() -> list[tuple[socket.AddressFamily, str]]:
    """This machine's IPv4/IPv6 addresses other than loopback and link-local."""
    found: list[tuple[socket.AddressFamily, str]] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            with contextlib.suppress(OSError):
                req = struct.pack("256s", name[:15].encode())
                packed = fcntl.ioctl(s.fileno(), 0x8915, req)[20:24]  # SIOCGIFADDR
                addr = socket.inet_ntoa(packed)
                if not addr.startswith("127."):
                    found.append((socket.AF_INET, addr))
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/if_inet6").read_text().splitlines():
            hex_addr, _, _, scope, *_ = line.split()
            if int(scope, 16) != 0:  # host (::1) and link-local scopes
                continue
            addr = socket.inet_ntop(socket.AF_INET6, bytes.fromhex(hex_addr))
            found.append((socket.AF_INET6, addr))
    return found


def test_health_answers(label_studio):
    code, body = _get(f"{label_studio.url}/health")
    assert code == 200
    assert json.loads(body) == {"status": "UP"}


def test_legacy_token_authenticates(label_studio):
    code, body = _get(f"{label_studio.url}/api/current-user/whoami", label_studio.auth_header)
    assert code == 200
    assert json.loads(body)["email"] == lss.USERNAME
    code, _ = _get(
        f"{label_studio.url}/api/current-user/whoami", {"Authorization": "Token " + "0" * 40}
    )
    assert code == 401


def test_sdk_creates_project_imports_and_lists_tasks(ls_client):
    project_id = _make_project(ls_client, "loopwise-sdk-roundtrip")
    try:
        tasks = list(ls_client.tasks.list(project=project_id, page_size=100))
        assert len(tasks) == 3
        assert sorted(t.data["item_id"] for t in tasks) == ["item-1", "item-2", "item-3"]
        assert {t.data["text"] for t in tasks} == {d["data"]["text"] for d in TASKS}
        project = ls_client.projects.get(id=project_id)
        assert "<Choices" in project.label_config
    finally:
        ls_client.projects.delete(id=project_id)


def test_binds_loopback_only(label_studio):
    listeners = lss._listening_sockets(label_studio.port)
    assert listeners, "nothing listens on the server's port"
    assert set(listeners.values()) == {"127.0.0.1"}

    addresses = _non_loopback_addresses()
    if not addresses:
        pytest.skip("this machine has no non-loopback address")
    for family, addr in addresses:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(3)
            with pytest.raises(OSError):
                s.connect((addr, label_studio.port))


def test_token_stays_out_of_logs_state_and_repr(label_studio):
    token = label_studio.token
    assert len(token) == 40 and int(token, 16) >= 0
    assert token not in repr(label_studio)
    assert token not in label_studio.log_path.read_text(errors="replace")
    assert label_studio.state_file is not None
    assert token not in label_studio.state_file.read_text()
    for private in (label_studio.state_file, label_studio.data_dir / ".loopwise-credentials.json"):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600


def test_status_reports_the_server(label_studio):
    st = lss.status(state_file=label_studio.state_file)
    assert st["running"] and st["healthy"]
    assert st["url"] == label_studio.url and st["pid"] == label_studio.pid


def test_restart_on_same_data_dir_keeps_project_tasks_and_token(ls_work_dir, tmp_path):
    from label_studio_sdk import LabelStudio

    data_dir, state = tmp_path / "data", tmp_path / "server.json"
    first = lss.start(ls_work_dir, data_dir=data_dir, state_file=state)
    try:
        project_id = _make_project(
            LabelStudio(base_url=first.url, api_key=first.token), "loopwise-restart"
        )
    finally:
        assert lss.stop(first) is True
    assert not lss.status(state_file=state)["running"]
    assert not state.exists()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{first.url}/health", timeout=3)
    assert lss.stop(first) is False  # idempotent

    second = lss.start(ls_work_dir, first.port, data_dir=data_dir, state_file=state)
    try:
        assert second.pid != first.pid
        assert (second.url, second.token) == (first.url, first.token)
        client = LabelStudio(base_url=second.url, api_key=first.token)
        assert project_id in [p.id for p in client.projects.list()]
        assert _item_ids(client, project_id) == ["item-1", "item-2", "item-3"]
    finally:
        lss.stop(second)
    assert not lss.status(state_file=state)["running"]


def test_ensure_reuses_the_recorded_server_and_writes_its_env_file(label_studio, tmp_path):
    env_file = tmp_path / "labelstudio.env"
    again = lss.ensure(state_file=label_studio.state_file, env_file=env_file)
    assert (again.pid, again.url, again.token) == (
        label_studio.pid,
        label_studio.url,
        label_studio.token,
    )
    assert again.password == label_studio.password
    assert env_file.read_text() == (
        f"export LABEL_STUDIO_URL={label_studio.url}\n"
        f"export LABEL_STUDIO_API_KEY={label_studio.token}\n"
    )
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert lss.status(state_file=label_studio.state_file)["healthy"]  # left running


def test_attach_ignores_a_state_file_whose_server_is_gone(tmp_path):
    state = tmp_path / "server.json"
    state.write_text(json.dumps({"pid": 2**22 + 1, "url": "http://127.0.0.1:9", "port": 9}))
    assert lss.attach(state_file=state) is None


def test_the_local_prefect_server_starts_once_and_is_reused(tmp_path):
    """``loopwise run`` and ``make demo`` share one Prefect server, recorded by its pid file."""
    from devstack import prefect_server, servers
    from devstack.stack import free_port

    port, run_dir = free_port(), tmp_path / "run"
    first = prefect_server.ensure(port, home=tmp_path / "home", run_dir=run_dir)
    try:
        assert first.started and first.pid is not None
        assert (run_dir / "prefect-server.json").exists()
        assert (tmp_path / "home" / "prefect.db").exists()  # its own PREFECT_HOME
        code, body = _get(f"{first.api_url}/health")
        assert code == 200 and json.loads(body) is True
        again = prefect_server.ensure(port, home=tmp_path / "home", run_dir=run_dir)
        assert not again.started and again.pid == first.pid
        assert set(lss._listening_sockets(port).values()) == {"127.0.0.1"}
    finally:
        assert prefect_server.stop(run_dir) is True
    assert servers.running(prefect_server.NAME, run_dir) is None
    assert not (run_dir / "prefect-server.json").exists()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{first.api_url}/health", timeout=3)
