"""A run checks its services first: one that is down fails it at once, named with its address."""

from __future__ import annotations

import http.server
import socket
import threading

import pytest

from loopwise.config import CampaignConfig
from storage.store import Store
from tasks.preflight import ServiceDown, check_services


def _closed_port() -> int:
    with socket.socket() as s:  # bound then closed: nothing listens there
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def healthy():
    """A local HTTP server whose /health answers 200 (stopped at the end)."""

    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"status": "UP"}')

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _cfg(ls_url: str, mlflow_uri: str) -> CampaignConfig:
    return CampaignConfig.model_validate(
        {
            "name": "shoes",
            "data": {"source": "pool.csv", "label_column": "y"},
            "labels": ["a", "b"],
            "labelstudio": {"url": ls_url},
            "mlflow": {"tracking_uri": mlflow_uri},
        }
    )


def test_services_that_answer_pass(healthy, tmp_path):
    check_services.fn(_cfg(healthy, healthy), Store(tmp_path))
    check_services.fn(_cfg(healthy, "sqlite:///x.db"), Store(tmp_path))  # nothing to ask


def test_every_service_that_is_down_is_named_with_its_address(healthy, tmp_path):
    down = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(ServiceDown) as err:
        check_services.fn(_cfg(down, down), Store(tmp_path), timeout=2)
    msg = str(err.value)
    assert f"Label Studio at {down}/health does not answer" in msg
    assert f"MLflow at {down}/health does not answer" in msg
    assert "labelstudio.url" in msg and "mlflow.tracking_uri" in msg
    with pytest.raises(ServiceDown, match="MLflow") as err:
        check_services.fn(_cfg(healthy, down), Store(tmp_path), timeout=2)
    assert "Label Studio" not in str(err.value)


def test_label_studio_is_not_asked_by_what_does_not_use_it(tmp_path):
    down = f"http://127.0.0.1:{_closed_port()}"
    check_services.fn(_cfg(down, "sqlite:///x.db"), Store(tmp_path), labelstudio=False)


def test_an_s3_store_that_does_not_answer_is_named(healthy, tmp_path, monkeypatch):
    monkeypatch.setenv("LOOPWISE_S3_ENDPOINT_URL", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with pytest.raises(ServiceDown, match=r"the store s3://bucket/camp/ does not answer"):
        check_services.fn(_cfg(healthy, healthy), Store("s3://bucket/camp"), timeout=2)


def test_a_dask_scheduler_that_does_not_listen_is_named(healthy, tmp_path):
    port = _closed_port()
    cfg = _cfg(healthy, healthy).model_copy(update={"dask_address": f"tcp://127.0.0.1:{port}"})
    with pytest.raises(ServiceDown, match=f"Dask scheduler at tcp://127.0.0.1:{port}"):
        check_services.fn(cfg, Store(tmp_path))
    with socket.socket() as s:  # something listens: the check passes
        s.bind(("127.0.0.1", 0))
        s.listen()
        up = cfg.model_copy(update={"dask_address": f"tcp://127.0.0.1:{s.getsockname()[1]}"})
        check_services.fn(up, Store(tmp_path))
