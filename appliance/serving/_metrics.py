"""Prometheus metrics of the daemon, exposed at ``GET /metrics``.

Every daemon has its own `CollectorRegistry`, so other modules add their
metrics to ``state.metrics.registry`` and they appear in the same exposition.
"""

from __future__ import annotations

import bisect
import itertools
import math
import resource
import sys
import time
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
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.utils import floatToGoString

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

NO_VERSION = ""
"""Version label of a request that no served version predicted, such as a
request for a version that does not exist. The requested version is not the
label value, because a client could start a series per number it sends."""


class ServingMetrics:
    """The metrics of one daemon and the registry that exposes them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self._served = _RequestMetrics()
        registry.register(self._served)
        self.requests = _Family(self._served.requests)
        """Prediction requests by model, version and status; `collect` reads them."""
        self.latency = _Family(self._served.latency)
        """Request latency histogram by model and version; `collect` reads it."""
        self.rows = _Family(self._served.rows)
        """Predicted rows by model and version; `collect` reads them."""
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
        self._log = _SourcesCollector(_LOG_METRICS)
        registry.register(self._log)
        self._monitoring = _SourcesCollector(_MONITORING_METRICS)
        registry.register(self._monitoring)
        self._ingest = _IngestCollector()
        registry.register(self._ingest)
        self._models = _ModelsCollector()
        registry.register(self._models)
        self._views = _ViewsCollector()
        registry.register(self._views)
        self.open_alerts_read_at: float | None = None
        """Monotonic clock reading of the last `set_open_alerts`."""
        self.feedback_labels = Counter(
            "appliance_feedback_labels",
            "Labels sent to the feedback route by model and outcome: stored, "
            "repeated (stored before, not counted again) or rejected (in a "
            "request answered with an error).",
            ["model", "outcome"],
            registry=registry,
        )
        self.feedback_requests = Counter(
            "appliance_feedback_requests",
            "Feedback requests by served model and HTTP status.",
            ["model", "status"],
            registry=registry,
        )
        self.max_rss = Gauge(
            "appliance_process_max_resident_memory_bytes",
            "Peak resident memory of the daemon process.",
            registry=registry,
        )
        self.max_rss.set_function(_max_rss_bytes)
        ProcessCollector(registry=registry)
        self._batch_children: dict[str, Any] = {}

    def watch_log(
        self,
        queued: Callable[[], float],
        spilled: Callable[[], float],
        written: Callable[[], float],
        journal_failures: Callable[[], float] = lambda: 0.0,
    ) -> None:
        """Read the prediction log's counters at every scrape."""
        self._log.sources = (queued, spilled, written, journal_failures)

    def watch_monitoring(
        self,
        queued: Callable[[], float],
        dropped: Callable[[], float],
        observed: Callable[[], float],
        cpu_seconds: Callable[[], float],
    ) -> None:
        """Read the streaming monitors' counters at every scrape."""
        self._monitoring.sources = (queued, dropped, observed, cpu_seconds)

    def watch_ingest(
        self,
        counts: Callable[[], dict[str, tuple[int, ...]]],
        waiting: Callable[[], dict[str, int]] = dict,
    ) -> None:
        """Read the ingest buffer's counts at every scrape: by dataset, rows
        accepted, flushed and quarantined, segments rejected, flushes failed,
        and the failures in a row of the current flush; and from `waiting`,
        the rejected segments that wait for a retry."""
        self._ingest.counts = counts
        self._ingest.waiting = waiting

    def watch_models(
        self,
        served: Callable[[], dict[str, int]],
        champions: Callable[[], dict[str, int]],
    ) -> None:
        """Read the served and the champion version of each model at every scrape."""
        self._models.served = served
        self._models.champions = champions

    def watch_feature_views(
        self,
        failing: Callable[[], dict[str, float]],
        failed_loads: Callable[[], dict[str, int]],
    ) -> None:
        """Read at every scrape, by feature view, whether its last load failed
        (1 or 0) and its count of failed loads since the start."""
        self._views.failing = failing
        self._views.failed_loads = failed_loads

    def set_open_alerts(self, counts: dict[str, int]) -> None:
        """Set the open monitoring alerts by kind, as the next scrape shows them."""
        self._models.open_alerts = dict(counts)
        self.open_alerts_read_at = time.monotonic()

    def open_alerts_age(self) -> float:
        """Return the seconds since `set_open_alerts`, or infinity before it ran."""
        if self.open_alerts_read_at is None:
            return math.inf
        return time.monotonic() - self.open_alerts_read_at

    def observe(
        self, model: str, version: int | str, status: int, seconds: float, rows: int
    ) -> None:
        """Record one prediction request; call it on the event loop only.

        `model` is "" for a model that is not served, and `version` is
        `NO_VERSION` when no served version predicted.
        """
        self._served.observe(model, version, status, seconds, rows)

    def observe_batch(self, model: str, rows: int) -> None:
        """Record the rows of one session run of `model`."""
        child = self._batch_children.get(model)
        if child is None:
            child = self._batch_children[model] = self.batch_rows.labels(model)
        child.observe(rows)

    def render(self) -> bytes:
        """Return the exposition in the Prometheus text format."""
        return generate_latest(self.registry)


