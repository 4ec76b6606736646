"""Prometheus metrics of the daemon, exposed at ``GET /metrics``.

Every daemon has its own `CollectorRegistry`, so other modules add their
metrics to ``state.metrics.registry`` and they appear in the same exposition.
"""

from __future__ import annotations

import resource
import sys
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

CONTENT_TYPE = "text/plain; version=0.0.4"
"""Media type of the text exposition format. Litestar appends ``; charset=utf-8``
to every ``text/`` media type, so the charset is not part of this value."""

_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    10.0,
)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 10_000, 100_000)


class ServingMetrics:
    """The metrics of one daemon and the registry that exposes them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.requests = Counter(
            "appliance_requests",
            "Prediction requests by model, version and HTTP status.",
            ["model", "version", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "appliance_request_duration_seconds",
            "Time from receiving a prediction request to its response.",
            ["model", "version"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.rows = Counter(
            "appliance_rows_predicted",
            "Rows predicted by model and version.",
            ["model", "version"],
            registry=registry,
        )
        self.batch_rows = Histogram(
            "appliance_session_batch_rows",
            "Rows per onnxruntime session run, after micro-batching.",
            ["model"],
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.model_load = Gauge(
            "appliance_model_load_seconds",
            "Time taken to load the served version of each model.",
            ["model", "version"],
            registry=registry,
        )
        self._log = _LogCollector()
        registry.register(self._log)
        self._monitoring = _MonitoringCollector()
        registry.register(self._monitoring)
        self.max_rss = Gauge(
            "appliance_process_max_resident_memory_bytes",
            "Peak resident memory of the daemon process.",
            registry=registry,
        )
        self.max_rss.set_function(_max_rss_bytes)
        ProcessCollector(registry=registry)
        self._request_children: dict[tuple[str, str, int], Any] = {}
        self._latency_children: dict[tuple[str, str], Any] = {}
        self._row_children: dict[tuple[str, str], Any] = {}

    def watch_log(
        self,
        queued: Callable[[], float],
        spilled: Callable[[], float],
        written: Callable[[], float],
    ) -> None:
        """Read the prediction log's counters at every scrape."""
        self._log.sources = (queued, spilled, written)

    def watch_monitoring(
        self,
        queued: Callable[[], float],
        dropped: Callable[[], float],
        observed: Callable[[], float],
        cpu_seconds: Callable[[], float],
    ) -> None:
        """Read the streaming monitors' counters at every scrape."""
        self._monitoring.sources = (queued, dropped, observed, cpu_seconds)

    def observe(
        self, model: str, version: int, status: int, seconds: float, rows: int
    ) -> None:
        """Record one prediction request."""
        key = (model, str(version), status)
        child = self._request_children.get(key)
        if child is None:
            child = self.requests.labels(model, str(version), str(status))
            self._request_children[key] = child
        child.inc()
        if status != 200:
            return
        pair = key[:2]
        latency = self._latency_children.get(pair)
        if latency is None:
            latency = self._latency_children[pair] = self.latency.labels(*pair)
            self._row_children[pair] = self.rows.labels(*pair)
        latency.observe(seconds)
        self._row_children[pair].inc(rows)

    def render(self) -> bytes:
        """Return the exposition in the Prometheus text format."""
        return generate_latest(self.registry)


class _LogCollector:
    """Collector that reads the prediction log's counters when scraped."""

    def __init__(self) -> None:
        self.sources: tuple[Callable[[], float], ...] | None = None

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        if self.sources is None:
            return
        queued, spilled, written = self.sources
        yield GaugeMetricFamily(
            "appliance_prediction_log_queue_rows",
            "Logged predictions waiting in memory for the writer.",
            value=queued(),
        )
        yield CounterMetricFamily(
            "appliance_prediction_log_spilled_rows",
            "Logged predictions written to a spill file because the queue was full.",
            value=spilled(),
        )
        yield CounterMetricFamily(
            "appliance_prediction_log_written_rows",
            "Logged predictions inserted into DuckDB since the daemon started.",
            value=written(),
        )


class _MonitoringCollector:
    """Collector that reads the streaming monitors' counters when scraped."""

    def __init__(self) -> None:
        self.sources: tuple[Callable[[], float], ...] | None = None

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        if self.sources is None:
            return
        queued, dropped, observed, cpu_seconds = self.sources
        yield GaugeMetricFamily(
            "appliance_monitoring_queue_requests",
            "Prediction requests waiting for the streaming detectors.",
            value=queued(),
        )
        yield CounterMetricFamily(
            "appliance_monitoring_dropped_requests",
            "Prediction requests not fed to the streaming detectors because "
            "their queue was full.",
            value=dropped(),
        )
        yield CounterMetricFamily(
            "appliance_monitoring_observed_rows",
            "Predicted rows fed to the streaming detectors since the daemon started.",
            value=observed(),
        )
        yield CounterMetricFamily(
            "appliance_monitoring_cpu_seconds",
            "CPU time (user and system) of the streaming monitors' worker thread.",
            value=cpu_seconds(),
        )


def _max_rss_bytes() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in kilobytes on Linux and in bytes on macOS.
    return float(peak if sys.platform == "darwin" else peak * 1024)
