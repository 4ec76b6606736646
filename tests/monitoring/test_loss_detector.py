"""The streaming loss detector on per-row log losses of a simulated classifier.

The losses come from a model given the hour and the weekday but not the
day's weather: the late rate rises through each day, weekends are calmer, and
a day-level factor stands for the weather. That makes the loss cyclic within
a day and noisy from day to day, as on the flights data.
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pytest
from river.drift import ADWIN

from appliance.config import MonitoringConfig
from appliance.errors import StorageError
from appliance.monitoring import (
    DetectorSettings,
    LossDriftDetector,
    MonitoringService,
    StreamMonitor,
)
from appliance.monitoring._monitor import _STATE_FORMAT

DAY_ROWS = 900
"""Labels per simulated day: fewer than a window, as on the flights data
(897 a day on average in 2013), so windows start at other hours each day."""


def cyclic_losses(
    seed: int,
    days: int,
    weather: float = 0.0,
    flip_from: int | None = None,
    flip_share: float = 0.0,
) -> np.ndarray:
    """Return per-row log losses of `days` simulated days.

    Args:
        weather: Standard deviation of the day's log factor on the late rate.
        flip_from: Row from which a `flip_share` of labels is flipped.
    """
    rng = np.random.default_rng(seed)
    rows = days * DAY_ROWS
    day = np.arange(rows) // DAY_ROWS
    phase = np.arange(rows) % DAY_ROWS / DAY_ROWS
    weekend = np.where(day % 7 >= 5, 0.8, 1.0)
    predicted = (0.1 + 0.25 * phase) * weekend
    factor = np.exp(rng.normal(0.0, weather, days))[day] if weather else 1.0
    late = rng.random(rows) < np.clip(predicted * factor, 0.01, 0.99)
    if flip_from is not None:
        flipped = rng.random(rows) < flip_share
        flipped[:flip_from] = False
        late = late ^ flipped
    return -np.log(np.where(late, predicted, 1.0 - predicted))


def detections(detector, stream) -> list[int]:
    found = []
    for index, value in enumerate(stream):
        detector.update(float(value))  # River's ADWIN returns None here.
        if detector.drift_detected:
            found.append(index)
    return found


def test_loss_detector_cyclic_quiet() -> None:
    stream = cyclic_losses(0, days=200)

    ours = detections(LossDriftDetector(), stream)
    adwin = detections(ADWIN(delta=0.002), stream)

    assert ours == []
    # ADWIN, the loss detector before, detects the daily cycle as changes: 67
    # detections in 200 days.
    assert len(adwin) > 30


def test_loss_detector_daily_weather_rarely_alarms() -> None:
    # Days differ by weather, so each window's mean differs by more than its
    # own values explain. benchmarks/calibrate_loss_detector.py measured one
    # false detection per 18,250 windows of independent normal means, but
    # here the windows start at other hours each day, so neighbours are alike.
    windows = 0
    alarms = 0
    adwin_alarms = 0
    for seed in range(10):
        stream = cyclic_losses(seed, days=60, weather=0.3)
        windows += stream.size // 1000
        alarms += len(detections(LossDriftDetector(), stream))
        adwin_alarms += len(detections(ADWIN(delta=0.002), stream))

    assert alarms <= windows / 100
    assert adwin_alarms > 20 * max(alarms, 1)


@pytest.mark.parametrize(("share", "max_windows"), [(0.5, 1), (0.25, 1)])
def test_loss_detector_flipped_labels(share: float, max_windows: int) -> None:
    change = 20_000
    stream = cyclic_losses(1, days=40, flip_from=change, flip_share=share)

    found = detections(LossDriftDetector(), stream)

    # The first window wholly after the change ends at row 20,999.
    assert len(found) == 1
    assert change <= found[0] < change + 1000 * (max_windows + 1)


def test_loss_detector_flipped_labels_in_weather() -> None:
    change = 20_000
    stream = cyclic_losses(2, days=40, weather=0.3, flip_from=change, flip_share=0.5)

    found = detections(LossDriftDetector(), stream)

    assert found
    assert change <= found[0] < change + 3000


def test_loss_detector_ignores_falling_loss() -> None:
    stream = cyclic_losses(3, days=30)
    stream[15_000:] *= 0.5

    assert detections(LossDriftDetector(), stream) == []


def test_loss_detector_silent_while_reference_fills() -> None:
    stream = cyclic_losses(4, days=9)
    stream[3000:] += 1.0

    detector = LossDriftDetector()
    found = detections(detector, stream[:7000])

    assert found == []
    assert detector.cusum == 0.0


def test_loss_detector_constant_reference_then_rise() -> None:
    stream = np.full(10_000, 0.25)
    stream[8000:] = 0.3

    assert detections(LossDriftDetector(), stream) == [8999]


def test_loss_detector_skips_nan() -> None:
    stream = cyclic_losses(5, days=20, flip_from=12_000, flip_share=0.5)
    with_gaps = np.insert(stream, [10, 5000, 12_500], np.nan)

    assert detections(LossDriftDetector(), with_gaps) == [
        index + 3 for index in detections(LossDriftDetector(), stream)
    ]


def test_loss_detector_update_many_matches_update() -> None:
    stream = cyclic_losses(6, days=20, flip_from=12_000, flip_share=0.5)
    single = detections(LossDriftDetector(), stream)
    batched = LossDriftDetector()
    found = []
    for start in range(0, stream.size, 777):
        chunk = stream[start : start + 777]
        found += [start + offset for offset in batched.update_many(chunk)]

    assert single
    assert found == single


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"horizon": 10}, "horizon must be at least 30"),
        ({"cycles": 1}, "cycles must be at least 2"),
        ({"cycles": 7, "max_cycles": 5}, "max_cycles must be at least cycles"),
        ({"allowance": -1.0}, "allowance must be at least 0"),
        ({"threshold": 0.0}, "threshold above 0"),
    ],
)
def test_loss_detector_rejects_settings(arguments: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LossDriftDetector(**arguments)


def test_monitor_state_restores_loss_detector() -> None:
    # A constant output of 0.3 for the positive class, with the late rate
    # rising from 0.3 to 0.6 at label 12,000, raises the log loss.
    rng = np.random.default_rng(7)
    late_rate = np.where(np.arange(20_000) < 12_000, 0.3, 0.6)
    labels = (rng.random(late_rate.size) < late_rate).astype(int)
    outputs = [0.7, 0.3]
    whole = StreamMonitor("classification", [], [])
    whole_events = [
        event.index for label in labels for event in whole.observe_label(label, outputs)
    ]
    first = StreamMonitor("classification", [], [])
    events = [
        event.index
        for label in labels[:9500]
        for event in first.observe_label(label, outputs)
    ]
    restored = StreamMonitor.from_bytes(first.to_bytes())
    events += [
        event.index
        for label in labels[9500:]
        for event in restored.observe_label(label, outputs)
    ]

    assert whole_events == [12_999]
    assert events == whole_events
    assert restored.labels == whole.labels == labels.size
    assert restored._loss.cusum == whole._loss.cusum


def test_monitor_loss_settings() -> None:
    settings = DetectorSettings(
        horizon=200, cycles=3, loss_cycles=9, loss_allowance=0.5, loss_threshold=6.0
    )

    detector = StreamMonitor("classification", [], [], settings)._loss

    assert detector.horizon == 200
    assert detector.cycles == 3
    assert detector.max_cycles == 9
    assert detector.allowance == 0.5
    assert detector.threshold == 6.0


def test_state_with_adwin_loss_detector_rejected() -> None:
    # Formats 1 and 2 held ADWIN on the loss; their states start fresh.
    state = {"loss": ADWIN(delta=0.002), "labels": 300}
    data = pickle.dumps((_STATE_FORMAT - 1, state), protocol=pickle.HIGHEST_PROTOCOL)

    with pytest.raises(StorageError, match=f"expected {_STATE_FORMAT}"):
        StreamMonitor.from_bytes(data)


def test_cyclic_losses_mean() -> None:
    # The simulated model is calibrated, so its mean loss is the entropy of
    # its predictions, about 0.5 like the flights model's.
    stream = cyclic_losses(8, days=50)

    assert 0.4 < float(np.mean(stream)) < 0.6
    assert math.isfinite(float(np.max(stream)))


def test_monitoring_config_loss_settings(tmp_path: Path) -> None:
    config = MonitoringConfig(
        stream_loss_reference_cycles=14,
        stream_loss_allowance=1.5,
        stream_loss_threshold=5.0,
    )

    settings = MonitoringService(tmp_path, config).settings

    assert settings.loss_cycles == 14
    assert settings.loss_allowance == 1.5
    assert settings.loss_threshold == 5.0
    with pytest.raises(ValueError, match="stream_loss_reference_cycles must be"):
        MonitoringConfig(stream_loss_reference_cycles=5)
    with pytest.raises(ValueError, match="stream_loss_allowance must be at least 0"):
        MonitoringConfig(stream_loss_allowance=-0.5)
    with pytest.raises(ValueError, match="got 2.0 and 0.0"):
        MonitoringConfig(stream_loss_threshold=0.0)


def test_adwin_loss_test_restores_and_matches_river() -> None:
    # ADWIN on each label's loss finds the same step as River's own ADWIN,
    # and its state survives a save and a restore in the middle.
    rng = np.random.default_rng(7)
    late_rate = np.where(np.arange(6_000) < 3_000, 0.3, 0.6)
    labels = (rng.random(late_rate.size) < late_rate).astype(int)
    outputs = [0.7, 0.3]
    settings = DetectorSettings(loss_test="adwin", delta=0.002)
    first = StreamMonitor("classification", [], [], settings)
    events = [
        event.index
        for label in labels[:2_000]
        for event in first.observe_label(label, outputs)
    ]
    restored = StreamMonitor.from_bytes(first.to_bytes())
    events += [
        event.index
        for label in labels[2_000:]
        for event in restored.observe_label(label, outputs)
    ]
    losses = -np.log(np.where(labels == 1, 0.3, 0.7))

    expected = detections(ADWIN(delta=0.002), losses)

    assert expected
    assert 3_000 <= expected[0] < 3_500
    assert events == expected


def test_monitoring_config_loss_test(tmp_path: Path) -> None:
    config = MonitoringConfig(stream_loss_test="adwin", stream_delta=0.01)

    settings = MonitoringService(tmp_path, config).settings

    assert settings.loss_test == "adwin"
    assert settings.delta == 0.01
    with pytest.raises(ValueError, match="stream_loss_test must be 'cusum' or"):
        MonitoringConfig(stream_loss_test="page-hinkley")
    with pytest.raises(ValueError, match="stream_delta must be within"):
        MonitoringConfig(stream_delta=1.5)