class _RequestMetrics:
    """Request counts, latency histograms and predicted rows in plain numbers.

    The prometheus_client metrics took a lock and a label lookup per update,
    about 9 us of every request on the benchmark machine. Requests are
    recorded on the event loop only, so plain dict and list updates need no
    lock. A scrape copies them, which CPython does atomically under the GIL,
    and builds the metric families from the copy.
    """

    def __init__(self) -> None:
        self._counts: dict[tuple[str, int | str, int], int] = {}
        self._latency: dict[tuple[str, int], list[float]] = {}
        """Per bucket of `_LATENCY_BUCKETS` and +Inf, the requests whose
        latency falls in it (not cumulative), then the sum of latencies."""
        self._rows: dict[tuple[str, int], int] = {}

    def observe(
        self, model: str, version: int | str, status: int, seconds: float, rows: int
    ) -> None:
        key = (model, version, status)
        self._counts[key] = self._counts.get(key, 0) + 1
        if status != 200:
            return
        pair = (model, version)
        histogram = self._latency.get(pair)
        if histogram is None:
            histogram = self._latency[pair] = [0.0] * (len(_LATENCY_BUCKETS) + 2)
        # A bucket counts the values up to and including its bound.
        histogram[bisect.bisect_left(_LATENCY_BUCKETS, seconds)] += 1
        histogram[-1] += seconds
        self._rows[pair] = self._rows.get(pair, 0) + rows

    def requests(self) -> Iterator[Any]:
        family = CounterMetricFamily(
            "appliance_requests",
            "Prediction requests by model, version and HTTP status.",
            labels=["model", "version", "status"],
        )
        for (model, version, status), count in list(self._counts.items()):
            family.add_metric([model, str(version), str(status)], count)
        yield family

    def latency(self) -> Iterator[Any]:
        family = HistogramMetricFamily(
            "appliance_request_duration_seconds",
            "Time from receiving a prediction request to its response.",
            labels=["model", "version"],
        )
        bounds = [floatToGoString(b) for b in (*_LATENCY_BUCKETS, math.inf)]
        for (model, version), histogram in list(self._latency.items()):
            counts = list(histogram)
            cumulative = list(itertools.accumulate(counts[:-1]))
            family.add_metric(
                [model, str(version)], list(zip(bounds, cumulative)), counts[-1]
            )
        yield family

    def rows(self) -> Iterator[Any]:
        family = CounterMetricFamily(
            "appliance_rows_predicted",
            "Rows predicted by model and version.",
            labels=["model", "version"],
        )
        for (model, version), count in list(self._rows.items()):
            family.add_metric([model, str(version)], count)
        yield family

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        yield from self.requests()
        yield from self.latency()
        yield from self.rows()


class _Family:
    """One metric family of `_RequestMetrics`, read like a prometheus metric."""

    def __init__(self, collect: Callable[[], Iterator[Any]]) -> None:
        self.collect = collect


_LOG_METRICS = (
    (
        GaugeMetricFamily,
        "appliance_prediction_log_queue_rows",
        "Logged predictions waiting in memory for the writer.",
    ),
    (
        CounterMetricFamily,
        "appliance_prediction_log_spilled_rows",
        "Logged predictions written to a spill file because the queue was full.",
    ),
    (
        CounterMetricFamily,
        "appliance_prediction_log_written_rows",
        "Logged predictions inserted into DuckDB since the daemon started.",
    ),
    (
        CounterMetricFamily,
        "appliance_prediction_journal_failed_writes",
        "Requests whose log entry could not be written to the journal before "
        "the response; a crash before the writer stores them would lose them.",
    ),
)
"""Metrics of `ServingMetrics.watch_log`, in the order of its arguments."""

_MONITORING_METRICS = (
    (
        GaugeMetricFamily,
        "appliance_monitoring_queue_requests",
        "Prediction requests waiting for the streaming detectors.",
    ),
    (
        CounterMetricFamily,
        "appliance_monitoring_dropped_requests",
        "Prediction requests not fed to the streaming detectors because "
        "their queue was full.",
    ),
    (
        CounterMetricFamily,
        "appliance_monitoring_observed_rows",
        "Predicted rows fed to the streaming detectors since the daemon started.",
    ),
    (
        CounterMetricFamily,
        "appliance_monitoring_cpu_seconds",
        "CPU time (user and system) of the streaming monitors' worker thread.",
    ),
)
"""Metrics of `ServingMetrics.watch_monitoring`, in the order of its arguments."""


