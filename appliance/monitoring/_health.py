"""The scheduled health check: live performance, error rate, latency, rollbacks.

The check needs what only the running daemon has in memory: the Prometheus
counters of its requests, the live metrics of each model version and the
served models. APScheduler stores a job by name and arguments only, so the
daemon registers a `WatchedDaemon` for its home with `register_daemon` when
its scheduler starts, and the job finds it with `watched_daemon`. A job that
runs while no daemon of its home is registered in the process skips.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from appliance.access import DAEMON
from appliance.config import Config, ModelConfig, MonitoringConfig
from appliance.monitoring._alerts import (
    Alert,
    AlertCandidate,
    RequestStats,
    performance_alert,
    request_alerts,
)
from appliance.monitoring._jobs import schedule_interval, schedule_per_model
from appliance.monitoring._store import MonitoringStore
from appliance.monitoring._webhook import send_webhook
from appliance.storage import AliasEvent

logger = logging.getLogger(__name__)

EXPIRY_JOB = "predictions:expire"
"""Id of the job that applies ``[predictions] keep_days``."""
EXPIRY_SECONDS = 86_400.0
"""Period of that job; the writer also applies it after each roll-over."""

LIVE_METRICS = {
    "classification": ("roc_auc", "log_loss", "accuracy"),
    "regression": ("mae",),
}
"""Metrics `LiveMetrics` computes, by task; the first is the default."""


@dataclass(frozen=True)
class ServedVersion:
    """The version of a model the daemon serves, with its training metrics."""

    model: str
    version: int
    task: str
    holdout: dict[str, float]
    """Metrics on holdout rows the version did not train on, as recorded at
    training. A refit trains on its holdout, so its challenger's are used."""
    classes: int | None = None
    """Number of classes of a classifier; None for regression."""


@dataclass(frozen=True)
class SameRows:
    """Live metrics of a promoted version and the one it replaced, on the same
    labelled rows: those the promoted version served since its promotion."""

    rows: int
    promoted: dict[str, Any]
    previous: dict[str, Any]


class WatchedDaemon(Protocol):
    """The daemon's view that the health check and the rollback watch read."""

    @property
    def home(self) -> Path:
        """The appliance home the daemon serves."""

    @property
    def config(self) -> Config:
        """The configuration in force, reloaded on SIGHUP."""

    def served(self) -> dict[str, ServedVersion]:
        """Return the served version of every model, by model name."""

    def request_stats(self, model: str, version: int) -> RequestStats:
        """Return the requests of one version over the sliding window."""

    def live_metrics(
        self, model: str, version: int, min_auc_labels: int
    ) -> dict[str, Any] | None:
        """Return the live metrics of one version, or None before its first label."""

    def champion_history(self, model: str) -> list[AliasEvent]:
        """Return the changes of the model's champion alias, oldest first."""

    def same_rows(
        self,
        model: str,
        version: int,
        previous: int,
        since: datetime,
        min_auc_labels: int,
    ) -> SameRows:
        """Score `previous` on the labelled rows that `version` served since `since`.

        Raises:
            ApplianceError: `previous` cannot score those rows: its artifact is
                missing or corrupted, or its inputs or classes differ.
        """

    def retry_champion(self, model: str) -> int | None:
        """Serve the model's champion if another version serves in its place
        and the champion's files verify now.

        Returns:
            The champion's version when it serves from now on, else None.
        """

    def expire_predictions(self) -> int:
        """Delete the prediction log's rolled files older than ``keep_days``.

        Returns:
            How many files were deleted.
        """

    def rollback(
        self, model: str, expected_version: int, actor: str, reason: str
    ) -> dict[str, Any]:
        """Move the champion back and serve it, if it is still `expected_version`.

        Returns:
            The recorded alias change.

        Raises:
            ApplianceError: The champion changed, has no previous version, or
                the previous version's artifact failed to load.
        """


_DAEMONS: dict[Path, WatchedDaemon] = {}
_DAEMONS_LOCK = threading.Lock()


def register_daemon(daemon: WatchedDaemon) -> None:
    """Make `daemon` the one the scheduled checks of its home read."""
    with _DAEMONS_LOCK:
        _DAEMONS[daemon.home.resolve()] = daemon


def unregister_daemon(home: Path) -> None:
    """Forget the daemon of `home`; its checks skip from now on."""
    with _DAEMONS_LOCK:
        _DAEMONS.pop(home.resolve(), None)


