"""Streaming drift detectors fed one value at a time.

The detectors follow River's contract: ``update(x)`` returns ``self`` and the
outcome is the read-only ``drift_detected`` property. None of them draws
random numbers, so replaying a recorded stream gives identical detection
indices.

Two families, because real traffic arrives in time order and repeats itself:

- Feature and prediction detectors test whole cycles. Each tumbling window of
  values covers one cycle of the traffic (a day by default) and is compared
  with a reference of the latest cycles by a KS test (numbers) or a
  chi-squared test (categories). A pattern that repeats within the cycle,
  such as departure times running from morning to night, is then no change,
  which it was for ADWIN fed one value at a time: on three weeks of July
  flights in time order that raised 53 alarms a day. A change is found at the
  end of the first window that lies wholly after it.
- The loss detector tests whole cycles too, because a model's per-row loss
  moves with the hour and the weekday like its inputs. A CUSUM of the mean
  loss of each window, against the means of the latest cycles, finds a rise
  that lasts. ADWIN fed one loss at a time, the detector before, alarmed on
  231 of 241 days of flights replayed through the daemon.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Hashable, Iterable

import numpy as np

from appliance.monitoring._special import chi2_sf, kolmogorov, smirnov

_SKETCH_POINTS = 100
"""Quantiles kept per reference window. KS statistics between two sketches
are within 1 / 100 of those between the whole windows, and the detector state
is a tenth of the size."""


class NumericDriftDetector:
    """Drift of one numeric stream, tested one traffic cycle at a time.

    Values go into tumbling windows of `horizon` values, each meant to cover
    one full cycle of the traffic, such as a day. A pattern that repeats
    within the cycle, such as departures running from morning to night, then
    looks the same in every window. The reference is the latest `cycles` windows.
    Once it is full, each new window is compared with every reference window
    by a two-sample KS test and then joins the reference, pushing out the
    oldest window. The reference keeps 100 quantiles of each window, not its
    values.

    A window drifts when it is unlike every reference window: the KS
    statistic against the nearest one has a p-value below `p_value` and
    reaches both `ks_floor` and the bar. The bar is the largest distance
    between a reference window and its own nearest reference window, that is
    how much whole cycles already differed, such as the weather from day to
    day. Because a drifted window joins the reference, the windows after it
    have a near neighbour, so a lasting change raises one detection.

    A window of one repeated value also drifts, as a stuck sensor, when the
    reference holds other values and less than one window's worth of that
    value (so a dry day of zero rainfall after dry days is no drift). NaN
    values are skipped.

    Args:
        horizon: Values per window; set it to the values of one cycle.
        cycles: Windows in the reference; no test runs before it is full.
        p_value: KS p-value below which a window may count as drift.
        ks_floor: Smallest KS statistic that counts as drift.

    >>> rng = np.random.default_rng(0)
    >>> stream = np.concatenate([rng.normal(0, 1, 8000), rng.normal(5, 1, 2000)])
    >>> detector = NumericDriftDetector()
    >>> [i for i, x in enumerate(stream) if detector.update(x).drift_detected]
    [8999]
    """

    def __init__(
        self,
        horizon: int = 1000,
        cycles: int = 7,
        p_value: float = 0.001,
        ks_floor: float = 0.1,
    ) -> None:
        _check_windows(horizon, cycles, p_value)
        self.horizon = horizon
        self.cycles = cycles
        self.p_value = p_value
        self.ks_floor = ks_floor
        self._reset()

    def _reset(self) -> None:
        points = min(_SKETCH_POINTS, self.horizon)
        self._picks = ((np.arange(points) + 0.5) * self.horizon / points).astype(int)
        """Ranks of a sorted window kept in its sketch."""
        self._windows: deque[np.ndarray] = deque()
        """Sketch of each reference window, oldest first."""
        self._distances = _Distances()
        self._current: list[float] = []
        self._drift_detected = False
        self._cause = ""

    @property
    def drift_detected(self) -> bool:
        """Whether the last update detected drift."""
        return self._drift_detected

    @property
    def cause(self) -> str:
        """Cause of the last detection: ``distribution`` or ``constant``."""
        return self._cause

    def update(self, x: float | None) -> NumericDriftDetector:
        """Add one value and test for drift."""
        self._drift_detected = False
        value = math.nan if x is None else float(x)
        if value != value:  # NaN, tested without a call on this hot path
            return self
        current = self._current
        current.append(value)
        if len(current) == self.horizon:
            self._current = []
            cause = self._close_window(current)
            if cause:
                self._cause = cause
                self._drift_detected = True
        return self

    def update_many(self, values: Iterable[float | None]) -> list[tuple[int, str]]:
        """Add values in order, as `update` would one at a time.

        None counts as missing, like NaN. This is `update` unrolled: the
        monitor feeds a whole request batch per feature.

        Returns:
            The offset in `values` and the cause of each detection.
        """
        found: list[tuple[int, str]] = []
        current = self._current
        horizon = self.horizon
        offset = -1
        for offset, x in enumerate(values):
            if x is None:
                continue
            value = float(x)
            if value != value:  # NaN, tested without a call on this hot path
                continue
            current.append(value)
            if len(current) == horizon:
                cause = self._close_window(current)
                if cause:
                    self._cause = cause
                    found.append((offset, cause))
                current = self._current = []
        if offset >= 0:
            self._drift_detected = bool(found) and found[-1][0] == offset
        return found

    def _close_window(self, values: list[float]) -> str:
        """Test a full window against the reference, then add it to the
        reference; return the cause of drift, or ``""`` for none."""
        window = np.sort(np.asarray(values))
        sketch = window[self._picks]
        distances = [_ks_statistic(sketch, other) for other in self._windows]
        cause = ""
        # NOTE: a drifted window raises the bar to about its distance from the
        # others while it stays in the reference, so a second change within
        # `cycles` windows can be missed unless it is larger than the first.
        if len(self._windows) == self.cycles:
            cause = self._test(window, distances)
            self._windows.popleft()
            self._distances.pop_oldest()
            distances.pop(0)
        self._windows.append(sketch)
        self._distances.append(distances)
        return cause

    def _test(self, window: np.ndarray, distances: list[float]) -> str:
        if window[0] == window[-1] and self._is_new_constant(window[0]):
            return "constant"
        nearest = min(distances)
        if nearest < max(self.ks_floor, self._distances.bar()):
            return ""
        p_value = kstwo_sf(nearest, round(self.horizon / 2))
        return "distribution" if p_value < self.p_value else ""

    def _is_new_constant(self, value: float) -> bool:
        """Return whether the reference holds other values and less than one
        window's worth of `value`."""
        count = 0
        spread = False
        for sketch in self._windows:
            low = np.searchsorted(sketch, value, side="left")
            count += int(np.searchsorted(sketch, value, side="right") - low)
            spread = spread or sketch[0] != sketch[-1]
        return spread and count < self._picks.size