class _SourcesCollector:
    """Collector that reads one value per metric from its sources when scraped.

    Args:
        metrics: Family class, name and help text of each metric.
    """

    def __init__(self, metrics: tuple[tuple[Any, str, str], ...]) -> None:
        self.metrics = metrics
        self.sources: tuple[Callable[[], float], ...] | None = None

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        if self.sources is None:
            return
        for (family, name, text), read in zip(self.metrics, self.sources, strict=True):
            yield family(name, text, value=read())


_INGEST_METRICS = (
    (
        "appliance_ingest_accepted_rows",
        "Rows of POST /v1/datasets/NAME/rows written to the ingest buffer.",
    ),
    (
        "appliance_ingest_flushed_rows",
        "Buffered rows that flushes wrote to new dataset versions.",
    ),
    (
        "appliance_ingest_quarantined_rows",
        "Buffered rows that flushes quarantined because they break the contract "
        "or a feature view cannot read them.",
    ),
    (
        "appliance_ingest_rejected_segments",
        "Buffer segments set aside in rejected/ because their rows failed a flush.",
    ),
    (
        "appliance_ingest_failed_flushes",
        "Buffer flushes that failed and were retried.",
    ),
)
"""Counters of `ServingMetrics.watch_ingest`, in the order of its counts."""
_INGEST_FAILING = (
    "appliance_ingest_flush_failures_in_a_row",
    "Failed attempts of the buffer flush that is being retried; 0 after a flush "
    "that succeeds.",
)
"""Gauge of `ServingMetrics.watch_ingest`, its count after the counters'."""
_INGEST_WAITING = (
    "appliance_ingest_rejected_segments_waiting",
    "Buffer segments in rejected/ now, those of earlier runs included; a "
    "segment leaves once a retry ingests it.",
)
"""Gauge of `ServingMetrics.watch_ingest`, read from its `waiting` callable."""


class _IngestCollector:
    """Collector of the ingest buffer's counts by dataset, read when scraped."""

    def __init__(self) -> None:
        self.counts: Callable[[], dict[str, tuple[int, ...]]] | None = None
        self.waiting: Callable[[], dict[str, int]] = dict

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        counts = self.counts() if self.counts is not None else {}
        for index, (name, text) in enumerate(_INGEST_METRICS):
            family = CounterMetricFamily(name, text, labels=["dataset"])
            for dataset, values in sorted(counts.items()):
                family.add_metric([dataset], values[index])
            yield family
        gauge = GaugeMetricFamily(*_INGEST_FAILING, labels=["dataset"])
        for dataset, values in sorted(counts.items()):
            gauge.add_metric([dataset], values[len(_INGEST_METRICS)])
        yield gauge
        yield _gauge(*_INGEST_WAITING, "dataset", self.waiting())


class _ModelsCollector:
    """Collector of the served and champion versions and the open alerts."""

    def __init__(self) -> None:
        self.served: Callable[[], dict[str, int]] = dict
        self.champions: Callable[[], dict[str, int]] = dict
        self.open_alerts: dict[str, int] = {}

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        served, champions = self.served(), self.champions()
        yield _gauge(
            "appliance_model_served_version",
            "Version of each model that the daemon serves.",
            "model",
            served,
        )
        yield _gauge(
            "appliance_model_champion_version",
            "Champion version of each model, served unless it failed to load.",
            "model",
            champions,
        )
        unserved = {
            model: float(served.get(model) != version)
            for model, version in champions.items()
        }
        yield _gauge(
            "appliance_model_champion_unserved",
            "1 while a model's champion failed to load and another version, or "
            "none, serves in its place; else 0.",
            "model",
            unserved,
        )
        yield _gauge(
            "appliance_alerts_open",
            "Open monitoring alerts by kind, as last read from the monitoring store.",
            "kind",
            self.open_alerts,
        )


class _ViewsCollector:
    """Collector of the feature views' failed loads, read when scraped."""

    def __init__(self) -> None:
        self.failing: Callable[[], dict[str, float]] = dict
        self.failed_loads: Callable[[], dict[str, int]] = dict

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        yield _gauge(
            "appliance_feature_view_failing",
            "1 while the last load of a feature view failed on its rows, so it "
            "serves the rows of an earlier load or none; else 0.",
            "view",
            self.failing(),
        )
        family = CounterMetricFamily(
            "appliance_feature_view_load_failures",
            "Loads of a feature view that failed on its rows since the start.",
            labels=["view"],
        )
        for view, count in sorted(self.failed_loads().items()):
            family.add_metric([view], count)
        yield family


def _gauge(
    name: str, text: str, label: str, values: dict[str, int] | dict[str, float]
) -> GaugeMetricFamily:
    """Return a gauge family with one sample per key of `values`, sorted."""
    family = GaugeMetricFamily(name, text, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


def _max_rss_bytes() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in kilobytes on Linux and in bytes on macOS.
    return float(peak if sys.platform == "darwin" else peak * 1024)
