"""Loaders for the benchmark datasets kept beside the project (``../shared/datasets``).

Each loader returns ``(X, y)`` ready for :func:`loopwise.simulate.run_simulation`
and the model that the benchmark protocol pairs with it. Nothing is downloaded:
the files must be on disk, and a missing file is a clear error naming the path.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from loopwise.simulate import default_model

__all__ = ["Dataset", "data_dir", "load", "names"]

ENV_VAR = "LOOPWISE_DATASETS"


@dataclass(frozen=True)
class Dataset:
    """A labeled dataset: features or raw texts, labels, and the protocol's model."""

    name: str
    X: Any
    y: np.ndarray
    kind: str  # "tabular" or "text"
    model: Any

    @property
    def n_classes(self) -> int:
        """Number of distinct labels."""
        return int(np.unique(self.y).size)


def data_dir() -> Path:
    """Where the dataset files are: ``$LOOPWISE_DATASETS``, else ``../shared/datasets``
    next to the project (found from the working directory or this package)."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    for root in (Path.cwd(), Path(__file__).resolve().parents[1]):
        candidate = root.parent / "shared" / "datasets"
        if candidate.is_dir():
            return candidate
    return Path.cwd().parent / "shared" / "datasets"


def _path(file: str) -> Path:
    path = data_dir() / file
    if not path.is_file():
        raise FileNotFoundError(
            f"dataset file {path} not found; set {ENV_VAR} to the folder that holds {file}"
        )
    return path


def _text_model() -> Any:
    return make_pipeline(
        TfidfVectorizer(sublinear_tf=True, min_df=2), LogisticRegression(max_iter=1000)
    )


def _digits() -> Dataset:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return Dataset("digits", X.astype(np.float32), y, "tabular", default_model())


def _letter() -> Dataset:
    df = pd.read_csv(_path("letter.csv"), encoding="utf-8-sig")
    y = df.pop("lettr").to_numpy()
    return Dataset("letter", df.to_numpy(np.float32), y, "tabular", default_model())


def _adult() -> Dataset:
    df = pd.read_csv(_path("adult.csv"), skipinitialspace=True)
    y = df.pop("income").to_numpy()
    categorical = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
    X = pd.get_dummies(df, columns=categorical, dtype=np.float32).to_numpy(np.float32)
    return Dataset("adult", X, y, "tabular", default_model())


def _trec() -> Dataset:
    df = pd.read_csv(_path("trec_train.csv"), header=None, names=["label", "text"])
    df = df.dropna(subset=["text"])
    return Dataset(
        "trec", df["text"].to_numpy(object), df["label"].to_numpy(), "text", _text_model()
    )


LOADERS: dict[str, Callable[[], Dataset]] = {
    "digits": _digits,
    "letter": _letter,
    "adult": _adult,
    "trec": _trec,
}


def names() -> list[str]:
    """The datasets :func:`load` knows."""
    return list(LOADERS)


def load(name: str) -> Dataset:
    """Load a dataset by name (see :func:`names`)."""
    if name not in LOADERS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(LOADERS)}")
    return LOADERS[name]()
