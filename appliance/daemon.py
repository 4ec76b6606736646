"""The daemon: one process and one event loop for the whole appliance.

`serve` takes the home lock, binds the socket and runs the Litestar app under
uvicorn. The app's lifespan enters the `COMPONENTS` in order on one
`AsyncExitStack` and exits them in reverse at shutdown:

1. the catalog connection, the only writer of the catalog while the daemon runs;
2. the active API keys, which the access gate in front of the app checks;
3. the prediction log writer;
4. the served models (the champion of each, else its latest version), on a
   session thread pool;
5. the feature views, read into memory to fill requests from entity keys;
6. the ingest buffer of ``POST /v1/datasets/NAME/rows``, flushed in a thread;
7. the streaming monitors, fed off the request path by one worker thread;
8. the retraining service, one job per model at a time;
9. the APScheduler scheduler;
10. the periodic ``malloc_trim`` that returns freed heap memory;
11. the lower priority of the background threads (``[server] background_nice``);
12. the SIGHUP handler that reloads the configuration.

On SIGTERM uvicorn stops accepting connections and lets requests in flight
finish; then the stack closes, so the scheduler stops, the buffered rows are
flushed, the prediction log is written out and the catalog closed before the
process exits with status 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import gc
import logging
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import Any

import pyarrow as pa
import uvicorn
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from litestar import Litestar

from appliance._reload_checks import (
    changed_settings,
    check_reloadable,
    check_security,
    section_changes,
    warn_missing_datasets,
)
from appliance.access import (
    DAEMON,
    Actor,
    active_keys,
    set_process_actor,
    usable_count,
)
from appliance.config import Config, load_config
from appliance.crypto import ColumnCipher, column_cipher
from appliance.errors import (
    ApplianceError,
    ConfigError,
    DaemonError,
    NotFoundError,
    StorageError,
    one_line,
)
from appliance.features import FeatureServer
from appliance.hangup import defer_hangups, take_deferred_hangup
from appliance.homelock import HomeLock
from appliance.logs import configure_logging
from appliance.memory import (
    limit_duckdb,
    limit_malloc_arenas,
    process_memory,
    trim_malloc,
    trim_periodically,
    use_system_arrow_pool,
)
from appliance.pacing import lower_priority, thread_ids
from appliance.predictions import PredictionLog
from appliance.serving import (
    AccessControl,
    AccessGate,
    DaemonState,
    ModelSet,
    OnnxModel,
    PredictLane,
    ServingMetrics,
    batch_settings,
    check_exposure,
    create_app,
    load_model,
    publish_model_schema,
    record_in_daemon,
    record_refusals,
    reload_features,
    resolve_served_alerts,
    resolve_when_champion,
    retry_champion,
    run_with_catalog,
    skip_pyarrow_pandas_probe,
    update_view_alerts,
    watch_views,
)
from appliance.storage import (
    Catalog,
    IngestBuffer,
    ModelVersion,
    champion_models,
    check_key,
    compact_catalog,
    compaction_requested,
    fallback_versions,
    get_version,
    log_orphans,
    remove_orphan_folders,
)

logger = logging.getLogger(__name__)

Component = Callable[[DaemonState], AbstractAsyncContextManager[None]]

GIL_SWITCH_SECONDS = 0.0005
"""The interpreter's switch interval in the daemon (Python's default: 5 ms).