def watched_daemon(home: Path | str) -> WatchedDaemon | None:
    """Return the daemon registered for `home` in this process, or None."""
    with _DAEMONS_LOCK:
        return _DAEMONS.get(Path(home).resolve())


def live_metric(cfg: ModelConfig | None, task: str, classes: int | None = None) -> str:
    """Return the metric that judges a model's live performance.

    That is the model's retraining metric when the live window computes it
    for the task, else the task's default from `LIVE_METRICS`. A classifier of
    more than two classes is judged by log loss in place of ROC AUC, because
    the live window computes ROC AUC for two classes only.
    """
    choices = LIVE_METRICS.get(task, ("mae",))
    metric = choices[0]
    if cfg is not None and cfg.retrain.metric in choices:
        metric = cfg.retrain.metric
    if metric == "roc_auc" and classes is not None and classes > 2:
        return "log_loss"
    return metric


def schedule_health_checks(scheduler: Any, config: Config) -> list[str]:
    """Add one periodic health check per declared model to `scheduler`."""
    return schedule_per_model(
        scheduler,
        config,
        "health",
        float(config.monitoring.health_interval_seconds),
        "appliance.monitoring._health:check_health",
        str(config.storage.home),
    )


def schedule_prediction_expiry(scheduler: Any, config: Config) -> list[str]:
    """Add the daily ``predictions:expire`` job while ``keep_days`` is set."""
    if config.predictions.keep_days <= 0:
        if scheduler.get_job(EXPIRY_JOB) is not None:
            scheduler.remove_job(EXPIRY_JOB)
            logger.info("job removed job=%s reason=keep_days is 0", EXPIRY_JOB)
        return []
    schedule_interval(
        scheduler,
        config.storage.home,
        EXPIRY_JOB,
        EXPIRY_SECONDS,
        "appliance.monitoring._health:expire_predictions",
        str(config.storage.home),
    )
    return [EXPIRY_JOB]


def expire_predictions(home: str) -> dict[str, Any]:
    """Delete the prediction log's rolled files older than ``keep_days``."""
    daemon = watched_daemon(home)
    if daemon is None:
        return {"skipped": f"no daemon of home {home} runs in this process"}
    return {"files": daemon.expire_predictions()}


def check_health(home: str, model: str) -> dict[str, Any]:
    """Judge one served model: live performance, error rate, latency, rollback.

    First, a champion that failed to load is served in place of the version
    that replaced it, once its files verify again.

    Returns:
        The run's detail: the figures judged, the alerts raised and the
        rollback watch's verdict, or why nothing ran. ``champion_served``
        is the champion's version when this run served it again.
    """
    from appliance.monitoring._rollback import watch_rollback

    daemon = watched_daemon(home)
    if daemon is None:
        return {"skipped": f"no daemon of home {home} runs in this process"}
    restored = daemon.retry_champion(model)
    served = daemon.served().get(model)
    if served is None:
        return {"skipped": f"model {model!r} is not served"}
    config = daemon.config
    # NOTE: only the served version is judged; requests pinned to another
    # version with ?version=N are counted under that version but not judged.
    stats = daemon.request_stats(model, served.version)
    candidates = request_alerts(model, served.version, stats, config.monitoring)
    metric = live_metric(config.models.get(model), served.task, served.classes)
    live = daemon.live_metrics(
        model, served.version, config.monitoring.min_live_labels
    ) or {"labels": 0}
    performance = performance_alert(
        model,
        served.version,
        metric,
        live.get(metric),
        served.holdout.get(metric),
        int(live["labels"] or 0),
        config.monitoring,
    )
    if performance is not None:
        candidates.append(performance)
    opened = raise_alerts(Path(home), candidates, config.monitoring)
    verdict = watch_rollback(daemon, model)
    logger.info(
        "health checked model=%s version=%d requests=%d errors=%d/%d p99_ms=%s "
        "labels=%s %s=%s alerts=%d rollback=%s",
        model,
        served.version,
        stats.requests,
        stats.client_errors,
        stats.server_errors,
        "-" if stats.latency_p99_ms is None else f"{stats.latency_p99_ms:.1f}",
        live["labels"],
        metric,
        live.get(metric),
        len(candidates),
        verdict.outcome,
    )
    return {
        "version": served.version,
        "window_seconds": round(stats.seconds, 3),
        "requests": stats.requests,
        "client_errors": stats.client_errors,
        "server_errors": stats.server_errors,
        "latency_p99_ms": stats.latency_p99_ms,
        "labels": live["labels"],
        metric: live.get(metric),
        "alerts": [c.kind + ":" + c.subject for c in candidates],
        "opened": [a.id for a in opened],
        "rollback": verdict.outcome,
        "champion_served": restored,
    }