class _Distances:
    """Symmetric distances between the reference windows, oldest first."""

    def __init__(self) -> None:
        self._rows: list[list[float]] = []

    def append(self, distances: list[float]) -> None:
        """Add a window given its distances to the windows already in."""
        for row, distance in zip(self._rows, distances, strict=True):
            row.append(distance)
        self._rows.append([*distances, 0.0])

    def pop_oldest(self) -> None:
        """Remove the oldest window."""
        del self._rows[0]
        for row in self._rows:
            del row[0]

    def bar(self) -> float:
        """Return the largest distance of a window to its nearest other one."""
        return max(
            min(d for j, d in enumerate(row) if j != i)
            for i, row in enumerate(self._rows)
        )


def _check_windows(horizon: int, cycles: int, p_value: float | None = None) -> None:
    if horizon < 30:
        raise ValueError(f"horizon must be at least 30 values, got {horizon}")
    if cycles < 2:
        raise ValueError(f"cycles must be at least 2, got {cycles}")
    if p_value is not None and not 0.0 < p_value < 1.0:
        raise ValueError(f"p_value must be within (0, 1), got {p_value}")


def _ks_statistic(first: np.ndarray, second: np.ndarray) -> float:
    """Return the two-sample KS statistic of two sorted samples."""
    values = np.concatenate([first, second])
    cdf_first = np.searchsorted(first, values, side="right") / first.size
    cdf_second = np.searchsorted(second, values, side="right") / second.size
    return float(np.max(np.abs(cdf_first - cdf_second)))


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
    """Drift of the category frequencies of one stream, one cycle at a time.

    Categories go into tumbling windows of `horizon` values, and the reference
    is the latest `cycles` windows, as in `NumericDriftDetector`. Once the
    reference is full, each new window is compared with every reference
    window by the total variation distance (half the L1 distance of the two
    frequency vectors) and then joins the reference. A window drifts when its
    distance to the nearest reference window reaches both `tvd_floor` and
    the largest distance of a reference window to its own nearest one. A
    chi-squared test on the 2 x k table of the two windows must also give a
    p-value below `p_value`.

    Args:
        horizon: Values per window; set it to the values of one cycle.
        cycles: Windows in the reference; no test runs before it is full.
        p_value: Chi-squared p-value below which a window may count as drift.
        tvd_floor: Smallest total variation distance that counts as drift.
    """

    def __init__(
        self,
        horizon: int = 1000,
        cycles: int = 7,
        p_value: float = 0.001,
        tvd_floor: float = 0.1,
    ) -> None:
        _check_windows(horizon, cycles, p_value)
        if not 0.0 <= tvd_floor <= 1.0:
            raise ValueError(f"tvd_floor must be within [0, 1], got {tvd_floor}")
        self.horizon = horizon
        self.cycles = cycles
        self.p_value = p_value
        self.tvd_floor = tvd_floor
        self._reset()

    def _reset(self) -> None:
        self._windows: deque[Counter[Hashable]] = deque()
        self._distances = _Distances()
        self._current: Counter[Hashable] = Counter()
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
        offset = -1
        for offset, x in enumerate(values):
            self._current["" if x is None else x] += 1
            self._current_count += 1
            if self._current_count == self.horizon:
                if self._close_window(self._current):
                    found.append(offset)
                self._current = Counter()
                self._current_count = 0
        if offset >= 0:
            self._drift_detected = bool(found) and found[-1] == offset
        return found

    def _close_window(self, window: Counter[Hashable]) -> bool:
        distances = [_tvd(window, other) for other in self._windows]
        drifted = False
        if len(self._windows) == self.cycles:
            drifted = self._rejects(window, distances)
            self._windows.popleft()
            self._distances.pop_oldest()
            distances.pop(0)
        self._windows.append(window)
        self._distances.append(distances)
        return drifted

    def _rejects(self, window: Counter[Hashable], distances: list[float]) -> bool:
        nearest = min(distances)
        if nearest < max(self.tvd_floor, self._distances.bar()):
            return False
        other = self._windows[distances.index(nearest)]
        keys = sorted(set(other) | set(window), key=str)
        table = np.array(
            [[other[k] for k in keys], [window[k] for k in keys]], dtype=np.float64
        )
        return chi2_independence_p(table) < self.p_value