The prediction log writer and the streaming monitors run Python code in
their own threads. A request that arrives while one of them holds the GIL
waits up to this interval before the interpreter makes it switch. In one-off
alternated runs at c=1 (two each, an estimate), the p99 fell from 3.9 to 2.7
ms, and turning the monitors off gave about 1.4 ms. The full benchmark
(`benchmarks/serving.py`) still measured 3.16 ms with it."""

JOB_STOP_WAIT_SECONDS = 30.0
"""Maximum wait at stop for scheduled jobs in progress, such as a health check
that scores a previous champion or a batch drift check, to finish."""


@contextlib.asynccontextmanager
async def open_catalog(state: DaemonState) -> AsyncIterator[None]:
    """Open the catalog for writing; the daemon holds it until it stops.

    The catalog is compacted first when an erasure asked for it. Version
    folders left by an ingest or an erasure that was killed are removed
    first, while no ingest of this daemon runs.
    """
    home = state.config.storage.home
    if compaction_requested(home):
        # An erasure ran in the previous run; the bytes of its rows go now.
        try:
            await asyncio.to_thread(compact_catalog, home)
        except StorageError:
            logger.exception(
                "catalog compaction failed; the marker stays for the next start "
                "home=%s",
                home,
            )
    before = thread_ids()
    state.catalog = Catalog(home)
    state.duckdb_threads = thread_ids() - before
    limit_duckdb(state.catalog.db, state.config.server.catalog_memory_mb)
    await asyncio.to_thread(remove_orphan_folders, state.catalog)
    await asyncio.to_thread(log_orphans, home)
    try:
        yield
    finally:
        state.catalog.close()
        logger.info("catalog closed path=%s", state.catalog.path)


def sensitive_inputs(state: DaemonState) -> tuple[frozenset[str], ColumnCipher] | None:
    """Return the input columns the prediction log encrypts, with their cipher.

    The key is checked against the stored versions here, so a wrong key file
    stops the start instead of logging values that match no stored one.

    Raises:
        ColumnKeyError: The key file is missing, invalid or another key.
    """
    columns = state.config.sensitive_columns
    if not columns:
        return None
    cipher = column_cipher(state.config)
    check_key(state.catalog, cipher)
    return columns, cipher


@contextlib.asynccontextmanager
async def control_access(state: DaemonState) -> AsyncIterator[None]:
    """Read the active API keys; record the refused requests counted at exit.

    Raises:
        ConfigError: ``[security] require_keys`` is true and no key is
            active (unrevoked and unexpired), so no request but the health
            probes could be served.
    """
    keys = await run_with_catalog(state, active_keys)
    usable = usable_count(keys)
    if state.config.security.require_keys and not usable:
        raise ConfigError(
            f"[security] require_keys is true in {state.config.path}, but the "
            "catalog has no active API key (every key is revoked or expired), so "
            "every request would be rejected; with the daemon stopped, run "
            "'appliance keys create NAME --role admin' and start it again"
        )
    state.access = AccessControl(keys)
    logger.info(
        "access control ready keys=%d expired=%d require_keys=%s",
        usable,
        len(keys) - usable,
        state.config.security.require_keys,
    )
    try:
        yield
    finally:
        await run_with_catalog(state, record_refusals, state.access.refusals)


@contextlib.asynccontextmanager
async def run_prediction_log(state: DaemonState) -> AsyncIterator[None]:
    """Run the prediction log writer; write out every queued row at exit."""
    log = PredictionLog(
        state.catalog, state.config.predictions, sensitive_inputs(state)
    )
    await asyncio.to_thread(log.start)
    state.predictions = log
    state.metrics.watch_log(
        lambda: log.queued_rows,
        lambda: log.spilled_rows,
        lambda: log.written_rows,
        lambda: log.journal.failed_writes,
    )
    try:
        yield
    finally:
        await asyncio.to_thread(log.stop)


@contextlib.asynccontextmanager
async def serve_models(state: DaemonState) -> AsyncIterator[None]:
    """Load the champion of every model (its latest version until one is promoted)."""
    settings = batch_settings(state.config.server)
    state.models = ModelSet(
        settings=settings,
        on_batch=state.metrics.observe_batch,
    )
    state.models.explain_missing = lambda name: _explain_missing(state, name)
    state.metrics.watch_models(
        lambda: {name: m.version for name, m in state.models.models.items()},
        lambda: dict(state.models.champions),
    )
    try:
        await asyncio.to_thread(_load_models, state)
        state.models.loaded = True
        yield
    finally:
        state.models.executor.shutdown(wait=True)


def _load_models(state: DaemonState) -> None:
    """Load every model in this worker thread.

    A champion that fails to load (a missing or corrupted artifact) is
    replaced by the first earlier version that loads (see
    `fallback_versions`). The swap is kept in `state.load_failures`, so the
    monitoring service can raise it as an alert; the alias does not move.
    """
    started = time.perf_counter()
    view = state.catalog.cursor()
    try:
        for version in champion_models(view):
            model = _load_champion(state, view, version)
            if model is not None:
                state.models.put(model, champion=version.version)
            else:
                state.models.champions[version.model] = version.version
        warn_missing_datasets(view, state.config)
    finally:
        view.close()
    logger.info(
        "models ready count=%d seconds=%.3f",
        len(state.models.models),
        time.perf_counter() - started,
    )


def _explain_missing(state: DaemonState, name: str) -> str | None:
    """Say why declared model `name` is not served; None for an undeclared one."""
    if name not in state.config.models:
        return None
    failed = [f for f in state.load_failures if f[0] == name and f[2] is None]
    if failed:
        _, version, _, reason = failed[-1]
        return (
            f"no version of it loads (champion version {version}: {reason}); "
            "restore its artifact from a backup, or promote a version that loads"
        )
    return (
        f"it is declared in {state.config.path} but has no version yet; run "
        f"'appliance train {name}'"
    )


def _load_champion(
    state: DaemonState, view: Catalog, version: ModelVersion
) -> OnnxModel | None:
    """Load a model's champion, or the first earlier version that loads."""
    failure = ""
    for number in [
        version.version,
        *fallback_versions(view, version.model, version.version),
    ]:
        candidate = (
            version
            if number == version.version
            else get_version(view, version.model, number)
        )
        begun = time.perf_counter()
        try:
            model = load_model(state.config, candidate.path, candidate.sha256)
        except ApplianceError as exc:
            # A known failure, such as a changed file, names its cause.
            logger.error(
                "model load failed model=%s version=%d error=%s",
                version.model,
                number,
                exc,
            )
            failure = failure or str(exc)
            continue
        except Exception as exc:
            logger.exception(
                "model load failed model=%s version=%d", version.model, number
            )
            failure = failure or str(exc)
            continue
        seconds = time.perf_counter() - begun
        state.metrics.model_load.labels(model.name, str(model.version)).set(seconds)
        logger.info(
            "model loaded model=%s version=%d seconds=%.3f",
            model.name,
            model.version,
            seconds,
        )
        if number != version.version:
            state.load_failures.append(
                (version.model, version.version, number, failure)
            )
        return model
    state.load_failures.append((version.model, version.version, None, failure))
    return None