def raise_alerts(
    home: Path,
    candidates: list[AlertCandidate],
    config: MonitoringConfig,
    background: bool = False,
) -> list[Alert]:
    """Store alert candidates and send each newly opened alert to the webhook.

    A candidate whose alert is open only bumps that alert's count, so a
    condition that lasts sends one webhook until an operator acknowledges it.
    With `background`, each alert is sent in a thread of its own
    (`notify_in_background`), for a daemon's start, which would otherwise
    wait for the attempts of a receiver that does not respond. A
    command-line process leaves it off, so that it sends before it exits.

    Returns:
        The alerts opened by this call.
    """
    if not candidates:
        return []
    opened = []
    with MonitoringStore(home) as store:
        for candidate in candidates:
            alert, new = store.record_alert(candidate)
            if new:
                opened.append(alert)
    for alert in opened:
        logger.warning(
            "alert opened id=%d model=%s kind=%s subject=%s value=%s",
            alert.id,
            alert.model,
            alert.kind,
            alert.subject,
            alert.value,
        )
        if background:
            notify_in_background(config, alert.to_dict())
        else:
            notify(config, alert.to_dict())
    return opened


def resolve_alerts(
    home: Path,
    model: str,
    kinds: tuple[str, ...],
    reason: str,
    config: MonitoringConfig,
    subject: str | None = None,
) -> list[Alert]:
    """Resolve the open alerts of `model` of the given kinds, because `reason`.

    The resolution stored with each alert is ``resolved automatically:``
    followed by `reason`. Each resolved alert is sent to the webhook as
    `Alert.resolved_payload` by ``daemon``, with the retries and timeout of a
    newly opened one, in a thread of its own (`notify_in_background`). A
    receiver that does not respond then delays no daemon start or check.

    Returns:
        The alerts resolved by this call.
    """
    resolution = f"resolved automatically: {reason}"
    resolved = []
    with MonitoringStore(home) as store:
        for kind in kinds:
            resolved += store.resolve_open(model, kind, resolution, subject)
    for alert in resolved:
        logger.info(
            "alert resolved id=%d model=%s kind=%s subject=%s reason=%s",
            alert.id,
            alert.model,
            alert.kind,
            alert.subject,
            reason,
        )
        notify_in_background(config, alert.resolved_payload(DAEMON))
    return resolved


def resolve_alert(home: Path, alert_id: int, resolved_by: str) -> tuple[Alert, bool]:
    """Resolve one alert for an operator, such as ``ops (operator)``.

    The stored resolution is ``resolved by`` followed by `resolved_by`. The
    caller sends `Alert.resolved_payload` to the webhook when the alert changed.

    Returns:
        The alert, and whether this call resolved it; False when it was
        resolved already.

    Raises:
        NotFoundError: No alert has that id.
    """
    with MonitoringStore(home) as store:
        alert, changed = store.resolve(alert_id, f"resolved by {resolved_by}")
    if changed:
        logger.info(
            "alert resolved id=%d model=%s kind=%s subject=%s by=%s",
            alert.id,
            alert.model,
            alert.kind,
            alert.subject,
            resolved_by,
        )
    return alert, changed


def notify(config: MonitoringConfig, payload: dict[str, Any]) -> bool:
    """Send `payload` to the ``[monitoring]`` webhook, if one is set.

    Blocks for the attempts and backoff of `send_webhook`, so call it off the
    event loop.

    Returns:
        Whether the receiver accepted it; False also when no webhook is set.
    """
    if not config.webhook_url:
        return False
    return send_webhook(
        config.webhook_url,
        payload,
        config.webhook_retries,
        config.webhook_backoff_seconds,
        config.webhook_timeout_seconds,
    )


def notify_in_background(
    config: MonitoringConfig, payload: dict[str, Any]
) -> threading.Thread | None:
    """Start `notify` for `payload` in a daemon thread and return the thread.

    The caller does not wait for the attempts, backoff and timeouts of the
    delivery. A process that exits before the thread ends drops the delivery,
    so a command-line process calls `notify` instead.

    Returns:
        The thread, or None when no webhook is set.
    """
    if not config.webhook_url:
        return None
    thread = threading.Thread(
        target=notify, args=(config, payload), name="webhook", daemon=True
    )
    thread.start()
    return thread
