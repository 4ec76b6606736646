"""The daemon as the scheduled health check and rollback watch see it.

`DaemonWatch` implements `appliance.monitoring.WatchedDaemon` over the
`DaemonState`. The scheduler's worker threads call its methods, so counters
and live metrics are read under their own locks and the catalog on a cursor
of its own. A rollback runs on the daemon's event loop, where it takes the
admin lock and swaps the served model as the rollback route does.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from appliance.config import Config
from appliance.monitoring import RequestStats, SameRows, ServedVersion
from appliance.serving._champions import retry_champion
from appliance.serving._rescore import same_rows
from appliance.serving._routes_registry import rollback_served
from appliance.serving._state import DaemonState
from appliance.serving._traffic import Buckets, histogram_quantile
from appliance.storage import CHAMPION, AliasEvent, alias_history

logger = logging.getLogger(__name__)

ROLLBACK_TIMEOUT_SECONDS = 120.0
"""Maximum wait for a rollback on the event loop, model load included."""


@dataclass(frozen=True)
class VersionSample:
    """The request counters of one model version at one moment."""

    at: float
    """Monotonic clock reading, in seconds."""
    requests: float
    client_errors: float
    server_errors: float
    buckets: Buckets
    """Cumulative latency buckets of the successful requests, in seconds."""


class DaemonWatch:
    """Request windows, live metrics, champion history and rollback of a daemon.

    Args:
        state: The daemon's shared state.
        loop: The daemon's event loop, where rollbacks run.
    """

    def __init__(self, state: DaemonState, loop: asyncio.AbstractEventLoop) -> None:
        self.state = state
        self.loop = loop
        self.started = time.monotonic()
        self._windows: dict[tuple[str, int], deque[VersionSample]] = {}
        self._lock = threading.Lock()

    @property
    def home(self) -> Path:
        """The appliance home the daemon serves."""
        return self.state.config.storage.home

    @property
    def config(self) -> Config:
        """The configuration in force."""
        return self.state.config

    def served(self) -> dict[str, ServedVersion]:
        """Return the served version of every model with its holdout metrics."""
        models = list(self.state.models.models.values())
        return {
            m.name: ServedVersion(
                m.name,
                m.version,
                m.task,
                _holdout_metrics(m.schema),
                len(m.classes) if m.classes is not None else None,
            )
            for m in models
        }

    def request_stats(self, model: str, version: int) -> RequestStats:
        """Add a sample of the version's counters and return its sliding window.

        The first window of a version starts from zero counters at the daemon's
        start, because the counters themselves start there.
        """
        sample = sample_version(self.state.metrics, model, version)
        seconds = float(self.config.monitoring.health_window_seconds)
        with self._lock:
            samples = self._windows.setdefault(
                (model, version),
                deque([VersionSample(self.started, 0.0, 0.0, 0.0, ())]),
            )
            samples.append(sample)
            while len(samples) > 2 and sample.at - samples[1].at >= seconds:
                samples.popleft()
            oldest = samples[0]
        return window_stats(oldest, sample)

    def live_metrics(
        self, model: str, version: int, min_auc_labels: int
    ) -> dict[str, Any] | None:
        """Return the live metrics of one version, or None before its first label."""
        return self.state.monitoring.version_metrics(model, version, min_auc_labels)

    def champion_history(self, model: str) -> list[AliasEvent]:
        """Return the changes of the model's champion alias, oldest first."""
        view = self.state.catalog.cursor()
        try:
            return alias_history(view, model, CHAMPION)
        finally:
            view.close()

    def same_rows(
        self,
        model: str,
        version: int,
        previous: int,
        since: datetime,
        min_auc_labels: int,
    ) -> SameRows:
        """Score `previous` on the labelled rows that `version` served since `since`."""
        return same_rows(self.state, model, version, previous, since, min_auc_labels)

    def expire_predictions(self) -> int:
        """Delete the prediction log's rolled files older than ``keep_days``."""
        return self.state.predictions.expire()

    def retry_champion(self, model: str) -> int | None:
        """Serve the model's champion on the event loop if it failed to load.

        The champion is served only once its files verify again. Returns its
        version then, or None when nothing changed.
        """
        # Read without iterating, because the event loop may change the dicts.
        champion = self.state.models.champions.get(model)
        served = self.state.models.models.get(model)
        if champion is None or (served is not None and served.version == champion):
            return None
        future = asyncio.run_coroutine_threadsafe(
            retry_champion(self.state, model), self.loop
        )
        loaded = future.result(ROLLBACK_TIMEOUT_SECONDS)
        return None if loaded is None else loaded.version

    def rollback(
        self, model: str, expected_version: int, actor: str, reason: str
    ) -> dict[str, Any]:
        """Roll the champion back on the event loop and serve the previous version.

        Raises:
            RegistryError: The champion is no longer `expected_version` or has
                no previous version.
            IntegrityError: The previous version's signature or files fail
                verification.
        """
        future = asyncio.run_coroutine_threadsafe(
            rollback_served(
                self.state, model, CHAMPION, actor, reason, expected_version
            ),
            self.loop,
        )
        return future.result(ROLLBACK_TIMEOUT_SECONDS)


def sample_version(metrics: Any, model: str, version: int) -> VersionSample:
    """Read the request counters and latency buckets of one model version."""
    labels = {"model": model, "version": str(version)}
    requests = client = server = 0.0
    for family in metrics.requests.collect():
        for sample in family.samples:
            if not sample.name.endswith("_total") or not _matches(sample, labels):
                continue
            requests += sample.value
            status = int(sample.labels["status"])
            if 400 <= status < 500:
                client += sample.value
            elif status >= 500:
                server += sample.value
    buckets = []
    for family in metrics.latency.collect():
        for sample in family.samples:
            if sample.name.endswith("_bucket") and _matches(sample, labels):
                buckets.append((float(sample.labels["le"]), sample.value))
    return VersionSample(
        time.monotonic(), requests, client, server, tuple(sorted(buckets))
    )


def window_stats(old: VersionSample, new: VersionSample) -> RequestStats:
    """Return the requests between two samples of the same version's counters."""
    before = dict(old.buckets)
    buckets = tuple((bound, n - before.get(bound, 0.0)) for bound, n in new.buckets)
    p99 = histogram_quantile(0.99, buckets)
    return RequestStats(
        seconds=new.at - old.at,
        requests=int(new.requests - old.requests),
        client_errors=int(new.client_errors - old.client_errors),
        server_errors=int(new.server_errors - old.server_errors),
        latency_p99_ms=None if p99 is None else p99 * 1000.0,
    )


def _matches(sample: Any, labels: dict[str, str]) -> bool:
    return all(sample.labels.get(k) == v for k, v in labels.items())


def _holdout_metrics(schema: dict[str, Any]) -> dict[str, float]:
    """Return the out-of-sample holdout metrics recorded in a version's schema.

    A refit version trained on its holdout rows too, so its own metrics are
    in-sample, and the schema's ``reference_metrics`` (its challenger's) count.
    """
    return _numbers(schema.get("reference_metrics") or schema.get("metrics"))


def _numbers(metrics: Any) -> dict[str, float]:
    if not isinstance(metrics, dict):
        return {}
    return {
        key: float(value)
        for key, value in metrics.items()
        if isinstance(value, int | float) and math.isfinite(value)
    }