@contextlib.asynccontextmanager
async def serve_features(state: DaemonState) -> AsyncIterator[None]:
    """Read the feature views of the models that join any.

    A view that cannot be read is logged; the first request that needs it
    tries again and fails with the error. A view whose dataset has no version
    yet, as on the first start of a new home, gets one warning and no
    traceback. A view whose SQL fails on its rows raises a ``feature_view``
    alert and leaves the other views loaded. Alerts of earlier runs are
    resolved for the views that load now.
    """
    state.features = FeatureServer(state.config, state.catalog)
    if state.features.models:
        try:
            await asyncio.to_thread(state.features.load)
        except NotFoundError as exc:
            logger.warning("feature views not loaded yet: %s", exc)
        except StorageError as exc:
            # Lost lake files are named in full by the message, with the remedy.
            logger.error("feature views load failed error=%s", exc)
        except ConfigError as exc:
            # The message names the view and the fault, so no traceback.
            logger.error(
                "feature views load failed, retried on the first request error=%s",
                one_line(str(exc)),
            )
        except ApplianceError:
            logger.exception("feature views load failed; retried on the first request")
        watch_views(state)
        await asyncio.to_thread(update_view_alerts, state, None)
    yield


@contextlib.asynccontextmanager
async def run_ingest_buffer(state: DaemonState) -> AsyncIterator[None]:
    """Flush what a previous run left in the buffer, then flush by size or age.

    The feature views are read again after each flush. At exit the flush
    thread stops and every buffered row is flushed.
    """
    buffer = IngestBuffer(state.config, state.catalog)
    buffer.on_flush = lambda dataset, result: reload_features(state)
    await asyncio.to_thread(buffer.start)
    state.ingest = buffer
    state.metrics.watch_ingest(buffer.counts, buffer.waiting_rejected)
    try:
        yield
    finally:
        await asyncio.to_thread(buffer.stop)


