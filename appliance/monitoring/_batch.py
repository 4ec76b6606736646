"""Batch drift: per-feature PSI, Kolmogorov-Smirnov and chi-squared tests.

Each feature of a current window is compared with the same feature of the
training reference. A feature counts as drifted only when a test rejects and
its effect size reaches a floor. On large samples a p-value alone flags shifts
too small to matter: 100,000 rows of N(0, 1) against N(0.01, 1) (numpy seed 0)
give a KS p-value of 0.004 but a statistic of 0.008.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Status = Literal["ok", "drift", "insufficient data"]

_PSI_EPSILON = 1e-4
"""Share given to an empty bin so PSI stays finite."""
_MISSING = "\u0000missing"


@dataclass(frozen=True)
class DriftThresholds:
    """When a feature counts as drifted, and when a window is too small."""

    min_samples: int = 100
    """Minimum of non-missing values per side for a feature to be tested."""
    psi: float = 0.2
    """PSI at or above which a feature drifts, whatever the p-value."""
    p_value: float = 0.01
    """KS and chi-squared p-value below which a test rejects."""
    ks_floor: float = 0.1
    """Smallest KS statistic that counts as drift when the test rejects."""
    cramers_v_floor: float = 0.1
    """Smallest Cramér's V that counts as drift when chi-squared rejects."""
    bins: int = 10
    """Quantile bins of the reference used by PSI on numeric features."""

    def __post_init__(self) -> None:
        if self.min_samples < 1:
            raise ValueError(f"min_samples must be at least 1, got {self.min_samples}")
        if not 0.0 < self.p_value < 1.0:
            raise ValueError(f"p_value must be within (0, 1), got {self.p_value}")
        if self.bins < 2:
            raise ValueError(f"bins must be at least 2, got {self.bins}")
        for name in ("psi", "ks_floor", "cramers_v_floor"):
            if getattr(self, name) < 0:
                raise ValueError(
                    f"{name} must be at least 0, got {getattr(self, name)}"
                )


@dataclass(frozen=True)
class FeatureDrift:
    """Scores of one feature between reference and current windows."""

    feature: str
    kind: Literal["numeric", "categorical"]
    status: Status
    psi: float | None
    """Population stability index; None with insufficient data."""
    statistic: float | None
    """KS statistic (numeric) or Cramér's V (categorical)."""
    p_value: float | None
    reference_rows: int
    current_rows: int

    @property
    def drifted(self) -> bool:
        """Whether the feature counts as drifted."""
        return self.status == "drift"

    def to_dict(self) -> dict[str, Any]:
        """Return the scores as JSON-ready values."""
        return {
            "feature": self.feature,
            "kind": self.kind,
            "status": self.status,
            "psi": self.psi,
            "statistic": self.statistic,
            "p_value": self.p_value,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
        }


@dataclass(frozen=True)
class DriftReport:
    """Per-feature drift of one current window."""

    features: list[FeatureDrift] = field(default_factory=list)

    @property
    def tested(self) -> int:
        """Features that had enough data to be tested."""
        return sum(f.status != "insufficient data" for f in self.features)

    @property
    def drifted(self) -> list[str]:
        """Names of the drifted features."""
        return [f.feature for f in self.features if f.drifted]

    @property
    def share_drifted(self) -> float:
        """Drifted features over tested features; 0.0 when none was tested."""
        return len(self.drifted) / self.tested if self.tested else 0.0


