"""Recent traffic of the daemon: request rate, error rate and latency quantiles.

The Prometheus counters only grow, so the rate over the last minute is the
difference between the newest sample of the counters and one taken about a
minute earlier. `TrafficWindow` keeps those samples; `histogram_quantile`
estimates a latency quantile from the difference of the cumulative buckets, as
PromQL's function of the same name does.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from appliance.serving._metrics import ServingMetrics

Buckets = tuple[tuple[float, float], ...]
"""Cumulative histogram buckets as ``(upper bound, count)``, by bound."""


@dataclass(frozen=True)
class TrafficSample:
    """The prediction counters of the daemon at one moment."""

    at: float
    """Monotonic clock reading, in seconds."""
    requests: float
    """Prediction requests completed since the start, every status."""
    errors: float
    """Prediction requests completed with a status of 400 or above."""
    buckets: Buckets
    """Latency of the successful requests, summed over every model."""


@dataclass(frozen=True)
class TrafficStats:
    """Traffic between two samples."""

    seconds: float
    """Length of the window the figures cover."""
    requests: int
    requests_per_second: float
    error_rate: float | None
    """Share of requests completed with an error status, or None without requests."""
    p50_ms: float | None
    p99_ms: float | None


def sample_metrics(metrics: ServingMetrics, at: float) -> TrafficSample:
    """Read the prediction counters and latency buckets of `metrics`."""
    requests = errors = 0.0
    for family in metrics.requests.collect():
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            requests += sample.value
            if int(sample.labels["status"]) >= 400:
                errors += sample.value
    totals: dict[float, float] = {}
    for family in metrics.latency.collect():
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                bound = float(sample.labels["le"])
                totals[bound] = totals.get(bound, 0.0) + sample.value
    return TrafficSample(at, requests, errors, tuple(sorted(totals.items())))


def histogram_quantile(q: float, buckets: Buckets) -> float | None:
    """Estimate quantile `q` of a histogram by linear interpolation in a bucket.

    Returns None for an empty histogram. A quantile that falls in the ``+Inf``
    bucket is reported as the largest finite bound.

    >>> histogram_quantile(0.5, ((0.1, 2.0), (0.2, 4.0), (math.inf, 4.0)))
    0.1
    >>> histogram_quantile(0.75, ((0.1, 2.0), (0.2, 4.0), (math.inf, 4.0)))
    0.15000000000000002
    >>> histogram_quantile(0.5, ((0.1, 0.0), (math.inf, 0.0))) is None
    True
    """
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def _difference(new: Buckets, old: Buckets) -> Buckets:
    before = dict(old)
    return tuple((bound, count - before.get(bound, 0.0)) for bound, count in new)


def compare(old: TrafficSample, new: TrafficSample) -> TrafficStats:
    """Return the traffic between two samples of the same counters."""
    seconds = max(new.at - old.at, 1e-9)
    requests = new.requests - old.requests
    errors = new.errors - old.errors
    buckets = _difference(new.buckets, old.buckets)
    p50 = histogram_quantile(0.5, buckets)
    p99 = histogram_quantile(0.99, buckets)
    return TrafficStats(
        seconds=seconds,
        requests=int(requests),
        requests_per_second=requests / seconds,
        error_rate=errors / requests if requests > 0 else None,
        p50_ms=None if p50 is None else p50 * 1000.0,
        p99_ms=None if p99 is None else p99 * 1000.0,
    )


class TrafficWindow:
    """Samples of the counters over the last `seconds`, to compare against.

    Args:
        start: Counters at the daemon's start, all zero; used until a sample
            older than the window exists.
        seconds: Length of the window.
    """

    def __init__(self, start: TrafficSample, seconds: float = 60.0) -> None:
        self.seconds = seconds
        self._samples: deque[TrafficSample] = deque([start])

    def observe(self, sample: TrafficSample) -> TrafficStats:
        """Add `sample` and return the traffic since the window's oldest sample.

        Samples are dropped once a newer one is itself older than the window,
        so the comparison covers at least `seconds` when the samples allow it.
        """
        samples = self._samples
        samples.append(sample)
        while len(samples) > 2 and sample.at - samples[1].at >= self.seconds:
            samples.popleft()
        return compare(samples[0], sample)

    @property
    def samples(self) -> Sequence[TrafficSample]:
        """Samples kept, oldest first."""
        return tuple(self._samples)