@contextlib.asynccontextmanager
async def run_monitoring(state: DaemonState) -> AsyncIterator[None]:
    """Run the streaming monitors; save their state at exit."""
    from appliance.monitoring import MonitoringService

    service = MonitoringService(state.config.storage.home, state.config.monitoring)
    service.start()
    state.monitoring = service
    await asyncio.to_thread(_update_load_alerts, state)
    state.metrics.watch_monitoring(
        lambda: service.queued,
        lambda: service.dropped,
        lambda: service.observed,
        service.cpu_seconds,
    )
    try:
        yield
    finally:
        await asyncio.to_thread(service.stop)


def _update_load_alerts(state: DaemonState) -> None:
    """Raise a critical alert for each champion that failed to load at start,
    and resolve the alerts of earlier runs that each served champion ends."""
    from appliance.monitoring import (
        AlertCandidate,
        AlertStatus,
        MonitoringStore,
        raise_alerts,
    )

    with MonitoringStore(state.config.storage.home) as store:
        alerted = {a.model for a in store.list_alerts(AlertStatus.OPEN)}
    unserved = state.models.unserved_champions()
    for name, model in state.models.models.items():
        if name in alerted and name not in unserved:
            resolve_served_alerts(state, name, model.version)
    candidates = []
    for model, version, served, reason in state.load_failures:
        instead = (
            f"serving version {served} instead"
            if served is not None
            else "no version of it loads, so it is not served"
        )
        candidates.append(
            AlertCandidate(
                model,
                "load",
                f"version {version}",
                "critical",
                f"champion version {version} of model {model!r} failed to load "
                f"({reason}); {instead}. Restore its artifact from a backup, or "
                f"promote a version that loads",
            )
        )
    home, monitoring = state.config.storage.home, state.config.monitoring
    raise_alerts(home, candidates, monitoring, background=True)


@contextlib.asynccontextmanager
async def run_retraining(state: DaemonState) -> AsyncIterator[None]:
    """Run the retraining service; resume the runs a stop interrupted.

    Drift alarms of the streaming monitors start retraining decisions. At exit
    a running job stops at its next stop check, within a short wait, and is
    resumed at the next start.
    """
    from appliance.retraining import RetrainService

    service = RetrainService(state)
    state.retraining = service
    await service.start()
    state.monitoring.on_drift = service.drift_alarm
    try:
        yield
    finally:
        state.monitoring.on_drift = None
        await service.stop()


@contextlib.asynccontextmanager
async def run_scheduler(state: DaemonState) -> AsyncIterator[None]:
    """Run the APScheduler scheduler on the daemon's event loop.

    Jobs live in ``HOME/jobs.duckdb``, so they and their next run times
    survive a restart. Each model gets a batch drift check and a health check
    (live performance, error rate, latency, rollback watch), and a retraining
    job when its policy has a cron `schedule`; the daemon is registered so that
    the health checks can read its counters and models.
    """
    from appliance.monitoring import (
        JOBS_FILE,
        DuckDBJobStore,
        register_daemon,
        unregister_daemon,
        wait_for_jobs,
    )
    from appliance.serving import DaemonWatch

    scheduler = AsyncIOScheduler(timezone="UTC")
    home = state.config.storage.home
    register_daemon(DaemonWatch(state, asyncio.get_running_loop()))
    scheduler.add_jobstore(DuckDBJobStore(home / JOBS_FILE), "default")
    scheduler.start()
    state.scheduler = scheduler
    jobs = await asyncio.to_thread(schedule_jobs, scheduler, state.config)
    logger.info("scheduler started jobs=%s", ",".join(jobs) or "-")
    try:
        yield
    finally:
        scheduler.pause()
        if not await asyncio.to_thread(wait_for_jobs, JOB_STOP_WAIT_SECONDS):
            logger.warning(
                "scheduler job still running at stop wait_s=%.0f",
                JOB_STOP_WAIT_SECONDS,
            )
        scheduler.shutdown(wait=False)
        unregister_daemon(home)
        logger.info("scheduler stopped")


def schedule_jobs(scheduler: Any, config: Config) -> list[str]:
    """Bring the scheduler's jobs in line with `config` and return their ids.

    Jobs whose settings did not change keep their next run time. Jobs of
    models or policies that are no longer declared are removed.
    """
    from appliance.monitoring import (
        schedule_drift_checks,
        schedule_health_checks,
        schedule_prediction_expiry,
    )
    from appliance.retraining import schedule_retraining

    jobs = schedule_drift_checks(scheduler, config)
    jobs += schedule_retraining(scheduler, config)
    jobs += schedule_health_checks(scheduler, config)
    jobs += schedule_prediction_expiry(scheduler, config)
    return jobs