def psi_numeric(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Return the PSI of `current` against `reference` on reference quantile bins.

    NaN counts as its own bin, and an empty bin gets a share of 1e-4, so a
    constant column gives 0.0 against itself and a finite value otherwise.

    >>> rng = np.random.default_rng(0)
    >>> round(psi_numeric(rng.normal(0, 1, 5000), rng.normal(1, 1, 5000)), 2)
    0.96
    """
    ref_values = reference[~np.isnan(reference)]
    if ref_values.size == 0:
        edges = np.array([])
    else:
        quantiles = np.quantile(ref_values, np.linspace(0, 1, bins + 1)[1:-1])
        edges = np.unique(quantiles)
    return _psi(_binned(reference, edges), _binned(current, edges))


def psi_categorical(reference: Sequence[Any], current: Sequence[Any]) -> float:
    """Return the PSI of two samples of categories over the union of categories."""
    ref_counts, cur_counts, _ = _category_counts(reference, current)
    return _psi(ref_counts, cur_counts)


def ks_test(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """Return the two-sample KS statistic and p-value, ignoring NaN.

    Two constant samples of the same value give (0.0, 1.0).
    """
    from scipy import stats  # about 70 MB, loaded by the first check only

    ref_values = reference[~np.isnan(reference)]
    cur_values = current[~np.isnan(current)]
    result = stats.ks_2samp(ref_values, cur_values)
    return float(result.statistic), float(result.pvalue)


def chi2_test(reference: Sequence[Any], current: Sequence[Any]) -> tuple[float, float]:
    """Return Cramér's V and the chi-squared p-value of the 2 x k table.

    A single category on both sides gives (0.0, 1.0), since there is nothing to
    compare.

    >>> chi2_test(["bad"] * 500 + ["good"] * 100, ["bad"] * 250 + ["good"] * 50)
    (0.0, 1.0)
    """
    ref_counts, cur_counts, _ = _category_counts(reference, current)
    return _chi2(ref_counts, cur_counts)


def _chi2(ref_counts: np.ndarray, cur_counts: np.ndarray) -> tuple[float, float]:
    table = np.vstack([ref_counts, cur_counts])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 0.0, 1.0
    from scipy import stats

    chi2, p_value, _, _ = stats.chi2_contingency(table, correction=False)
    total = table.sum()
    cramers_v = math.sqrt(chi2 / total) if total else 0.0
    return round(float(cramers_v), 12), round(float(p_value), 12)


def batch_drift(
    reference: Mapping[str, Sequence[Any] | np.ndarray],
    current: Mapping[str, Sequence[Any] | np.ndarray],
    numeric: Sequence[str],
    categorical: Sequence[str],
    thresholds: DriftThresholds | None = None,
) -> DriftReport:
    """Score every feature of `current` against `reference`.

    Args:
        reference: Column name to values of the training reference.
        current: Column name to values of the window under test.
        numeric: Numeric features; NaN is missing.
        categorical: Categorical features; None and ``""`` are missing.
        thresholds: Decision rules; the defaults when None.

    Raises:
        KeyError: A listed feature is missing from either mapping.
    """
    rules = thresholds or DriftThresholds()
    features = [
        numeric_drift(
            name,
            np.asarray(reference[name], dtype=np.float64),
            np.asarray(current[name], dtype=np.float64),
            rules,
        )
        for name in numeric
    ]
    features += [
        categorical_drift(name, reference[name], current[name], rules)
        for name in categorical
    ]
    return DriftReport(features)


def numeric_drift(
    name: str, reference: np.ndarray, current: np.ndarray, rules: DriftThresholds
) -> FeatureDrift:
    """Score one numeric feature with PSI and KS."""
    n_ref = int((~np.isnan(reference)).sum())
    n_cur = int((~np.isnan(current)).sum())
    if min(n_ref, n_cur) < rules.min_samples:
        return FeatureDrift(
            name, "numeric", "insufficient data", None, None, None, n_ref, n_cur
        )
    psi = psi_numeric(reference, current, rules.bins)
    statistic, p_value = ks_test(reference, current)
    rejected = p_value < rules.p_value and statistic >= rules.ks_floor
    status: Status = "drift" if rejected or psi >= rules.psi else "ok"
    return FeatureDrift(name, "numeric", status, psi, statistic, p_value, n_ref, n_cur)


def categorical_drift(
    name: str,
    reference: Sequence[Any] | np.ndarray,
    current: Sequence[Any] | np.ndarray,
    rules: DriftThresholds,
) -> FeatureDrift:
    """Score one categorical feature with PSI and chi-squared."""
    ref_counts, cur_counts, missing = _category_counts(reference, current)
    n_ref = int(ref_counts[~missing].sum())
    n_cur = int(cur_counts[~missing].sum())
    if min(n_ref, n_cur) < rules.min_samples:
        return FeatureDrift(
            name, "categorical", "insufficient data", None, None, None, n_ref, n_cur
        )
    psi = _psi(ref_counts, cur_counts)
    cramers_v, p_value = _chi2(ref_counts, cur_counts)
    rejected = p_value < rules.p_value and cramers_v >= rules.cramers_v_floor
    status: Status = "drift" if rejected or psi >= rules.psi else "ok"
    return FeatureDrift(
        name, "categorical", status, psi, cramers_v, p_value, n_ref, n_cur
    )


def _binned(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Count values per bin (lower edge open, upper edge closed), then NaN."""
    missing = np.isnan(values)
    index = np.searchsorted(edges, values[~missing], side="left")
    counts = np.bincount(index, minlength=edges.size + 1).astype(np.float64)
    return np.append(counts, float(missing.sum()))


def _psi(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    if ref_counts.sum() == 0 or cur_counts.sum() == 0:
        return 0.0
    ref_share = np.maximum(ref_counts / ref_counts.sum(), _PSI_EPSILON)
    cur_share = np.maximum(cur_counts / cur_counts.sum(), _PSI_EPSILON)
    return float(np.sum((cur_share - ref_share) * np.log(cur_share / ref_share)))


def _category_counts(
    reference: Sequence[Any] | np.ndarray, current: Sequence[Any] | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Count each category on both sides; None, NaN and ``""`` are one category.

    Returns:
        Reference counts, current counts, and a mask of the missing category.
    """
    import pandas as pd  # loaded by the first check, not at the daemon's start

    ref = pd.Series(reference, dtype=object)
    cur = pd.Series(current, dtype=object)
    combined = pd.concat([ref, cur], ignore_index=True)
    missing = combined.isna() | (combined == "")
    keys = combined.astype(str).where(~missing, _MISSING)
    codes, categories = pd.factorize(keys, sort=True)
    size = len(categories)
    ref_counts = np.bincount(codes[: len(ref)], minlength=size).astype(np.float64)
    cur_counts = np.bincount(codes[len(ref) :], minlength=size).astype(np.float64)
    return ref_counts, cur_counts, np.asarray(categories == _MISSING)
