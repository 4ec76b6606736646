"""Request metrics of the daemon as Prometheus scrapes them."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from appliance.serving._metrics import ServingMetrics

MODEL = (("model", "m"), ("version", "3"))


def scrape(metrics: ServingMetrics) -> dict[tuple[str, tuple], float]:
    text = metrics.render().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def bucket(le: str) -> tuple[str, tuple]:
    labels = tuple(sorted((("le", le), *MODEL)))
    return ("appliance_request_duration_seconds_bucket", labels)


def test_latency_buckets_are_cumulative() -> None:
    metrics = ServingMetrics()
    for seconds in (0.0001, 0.0005, 0.0007, 0.003, 99.0):
        metrics.observe("m", 3, 200, seconds, 1)

    samples = scrape(metrics)

    # A value equal to a bound counts in that bound's bucket.
    assert samples[bucket("0.0005")] == 2
    assert samples[bucket("0.001")] == 3
    assert samples[bucket("0.005")] == 4
    assert samples[bucket("10.0")] == 4
    assert samples[bucket("+Inf")] == 5
    count = samples[("appliance_request_duration_seconds_count", MODEL)]
    assert count == 5
    total = samples[("appliance_request_duration_seconds_sum", MODEL)]
    assert total == pytest.approx(99.0043)


def test_requests_counted_by_status() -> None:
    metrics = ServingMetrics()
    for status in (200, 200, 422, 500):
        metrics.observe("m", 3, status, 0.001, 4)

    samples = scrape(metrics)

    for status, expected in (("200", 2), ("422", 1), ("500", 1)):
        labels = tuple(sorted((("status", status), *MODEL)))
        assert samples[("appliance_requests_total", labels)] == expected
    # Only successful requests count rows and latency.
    assert samples[("appliance_rows_predicted_total", MODEL)] == 8
    assert samples[("appliance_request_duration_seconds_count", MODEL)] == 2


def test_batch_rows_per_model() -> None:
    metrics = ServingMetrics()
    for rows in (1, 1, 9):
        metrics.observe_batch("m", rows)

    samples = scrape(metrics)

    labels = (("model", "m"),)
    assert samples[("appliance_session_batch_rows_count", labels)] == 3
    assert samples[("appliance_session_batch_rows_sum", labels)] == 11
