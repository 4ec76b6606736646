"""Alerts: what crosses a threshold, as candidates the store de-duplicates.

An alert is identified by (model, kind, subject). While one is open, a new
candidate with the same key only bumps its count and last-seen time; once it is
acknowledged or resolved, the next candidate opens a new alert.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from appliance.config import MonitoringConfig
from appliance.monitoring._batch import DriftReport
from appliance.monitoring._monitor import DriftEvent
from appliance.monitoring._policy import HIGHER_IS_BETTER

ALERT_KINDS = (
    "drift",
    "performance",
    "error_rate",
    "latency",
    "rollback",
    "load",
    "signature",
    "feature_view",
    "job",
)
"""Kinds of alert the appliance raises; see `AlertCandidate.kind`."""


class AlertStatus(str, Enum):
    """Life cycle of an alert."""

    OPEN = "open"
    """Raised and not yet seen by an operator; repeats are folded into it."""
    ACKNOWLEDGED = "acknowledged"
    """Seen by an operator; a repeat opens a new alert."""
    RESOLVED = "resolved"
    """Closed by the daemon because its condition is gone, such as a champion
    that serves again, or by an operator. The alert's `resolution` states the
    reason or the operator, and a repeat opens a new alert."""


@dataclass(frozen=True)
class AlertCandidate:
    """A threshold crossing, before de-duplication."""

    model: str
    kind: str
    """``drift``, ``performance``, ``error_rate``, ``latency``, ``rollback``,
    ``load`` (a champion that failed to load at start), ``signature`` (a
    version the daemon did not load because its signature failed), or
    ``feature_view`` (a view the model joins failed to load; its subject is
    the view), or ``job`` (a scheduled batch drift check of the model
    failed; its subject is the job id, such as ``drift:NAME``)."""
    subject: str
    """Thing that crossed: a feature, ``prediction``, ``loss``, or for the
    kinds of `VERSIONED_SUBJECTS` a subject and the judged version
    (`versioned_subject`)."""
    severity: str
    """``warning`` or ``critical``."""
    message: str
    value: float | None = None
    threshold: float | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        """De-duplication key."""
        return (self.model, self.kind, self.subject)


@dataclass(frozen=True)
class RequestStats:
    """Prediction requests of one model version over a sliding window."""

    seconds: float
    """Length of the window the figures cover."""
    requests: int
    """Requests completed in the window, every status."""
    client_errors: int
    """Requests rejected with a 4xx status."""
    server_errors: int
    """Requests failed with a 5xx status."""
    latency_p99_ms: float | None
    """99th percentile latency of the successful requests, estimated from the
    latency histogram's buckets; None without a successful request."""

    @property
    def successes(self) -> int:
        """Requests that succeeded with status 200."""
        return self.requests - self.client_errors - self.server_errors


@dataclass(frozen=True)
class Alert:
    """A stored alert."""

    id: int
    model: str
    kind: str
    subject: str
    severity: str
    status: AlertStatus
    message: str
    value: float | None
    threshold: float | None
    opened_at: datetime
    last_seen_at: datetime
    count: int
    """Candidates folded into this alert, the first included."""
    acknowledged_at: datetime | None = None
    resolved_at: datetime | None = None
    resolution: str | None = None
    """Reason the daemon resolved the alert, starting with ``resolved
    automatically``, or ``resolved by`` and the operator who resolved it;
    None while it is not resolved."""

    def to_dict(self) -> dict[str, Any]:
        """Return the alert as JSON-ready values."""
        return {
            "id": self.id,
            "model": self.model,
            "kind": self.kind,
            "subject": self.subject,
            "severity": self.severity,
            "status": self.status.value,
            "message": self.message,
            "value": self.value,
            "threshold": self.threshold,
            "opened_at": self.opened_at.isoformat(),
            "last_seen_at": self.last_seen_at.isoformat(),
            "count": self.count,
            "acknowledged_at": (
                self.acknowledged_at.isoformat() if self.acknowledged_at else None
            ),
            "resolved_at": self.resolved_at.isoformat() if self.resolved_at else None,
            "resolution": self.resolution,
        }

    def resolved_payload(self, resolved_by: str) -> dict[str, Any]:
        """Return the webhook body that reports the resolution of this alert.

        It is `to_dict` plus ``event`` (``resolved``) and ``resolved_by``, the
        actor that resolved the alert, such as ``daemon``. A receiver
        distinguishes it from the body of a newly opened alert by ``status``.
        """
        return {**self.to_dict(), "event": "resolved", "resolved_by": resolved_by}


