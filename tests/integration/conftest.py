"""Fixtures that run a real Label Studio on 127.0.0.1 (see tasks/labelstudio_server.py).

The tool environment and the migrated template database are cached in
``<repo>/.loopwise/`` (override with ``LOOPWISE_WORK_DIR``): the first session
installs (~10 s) and migrates (~40 s), later sessions start a server in ~4 s.
Each session gets a fresh data dir under pytest's temporary folder, and the
server is stopped by its process id at the end, whatever happened.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks import labelstudio_server as lss


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
