"""Feature views that fail to load in the daemon: readiness, metrics and alerts.

`FeatureServer.load` records each view whose SQL failed on its rows, and
each view over a dataset with no version that a registered model joins. The
daemon shows those views in ``/health/ready``, in the metrics
``appliance_feature_view_failing`` and ``appliance_feature_view_load_failures``,
and as a ``feature_view`` alert of each model that joins the view. The alert
is critical when the model is not served, else a warning. The alert is resolved when the
view loads again.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from appliance.features import FeatureServer, ViewFailure
    from appliance.serving._state import DaemonState

logger = logging.getLogger(__name__)

ALERT_KIND = "feature_view"


def watch_views(state: DaemonState) -> None:
    """Expose the feature views' failed loads in the daemon's metrics.

    The metrics read ``state.features`` at each scrape, because a reload
    that changes the views replaces it.
    """

    def failing() -> dict[str, float]:
        features = state.features
        names = {view.name for views, _ in features.models.values() for view in views}
        return {name: float(name in features.failures) for name in names}

    state.metrics.watch_feature_views(
        failing, lambda: dict(state.features.failed_loads)
    )


def failing_views(features: FeatureServer | None) -> dict[str, dict[str, Any]]:
    """Return each view whose last load failed, as ``/health/ready`` shows it."""
    if features is None:
        return {}
    failures = dict(features.failures)
    return {
        name: failure.to_dict(_models_of(features, name))
        for name, failure in sorted(failures.items())
    }


def update_view_alerts(
    state: DaemonState, before: dict[str, ViewFailure] | None
) -> None:
    """Raise an alert for each failing view, and resolve those of views that load.

    Blocks while the monitoring store is written, so call it off the event
    loop. A failed write is logged, and the alerts stay as they were.

    Args:
        state: The daemon's state.
        before: The failures before the load; None at start, when the open
            alerts of every view that loads are resolved.
    """
    from appliance.monitoring import AlertStatus, MonitoringStore

    features = state.features
    failures = dict(features.failures)
    config = state.config
    try:
        _raise(state, failures)
        recovered = set(before or {}) - set(failures)
        if before is None:
            with MonitoringStore(config.storage.home) as store:
                open_alerts = store.list_alerts(AlertStatus.OPEN)
            recovered = {
                alert.subject
                for alert in open_alerts
                if alert.kind == ALERT_KIND and alert.subject not in failures
            }
        _resolve(state, recovered)
    except Exception:
        logger.exception(
            "feature view alerts not updated failing=%s", ",".join(failures) or "-"
        )


def _raise(state: DaemonState, failures: dict[str, ViewFailure]) -> None:
    from appliance.monitoring import AlertCandidate, raise_alerts

    candidates = []
    for name, failure in sorted(failures.items()):
        for model in _models_of(state.features, name):
            if failure.served is None:
                effect = f"model {model!r} is not served until the view loads"
            else:
                effect = f"model {model!r} is served with the view's earlier rows"
            candidates.append(
                AlertCandidate(
                    model,
                    ALERT_KIND,
                    name,
                    "critical" if failure.served is None else "warning",
                    f"{failure.message}; {effect}",
                )
            )
    # A webhook that does not respond must not delay the start or a flush.
    home, monitoring = state.config.storage.home, state.config.monitoring
    raise_alerts(home, candidates, monitoring, background=True)


def _resolve(state: DaemonState, views: set[str]) -> None:
    from appliance.monitoring import resolve_alerts

    config = state.config
    for name in sorted(views):
        for model in _models_of(state.features, name):
            resolve_alerts(
                config.storage.home,
                model,
                (ALERT_KIND,),
                f"feature view {name!r} loads again",
                config.monitoring,
                subject=name,
            )


def _models_of(features: FeatureServer, view: str) -> list[str]:
    """Return the models that join `view`, sorted."""
    return sorted(
        model
        for model, (views, _) in features.models.items()
        if any(v.name == view for v in views)
    )
