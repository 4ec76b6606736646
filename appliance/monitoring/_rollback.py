"""The rollback watch: return a newly promoted champion that does worse live.

After a promotion of the champion alias, the watch waits until the new
champion has `min_live_labels` labels in its live window. Then it compares
the new champion's live metric with the previous champion's, which comes from
labels of the previous champion's own predictions, made before the promotion.
When the new one is worse by more than the model's `rollback_margin`, the
watch rolls the alias back through the registry and raises a ``rollback``
alert saying why. The alias history records the rollback, and the daemon
serves the previous champion at once.

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
    """Compare the live metrics of the promoted and the previous champion."""
    model, new = promotion.model, promotion.version
    old = int(promotion.previous_version or 0)
    config = daemon.config
    cfg = config.models.get(model)
    metric = live_metric(cfg, served.task, served.classes)
    policy = dataclasses.replace(cfg.retrain if cfg else RetrainConfig(), metric=metric)
    needed = config.monitoring.min_live_labels
    # NOTE: a version's window contains its latest labels, not only those since
    # this promotion, so a version promoted again starts with its old labels.
    new_live = daemon.live_metrics(model, new, needed) or {"labels": 0}
    old_live = daemon.live_metrics(model, old, needed) or {"labels": 0}
    if new_live["labels"] < needed or new_live.get(metric) is None:
        # ROC AUC stays undefined while the labels hold one class only.
        return RollbackVerdict(
            model,
            "waiting",
            f"version {new} has {new_live['labels']} of {needed} labels and "
            f"live {metric} {new_live.get(metric)}",
            new,
            old,
        )
    if old_live["labels"] < needed or old_live.get(metric) is None:
        reason = (
            f"previous champion version {old} has {old_live['labels']} labels "
            f"(at least {needed} needed) and live {metric} "
            f"{old_live.get(metric)}, so version {new} is kept without a comparison"
        )
        return _keep(daemon, promotion, reason)
    decision = decide_rollback(policy, new_live.get(metric), old_live.get(metric))
    if not decision.act:
        return _keep(daemon, promotion, f"version {new}: {decision.reason}")
    return _roll_back(daemon, promotion, policy, decision.reason, new_live, old_live)


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
    new_live: dict[str, Any],
    old_live: dict[str, Any],
) -> RollbackVerdict:
    model, new = promotion.model, promotion.version
    old = int(promotion.previous_version or 0)
    reason = (
        f"rolled back from version {new} to {old}: {decision_reason} "
        f"({new_live['labels']} and {old_live['labels']} labels)"
    )
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
                value=new_live.get(policy.metric),
                threshold=policy.rollback_margin,
            )
        ],
        config,
    )
    return RollbackVerdict(model, "rolled_back", reason, new, old)
