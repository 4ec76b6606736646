"""Alerts: what crosses a threshold, as candidates the store de-duplicates.

An alert is identified by (model, kind, subject). While one is open, a new
candidate with the same key only bumps its count and last-seen time; once it is
acknowledged, the next candidate opens a new alert.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from appliance.config import MonitoringConfig
from appliance.monitoring._batch import DriftReport
from appliance.monitoring._monitor import DriftEvent
from appliance.monitoring._policy import HIGHER_IS_BETTER


class AlertStatus(str, Enum):
    """Life cycle of an alert."""

    OPEN = "open"
    """Raised and not yet seen by an operator; repeats are folded into it."""
    ACKNOWLEDGED = "acknowledged"
    """Seen by an operator; a repeat opens a new alert."""


@dataclass(frozen=True)
class AlertCandidate:
    """A threshold crossing, before de-duplication."""

    model: str
    kind: str
    """``drift``, ``performance``, ``error_rate``, ``latency`` or ``rollback``."""
    subject: str
    """What crossed: a feature, ``prediction``, ``loss``, a metric name."""
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
        }


def drift_event_alerts(
    model: str, events: Iterable[DriftEvent]
) -> list[AlertCandidate]:
    """Turn streaming detections into drift alert candidates."""
    return [
        AlertCandidate(
            model,
            "drift",
            f"{event.kind}:{event.subject}",
            "warning",
            f"streaming {event.cause} drift on {event.kind} {event.subject!r} of "
            f"model {model!r} at value {event.index}",
        )
        for event in events
    ]


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


def performance_alert(
    model: str,
    metric: str,
    live: float | None,
    reference: float | None,
    labels: int,
    config: MonitoringConfig,
) -> AlertCandidate | None:
    """Return an alert when the live metric fell below the reference by the drop."""
    if live is None or reference is None or labels < config.min_live_labels:
        return None
    drop = reference - live if HIGHER_IS_BETTER[metric] else live - reference
    if drop < config.performance_drop:
        return None
    return AlertCandidate(
        model,
        "performance",
        metric,
        "critical",
        f"live {metric} of model {model!r} is {live:.4f} over {labels} labels, "
        f"{drop:.4f} worse than the holdout's {reference:.4f}",
        value=live,
        threshold=config.performance_drop,
    )


def service_alerts(
    model: str,
    requests: int,
    errors: int,
    latency_p95_ms: float | None,
    config: MonitoringConfig,
) -> list[AlertCandidate]:
    """Return error-rate and latency alerts for one window of requests."""
    alerts = []
    if requests and errors / requests > config.error_rate:
        alerts.append(
            AlertCandidate(
                model,
                "error_rate",
                "requests",
                "critical",
                f"{errors} of {requests} prediction requests to model {model!r} "
                f"failed, above the limit of {config.error_rate:.1%}",
                value=errors / requests,
                threshold=config.error_rate,
            )
        )
    if latency_p95_ms is not None and latency_p95_ms > config.latency_p95_ms:
        alerts.append(
            AlertCandidate(
                model,
                "latency",
                "p95",
                "warning",
                f"95th percentile latency of model {model!r} is "
                f"{latency_p95_ms:.0f} ms, above {config.latency_p95_ms:.0f} ms",
                value=latency_p95_ms,
                threshold=config.latency_p95_ms,
            )
        )
    return alerts
