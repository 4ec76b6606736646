"""The rollback watch: return a newly promoted champion that does worse live.

After a promotion of the champion alias, the watch waits until the new
champion has `min_live_labels` labels in its live window. Then it scores the
previous champion again on the rows the new one served since its promotion
and got labels for, and compares the two on those same rows. When the new one
is worse by more than the model's `rollback_margin`, the watch rolls the
alias back through the registry and raises a ``rollback`` alert saying why.
The alias history records the rollback, and the daemon serves the previous
champion at once.

The previous champion's own live window, with labels of its predictions
from before the promotion, serves only when it cannot score the new rows
(its artifact is gone, or it reads other inputs). Those labels come from
other weeks, and on seasonal data the weeks differ more than the versions:
a replay of 2013 flights rolled back 4 of 14 promotions that way.

Each promotion gets one verdict, stored in the monitoring store, so a kept
champion is not judged again as its window slides. The health check calls
`watch_rollback` on every run; the retraining job may call it as well.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from appliance.config import RetrainConfig
from appliance.errors import AliasMovedError, ApplianceError
from appliance.monitoring._alerts import AlertCandidate
from appliance.monitoring._health import (
    ServedVersion,
    WatchedDaemon,
    live_metric,
    raise_alerts,
)
from appliance.monitoring._policy import decide_rollback
from appliance.monitoring._store import MonitoringStore
from appliance.storage import AliasEvent

logger = logging.getLogger(__name__)

ACTOR = "monitoring"
"""Actor of the alias changes the watch makes, as the alias history shows it."""


@dataclass(frozen=True)
class RollbackVerdict:
    """The watch's conclusion on the latest promotion of a model."""

    model: str
    outcome: str
    """``idle`` (no promotion to watch), ``waiting`` (too few labels yet),
    ``kept``, ``rolled_back``, ``superseded`` (the champion changed again
    before the rollback) or ``failed`` (retried at the next run)."""
    reason: str
    version: int | None = None
    """The promoted version."""
    previous_version: int | None = None
    """The champion it replaced."""


def last_promotion(history: list[AliasEvent]) -> AliasEvent | None:
    """Return the latest change of the champion when it was a promotion.

    None when the champion was never promoted, when its latest change was a
    rollback, or when the promotion kept the same version.
    """
    if not history:
        return None
    event = history[-1]
    if event.action != "set" or event.previous_version is None:
        return None
    return None if event.previous_version == event.version else event


def watch_rollback(daemon: WatchedDaemon, model: str) -> RollbackVerdict:
    """Judge the latest promotion of `model` once, and roll it back if worse.

    Args:
        daemon: The running daemon: its config, served models, live metrics
            per version, champion history and rollback.
        model: The model name.

    Returns:
        The verdict; ``kept`` and ``rolled_back`` are stored and returned
        unchanged by later calls for the same promotion.
    """
    promotion = last_promotion(daemon.champion_history(model))
    if promotion is None:
        return RollbackVerdict(model, "idle", "no promotion of the champion to watch")
    new, old = promotion.version, int(promotion.previous_version or 0)
    with MonitoringStore(daemon.home) as store:
        stored = store.rollback_check(model, promotion.changed_at)
    if stored is not None:
        return RollbackVerdict(model, stored["outcome"], stored["reason"], new, old)
    served = daemon.served().get(model)
    if served is None or served.version != new:
        return RollbackVerdict(
            model, "waiting", f"version {new} is not served yet", new, old
        )
    return _judge(daemon, promotion, served)


def _judge(
    daemon: WatchedDaemon, promotion: AliasEvent, served: ServedVersion
) -> RollbackVerdict:
    """Compare the promoted and the previous champion on the same labelled rows."""
    model, new = promotion.model, promotion.version
    old = int(promotion.previous_version or 0)
    config = daemon.config
    cfg = config.models.get(model)
    metric = live_metric(cfg, served.task, served.classes)
    policy = dataclasses.replace(cfg.retrain if cfg else RetrainConfig(), metric=metric)
    needed = config.monitoring.min_live_labels
    new_live = daemon.live_metrics(model, new, needed) or {"labels": 0}
    if new_live["labels"] < needed or new_live.get(metric) is None:
        # ROC AUC stays undefined while the labels hold one class only.
        return _waiting(promotion, new_live["labels"], needed, metric, new_live)
    try:
        same = daemon.same_rows(model, new, old, promotion.changed_at, needed)
    except ApplianceError as exc:
        logger.warning(
            "rollback watch compares windows model=%s version=%d previous=%d reason=%s",
            model,
            new,
            old,
            exc,
        )
        return _judge_windows(daemon, promotion, policy, new_live, str(exc))
    if same.rows < needed or None in (
        same.promoted.get(metric),
        same.previous.get(metric),
    ):
        # A version promoted again has labels from its earlier service too.
        return _waiting(promotion, same.rows, needed, metric, same.promoted)
    decision = decide_rollback(
        policy, same.promoted.get(metric), same.previous.get(metric)
    )
    rows = f"on the same {same.rows} labelled rows"
    if not decision.act:
        return _keep(daemon, promotion, f"version {new}: {decision.reason}, {rows}")
    reason = f"{decision.reason}, {rows} served by version {new}"
    return _roll_back(daemon, promotion, policy, reason, same.promoted.get(metric))