def trim_memory(state: DaemonState) -> AbstractAsyncContextManager[None]:
    """Return freed heap memory to the system every ``malloc_trim_seconds``."""
    return trim_periodically(state.config.server.malloc_trim_seconds)


@contextlib.asynccontextmanager
async def lower_background_priority(state: DaemonState) -> AsyncIterator[None]:
    """Lower the priority of the background threads started so far."""
    writers = (state.predictions, state.monitoring, state.ingest)
    threads = state.duckdb_threads | {
        thread for writer in writers if (thread := writer.thread_id) is not None
    }
    by = state.config.server.background_nice
    changed = lower_priority(threads, by)
    logger.info("background threads lowered by=%d threads=%d", by, changed)
    yield


@contextlib.asynccontextmanager
async def handle_sighup(state: DaemonState) -> AsyncIterator[None]:
    """Reload the configuration on SIGHUP while the daemon runs.

    Reloads run one at a time, in the order of the signals. A SIGHUP that
    arrived during the start (`appliance.hangup`) is reloaded once the handler
    is in place. At stop, the reloads in progress finish before the catalog
    closes, and a later SIGHUP is ignored.
    """
    loop = asyncio.get_running_loop()
    turn = asyncio.Lock()
    running: set[asyncio.Task[bool]] = set()

    async def reload_in_turn() -> bool:
        async with turn:
            return await reload_config(state)

    def start_reload() -> None:
        task = loop.create_task(reload_in_turn())
        running.add(task)
        task.add_done_callback(running.discard)

    loop.add_signal_handler(signal.SIGHUP, start_reload)
    if take_deferred_hangup():
        logger.info("config reload requested during start, reloading now")
        start_reload()
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
        # remove_signal_handler restores the default action, which would end
        # the process before the prediction log is written out.
        defer_hangups()
        await asyncio.gather(*running, return_exceptions=True)


COMPONENTS: list[Component] = [
    open_catalog,
    control_access,
    run_prediction_log,
    serve_models,
    serve_features,
    run_ingest_buffer,
    run_monitoring,
    run_retraining,
    run_scheduler,
    trim_memory,
    lower_background_priority,
    handle_sighup,
]
"""Parts of the daemon, entered in this order at startup and exited in reverse."""


async def reload_config(state: DaemonState) -> bool:
    """Replace the configuration from its file, or keep the old one.

    Settings read per request (limits, micro-batching, model declarations, log
    level, ``[security]`` keys but the column key) apply at once, and
    scheduled jobs follow the new intervals and retraining schedules. A
    change of a setting in `RESTART_SETTINGS` (home, host, port, session
    threads, memory, priority, prediction log, column key) or of the
    sensitive columns needs a restart, so such a file is rejected as a
    whole. So is a ``[security]`` change that `check_security` finds unsafe.
    Changed feature views are read in a worker thread before anything is
    replaced, so a view that fails, such as one whose SQL does not bind,
    rejects the file too, and the old views keep serving. After a reload, a
    champion that failed to load is served once its files verify.

    Returns:
        True when the new configuration is in force.
    """
    old = state.config
    try:
        new = load_config(old.path)
        check_reloadable(old, new)
        check_exposure(state.host, new.security.require_keys, new.path)
        await _check_security(state, old, new)
        features = await asyncio.to_thread(_read_new_features, state, old, new)
    except ApplianceError as exc:
        logger.error(
            "config reload rejected path=%s error=%s; old config kept", old.path, exc
        )
        details = {"error": str(exc)}
        record_in_daemon(state, "config.reload", str(old.path), details, "failed")
        return False
    state.config = new
    security = section_changes("security", old.security, new.security)
    changed = changed_settings(old, new)
    details = {**changed, "security": security} if security else changed
    record_in_daemon(state, "config.reload", str(new.path), details or None)
    if security:
        logger.info("security settings applied changes=%s", "; ".join(security))
    if state.home_lock is not None:
        state.home_lock.record(state.host, state.port, new.path)
    state.models.configure(batch_settings(new.server))
    # Dataset settings and contracts apply from the next flush, and the
    # flush thresholds from the buffer's next check.
    state.ingest.config = new
    state.ingest.flush_rows = new.ingest.flush_rows
    state.ingest.flush_seconds = new.ingest.flush_seconds
    if features is not None:
        state.features = features
    _reschedule_jobs(state)
    configure_logging(new.log_level)
    logger.info(
        "config reloaded path=%s changed=%s added=%s removed=%s",
        new.path,
        ",".join(changed.get("changed", [])) or "-",
        ",".join(changed.get("added", [])) or "-",
        ",".join(changed.get("removed", [])) or "-",
    )
    await run_with_catalog(state, warn_missing_datasets, new)
    for name in state.models.unserved_champions():
        await retry_champion(state, name)
    return True


