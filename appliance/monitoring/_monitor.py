"""The streaming monitor of one model: every detector and the live metrics.

`StreamMonitor` is what the daemon feeds as predictions and labels arrive. It
keeps no clock and touches no storage: its state round-trips through
`to_bytes` and `from_bytes`, so a restarted daemon continues where it stopped.
"""

from __future__ import annotations

import io
import math
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from appliance.errors import StorageError
from appliance.monitoring._performance import LiveMetrics, row_loss
from appliance.monitoring._streaming import (
    CategoryDriftDetector,
    LossDriftDetector,
    MeanDriftDetector,
    NumericDriftDetector,
)

_STATE_FORMAT = 3
"""Version of the serialized state; a mismatch starts fresh detectors. Format
3 made a CUSUM of window means the default loss detector, in place of the
ADWIN of formats 1 and 2."""

_RETIRED_CLASSES = frozenset({("river.drift.adwin", "ADWIN")})
"""Classes of the ADWIN loss detector in states of format 1."""

DetectorKind = Literal["feature", "prediction", "loss"]


@dataclass(frozen=True)
class DriftEvent:
    """One detection by one streaming detector."""

    kind: DetectorKind
    subject: str
    """Feature name, or ``prediction`` or ``loss``."""
    cause: str
    """``distribution`` or ``constant`` (numbers and predictions),
    ``frequency`` (categories) or ``mean`` (loss)."""
    index: int
    """Zero-based position of the value in the detector's stream."""


@dataclass(frozen=True)
class DetectorSettings:
    """Parameters of the streaming detectors of one model."""

    horizon: int = 1000
    """Values per tumbling window of every streaming detector: one cycle of
    the traffic, such as a day of requests or of labels."""
    cycles: int = 7
    """Windows in their reference; no test runs before it is full."""
    p_value: float = 0.001
    """p-value below which a windowed test may count as drift."""
    ks_floor: float = 0.1
    """Smallest KS statistic that counts as drift in a window."""
    tvd_floor: float = 0.1
    """Smallest total variation distance of category frequencies that counts."""
    loss_cycles: int = 28
    """Windows of mean loss that the loss detector's reference keeps at most;
    it tests from `cycles` windows on."""
    loss_allowance: float = 2.0
    """CUSUM allowance of the loss detector, in spreads of the reference
    windows' mean loss."""
    loss_threshold: float = 4.0
    """CUSUM threshold of the loss detector, in the same spreads."""
    loss_test: Literal["cusum", "adwin"] = "cusum"
    """``cusum``: `LossDriftDetector` on window means, for traffic with a daily
    cycle. ``adwin``: River's ADWIN on each label's loss, for traffic without
    one."""
    delta: float = 0.002
    """ADWIN confidence of the loss detector with ``loss_test = "adwin"``."""
    metrics_window: int = 5000
    """Labelled predictions in the live metrics window."""


