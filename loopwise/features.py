"""What the model reads: rows turned into float32 features or texts, encoded together
so that the columns of the pool, the holdout and the labeled snapshot line up; and the
numeric space in which a text pool is clustered before any model exists."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from loopwise.config import CampaignConfig

__all__ = [
    "feature_matrix",
    "is_vector_column",
    "model_inputs",
    "text_space",
]


def feature_matrix(
    df: pd.DataFrame,
    *,
    feature_columns: Sequence[str] | None,
    text_column: str | None,
    exclude: Sequence[str] = (),
) -> Any:
    """What the model reads: the texts (object array) or float32 features.

    Categorical feature columns are one-hot encoded over the categories present in
    ``df``, so pass the whole pool plus holdout at once to keep columns aligned.
    """
    if text_column is not None:
        if text_column not in df.columns:
            raise ValueError(f"text column {text_column!r} not in the data")
        return df[text_column].fillna("").astype(str).to_numpy(object)
    cols = (
        list(feature_columns)
        if feature_columns
        else [c for c in df.columns if c not in set(exclude) | {"item_id"}]
    )
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"feature column(s) {missing} not in the data")
    frame = df[cols]
    vectors = [c for c in cols if is_vector_column(frame[c])]
    categorical = [
        c for c in cols if c not in vectors and not pd.api.types.is_numeric_dtype(frame[c])
    ]
    if not vectors:
        if categorical:
            frame = pd.get_dummies(frame, columns=categorical, dtype=np.float32)
        return frame.to_numpy(np.float32)
    # As a table with the vectors spread over columns in place would read (the dummies of
    # categorical columns last, as get_dummies puts them).
    blocks = [
        _vector_block(frame[c]) if c in vectors else frame[[c]].to_numpy(np.float32)
        for c in cols
        if c not in categorical
    ]
    if categorical:
        blocks.append(pd.get_dummies(frame[categorical], dtype=np.float32).to_numpy(np.float32))
    return np.hstack(blocks)


def is_vector_column(s: pd.Series) -> bool:
    """Whether ``s`` holds vectors (lists or arrays of numbers: embeddings), one per row."""
    if pd.api.types.is_numeric_dtype(s):
        return False
    first = s.dropna().head(1)
    return bool(len(first)) and isinstance(first.iloc[0], list | tuple | np.ndarray)


def _vector_block(s: pd.Series) -> np.ndarray:
    """A vector column as a float32 matrix (rows × length); a row of another length, or an
    empty cell, is all NaN (validation quarantines such rows before a model sees them)."""
    cells = s.to_numpy(object)
    lengths = [len(v) for v in cells if isinstance(v, list | tuple | np.ndarray)]
    k = max(set(lengths), key=lambda n: (lengths.count(n), n)) if lengths else 0
    if all(isinstance(v, np.ndarray | list | tuple) and len(v) == k for v in cells):
        return np.asarray(np.stack([np.asarray(v, dtype=np.float32) for v in cells]))
    out = np.full((len(cells), k), np.nan, dtype=np.float32)
    for i, v in enumerate(cells):
        if isinstance(v, list | tuple | np.ndarray) and len(v) == k:
            out[i] = np.asarray(v, dtype=np.float32)
    return out


def model_inputs(cfg: CampaignConfig, *frames: pd.DataFrame) -> list[Any]:
    """The model inputs of each frame, encoded together so that their columns line up."""
    exclude = [c for c in (cfg.data.id_column, cfg.data.label_column, cfg.data.text_column) if c]
    # Only columns every frame has: the snapshot's annotated ``label`` is never a feature.
    shared = [c for c in frames[0].columns if all(c in f.columns for f in frames[1:])]
    columns = cfg.data.feature_columns or [c for c in shared if c not in set(exclude) | {"item_id"}]
    both = pd.concat([f[[*columns, *_text_of(f, cfg)]] for f in frames], ignore_index=True)
    X = feature_matrix(
        both,
        feature_columns=columns,
        text_column=cfg.data.text_column,
        exclude=exclude,
    )
    out, start = [], 0
    for f in frames:
        out.append(X[start : start + len(f)])
        start += len(f)
    return out


def _text_of(frame: pd.DataFrame, cfg: CampaignConfig) -> list[str]:
    """The text column, where the frame has it (text campaigns read it)."""
    text = cfg.data.text_column
    return [text] if text and text in frame.columns else []


def text_space(
    texts: Sequence[str] | np.ndarray, *, n_components: int = 100, random_state: Any = None
) -> np.ndarray:
    """Texts as dense float32 rows for distance-based strategies without a model.

    The model's own TF-IDF (:func:`loopwise.model.build_model` for text), reduced to at
    most ``n_components`` dimensions by a truncated SVD (latent semantic analysis) and
    normalized to unit length, so that k-means++ on a large pool works on a small dense
    matrix, not on a vocabulary-wide one.

    Parameters
    ----------
    texts : sequence of str of shape (N,)
    n_components : int, default=100
    random_state : int, RandomState instance or None
        Seed of the randomized SVD.

    Returns
    -------
    ndarray of shape (N, k), float32, with ``k <= n_components``
    """
    from sklearn.decomposition import TruncatedSVD
    from sklearn.preprocessing import normalize

    from loopwise.model import build_model

    if n_components < 1:
        raise ValueError(f"n_components must be at least 1, got {n_components!r}")
    docs = ["" if t is None else str(t) for t in np.asarray(texts, dtype=object)]
    if not docs:
        return np.zeros((0, 1), dtype=np.float32)
    tfidf = build_model("passthrough", kind="text")
    try:
        X = tfidf.fit_transform(docs)
    except ValueError:  # no word in any text (empty or one-letter texts): nothing to tell
        return np.zeros((len(docs), 1), dtype=np.float32)
    k = min(n_components, X.shape[1] - 1, X.shape[0] - 1)
    if k >= 1:
        X = TruncatedSVD(n_components=k, random_state=random_state).fit_transform(X)
    else:
        X = X.toarray()
    return normalize(X).astype(np.float32)