async def _check_security(state: DaemonState, old: Config, new: Config) -> None:
    """Run `check_security` on the served models in a worker thread."""
    if new.security == old.security:
        return
    usable = usable_count(state.access.keys)
    served = {name: model.version for name, model in state.models.models.items()}
    await run_with_catalog(state, check_security, old, new, usable, served)


def _read_new_features(
    state: DaemonState, old: Config, new: Config
) -> FeatureServer | None:
    """Read the feature views of `new` when their declarations changed.

    Blocks while the views are read, so call it off the event loop. A view
    whose dataset has no version yet is logged and read again at the first
    request that needs it, as at start.

    Returns:
        The server of the new views, or None when no declaration changed.

    Raises:
        ConfigError: A view's SQL is invalid or lacks a declared column.
        StorageError: The files of a view's dataset cannot be read.
    """
    joined = {name: m.feature_views for name, m in new.models.items()}
    before = {name: m.feature_views for name, m in old.models.items()}
    if joined == before and new.feature_views == old.feature_views:
        return None
    features = FeatureServer(new, state.catalog)
    if not features.models:
        return features
    # NOTE: the old views stay in memory while the new ones are read, so the
    # views use twice their memory for that time. A buffer flush during the
    # read loads the old views again, and the new ones show its rows only
    # after the next flush.
    try:
        features.load()
    except NotFoundError as exc:
        logger.warning("feature views not loaded yet: %s", exc)
    return features


def _reschedule_jobs(state: DaemonState) -> None:
    """Apply the reloaded schedules off the loop, because the job store is a file."""
    scheduler = getattr(state, "scheduler", None)
    if scheduler is None:
        return

    def reschedule() -> None:
        try:
            jobs = schedule_jobs(scheduler, state.config)
        except Exception:
            logger.exception(
                "jobs not rescheduled after reload, restart the daemon to apply them"
            )
            return
        logger.info("jobs rescheduled after reload jobs=%s", ",".join(jobs) or "-")

    asyncio.get_running_loop().run_in_executor(None, reschedule)


