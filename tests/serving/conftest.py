"""A real MLflow registry per test module (SQLite and artifacts in a temporary folder)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One MLflow store for the module's campaigns (each registers its own model)."""
    base = tmp_path_factory.mktemp("mlflow")
    return {
        "tracking_uri": f"sqlite:///{base / 'mlflow.db'}",
        "artifact_location": (base / "mlartifacts").as_uri(),
    }
