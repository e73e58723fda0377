"""Campaigns to serve: a pool file and the campaign's model registered as champion in the
module's MLflow registry (``registry`` fixture)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from loopwise.config import CampaignConfig
from loopwise.features import model_inputs
from loopwise.model import build_model
from storage.campaign import campaign_store
from storage.inference_log import read_new
from tasks.evaluate import CHAMPION, model_name

FEATURES = ["x1", "x2", "x3", "x4"]
TEXTS = ["good fine great", "bad awful poor", "great good", "poor bad", "fine good", "awful bad"]


def numeric_pool(path: Path, n: int = 200) -> pd.DataFrame:
    """A two-class table of four numeric features (and its label column ``y``)."""
    X, y = make_classification(
        n_samples=n, n_features=4, n_informative=3, n_redundant=0, random_state=0
    )
    df = pd.DataFrame(X, columns=FEATURES).assign(y=np.where(y == 1, "b", "a"))
    df.to_csv(path, index=False)
    return df


def text_pool(path: Path) -> pd.DataFrame:
    """A tiny two-class text pool (``text``, ``y``)."""
    df = pd.DataFrame({"text": TEXTS * 5, "y": ["pos", "neg", "pos", "neg", "pos", "neg"] * 5})
    df.to_csv(path, index=False)
    return df


def campaign(tmp_path: Path, registry: dict[str, str], name: str, **data: Any) -> CampaignConfig:
    """A campaign over ``tmp_path/<name>.csv`` with the module's registry."""
    labels = data.pop("labels", ["a", "b"])
    return CampaignConfig(
        name=name,
        data={"source": str(tmp_path / f"{name}.csv"), "label_column": "y", **data},
        labels=labels,
        budget={"cost_per_annotation": 0.1},
        storage_root=str(tmp_path / "store"),
        mlflow=registry,
    )


def fitted(cfg: CampaignConfig, pool: pd.DataFrame) -> Any:
    """The campaign's model fitted on its whole pool, as training would build it."""
    (X,) = model_inputs(cfg, pool)
    model = build_model(LogisticRegression(max_iter=1000), kind=cfg.data.kind)
    return model.fit(X, pool["y"].astype(str).to_numpy())


def register(cfg: CampaignConfig, model: Any, *, champion: bool = True) -> str:
    """Log ``model`` as a new version of the campaign's registered model; its version."""
    import mlflow

    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    client = mlflow.MlflowClient(cfg.mlflow.tracking_uri)
    exp = client.get_experiment_by_name(cfg.experiment)
    exp_id = (
        exp.experiment_id
        if exp is not None
        else client.create_experiment(
            cfg.experiment, artifact_location=cfg.mlflow.artifact_location
        )
    )
    with mlflow.start_run(experiment_id=exp_id):
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name=model_name(cfg),
            pip_requirements=["scikit-learn"],
            skops_trusted_types=None,
        )
    version = str(info.registered_model_version)
    if champion:
        client.set_registered_model_alias(model_name(cfg), CHAMPION, version)
    return version


def logged(cfg: CampaignConfig, prefix: str = "stream/log") -> list[dict[str, Any]]:
    """Every record the campaign's gateways wrote under ``prefix``."""
    store = campaign_store(cfg.storage_root, cfg.name)
    return [raw for _, _, raw in read_new(store, {}, prefix=prefix).records]


def wait_until(condition: Callable[[], bool], timeout: float = 30.0, every: float = 0.05) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass; whether it held."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return condition()


def campaign_file(cfg: CampaignConfig, path: Path) -> Path:
    """``cfg`` as a campaign YAML file (what ``python -m serving`` reads)."""
    import yaml

    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json", exclude_unset=True)))
    return path


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gateway(campaign_path: Path, port: int, log_path: Path) -> Any:
    """``python -m serving`` in a subprocess on 127.0.0.1:``port``, answering /health
    (within 120 s, else it is stopped and the error shows its log); the Popen."""
    import os
    import subprocess
    import sys
    import urllib.request

    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo)}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "serving", str(campaign_path), "--port", str(port)],
            cwd=repo,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def up() -> bool:
        if proc.poll() is not None:
            return True
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).close()
            return True
        except OSError:
            return False

    if not wait_until(up, timeout=120, every=0.2) or proc.poll() is not None:
        proc.kill()
        proc.wait(10)
        raise RuntimeError(f"the gateway did not start: {log_path.read_text()[-3000:]}")
    return proc
