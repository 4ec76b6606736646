"""Champions the daemon does not serve because they failed to load.

At start, a champion whose files fail to load is replaced by an earlier
version, and a critical ``load`` alert names both (see `appliance.daemon`).
Once the champion's files verify again, such as after a restore from a
backup, `retry_champion` serves it: the scheduled health check and a SIGHUP
reload call it, and so does a promotion of the champion that is already set.
Whenever a model's champion is served, `resolve_served_alerts` resolves the
``load`` alerts of the model, the ``signature`` alerts of that version, and
the ``performance``, ``error_rate`` and ``latency`` alerts of every other
version, such as the one a rollback replaced.
When a version loads for requests pinned to it (``?version=N``),
`resolve_pinned_alerts` resolves the ``signature`` alerts of that version.
"""

from __future__ import annotations

import asyncio
import logging

from appliance.errors import ApplianceError
from appliance.serving._onnx import OnnxModel
from appliance.serving._state import DaemonState, load_model, run_with_catalog
from appliance.signing import trusted_keys, verify_version
from appliance.storage import Catalog, ModelVersion, champion_models

logger = logging.getLogger(__name__)


async def retry_champion(state: DaemonState, name: str) -> OnnxModel | None:
    """Serve the champion of `name` in place of another version once it verifies.

    Does nothing while the admin lock is taken, because a promotion or
    rollback in progress decides what serves; the next call tries again.
    A champion whose files still fail verification is left as it is, and
    its alert stays open. Its folder is checked again only once a file in it
    changed, so a lasting failure is not logged at every call.

    Returns:
        The champion served from now on, or None when nothing changed.
    """
    if name not in state.models.unserved_champions():
        return None
    if state.admin_lock.locked():
        logger.debug("champion retry deferred, admin lock taken model=%s", name)
        return None
    async with state.admin_lock:
        found = await run_with_catalog(state, _champion_of, name)
        served = state.models.models.get(name)
        if found is None or (served is not None and served.version == found.version):
            return None
        stamp = await asyncio.to_thread(_folder_stamp, found)
        if state.failed_champions.get(name) == stamp:
            return None
        try:
            await asyncio.to_thread(verify_version, found, trusted_keys(state.config))
            model = await asyncio.to_thread(
                load_model, state.config, found.path, found.sha256
            )
        except ApplianceError as exc:
            state.failed_champions[name] = stamp
            logger.error(
                "champion load retry failed model=%s version=%d error=%s",
                name,
                found.version,
                exc,
            )
            return None
        state.failed_champions.pop(name, None)
        previous = state.models.put(model)
    logger.info(
        "champion served again model=%s version=%d previous=%s",
        name,
        model.version,
        previous.version if previous else None,
    )
    return model


def _champion_of(catalog: Catalog, name: str) -> ModelVersion | None:
    return next((v for v in champion_models(catalog) if v.model == name), None)


def _folder_stamp(version: ModelVersion) -> tuple[tuple[str, int, int, int], ...]:
    """Return the name, size, modification and change time of each file of a
    version's folder, empty for a missing folder."""
    if not version.path.is_dir():
        return ()
    stamps = []
    for path in sorted(version.path.iterdir()):
        stat = path.stat()
        stamps.append((path.name, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns))
    return tuple(stamps)


def resolve_served_alerts(state: DaemonState, name: str, version: int) -> None:
    """Resolve the alerts that champion `version` of `name`, now served, ends.

    Those are the model's ``load`` alerts, the ``signature`` alerts of that
    version and the ``performance``, ``error_rate`` and ``latency`` alerts of
    the other versions, which the health check judges no more. Blocks while
    the monitoring store is written, so call it off the event loop. The
    webhook deliveries run in threads of their own. A failed write is logged,
    and the alerts stay open.
    """
    from appliance.monitoring import resolve_alerts

    config = state.config
    try:
        resolve_alerts(
            config.storage.home,
            name,
            ("load",),
            f"champion version {version} of model {name!r} is served",
            config.monitoring,
        )
    except Exception:
        logger.exception("load alerts not resolved model=%s version=%d", name, version)
    _resolve_signature_alert(state, name, version, "is served")
    _resolve_replaced_versions(state, name, version)


def resolve_pinned_alerts(state: DaemonState, name: str, version: int) -> None:
    """Resolve the ``signature`` alerts of `version` of `name`, now loaded for
    requests pinned to it with ``?version=N``.

    Blocks as `resolve_served_alerts` does, so call it off the event loop.
    """
    _resolve_signature_alert(
        state, name, version, f"serves requests pinned to it with ?version={version}"
    )


def _resolve_signature_alert(
    state: DaemonState, name: str, version: int, served_as: str
) -> None:
    from appliance.monitoring import resolve_alerts

    config = state.config
    try:
        resolve_alerts(
            config.storage.home,
            name,
            ("signature",),
            f"version {version} of model {name!r} passed its signature check and "
            f"{served_as}",
            config.monitoring,
            subject=f"version {version}",
        )
    except Exception:
        logger.exception(
            "signature alert not resolved model=%s version=%d", name, version
        )


def _resolve_replaced_versions(state: DaemonState, name: str, version: int) -> None:
    """Resolve the open alerts of the kinds in `VERSIONED_SUBJECTS` that judged
    a version of `name` other than `version`, the champion now served."""
    from appliance.monitoring import (
        VERSIONED_SUBJECTS,
        AlertStatus,
        MonitoringStore,
        resolve_alerts,
        versioned_subject,
    )

    config = state.config
    served = {
        (kind, versioned_subject(subject, version))
        for kind, subjects in VERSIONED_SUBJECTS.items()
        for subject in subjects
    }
    reason = (
        f"champion version {version} of model {name!r} is served, so the "
        "health check no longer judges the version this alert names"
    )
    try:
        with MonitoringStore(config.storage.home) as store:
            alerts = store.list_alerts(AlertStatus.OPEN, name)
        keys = {(a.kind, a.subject) for a in alerts if a.kind in VERSIONED_SUBJECTS}
        for kind, subject in sorted(keys - served):
            resolve_alerts(
                config.storage.home,
                name,
                (kind,),
                reason,
                config.monitoring,
                subject=subject,
            )
    except Exception:
        logger.exception(
            "replaced version alerts not resolved model=%s version=%d", name, version
        )


def resolve_when_champion(state: DaemonState, model: OnnxModel) -> None:
    """Resolve the alerts `model` ends, in a worker thread, if it is the champion.

    Call it on the event loop after `ModelSet.put` served `model`.
    """
    if state.models.champions.get(model.name) != model.version:
        return
    asyncio.get_running_loop().run_in_executor(
        None, resolve_served_alerts, state, model.name, model.version
    )


def resolve_when_pinned(state: DaemonState, model: OnnxModel) -> None:
    """Resolve the ``signature`` alerts of `model`, in a worker thread.

    Call it on the event loop after `ModelSet.pin` loaded `model`, so the
    request does not wait for the monitoring store or the webhook.
    """
    asyncio.get_running_loop().run_in_executor(
        None, resolve_pinned_alerts, state, model.name, model.version
    )
