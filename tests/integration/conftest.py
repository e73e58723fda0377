"""Fixtures that run a real Label Studio on 127.0.0.1 (see devstack/labelstudio_server.py).

The tool environment and the migrated template database are cached in
``<repo>/.loopwise/`` (override with ``LOOPWISE_WORK_DIR``): the first session
installs (~10 s) and migrates (~40 s), later sessions start a server in ~4 s.
Each session gets a fresh data dir under pytest's temporary folder, and the
server is stopped by its process id at the end, whatever happened.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import labelstudio_server as lss


@pytest.fixture(scope="session")
def ls_work_dir() -> Path:
    """Where the label-studio install and the template database are cached."""
    return Path(os.environ.get("LOOPWISE_WORK_DIR") or lss.DEFAULT_WORK_DIR)


@pytest.fixture(scope="session")
def label_studio(
    ls_work_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[lss.ServerInfo]:
    """A running Label Studio (fresh data dir, free port); stopped at the end of the session."""
    base = tmp_path_factory.mktemp("labelstudio")
    info = lss.start(ls_work_dir, data_dir=base / "data", state_file=base / "server.json")
    try:
        yield info
    finally:
        lss.stop(info)


@pytest.fixture(scope="session")
def ls_client(label_studio: lss.ServerInfo):
    """``label_studio_sdk.LabelStudio`` authenticated with the server's legacy token."""
    from label_studio_sdk import LabelStudio

    return LabelStudio(base_url=label_studio.url, api_key=label_studio.token)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def harness() -> Iterator[None]:
    """Prefect's test harness (a temporary API server on SQLite), started once for the
    session: every module's campaign has its own name, deployments and artifact keys."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A real ``moto_server`` S3 on 127.0.0.1 (free port) with one empty bucket.

    Yields ``{"endpoint_url": ..., "bucket": ...}``. For the session only, the AWS
    environment points at fake credentials (config files disabled, so nothing of
    the user's ~/.aws is read) and ``LOOPWISE_S3_ENDPOINT_URL`` at the server, so
    ``Store("s3://<bucket>/...")`` just works. The server is stopped by its pid.
    """
    moto = Path(sys.executable).parent / "moto_server"
    if not moto.exists():
        pytest.skip(f"{moto} not installed (dev group: moto[server])")
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    base = tmp_path_factory.mktemp("moto")
    log_path = base / "moto_server.log"
    with pytest.MonkeyPatch.context() as mp:
        for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
            mp.delenv(var, raising=False)
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.setenv("AWS_CONFIG_FILE", str(base / "no-config"))
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(base / "no-credentials"))
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        mp.setenv("LOOPWISE_S3_ENDPOINT_URL", endpoint)
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [str(moto), "-H", "127.0.0.1", "-p", str(port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        try:
            deadline = time.monotonic() + 30
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"moto_server exited with {proc.returncode}: {log_path.read_text()[-2000:]}"
                    )
                try:
                    urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
                    break
                except urllib.error.HTTPError:
                    break  # it answered
                except (urllib.error.URLError, OSError):
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"moto_server on {endpoint} did not answer in 30 s"
                        ) from None
                    time.sleep(0.1)
            import boto3

            bucket = "loopwise-test"
            boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
            yield {"endpoint_url": endpoint, "bucket": bucket}
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
