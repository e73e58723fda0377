"""Loaders for the benchmark datasets kept beside the project (``../shared/datasets``).

Each loader returns ``(X, y)`` ready for :func:`loopwise.simulate.run_simulation`
and the model that the benchmark protocol pairs with it. Nothing is downloaded:
the files must be on disk, and a missing file is a clear error naming the path.
"""

from __future__ import annotations

import functools
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

__all__ = ["REGIMES", "Dataset", "Regime", "data_dir", "load", "names"]

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


def _sst2() -> Dataset:
    df = pd.read_csv(_path("sst2_train.tsv"), sep="\t", quoting=3, dtype={"sentence": str})
    df = df.dropna(subset=["sentence"])
    return Dataset(
        "sst2", df["sentence"].to_numpy(object), df["label"].to_numpy(), "text", _text_model()
    )


def _agnews() -> Dataset:
    df = pd.read_csv(
        _path("agnews_test.tsv"), sep="\t", header=None, names=["text", "label"], quoting=3
    )
    df = df.dropna(subset=["text"])
    return Dataset(
        "agnews", df["text"].to_numpy(object), df["label"].to_numpy(), "text", _text_model()
    )


@dataclass(frozen=True)
class Regime:
    """A reproducible synthetic classification problem (``make_classification``).

    ``imbalance`` is the ratio of the largest to the smallest class share (shares
    fall geometrically between them); ``noise`` the share of labels replaced by a
    random class; ``separation`` the distance between class clusters (smaller
    overlaps more); ``clusters`` the clusters per class.
    """

    classes: int = 5
    imbalance: float = 1.0
    noise: float = 0.0
    separation: float = 1.0
    clusters: int = 2
    rows: int = 4000
    features: int = 16
    seed: int = 11

    def shares(self) -> list[float]:
        """The class shares, largest first, summing to 1."""
        w = self.imbalance ** (-np.arange(self.classes) / max(self.classes - 1, 1))
        return list(w / w.sum())

    def make(self, name: str) -> Dataset:
        """The rows of this regime, always the same for the same fields."""
        from sklearn.datasets import make_classification

        X, y = make_classification(
            n_samples=self.rows,
            n_features=self.features,
            n_informative=10,
            n_redundant=2,
            n_classes=self.classes,
            n_clusters_per_class=self.clusters,
            weights=self.shares(),
            flip_y=self.noise,
            class_sep=self.separation,
            random_state=self.seed,
        )
        return Dataset(name, X.astype(np.float32), y, "tabular", default_model())


#: Synthetic regimes of the wider benchmark: one property pushed at a time.
REGIMES: dict[str, Regime] = {
    "syn-balanced": Regime(),
    "syn-imbalance-1to5": Regime(imbalance=5.0),
    "syn-imbalance-1to20": Regime(imbalance=20.0, clusters=3, noise=0.03),
    "syn-noise-5pct": Regime(noise=0.05),
    "syn-noise-10pct": Regime(noise=0.10),
    "syn-2-classes": Regime(classes=2, clusters=3),
    "syn-26-classes": Regime(classes=26, clusters=1, separation=1.5),
    "syn-overlap": Regime(classes=10, separation=0.5),
}

LOADERS: dict[str, Callable[[], Dataset]] = {
    "digits": _digits,
    "letter": _letter,
    "adult": _adult,
    "trec": _trec,
    "sst2": _sst2,
    "agnews": _agnews,
    **{name: functools.partial(regime.make, name) for name, regime in REGIMES.items()},
}


def names() -> list[str]:
    """The datasets :func:`load` knows."""
    return list(LOADERS)


def load(name: str) -> Dataset:
    """Load a dataset by name (see :func:`names`)."""
    if name not in LOADERS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(LOADERS)}")
    return LOADERS[name]()