def drift_event_alerts(
    model: str, events: Iterable[DriftEvent]
) -> list[AlertCandidate]:
    """Turn streaming detections into drift alert candidates.

    The message gives the event's position as a row of the detector's stream,
    counted from 0: the predicted rows, or the labels for the loss detector.
    """
    return [
        AlertCandidate(
            model,
            "drift",
            f"{event.kind}:{event.subject}",
            "warning",
            f"streaming {event.cause} drift on {event.kind} {event.subject!r} of "
            f"model {model!r} at row {event.index} of the {_stream(event)} stream",
        )
        for event in events
    ]


def _stream(event: DriftEvent) -> str:
    return "label" if event.kind == "loss" else "prediction"


def batch_drift_alert(model: str, report: DriftReport) -> AlertCandidate | None:
    """Return a drift alert naming the drifted features, or None when none drifted."""
    drifted = report.drifted
    if not drifted:
        return None
    return AlertCandidate(
        model,
        "drift",
        "batch",
        "warning",
        f"batch drift on {len(drifted)} of {report.tested} features of model "
        f"{model!r}: {', '.join(drifted)}",
        value=report.share_drifted,
    )


VERSIONED_SUBJECTS: dict[str, tuple[str, ...]] = {
    "performance": tuple(HIGHER_IS_BETTER),
    "error_rate": ("server", "client"),
    "latency": ("p99",),
}
"""Kinds of alert that judge one model version, and the subjects of each
before `versioned_subject` adds the version."""


def versioned_subject(subject: str, version: int) -> str:
    """Return the subject of an alert that judges one version, such as
    ``roc_auc version 6`` or ``server version 6``.

    The version is part of the alert's key, so a later crossing by another
    version opens an alert of its own, whose message names that version.
    """
    return f"{subject} version {version}"


def performance_alert(
    model: str,
    version: int,
    metric: str,
    live: float | None,
    reference: float | None,
    labels: int,
    config: MonitoringConfig,
) -> AlertCandidate | None:
    """Return an alert when the live metric fell below the reference by the drop.

    Args:
        model: The model name.
        version: The served version whose predictions the labels scored.
        metric: A key of `HIGHER_IS_BETTER`.
        live: The metric over the labelled predictions in the window.
        reference: The same metric on the holdout rows at training time.
        labels: Labelled predictions in the window.
        config: The ``[monitoring]`` settings.
    """
    if live is None or reference is None or labels < config.min_live_labels:
        return None
    if math.isnan(live) or math.isnan(reference):
        return None
    drop = reference - live if HIGHER_IS_BETTER[metric] else live - reference
    if drop <= config.performance_drop:
        return None
    return AlertCandidate(
        model,
        "performance",
        versioned_subject(metric, version),
        "critical",
        f"live {metric} of model {model!r} version {version} is {live:.4f} over "
        f"the last {labels} labels, {drop:.4f} worse than its holdout "
        f"{metric} {reference:.4f}; the limit is a drop of "
        f"{config.performance_drop:g}",
        value=live,
        threshold=config.performance_drop,
    )


def request_alerts(
    model: str, version: int, stats: RequestStats, config: MonitoringConfig
) -> list[AlertCandidate]:
    """Return error-rate and latency alerts for one window of prediction requests.

    Client errors (4xx: invalid rows, bodies over the limits) and server errors
    (5xx) are judged apart against the same `error_rate`, so a client that
    sends bad rows opens a ``client`` alert and never hides, or passes for, a
    failing model. A window with fewer than `min_window_requests` requests is
    not judged.
    """
    if stats.requests < config.min_window_requests:
        return []
    window = f"the last {stats.seconds:.0f} s"
    alerts = []
    for subject, errors, severity in (
        ("server", stats.server_errors, "critical"),
        ("client", stats.client_errors, "warning"),
    ):
        rate = errors / stats.requests
        if rate > config.error_rate:
            alerts.append(
                AlertCandidate(
                    model,
                    "error_rate",
                    versioned_subject(subject, version),
                    severity,
                    f"{errors} of {stats.requests} prediction requests to model "
                    f"{model!r} version {version} failed with a {subject} error "
                    f"({'5xx' if subject == 'server' else '4xx'}) in {window}: "
                    f"{rate:.1%}, above the limit of {config.error_rate:.1%}",
                    value=rate,
                    threshold=config.error_rate,
                )
            )
    p99 = stats.latency_p99_ms
    if p99 is not None and p99 > config.latency_p99_ms:
        alerts.append(
            AlertCandidate(
                model,
                "latency",
                versioned_subject("p99", version),
                "warning",
                f"99th percentile latency of model {model!r} version {version} is "
                f"{p99:.1f} ms over {stats.successes} successful requests in "
                f"{window}, above the limit of {config.latency_p99_ms:g} ms",
                value=p99,
                threshold=config.latency_p99_ms,
            )
        )
    return alerts
