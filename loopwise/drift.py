"""Drift between the labeled snapshot and the current unlabeled pool.

- :func:`psi` — population stability index of one numeric feature, quantile bins
  of the reference, proportions floored at ``eps``.
- :func:`drift_report` — PSI and the two-sample Kolmogorov–Smirnov test for every
  numeric feature, the drifted ones flagged; non-numeric features are listed as
  skipped.

A feature is flagged when ``psi > psi_threshold``, or when the KS p-value is below
``ks_alpha`` and ``psi > psi_threshold / 2``. The KS test alone does not flag: on
tens of thousands of rows it rejects for shifts too small to matter to a model.
It does lower the PSI bar, because ten quantile bins can hide a shift that stays
inside a bin (a narrower spread, a moved tail) and KS sees it.
Rule of thumb for PSI: < 0.1 stable, 0.1–0.2 moderate, > 0.2 a real shift.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.stats import ks_2samp
from sklearn.utils import check_random_state

from loopwise.jsonsafe import json_safe

__all__ = ["DriftReport", "drift_report", "psi"]

#: Floor of the bin proportions: an empty bin adds a large but finite term.
_EPS = 1e-4


def psi(
    expected: npt.ArrayLike, actual: npt.ArrayLike, bins: int = 10, *, eps: float = _EPS
) -> float:
    """Population stability index of ``actual`` against ``expected``.

    ``PSI = sum((a_i - e_i) * ln(a_i / e_i))`` over bins cut at the quantiles of
    ``expected`` (ties merged, so a feature with few values gets fewer bins; the
    outer bins are open, so values outside the reference range count). A constant
    ``expected`` gets three bins — below, at and above its value — so the same
    constant gives 0 and a moved one does not. NaN and infinities are dropped.

    Parameters
    ----------
    expected : array-like of shape (n_expected,)
        Reference values (the labeled snapshot).
    actual : array-like of shape (n_actual,)
        Current values (the pool).
    bins : int, default=10
        Number of quantile bins, >= 2.
    eps : float, default=1e-4
        Floor of the bin proportions, so an empty bin gives a finite index.

    Returns
    -------
    float
        >= 0; 0 when both histograms match.
    """
    if not _is_int_at_least(bins, 2):
        raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
    if not (isinstance(eps, numbers.Real) and 0 < eps < 1):
        raise ValueError(f"eps must be a number in (0, 1), got {eps!r}")
    e = _finite_1d(expected, "expected")
    a = _finite_1d(actual, "actual")
    return _psi(e, a, int(bins), float(eps))


def _finite_1d(x: npt.ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        raise ValueError(f"{name} has no finite value (empty, or only NaN/inf)")
    return arr


def _psi(e: np.ndarray, a: np.ndarray, bins: int, eps: float) -> float:
    if e.min() == e.max():
        cuts = np.array([e[0], np.nextafter(e[0], np.inf)])
    else:
        cuts = np.unique(np.quantile(e, np.linspace(0, 1, bins + 1)[1:-1]))
    # bin i holds cuts[i-1] <= x < cuts[i]; bins 0 and -1 are open-ended
    n_bins = cuts.size + 1
    pe = np.bincount(np.searchsorted(cuts, e, side="right"), minlength=n_bins) / e.size
    pa = np.bincount(np.searchsorted(cuts, a, side="right"), minlength=n_bins) / a.size
    pe, pa = np.maximum(pe, eps), np.maximum(pa, eps)
    return float(max(np.sum((pa - pe) * np.log(pa / pe)), 0.0))


@dataclass
class DriftReport:
    """Drift of every numeric feature between a reference and a current table.

    Attributes
    ----------
    features : list of dict
        One per compared feature, in column order: ``name``, ``psi``,
        ``ks_statistic``, ``ks_pvalue``, ``drifted``, ``flagged_by``
        (``"psi"``, ``"ks+psi"`` or None) and ``bins`` (PSI bins used).
    max_psi : float or None
        Largest PSI over the compared features; None when no feature could be
        compared (every one is in ``skipped``, and ``drifted`` is False).
    drifted_features : list of str
        Names of the flagged features, in column order.
    drifted : bool
        Whether any feature is flagged.
    skipped : list of dict
        Features not compared, each with ``name`` and ``reason`` (not numeric, no
        finite value, only in the current table).
    params : dict
        Thresholds, bins and the rows compared (after subsampling).
    """

    features: list[dict[str, Any]]
    max_psi: float | None
    drifted_features: list[str]
    drifted: bool
    skipped: list[dict[str, Any]] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON types."""
        return json_safe(asdict(self))