def build_app(state: DaemonState) -> Litestar:
    """Return the app whose lifespan runs every component of `state`."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        started = time.perf_counter()
        async with AsyncExitStack() as stack:
            try:
                for component in COMPONENTS:
                    await stack.enter_async_context(component(state))
            except ApplianceError as exc:
                # The error names the cause and what to do, so the traceback
                # that uvicorn would log after it is left out.
                state.start_error = exc
                logger.error("daemon start failed error=%s", exc)
                raise
            for model in state.models.models.values():
                _publish(app, state, model)
            state.models.on_put = lambda model: _on_put(app, state, model)
            _freeze_startup_objects()
            trim_malloc()
            state.ready_at = time.time()
            logger.info(
                "daemon ready host=%s port=%d seconds=%.3f rss_mb=%.1f arrow_pool=%s",
                state.host,
                state.port,
                time.perf_counter() - started,
                process_memory().get("VmRSS", 0.0),
                pa.default_memory_pool().backend_name,
            )
            yield
            logger.info("daemon stopping")

    return create_app(state, lifespan=[lifespan])


def _on_put(app: Litestar, state: DaemonState, model: OnnxModel) -> None:
    """Publish the schema of a newly served `model`; resolve the alerts it ends."""
    _publish(app, state, model)
    resolve_when_champion(state, model)


def _publish(app: Litestar, state: DaemonState, model: OnnxModel) -> None:
    """Publish the input row schema of `model` with its feature lookup."""
    publish_model_schema(app, model, state.features.request_lookup(model.name))


def _freeze_startup_objects() -> None:
    """Move every object alive after startup out of the garbage collector's view.

    Modules, routes and models live as long as the daemon, yet each full
    collection walked them all. Under wrk load on the benchmark's flights
    model, full collections took 40 to 110 ms before and under 10 ms after.
    Every request in flight waits for such a pause.
    """
    gc.collect()
    gc.freeze()
    logger.debug("startup objects frozen count=%d", gc.get_freeze_count())


def serve(config: Config, host: str | None = None, port: int | None = None) -> None:
    """Serve every registered model over HTTP until SIGINT or SIGTERM.

    The home lock is taken before the socket is bound, so a second daemon on
    the same home fails with the pid of the first, whatever its port.

    Raises:
        DaemonRunningError: Another daemon holds the home.
        DaemonError: The socket cannot be bound or the startup failed.
    """
    bind_host = host or config.server.host
    bind_port = config.server.port if port is None else port
    defer_hangups()
    check_exposure(bind_host, config.security.require_keys, config.path)
    set_process_actor(Actor(DAEMON))
    limit_malloc_arenas(config.server.malloc_arenas)
    use_system_arrow_pool()
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    skip_pyarrow_pandas_probe()
    with HomeLock(config.storage.home) as lock:
        sock = _bind(bind_host, bind_port)
        bound_port = sock.getsockname()[1]
        lock.record(bind_host, bound_port, config.path)
        state = DaemonState(
            config=dataclasses.replace(config),
            metrics=ServingMetrics(),
            host=bind_host,
            port=bound_port,
            home_lock=lock,
        )
        server = uvicorn.Server(
            uvicorn.Config(
                AccessGate(PredictLane(build_app(state)), state),
                log_config=None,
                access_log=False,
                lifespan="on",
                timeout_graceful_shutdown=30,
            )
        )
        logger.info("daemon starting host=%s port=%d", bind_host, bound_port)
        # uvicorn shuts down on SIGTERM and then re-raises the signal to the
        # handler it found; a handler that ignores it lets the process exit 0.
        signal.signal(signal.SIGTERM, _ignore_signal)
        quiet = _QuietStartFailure(state)
        logging.getLogger("uvicorn.error").addFilter(quiet)
        try:
            server.run(sockets=[sock])
        except SystemExit:
            # uvicorn exits when the startup fails. When an `ApplianceError`
            # caused it, that error is raised instead, for the CLI to print.
            if state.start_error is None:
                raise
        finally:
            logging.getLogger("uvicorn.error").removeFilter(quiet)
            # uvicorn closes the socket at shutdown but not when the startup
            # fails, and a second close does nothing.
            sock.close()
        if state.start_error is not None:
            raise DaemonError(f"the daemon failed to start: {state.start_error}")
        if not server.started:
            raise DaemonError(
                "the daemon failed to start; the log above names the cause"
            )
    logger.info("daemon stopped")


class _QuietStartFailure(logging.Filter):
    """Drop uvicorn's error records once the start failed with an `ApplianceError`,
    which the daemon has logged in one line."""

    def __init__(self, state: DaemonState) -> None:
        super().__init__()
        self.state = state

    def filter(self, record: logging.LogRecord) -> bool:
        """Return False for uvicorn's errors that repeat a logged start failure."""
        return self.state.start_error is None or record.levelno < logging.ERROR


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must be IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted
    # connections only then, and without it Nagle's algorithm and delayed ACKs
    # add about 40 ms to every response sent in two writes.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno in (errno.EADDRINUSE, errno.EACCES):
            advice = "choose another [server] port or stop the process using it"
        else:
            advice = (
                "check [server] host (an address of this machine, such as 127.0.0.1)"
            )
        raise DaemonError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; {advice}"
        ) from None
    sock.set_inheritable(True)
    return sock


def _ignore_signal(signum: int, frame: Any) -> None:
    logger.debug("signal ignored signum=%d", signum)