class StreamMonitor:
    """Detectors on a model's inputs, predictions and losses, plus live metrics.

    Args:
        task: ``classification`` or ``regression``.
        numeric: Numeric input features.
        categorical: Categorical input features.
        settings: Detector parameters; the defaults when None.
    """

    def __init__(
        self,
        task: str,
        numeric: Sequence[str],
        categorical: Sequence[str],
        settings: DetectorSettings | None = None,
    ) -> None:
        self.task = task
        self.numeric = list(numeric)
        self.categorical = list(categorical)
        self.settings = settings or DetectorSettings()
        self._reset()

    def _reset(self) -> None:
        s = self.settings
        self._features: dict[str, NumericDriftDetector | CategoryDriftDetector] = {
            name: NumericDriftDetector(s.horizon, s.cycles, s.p_value, s.ks_floor)
            for name in self.numeric
        }
        for name in self.categorical:
            self._features[name] = CategoryDriftDetector(
                s.horizon, s.cycles, s.p_value, s.tvd_floor
            )
        self._numeric_detectors = [
            (name, d)
            for name, d in self._features.items()
            if isinstance(d, NumericDriftDetector)
        ]
        self._category_detectors = [
            (name, d)
            for name, d in self._features.items()
            if isinstance(d, CategoryDriftDetector)
        ]
        self._prediction = NumericDriftDetector(
            s.horizon, s.cycles, s.p_value, s.ks_floor
        )
        self._loss: LossDriftDetector | MeanDriftDetector
        if s.loss_test == "adwin":
            self._loss = MeanDriftDetector(s.delta)
        else:
            self._loss = LossDriftDetector(
                s.horizon, s.cycles, s.loss_cycles, s.loss_allowance, s.loss_threshold
            )
        self._live = LiveMetrics(self.task, s.metrics_window)
        self._rows = 0
        self._labels = 0

    @property
    def rows(self) -> int:
        """Predicted rows observed."""
        return self._rows

    @property
    def labels(self) -> int:
        """Labels observed."""
        return self._labels

    @property
    def live(self) -> LiveMetrics:
        """The live metrics window."""
        return self._live

    def observe_prediction(
        self, row: Mapping[str, Any], output: Sequence[float] | float
    ) -> list[DriftEvent]:
        """Feed one predicted row and its output; return the detections.

        Args:
            row: Input values by feature name; absent features count as missing.
            output: Class probabilities (the last class is scored as positive
                for prediction drift) or the predicted value.
        """
        events = []
        index = self._rows
        get = row.get
        for name, detector in self._numeric_detectors:
            value = get(name)
            detector.update(math.nan if value is None else value)
            if detector.drift_detected:
                events.append(DriftEvent("feature", name, detector.cause, index))
        for name, detector in self._category_detectors:
            if detector.update(get(name)).drift_detected:
                events.append(DriftEvent("feature", name, "frequency", index))
        score = float(output) if isinstance(output, int | float) else float(output[-1])
        prediction = self._prediction.update(score)
        if prediction.drift_detected:
            events.append(
                DriftEvent("prediction", "prediction", prediction.cause, index)
            )
        self._rows += 1
        return events

    def observe_predictions(
        self,
        rows: Sequence[Mapping[str, Any]],
        outputs: Sequence[Sequence[float] | float],
    ) -> list[DriftEvent]:
        """Feed predicted rows and their outputs in order; return the detections.

        The same detections, in the same order, as `observe_prediction` row by
        row. Each detector takes its column at once, which took about half the
        time per flights row in a one-off timing.
        """
        columns = {name: [row.get(name) for row in rows] for name in self._features}
        scores = [
            float(out) if isinstance(out, int | float) else float(out[-1])
            for out in outputs
        ]
        return self.observe_columns(columns, scores)

    def observe_columns(
        self, columns: Mapping[str, Sequence[Any]], scores: Sequence[float]
    ) -> list[DriftEvent]:
        """Feed predicted rows given column by column; return the detections.

        The same detections as `observe_predictions` on the same rows.

        Args:
            columns: Values of each input feature, one per row; a feature
                that is absent counts as missing in every row.
            scores: The score of each row: the probability of the last class,
                or the predicted value.
        """
        base = self._rows
        missing = [None] * len(scores)
        found: list[tuple[int, int, DriftEvent]] = []
        for rank, (name, detector) in enumerate(self._numeric_detectors):
            for offset, cause in detector.update_many(columns.get(name, missing)):
                event = DriftEvent("feature", name, cause, base + offset)
                found.append((offset, rank, event))
        rank = len(self._numeric_detectors)
        for name, detector in self._category_detectors:
            for offset in detector.update_many(columns.get(name, missing)):
                event = DriftEvent("feature", name, "frequency", base + offset)
                found.append((offset, rank, event))
            rank += 1
        for offset, cause in self._prediction.update_many(scores):
            event = DriftEvent("prediction", "prediction", cause, base + offset)
            found.append((offset, rank, event))
        self._rows += len(scores)
        found.sort(key=lambda item: item[:2])
        return [event for _, _, event in found]

    def observe_label(
        self, label: float, output: Sequence[float] | float
    ) -> list[DriftEvent]:
        """Feed one label with the output the model gave for its row.

        Args:
            label: Class index (classification) or the true value.
            output: What `observe_prediction` received for the same row.
        """
        index = self._labels
        self._live.update(label, output)
        self._labels += 1
        if self._loss.update(row_loss(self.task, label, output)).drift_detected:
            return [DriftEvent("loss", "loss", "mean", index)]
        return []

    def to_bytes(self) -> bytes:
        """Serialize the whole state, detectors included."""
        return pickle.dumps((_STATE_FORMAT, self), protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def from_bytes(cls, data: bytes) -> StreamMonitor:
        """Restore a monitor saved by `to_bytes`.

        Note that the bytes are unpickled, so they must come from the
        appliance's own store, never from a request.

        Raises:
            StorageError: The bytes are not a monitor of this format.
        """
        try:
            version, monitor = _StateUnpickler(io.BytesIO(data)).load()
        except Exception as exc:
            raise StorageError(
                f"stored detector state cannot be read ({type(exc).__name__}: "
                f"{exc}); delete it to start fresh detectors"
            ) from None
        if version != _STATE_FORMAT or not isinstance(monitor, cls):
            raise StorageError(
                f"stored detector state has format {version!r}, expected "
                f"{_STATE_FORMAT}; delete it to start fresh detectors"
            )
        return monitor


class _StateUnpickler(pickle.Unpickler):
    """Unpickler that reads River's ADWIN of format 1 states as `_Retired`, so
    that `from_bytes` reports the format mismatch.

    Importing ``river.drift`` would load scikit-learn into the daemon.
    """

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _RETIRED_CLASSES:
            return _Retired
        return super().find_class(module, name)


class _Retired:
    """Placeholder for an object of a retired class; it drops its state."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass
