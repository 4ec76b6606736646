"""Request windows of one model version, read from the daemon's counters."""

from __future__ import annotations

from appliance.serving._metrics import ServingMetrics
from appliance.serving._watch import VersionSample, sample_version, window_stats

START = VersionSample(0.0, 0.0, 0.0, 0.0, ())


def test_window_stats_split_errors() -> None:
    metrics = ServingMetrics()
    for status in [200] * 7 + [422, 400, 500]:
        metrics.observe("m", 2, status, 0.004, 1)
    metrics.observe("m", 1, 500, 0.0, 0)
    metrics.observe("other", 2, 503, 0.0, 0)

    stats = window_stats(START, sample_version(metrics, "m", 2))

    assert stats.requests == 10
    assert stats.client_errors == 2
    assert stats.server_errors == 1
    assert stats.successes == 7
    assert 2.0 < stats.latency_p99_ms <= 5.0


def test_window_stats_empty_latency() -> None:
    metrics = ServingMetrics()
    metrics.observe("m", 2, 500, 0.0, 0)

    stats = window_stats(START, sample_version(metrics, "m", 2))

    assert stats.server_errors == 1
    assert stats.latency_p99_ms is None
