"""Which Prefect server the commands talk to: the configured one, else the local one."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from flows.cli._console import err, fail, steps


@contextlib.contextmanager
def prefect_api(for_workers: bool = False) -> Iterator[str]:
    """Yield the Prefect API URL to use, and use it inside the block.

    ``PREFECT_API_URL`` when it is set (environment or Prefect profile, or a test
    harness); else the one local server of this checkout, started once on 127.0.0.1
    and reused by every later command (:mod:`devstack.prefect_server`) instead of a
    temporary server per command. ``for_workers`` says on stderr how a worker finds it.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    configured = PREFECT_API_URL.value()
    if configured:
        yield configured
        return
    # This machine's own server (a deployment or production always sets PREFECT_API_URL).
    from devstack import prefect_server

    try:
        with steps() as progress:
            progress.add_task("connecting to the local Prefect server", total=None)
            server = prefect_server.ensure()
    except (OSError, RuntimeError, ValueError) as e:
        fail(f"no local Prefect server ({e}); or set PREFECT_API_URL to a server of yours")
    if server.started:
        err.print(
            f"started a local Prefect server at {server.url}; later commands reuse it "
            "(`make prefect-stop` stops it)",
            highlight=False,
            soft_wrap=True,
        )
    if for_workers:
        err.print(
            f"a worker finds it with: export PREFECT_API_URL={server.api_url}",
            highlight=False,
            soft_wrap=True,
        )
    with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
        yield server.api_url
