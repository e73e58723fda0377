"""Before a run touches anything: each external service answers within seconds, or the run
fails at once with one message naming the service, its address and what to check.

A service that is down makes every later step fail slowly (HTTP back-off, task retries);
checking first turns a 12-minute failure into a few seconds. Prefect needs no check: the
run itself is talking to it.
"""

from __future__ import annotations

import urllib.error
import urllib.request

from loopwise.config import CampaignConfig
from storage.store import Store
from tasks import step_task

__all__ = ["ServiceDown", "answers", "check_services", "listens"]


class ServiceDown(RuntimeError):
    """An external service did not answer; the message says which, where and what to check."""


def answers(url: str, timeout: float) -> str | None:
    """None if ``url`` answers below HTTP 500 within ``timeout`` seconds, else why not."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return None if response.status < 500 else f"HTTP {response.status}"
    except urllib.error.HTTPError as err:
        return None if err.code < 500 else f"HTTP {err.code}"
    except (urllib.error.URLError, OSError) as err:
        return str(getattr(err, "reason", err))


def listens(address: str, timeout: float) -> str | None:
    """None if something accepts a TCP connection at ``tcp://host:port``, else why not."""
    import socket

    host, _, port = address.split("://", 1)[-1].rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return None
    except ValueError:
        return f"not a tcp://host:port address: {address!r}"
    except OSError as err:
        return str(err)


@step_task
def check_services(
    cfg: CampaignConfig, store: Store, *, labelstudio: bool = True, timeout: float = 5.0
) -> None:
    """Label Studio, the MLflow tracking server, the Dask scheduler and the S3 store each
    answer, or one :class:`ServiceDown` names every one that does not."""
    problems = []
    checks = []
    if labelstudio:
        checks.append(
            ("Label Studio", f"{cfg.labelstudio.url.rstrip('/')}/health", "labelstudio.url")
        )
    if cfg.mlflow.tracking_uri.startswith(("http://", "https://")):
        checks.append(
            ("MLflow", f"{cfg.mlflow.tracking_uri.rstrip('/')}/health", "mlflow.tracking_uri")
        )
    for name, url, key in checks:
        if (why := answers(url, timeout)) is not None:
            problems.append(f"{name} at {url} does not answer ({why}): is it running? ({key})")
    if cfg.dask_address and (why := listens(cfg.dask_address, timeout)) is not None:
        problems.append(
            f"the Dask scheduler at {cfg.dask_address} does not answer ({why}): is it "
            "running? (dask_address)"
        )
    try:
        store.probe(timeout)
    except OSError as err:  # StorageError, FileNotFoundError (no bucket): they name the store
        problems.append(
            f"the store {store.uri('')} does not answer ({err}): check storage_root, the "
            "endpoint (LOOPWISE_S3_ENDPOINT_URL) and the AWS credentials"
        )
    src = cfg.data.source
    if cfg.data.is_partitioned and src.startswith("s3://"):
        try:
            Store(src.rstrip("/")).probe(timeout)
        except OSError as err:
            problems.append(
                f"the pool's partitions at {src} cannot be listed ({err}): check "
                "data.source, the endpoint and the AWS credentials"
            )
    if problems:
        raise ServiceDown(f"campaign {cfg.name}: " + "; ".join(problems))