def _tvd(first: Counter[Hashable], second: Counter[Hashable]) -> float:
    """Return the total variation distance of two category count vectors."""
    first_total = sum(first.values())
    second_total = sum(second.values())
    return 0.5 * sum(
        abs(first[k] / first_total - second[k] / second_total)
        for k in set(first) | set(second)
    )


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


class Adwin:
    """ADWIN on one numeric stream: River's ``river.drift.ADWIN`` without River's
    package imports.

    ``river.drift`` imports scikit-learn and pandas through ``river.stream``
    (River 0.26.1), which would double the daemon's memory. This class runs the
    same Rust core, ``AdaptiveWindowing``, with ``river.drift.ADWIN``'s
    defaults, so the detection indices are the same. River is imported when
    the first `Adwin` is made, so a daemon without one does not load it.

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
        from river._river_rust.drift import AdaptiveWindowing

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


class MeanDriftDetector:
    """ADWIN on a numeric stream such as per-row loss, one value at a time.

    NaN values are skipped. The loss detector of ``stream_loss_test =
    "adwin"``, for traffic without a daily or weekly cycle, such as a machine
    that runs around the clock. On flights in time order it alarmed almost
    daily (1.86 alarms a day on three stable weeks of July), because the
    mean loss of a day moves with the weather. `LossDriftDetector` is the
    default for such traffic.
    """

    def __init__(self, delta: float = 0.002) -> None:
        if not 0.0 < delta < 1.0:
            raise ValueError(f"delta must be within (0, 1), got {delta}")
        self.delta = delta
        self._adwin = Adwin(delta)
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
        return [
            offset for offset, x in enumerate(values) if self.update(x).drift_detected
        ]


class LossDriftDetector:
    """Lasting rise of the mean of a loss stream, tested one cycle at a time.

    Losses go into tumbling windows of `horizon` values, each meant to cover
    one cycle of the traffic, as in `NumericDriftDetector`. The per-row loss
    of a classifier moves with the hour and the weekday, as its inputs do, so
    only whole cycles are compared. The mean loss of a whole cycle still
    moves from day to day with the weather, by more than a degraded model
    adds on one day. A degraded model differs in that its rise lasts, so the
    window means feed a one-sided CUSUM (Page's cumulative sum):

        z = (window mean - reference mean) / reference spread
        S = max(0, S + z - allowance), and the window drifts when S > threshold

    The reference is the latest window means that closed with S at 0: at
    least `cycles` of them before any test runs, and at most `max_cycles`.
    Its spread is their standard deviation, which is at least the standard
    error of one window's mean from the variance of the values within the
    reference windows, so near-identical windows do not shrink it to nothing.
    The mean and the spread estimated from a few windows are uncertain, and
    the CUSUM adds up that error as if it were a rise, so a reference longer
    than `cycles` gives fewer false detections.
    A window that leaves S above 0 is held out of the reference, so a lasting
    rise does not become the reference while S builds up. After a detection
    the reference is emptied and fills again from the windows after it, so a
    lasting rise raises one detection. No test runs while the reference
    fills. Only a rise counts, because a falling loss calls for no
    retraining. NaN values are skipped.

    Args:
        horizon: Values per window; set it to the labels of one cycle.
        cycles: Windows in the reference before the first test.
        max_cycles: Windows the reference keeps at most.
        allowance: CUSUM reference value k, in reference spreads: a window
            adds to S only the part of its z above k.
        threshold: CUSUM decision interval h, in reference spreads.

    >>> rng = np.random.default_rng(0)
    >>> stream = np.concatenate([rng.exponential(0.5, 8000), rng.exponential(1, 2000)])
    >>> detector = LossDriftDetector()
    >>> [i for i, x in enumerate(stream) if detector.update(x).drift_detected]
    [8999]
    """

    def __init__(
        self,
        horizon: int = 1000,
        cycles: int = 7,
        max_cycles: int = 28,
        allowance: float = 2.0,
        threshold: float = 4.0,
    ) -> None:
        _check_windows(horizon, cycles)
        if max_cycles < cycles:
            raise ValueError(
                f"max_cycles must be at least cycles ({cycles}), got {max_cycles}"
            )
        if not allowance >= 0.0 or not threshold > 0.0:
            raise ValueError(
                "allowance must be at least 0 and threshold above 0, got "
                f"{allowance} and {threshold}"
            )
        self.horizon = horizon
        self.cycles = cycles
        self.max_cycles = max_cycles
        self.allowance = allowance
        self.threshold = threshold
        self._reset()

    def _reset(self) -> None:
        self._means: deque[float] = deque()
        """Mean loss of each reference window, oldest first."""
        self._variances: deque[float] = deque()
        """Variance of the losses within each reference window."""
        self._sum = 0.0
        """The CUSUM S, in reference spreads."""
        self._count = 0
        self._total = 0.0
        self._squares = 0.0
        self._drift_detected = False

    @property
    def drift_detected(self) -> bool:
        """Whether the last update detected drift."""
        return self._drift_detected

    @property
    def cusum(self) -> float:
        """Sum S of the CUSUM after the latest window, in reference spreads."""
        return self._sum

    def update(self, x: float) -> LossDriftDetector:
        """Add one value and test for drift."""
        value = float(x)
        self._drift_detected = False
        if value != value:  # NaN
            return self
        self._count += 1
        self._total += value
        self._squares += value * value
        if self._count == self.horizon:
            self._drift_detected = self._close_window()
        return self

    def update_many(self, values: Iterable[float]) -> list[int]:
        """Add values in order, as `update` would one at a time; return the
        offset in `values` of each detection."""
        return [
            offset for offset, x in enumerate(values) if self.update(x)._drift_detected
        ]

    def _close_window(self) -> bool:
        mean = self._total / self._count
        variance = max(self._squares / self._count - mean * mean, 0.0)
        self._count = 0
        self._total = self._squares = 0.0
        if len(self._means) >= self.cycles:
            score = self._score(mean)
            self._sum = max(0.0, self._sum + score - self.allowance)
            if self._sum > self.threshold:
                self._means.clear()
                self._variances.clear()
                self._sum = 0.0
                return True
            if self._sum > 0.0:
                return False
        if len(self._means) == self.max_cycles:
            self._means.popleft()
            self._variances.popleft()
        self._means.append(mean)
        self._variances.append(variance)
        return False

    def _score(self, mean: float) -> float:
        """Return how many reference spreads `mean` is above the reference."""
        rise = mean - float(np.mean(self._means))
        between = float(np.var(self._means, ddof=1))
        within = float(np.mean(self._variances)) / self.horizon
        spread = math.sqrt(max(between, within))
        if spread > 0.0:
            return rise / spread
        # Every reference loss was the same value, so any rise is a change.
        return math.inf if rise > 0.0 else 0.0