def drift_report(
    reference: pd.DataFrame | np.ndarray,
    current: pd.DataFrame | np.ndarray,
    *,
    feature_names: Sequence[str] | None = None,
    psi_threshold: float = 0.2,
    ks_alpha: float = 0.01,
    max_rows: int = 50_000,
    random_state: int | np.random.RandomState | None = 0,
    bins: int = 10,
    min_rows_per_bin: int = 20,
) -> DriftReport:
    """Compare every numeric feature of ``current`` with ``reference``.

    Parameters
    ----------
    reference : DataFrame or ndarray of shape (n_reference, n_features)
        The labeled snapshot.
    current : DataFrame or ndarray of shape (n_current, n_features)
        The current pool. A DataFrame needs the reference's columns (its other
        columns are listed as skipped); an array needs the same column count.
    feature_names : sequence of str, optional
        For arrays, the column names (default ``x0, x1, …``); for DataFrames, the
        columns to compare (default all of the reference's).
    psi_threshold : float, default=0.2
        A feature with a larger PSI is flagged.
    ks_alpha : float, default=0.01
        With a KS p-value below it, a PSI above ``psi_threshold / 2`` is enough.
    max_rows : int, default=50_000
        Larger tables are subsampled to this many rows, without replacement.
    random_state : int, RandomState or None, default=0
        Seed of the subsampling.
    bins : int, default=10
        Quantile bins of the PSI, at most.
    min_rows_per_bin : int, default=20
        Fewer bins (down to 2) when the reference has fewer than
        ``bins * min_rows_per_bin`` values: without drift the PSI of ``k`` bins
        averages about ``(k - 1) / n_reference``, so 10 bins on the 20 rows of
        an early labeled set would read 0.45 — drift that is not there.

    Returns
    -------
    DriftReport
        With no feature to compare (no numeric column, an empty table) the report
        has no features, ``max_psi`` None, ``drifted`` False, and says why in
        ``skipped``: a drift check never stops a cycle for want of data.
    """
    _check_params(psi_threshold, ks_alpha, max_rows, bins, min_rows_per_bin)
    ref, cur, skipped = _align(reference, current, feature_names)
    rng = check_random_state(random_state)
    ref, cur = _subsample(ref, max_rows, rng), _subsample(cur, max_rows, rng)

    features: list[dict[str, Any]] = []
    for name in ref.columns:
        why = _not_comparable(ref[name], cur[name])
        if why:
            skipped.append({"name": str(name), "reason": why})
            continue
        e, a = _finite(ref[name]), _finite(cur[name])
        n_bins = max(2, min(int(bins), e.size // int(min_rows_per_bin)))
        features.append({"name": str(name), **_compare(e, a, n_bins, psi_threshold, ks_alpha)})
    drifted_features = [f["name"] for f in features if f["drifted"]]
    return DriftReport(
        features=features,
        max_psi=max((f["psi"] for f in features), default=None),
        drifted_features=drifted_features,
        drifted=bool(drifted_features),
        skipped=skipped,
        params={
            "psi_threshold": float(psi_threshold),
            "ks_alpha": float(ks_alpha),
            "bins": int(bins),
            "min_rows_per_bin": int(min_rows_per_bin),
            "n_reference": len(ref),
            "n_current": len(cur),
            "max_rows": int(max_rows),
        },
    )


def _check_params(
    psi_threshold: Any, ks_alpha: Any, max_rows: Any, bins: Any, min_rows_per_bin: Any
) -> None:
    """Raise ValueError naming the first parameter of :func:`drift_report` out of range."""
    if not (isinstance(psi_threshold, numbers.Real) and psi_threshold > 0):
        raise ValueError(f"psi_threshold must be a number > 0, got {psi_threshold!r}")
    if not (isinstance(ks_alpha, numbers.Real) and 0 < ks_alpha < 1):
        raise ValueError(f"ks_alpha must be a number in (0, 1), got {ks_alpha!r}")
    if not _is_int_at_least(max_rows, 1):
        raise ValueError(f"max_rows must be a positive integer, got {max_rows!r}")
    if not _is_int_at_least(bins, 2):
        raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
    if not _is_int_at_least(min_rows_per_bin, 1):
        raise ValueError(f"min_rows_per_bin must be a positive integer, got {min_rows_per_bin!r}")


def _is_int_at_least(value: Any, low: int) -> bool:
    """Whether ``value`` is an integer (not a bool) >= ``low``."""
    return not isinstance(value, bool) and isinstance(value, numbers.Integral) and value >= low


def _compare(
    e: np.ndarray, a: np.ndarray, n_bins: int, psi_threshold: float, ks_alpha: float
) -> dict[str, Any]:
    """PSI and KS test of one feature's finite values, and whether (and why) it drifted."""
    value = _psi(e, a, n_bins, _EPS)
    with warnings.catch_warnings():
        # ties (a binary feature) defeat the exact small-sample p-value; scipy falls back
        # to the asymptotic one, which is what we want
        warnings.filterwarnings(
            "ignore", "ks_2samp: Exact calculation unsuccessful", RuntimeWarning
        )
        ks = ks_2samp(e, a)
    if value > psi_threshold:
        flagged_by = "psi"
    elif ks.pvalue < ks_alpha and value > psi_threshold / 2:
        flagged_by = "ks+psi"
    else:
        flagged_by = None
    return {
        "psi": value,
        "ks_statistic": float(ks.statistic),
        "ks_pvalue": float(ks.pvalue),
        "drifted": flagged_by is not None,
        "flagged_by": flagged_by,
        "bins": n_bins,
    }


def _align(
    reference: Any, current: Any, feature_names: Sequence[str] | None
) -> tuple[pd.DataFrame, pd.DataFrame, list[dict[str, Any]]]:
    """Both tables as DataFrames over the same columns, and the columns left out."""
    if isinstance(feature_names, str):
        raise TypeError("feature_names must be a sequence of names, not a single string")
    names = None if feature_names is None else list(feature_names)
    if isinstance(reference, pd.DataFrame):
        columns = list(reference.columns) if names is None else names
        missing_ref = [c for c in columns if c not in reference.columns]
        if missing_ref:
            raise ValueError(f"feature_names not in reference: {missing_ref}")
        _check_distinct(columns)
        ref = reference[columns]
    else:
        arr = _as_2d(reference, "reference")
        columns = [f"x{j}" for j in range(arr.shape[1])] if names is None else names
        if len(columns) != arr.shape[1]:
            raise ValueError(
                f"feature_names has {len(columns)} names for {arr.shape[1]} reference columns"
            )
        _check_distinct(columns)
        ref = pd.DataFrame(arr, columns=columns)
    skipped: list[dict[str, Any]] = []
    if isinstance(current, pd.DataFrame):
        missing = [c for c in columns if c not in current.columns]
        if missing:
            raise ValueError(f"current lacks the reference columns {missing}")
        if names is None:
            skipped = [
                {"name": str(c), "reason": "only in current"}
                for c in current.columns
                if c not in ref.columns
            ]
        cur = current[columns]
    else:
        arr = _as_2d(current, "current")
        if arr.shape[1] != ref.shape[1]:
            raise ValueError(f"current has {arr.shape[1]} columns, reference has {ref.shape[1]}")
        cur = pd.DataFrame(arr, columns=columns)
    return ref, cur, skipped


def _check_distinct(columns: list[Any]) -> None:
    if len(set(columns)) != len(columns):
        raise ValueError(f"feature names must be distinct, got {columns}")


def _as_2d(X: Any, name: str) -> np.ndarray:
    arr = np.asarray(X)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D table, got shape {arr.shape}")
    return arr


def _subsample(df: pd.DataFrame, max_rows: int, rng: np.random.RandomState) -> pd.DataFrame:
    if len(df) <= max_rows:
        return df
    return df.iloc[np.sort(rng.choice(len(df), size=max_rows, replace=False))]


def _is_numeric(s: pd.Series) -> bool:
    # bool counts (a 0/1 feature); complex numbers and categoricals of numbers do not
    return pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_complex_dtype(s.dtype)


def _not_comparable(ref: pd.Series, cur: pd.Series) -> str | None:
    """Why a feature cannot be compared, or None."""
    if not _is_numeric(ref):
        return f"not numeric ({ref.dtype})"
    if not _is_numeric(cur):
        return f"not numeric in current ({cur.dtype})"
    for side, s in (("reference", ref), ("current", cur)):
        if _finite(s).size == 0:
            return f"no finite value in {side}"
    return None


def _finite(s: pd.Series) -> np.ndarray:
    arr = s.to_numpy(dtype=float, na_value=np.nan)
    return arr[np.isfinite(arr)]
