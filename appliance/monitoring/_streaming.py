"""Streaming drift detectors fed one value at a time.

The detectors follow River's contract: ``update(x)`` returns ``self``, the
outcome is the read-only ``drift_detected`` property, construction and reset
share ``_reset()``, and after a detection the state resets at the start of the
next update. None of them draws random numbers, so replaying a recorded stream
gives identical detection indices.

Two families, because they miss different changes:

- ADWIN (River) on the value itself reacts within a few dozen values to a shift
  of the mean, but a change that only widens the spread leaves the mean alone.
- A windowed two-sample test (KS for numbers, chi-squared for categories)
  compares each tumbling window of values with a reference window and catches
  a change of shape, with a delay of up to one window.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterable

import numpy as np
from river._river_rust.drift import AdaptiveWindowing

from appliance.monitoring._special import chi2_sf, kolmogorov, smirnov


class Adwin:
    """ADWIN on one numeric stream: River's ``river.drift.ADWIN`` without River's
    package imports.

    ``river.drift`` imports scikit-learn and pandas through ``river.stream``
    (River 0.26.1), which would double the daemon's memory. This class runs the
    same Rust core, ``AdaptiveWindowing``, with ``river.drift.ADWIN``'s
    defaults, so the detection indices are the same.

    Args:
        delta: Significance value; smaller means fewer false alarms, slower.
    """

    def __init__(self, delta: float = 0.002) -> None:
        self.delta = delta
        self.clock = 32
        self.max_buckets = 5
        self.min_window_length = 5
        self.grace_period = 10
        self._reset()

    def _reset(self) -> None:
        self._drift_detected = False
        self._helper = AdaptiveWindowing(
            delta=self.delta,
            clock=self.clock,
            max_buckets=self.max_buckets,
            min_window_length=self.min_window_length,
            grace_period=self.grace_period,
        )

    @property
    def drift_detected(self) -> bool:
        """Whether the last update detected drift."""
        return self._drift_detected

    @property
    def estimation(self) -> float:
        """Mean of the values in the current window; 0 when it is empty."""
        width = self._helper.get_width()
        return self._helper.get_total() / width if width else 0.0

    def update(self, x: float) -> Adwin:
        """Add one value and test for drift."""
        if self._drift_detected:
            self._reset()
        self._drift_detected = self._helper.update(x)
        return self


def _adwin(delta: float) -> Adwin:
    return Adwin(delta)


class NumericDriftDetector:
    """Drift of one numeric stream: ADWIN on the mean plus a windowed KS test.

    NaN values are skipped. A detection by either part resets both, and the
    KS reference is refilled from the values that follow, so one change raises
    one detection.

    Args:
        delta: ADWIN confidence; smaller means fewer false alarms, slower.
        window: Values per KS window, for the reference and for each test.
        p_value: KS p-value below which a window may count as drift.
        ks_floor: Smallest KS statistic that counts as drift.

    >>> rng = np.random.default_rng(0)
    >>> stream = np.concatenate([rng.normal(0, 1, 1000), rng.normal(5, 1, 1000)])
    >>> detector = NumericDriftDetector()
    >>> [i for i, x in enumerate(stream) if detector.update(x).drift_detected]
    [1023]
    """

    def __init__(
        self,
        delta: float = 0.002,
        window: int = 500,
        p_value: float = 0.001,
        ks_floor: float = 0.1,
    ) -> None:
        if not 0.0 < delta < 1.0:
            raise ValueError(f"delta must be within (0, 1), got {delta}")
        if window < 30:
            raise ValueError(f"window must be at least 30, got {window}")
        if not 0.0 < p_value < 1.0:
            raise ValueError(f"p_value must be within (0, 1), got {p_value}")
        self.delta = delta
        self.window = window
        self.p_value = p_value
        self.ks_floor = ks_floor
        self._reset()

    def _reset(self) -> None:
        self._adwin = _adwin(self.delta)
        self._reference: list[float] = []
        self._reference_array: np.ndarray | None = None
        self._filling = True
        self._current: list[float] = []
        self._drift_detected = False
        self._cause = ""

    @property
    def drift_detected(self) -> bool:
        """Whether the last update detected drift."""
        return self._drift_detected

    @property
    def cause(self) -> str:
        """Which part detected the last drift: ``mean`` or ``distribution``."""
        return self._cause

    def update(self, x: float) -> NumericDriftDetector:
        """Add one value and test for drift."""
        if self._drift_detected:
            self._reset()
        value = float(x)
        if value != value:  # NaN, tested without a call on this hot path
            return self
        adwin = self._adwin
        adwin.update(value)
        if adwin.drift_detected:
            self._detect("mean")
            return self
        if self._filling:
            self._reference.append(value)
            self._filling = len(self._reference) < self.window
            return self
        current = self._current
        current.append(value)
        if len(current) == self.window:
            self._window_drifted(current)
        return self

    def update_many(self, values: Iterable[float | None]) -> list[tuple[int, str]]:
        """Add values in order, as `update` would one at a time.

        None counts as missing, like NaN. This is `update` unrolled: the
        monitor feeds a whole request batch per feature, and the per-value
        method calls were most of its cost.

        Returns:
            The offset in `values` and the cause of each detection.
        """
        found: list[tuple[int, str]] = []
        for offset, x in enumerate(values):
            if self._drift_detected:
                self._reset()
            if x is None:
                continue
            value = float(x)
            if value != value:
                continue
            adwin = self._adwin
            # While the wrapper has a pending detection, so has this detector,
            # which then resets it above; its core can be fed directly.
            if adwin._helper.update(value):
                adwin._drift_detected = True
                self._detect("mean")
                found.append((offset, "mean"))
            elif self._filling:
                self._reference.append(value)
                self._filling = len(self._reference) < self.window
            else:
                current = self._current
                current.append(value)
                if len(current) == self.window and self._window_drifted(current):
                    found.append((offset, "distribution"))
        return found

    def _window_drifted(self, current: list[float]) -> bool:
        """Test a full window against the reference; start the next window
        unless it drifted."""
        statistic, p_value = _ks_asymptotic(self._sorted_reference(), current)
        if p_value < self.p_value and statistic >= self.ks_floor:
            self._detect("distribution")
            return True
        self._current = []
        return False

    def _detect(self, cause: str) -> None:
        self._drift_detected = True
        self._cause = cause

    def _sorted_reference(self) -> np.ndarray:
        if self._reference_array is None:
            self._reference_array = np.sort(np.asarray(self._reference))
        return self._reference_array


def _ks_asymptotic(reference: np.ndarray, current: list[float]) -> tuple[float, float]:
    """Return the two-sample KS statistic and its asymptotic p-value.

    The statistic is that of ``scipy.stats.ks_2samp``, and the p-value is
    ``kstwo.sf(statistic, round(m * n / (m + n)))`` as in its ``method="asymp"``
    wherever that p-value can be below 0.05; see `kstwo_sf`.
    """
    ordered = np.sort(np.asarray(current))
    values = np.concatenate([reference, ordered])
    cdf_reference = np.searchsorted(reference, values, side="right") / reference.size
    cdf_current = np.searchsorted(ordered, values, side="right") / ordered.size
    statistic = float(np.max(np.abs(cdf_reference - cdf_current)))
    m, n = reference.size, ordered.size
    p_value = kstwo_sf(statistic, int(np.round(m * n / (m + n))))
    return statistic, min(max(p_value, 0.0), 1.0)


def kstwo_sf(statistic: float, n: int) -> float:
    """Return the survival function of the two-sided one-sample KS statistic.

    Where ``n * statistic**2 >= 2.2`` this is twice the one-sided
    ``scipy.special.smirnov``, the branch that ``scipy.stats.kstwo.sf`` takes
    there for ``n > 140`` (SciPy 1.x, ``_ksstats._kolmogn``); elsewhere it is
    the limiting Kolmogorov distribution. Compared with ``kstwo.sf`` over a
    grid of statistics: equal for ``n > 140`` and within a relative 1e-7 for
    ``15 <= n <= 140`` wherever either is below 0.01, and within a relative
    0.42 between 0.01 and 0.05. Drift tests use p-values below 0.01, and this
    keeps SciPy out of the daemon (``scipy.stats`` is about 70 MB of imports).

    >>> f"{kstwo_sf(0.2, 250):.4e}"
    '3.0586e-09'
    """
    if statistic <= 0.0:
        return 1.0
    if statistic >= 1.0:
        return 0.0
    if n * statistic * statistic >= 2.2 or statistic >= 0.5:
        return min(max(2.0 * smirnov(n, statistic), 0.0), 1.0)
    return kolmogorov(math.sqrt(n) * statistic)


class CategoryDriftDetector:
    """Drift of the category frequencies of one stream, over tumbling windows.

    The first `window` values form the reference. Each following full window
    is compared with it by a chi-squared test on the 2 x k table; drift needs
    both a p-value below `p_value` and a total variation distance of at least
    `tvd_floor`. After a detection the next window becomes the reference.

    Args:
        window: Values per window.
        p_value: Chi-squared p-value below which a window may count as drift.
        tvd_floor: Smallest total variation distance (half the L1 distance of
            the two frequency vectors) that counts as drift.
    """

    def __init__(
        self, window: int = 500, p_value: float = 0.001, tvd_floor: float = 0.1
    ) -> None:
        if window < 30:
            raise ValueError(f"window must be at least 30, got {window}")
        if not 0.0 < p_value < 1.0:
            raise ValueError(f"p_value must be within (0, 1), got {p_value}")
        if not 0.0 <= tvd_floor <= 1.0:
            raise ValueError(f"tvd_floor must be within [0, 1], got {tvd_floor}")
        self.window = window
        self.p_value = p_value
        self.tvd_floor = tvd_floor
        self._reset()

    def _reset(self) -> None:
        self._reference: Counter[Hashable] = Counter()
        self._current: Counter[Hashable] = Counter()
        self._reference_count = 0
        self._current_count = 0
        self._drift_detected = False

    @property
    def drift_detected(self) -> bool:
        """Whether the last update detected drift."""
        return self._drift_detected

    def update(self, x: Hashable) -> CategoryDriftDetector:
        """Add one category (None and ``""`` count as one missing category)."""
        self.update_many((x,))
        return self

    def update_many(self, values: Iterable[Hashable]) -> list[int]:
        """Add categories in order, as `update` would one at a time; return
        the offset in `values` of each detection."""
        found: list[int] = []
        for offset, x in enumerate(values):
            if self._drift_detected:
                self._reset()
            key = "" if x is None else x
            if self._reference_count < self.window:
                self._reference[key] += 1
                self._reference_count += 1
                continue
            self._current[key] += 1
            self._current_count += 1
            if self._current_count == self.window:
                if self._rejects():
                    self._drift_detected = True
                    found.append(offset)
                else:
                    self._current = Counter()
                    self._current_count = 0
        return found

    def _rejects(self) -> bool:
        keys = sorted(set(self._reference) | set(self._current), key=str)
        if len(keys) < 2:
            return False
        table = np.array(
            [[self._reference[k] for k in keys], [self._current[k] for k in keys]],
            dtype=np.float64,
        )
        p_value = chi2_independence_p(table)
        shares = table / table.sum(axis=1, keepdims=True)
        tvd = 0.5 * float(np.abs(shares[0] - shares[1]).sum())
        return bool(p_value < self.p_value and tvd >= self.tvd_floor)


def chi2_independence_p(table: np.ndarray) -> float:
    """Return the p-value of Pearson's chi-squared test of independence.

    The same statistic and p-value as ``scipy.stats.chi2_contingency(table,
    correction=False)``, for a table whose row and column sums are all above 0.

    >>> round(chi2_independence_p(np.array([[30.0, 70.0], [50.0, 50.0]])), 6)
    0.003892
    """
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    statistic = float(((table - expected) ** 2 / expected).sum())
    dof = (table.shape[0] - 1) * (table.shape[1] - 1)
    return chi2_sf(dof, statistic)


class MeanDriftDetector:
    """ADWIN on a numeric stream such as per-row loss or predicted score.

    NaN values are skipped. This is the detector for a model's loss stream.
    On flights it fires almost daily, because the daily late rate swings with
    the weather. Its alarms must therefore go through the retraining policy's
    cool-down and budget rather than straight to a retraining.
    """

    def __init__(self, delta: float = 0.002) -> None:
        if not 0.0 < delta < 1.0:
            raise ValueError(f"delta must be within (0, 1), got {delta}")
        self.delta = delta
        self._reset()

    def _reset(self) -> None:
        self._adwin = _adwin(self.delta)
        self._drift_detected = False

    @property
    def drift_detected(self) -> bool:
        """Whether the last update detected drift."""
        return self._drift_detected

    @property
    def estimation(self) -> float:
        """Mean of the values in ADWIN's current window."""
        return float(self._adwin.estimation)

    def update(self, x: float) -> MeanDriftDetector:
        """Add one value and test for drift."""
        value = float(x)
        self._drift_detected = False
        if not math.isnan(value):
            self._adwin.update(value)
            self._drift_detected = bool(self._adwin.drift_detected)
        return self

    def update_many(self, values: Iterable[float]) -> list[int]:
        """Add values in order, as `update` would one at a time; return the
        offset in `values` of each detection."""
        found: list[int] = []
        for offset, x in enumerate(values):
            if self.update(x)._drift_detected:
                found.append(offset)
        return found