def _waiting(
    promotion: AliasEvent,
    labels: int,
    needed: int,
    metric: str,
    live: dict[str, Any],
) -> RollbackVerdict:
    new, old = promotion.version, int(promotion.previous_version or 0)
    reason = (
        f"version {new} has {labels} of {needed} labels since its promotion and "
        f"live {metric} {live.get(metric)}"
    )
    return RollbackVerdict(promotion.model, "waiting", reason, new, old)


def _judge_windows(
    daemon: WatchedDaemon,
    promotion: AliasEvent,
    policy: RetrainConfig,
    new_live: dict[str, Any],
    cause: str,
) -> RollbackVerdict:
    """Compare each version's own live window, when the previous version
    cannot score the promoted one's rows.

    The windows contain labels of different periods, so a change between the
    periods reads as a difference between the versions.
    """
    model, new = promotion.model, promotion.version
    old = int(promotion.previous_version or 0)
    metric = policy.metric
    needed = daemon.config.monitoring.min_live_labels
    old_live = daemon.live_metrics(model, old, needed) or {"labels": 0}
    if old_live["labels"] < needed or old_live.get(metric) is None:
        reason = (
            f"previous champion version {old} has {old_live['labels']} labels "
            f"(at least {needed} needed) and live {metric} "
            f"{old_live.get(metric)}, so version {new} is kept without a "
            f"comparison ({cause})"
        )
        return _keep(daemon, promotion, reason)
    decision = decide_rollback(policy, new_live.get(metric), old_live.get(metric))
    rows = (
        f"on {new_live['labels']} and {old_live['labels']} labels of each "
        f"version's own predictions ({cause})"
    )
    if not decision.act:
        return _keep(daemon, promotion, f"version {new}: {decision.reason}, {rows}")
    reason = f"{decision.reason}, {rows}"
    return _roll_back(daemon, promotion, policy, reason, new_live.get(metric))


def _keep(daemon: WatchedDaemon, promotion: AliasEvent, reason: str) -> RollbackVerdict:
    new, old = promotion.version, int(promotion.previous_version or 0)
    with MonitoringStore(daemon.home) as store:
        store.record_rollback_check(
            promotion.model, promotion.changed_at, new, old, "kept", reason
        )
    logger.info(
        "rollback watch kept model=%s version=%d previous=%d reason=%s",
        promotion.model,
        new,
        old,
        reason,
    )
    return RollbackVerdict(promotion.model, "kept", reason, new, old)


def _roll_back(
    daemon: WatchedDaemon,
    promotion: AliasEvent,
    policy: RetrainConfig,
    decision_reason: str,
    value: float | None,
) -> RollbackVerdict:
    model, new = promotion.model, promotion.version
    old = int(promotion.previous_version or 0)
    reason = f"rolled back from version {new} to {old}: {decision_reason}"
    config = daemon.config.monitoring
    try:
        daemon.rollback(model, new, ACTOR, reason)
    except AliasMovedError as exc:
        # A newer promotion or rollback replaced the version, so nothing is
        # rolled back. The next run judges the newer promotion.
        logger.info(
            "rollback watch skipped model=%s version=%d reason=%s", model, new, exc
        )
        return RollbackVerdict(model, "superseded", str(exc), new, old)
    except ApplianceError as exc:
        logger.exception("rollback failed model=%s version=%d", model, new)
        failed = (
            f"rollback of model {model!r} from version {new} to {old} failed: {exc}"
        )
        raise_alerts(
            daemon.home,
            [AlertCandidate(model, "rollback", f"version:{new}", "critical", failed)],
            config,
        )
        return RollbackVerdict(model, "failed", failed, new, old)
    with MonitoringStore(daemon.home) as store:
        store.record_rollback_check(
            model, promotion.changed_at, new, old, "rolled_back", reason
        )
    logger.warning(
        "rollback done model=%s version=%d previous=%d metric=%s",
        model,
        new,
        old,
        policy.metric,
    )
    raise_alerts(
        daemon.home,
        [
            AlertCandidate(
                model,
                "rollback",
                f"version:{new}",
                "critical",
                f"model {model!r} {reason}",
                value=value,
                threshold=policy.rollback_margin,
            )
        ],
        config,
    )
    return RollbackVerdict(model, "rolled_back", reason, new, old)
