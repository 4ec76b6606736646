"""The daemon's retraining service: one run per model at a time, off the loop.

Triggers are a drift alarm of the model's streaming monitor, the cron
`schedule` of its policy (an APScheduler job in the persistent job store, so
missed runs coalesce and survive a restart), and an operator's request. Each
decision goes through `decide_retrain`, so the cool-down, the budget and the
count of new labels apply, and each is recorded in the monitoring store's
``retrain_runs``: skips, runs and their outcome.

A run is recorded as ``running`` before it trains. Once the daemon stops, no
new run starts, and a run that trains ends at its next stop check, which
`appliance.training._stop` lists, and is recorded as ``interrupted``. Its
training run is recorded as failed, and no version is left half registered.
A stop waits `stop_wait_seconds` for that, because a part without a check,
such as skl2onnx's conversion, runs to its end. A run still training after
that wait is recorded as ``interrupted`` too. A killed daemon leaves the
``running`` record, and the next start marks it ``interrupted``. Either way
the next start runs it again once, with the same trigger and time, without
deciding again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from appliance.errors import (
    ApplianceError,
    DaemonError,
    JobRunningError,
    TrainingStopped,
)
from appliance.monitoring import MonitoringStore, RetrainRecord
from appliance.registry import promote
from appliance.retraining._job import (
    ACTOR,
    Outcome,
    RetrainDecision,
    decide,
    forced_note,
    pin_champion,
    train_challenger,
)
from appliance.retraining._scoring import as_utc, record_dict, run_clock
from appliance.serving import (
    OnnxModel,
    load_model,
    record_in_daemon,
    run_with_catalog,
)
from appliance.storage import CHAMPION

if TYPE_CHECKING:
    from appliance.serving import DaemonState

logger = logging.getLogger(__name__)

T = TypeVar("T")

TRIGGERS = ("manual", "drift", "schedule")

_RESUME = "resume_at_start"
"""Detail key of an interrupted run that the next start runs again."""

_SERVICES: dict[str, RetrainService] = {}
"""Running services by home folder, for the scheduler's job function."""


class RetrainService:
    """Runs retraining jobs of the daemon's models, one at a time per model.

    Args:
        state: The daemon's shared state.
        stop_wait_seconds: How long a stop waits for running jobs.
    """

    def __init__(self, state: DaemonState, stop_wait_seconds: float = 10.0) -> None:
        self.state = state
        self.stop_wait_seconds = stop_wait_seconds
        self._running: dict[str, RetrainRecord] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._finishing: set[str] = set()
        """Models whose run has trained and now promotes or records its outcome."""
        self._busy_skips: dict[tuple[str, str], RetrainRecord] = {}
        """The ``skipped`` record of the triggers that arrived during a job, by
        model and trigger, so that later triggers of that job count on it."""
        self._busy_lock = asyncio.Lock()
        self._stopping = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def home(self) -> Any:
        """The appliance home of the daemon."""
        return self.state.config.storage.home

    async def start(self) -> None:
        """Register the service and run once each job a stop interrupted."""
        self._loop = asyncio.get_running_loop()
        _SERVICES[str(self.home)] = self
        interrupted = await asyncio.to_thread(self._mark_interrupted)
        for record in interrupted:
            if (
                record.model in self._running
                or record.model not in self.state.config.models
            ):
                continue
            logger.warning(
                "retraining resumed model=%s interrupted=%s trigger=%s",
                record.model,
                record.id,
                record.trigger,
            )
            self._begin(
                record.model,
                record.trigger,
                record.as_of,
                record.new_labels or 0,
                record.id,
                clock=run_clock(record.__dict__),
            )

    async def stop(self) -> None:
        """Start no new job, and wait a short while for running ones.

        A job still training is recorded as ``interrupted`` and run again at
        the next start. One that is promoting or recording its outcome stays
        ``running``, because its worker thread may still write that outcome,
        and the next start marks it.
        """
        self._stopping.set()
        _SERVICES.pop(str(self.home), None)
        tasks = [t for t in self._tasks.values() if not t.done()]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=self.stop_wait_seconds)
        stopped = [
            (record, model not in self._finishing)
            for model, record in self._running.items()
            if self._tasks.get(model) in pending
        ]
        # NOTE: a training thread still running here keeps its catalog cursor.
        # Inside a DuckDB call when the catalog closes or the interpreter exits,
        # it fails the close or aborts the process with SIGABRT.
        for task in pending:
            task.cancel()
        for record, training in stopped:
            if training:
                await asyncio.to_thread(_update, self.home, _interrupted(record))
            logger.warning(
                "retraining still running at stop model=%s id=%s outcome=%s; run "
                "again at the next start",
                record.model,
                record.id,
                "interrupted" if training else "running",
            )

    def running(self, model: str) -> RetrainRecord | None:
        """Return the record of the job of `model` that runs now, if any."""
        return self._running.get(model)

    async def request(
        self,
        model: str,
        trigger: str,
        as_of: datetime | None = None,
        force: bool = False,
    ) -> tuple[dict[str, Any], bool]:
        """Decide on a trigger and start a run when the policy allows it.

        Args:
            model: Declared model name.
            trigger: ``manual``, ``drift`` or ``schedule``.
            as_of: Time taken as now; the policy's clock when None.
            force: Start a run without the policy's decision (an operator's
                request only).

        Returns:
            The record (``running`` when a run started, else ``skipped``) as
            JSON-ready values, and whether a run started.

        Raises:
            JobRunningError: A job of `model` runs; its id is in the detail.
            ConfigError: The model is not declared.
        """
        cfg = self.state.config.model(model)
        if self._stopping.is_set():
            raise DaemonError(
                f"the daemon is stopping, so no retraining of model {model!r} "
                "starts; request it again once the daemon runs"
            )
        self._check_idle(model)
        placeholder = RetrainRecord(
            model, trigger, "deciding", "", datetime.now(UTC), id=_new_id()
        )
        self._running[model] = placeholder
        try:
            decided = await asyncio.to_thread(self._decide, cfg, trigger, as_of)
        except BaseException:
            self._running.pop(model, None)
            raise
        act = decided.decision.act
        # The record takes the placeholder's id, which a trigger that arrived
        # while deciding names as its running_id.
        if not act and not force:
            self._running.pop(model, None)
            skipped = await asyncio.to_thread(
                self._skip, model, trigger, decided, placeholder.id
            )
            return record_dict(skipped.__dict__), False
        note = None if act else forced_note(decided.decision)
        record = self._begin(
            model,
            trigger,
            decided.as_of,
            decided.new_labels,
            note=note,
            clock=decided.clock,
            run_id=placeholder.id,
        )
        return record_dict(record.__dict__), True

    async def wait(self, model: str) -> None:
        """Wait until the job of `model` that runs now has finished."""
        task = self._tasks.get(model)
        if task is not None:
            await asyncio.shield(task)

    def history(self, model: str, limit: int) -> list[dict[str, Any]]:
        """Return the newest `limit` records of `model`, newest first."""
        with MonitoringStore(self.home) as store:
            rows = store.retrain_history(model)[:limit]
        return [record_dict(row) for row in rows]

    def drift_alarm(self, model: str) -> None:
        """Start a drift decision from any thread, if the policy uses drift.

        The monitoring worker calls this after recording detections. An alarm
        during a running job is recorded as a skip, once per job and counted
        on that record (`_record_busy`).
        """
        cfg = self.state.config.models.get(model)
        if cfg is None or cfg.retrain.trigger not in ("drift", "both"):
            return
        if self._loop is None or self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(
            lambda: asyncio.ensure_future(self._triggered(model, "drift"))
        )

    async def run_scheduled(self, model: str) -> dict[str, Any]:
        """Decide on a scheduled tick and wait for the run it starts."""
        record = await self._triggered(model, "schedule")
        if record.get("outcome") == "running":
            await self.wait(model)
        return record

    async def _triggered(self, model: str, trigger: str) -> dict[str, Any]:
        try:
            record, _ = await self.request(model, trigger)
        except JobRunningError as exc:
            return await self._record_busy(model, trigger, exc)
        except DaemonError as exc:
            logger.warning(
                "retraining not started model=%s trigger=%s reason=%s",
                model,
                trigger,
                exc,
            )
            return {"outcome": "skipped", "reason": str(exc)}
        except Exception:
            logger.exception("retraining decision failed model=%s", model)
            return {"outcome": "failed"}
        return record

    async def _record_busy(
        self, model: str, trigger: str, exc: JobRunningError
    ) -> dict[str, Any]:
        """Record a trigger that arrived while a job of `model` runs.

        The first such trigger of a job gets a ``skipped`` record, and each
        later one of that job and trigger adds to its ``triggers`` count and
        moves its ``finished_at`` to now. A stream of drift alarms during a
        long run so leaves one row in the history in place of one per alarm.
        """
        running = self._running.get(model)
        running_id = running.id if running is not None else None
        now = datetime.now(UTC)
        async with self._busy_lock:
            previous = self._busy_skips.get((model, trigger))
            detail = previous.detail if previous and previous.detail else {}
            if previous is not None and detail.get("running_id") == running_id:
                count = detail["triggers"] + 1
                last = now.isoformat(timespec="seconds")
                record = dataclasses.replace(
                    previous,
                    reason=f"{exc}; {count} {trigger} triggers during that job "
                    f"recorded only, the last at {last}",
                    finished_at=now,
                    detail={**detail, "triggers": count},
                )
                await asyncio.to_thread(_update, self.home, record)
            else:
                record = RetrainRecord(
                    model,
                    trigger,
                    "skipped",
                    f"{exc}; {trigger} trigger recorded only",
                    now,
                    now,
                    id=_new_id(),
                    detail={"running_id": running_id, "triggers": 1},
                )
                await asyncio.to_thread(_insert, self.home, record)
                logger.info(
                    "retraining trigger recorded during a job model=%s trigger=%s "
                    "running_id=%s record=%s",
                    model,
                    trigger,
                    running_id,
                    record.id,
                )
            self._busy_skips[(model, trigger)] = record
        return record_dict(record.__dict__)

    def _check_idle(self, model: str) -> None:
        running = self._running.get(model)
        if running is not None:
            raise JobRunningError(
                f"a retraining of model {model!r} is running (id {running.id}, "
                f"trigger {running.trigger}); wait for it with GET "
                f"/v1/models/{model}/retrain",
                model=model,
                job_id=running.id,
            )

    def _decide(
        self, cfg: Any, trigger: str, as_of: datetime | None
    ) -> RetrainDecision:
        view = self.state.catalog.cursor()
        try:
            with MonitoringStore(self.home) as store:
                return decide(view, store, cfg, trigger, as_of)
        finally:
            view.close()

    def _skip(
        self, model: str, trigger: str, decided: RetrainDecision, run_id: str
    ) -> RetrainRecord:
        now = datetime.now(UTC)
        record = RetrainRecord(
            model,
            trigger,
            "skipped",
            decided.decision.reason,
            now,
            now,
            new_labels=decided.new_labels,
            id=run_id,
            as_of=decided.as_of,
            detail={"clock": decided.clock} if decided.as_of else None,
        )
        _insert(self.home, record)
        logger.warning(
            "retraining skipped model=%s trigger=%s reason=%s",
            model,
            trigger,
            decided.decision.reason,
        )
        return record

    def _begin(
        self,
        model: str,
        trigger: str,
        as_of: datetime | None,
        new_labels: int,
        resumes: str | None = None,
        note: str | None = None,
        clock: str = "wall",
        run_id: str | None = None,
    ) -> RetrainRecord:
        """Record a run as running and start its task; call on the event loop.

        Without `as_of` the run takes the wall clock's time, whatever `clock`.
        The run gets a new id unless `run_id` is given.
        """
        reason = "training a challenger"
        if resumes is not None:
            reason += f", again after run {resumes} was interrupted"
        if note is not None:
            reason += f", {note}"
        record = RetrainRecord(
            model,
            trigger,
            "running",
            reason,
            datetime.now(UTC),
            new_labels=new_labels,
            id=run_id or _new_id(),
            as_of=as_utc(as_of) if as_of is not None else datetime.now(UTC),
            detail=_begin_detail(resumes, note, clock if as_of is not None else "wall"),
        )
        # The insert is short. It runs on the loop so that the record exists
        # before the route responds, and a restart after a kill finds it.
        _insert(self.home, record)
        record_in_daemon(
            self.state,
            "retrain.start",
            model,
            {"id": record.id, "trigger": trigger, "reason": reason},
        )
        self._running[model] = record
        self._tasks[model] = asyncio.ensure_future(self._run(record))
        logger.info(
            "retraining started model=%s id=%s trigger=%s as_of=%s",
            model,
            record.id,
            trigger,
            record.as_of.isoformat() if record.as_of else None,
        )
        return record

    async def _run(self, record: RetrainRecord) -> None:
        model = record.model
        try:
            try:
                async with self.state.admin_lock:
                    outcome = await _in_thread(f"retrain-{model}", self._train, record)
                    self._finishing.add(model)
                    if outcome.promoted_version is not None:
                        await self._promote(model, outcome)
            except TrainingStopped as exc:
                await asyncio.to_thread(_update, self.home, _interrupted(record))
                await self._audit_finish(record, "interrupted", str(exc))
                logger.warning(
                    "retraining interrupted model=%s id=%s step=%r; run again at "
                    "the next start",
                    model,
                    record.id,
                    str(exc),
                )
                return
            except ApplianceError as exc:
                logger.error(
                    "retraining failed model=%s id=%s error=%s", model, record.id, exc
                )
                outcome = Outcome("failed", str(exc))
            except Exception as exc:
                logger.exception("retraining failed model=%s id=%s", model, record.id)
                outcome = Outcome("failed", f"{type(exc).__name__}: {exc}")
            self._finishing.add(model)
            finished = _finished(record, outcome)
            await asyncio.to_thread(_update, self.home, finished)
            await self._audit_finish(record, outcome.outcome, outcome.reason)
        finally:
            # `stop` records a run cancelled while it trained as interrupted.
            self._running.pop(model, None)
            self._finishing.discard(model)
        logger.info(
            "retraining finished model=%s id=%s outcome=%s reason=%s",
            model,
            record.id,
            outcome.outcome,
            outcome.reason,
        )

    async def _audit_finish(
        self, record: RetrainRecord, outcome: str, reason: str
    ) -> None:
        details = {"id": record.id, "trigger": record.trigger, "reason": reason}
        await asyncio.to_thread(
            record_in_daemon,
            self.state,
            "retrain.finish",
            record.model,
            details,
            outcome,
        )

    def _train(self, record: RetrainRecord) -> Outcome:
        """Flush the dataset's buffer, keep the served version as champion, train."""
        config = self.state.config
        cfg = config.model(record.model)
        self._check_stopping("before flushing the dataset's buffer")
        self.state.ingest.flush(cfg.dataset)
        self._check_stopping("before training")
        champion = self.state.models.models.get(record.model)
        view = self.state.catalog.cursor()
        try:
            if champion is not None:
                pin_champion(view, record.model, champion.version)
            assert record.as_of is not None and record.id is not None
            return train_challenger(
                view,
                config,
                record.model,
                champion,
                record.as_of,
                record.id,
                self._stopping,
            )
        finally:
            view.close()

    def _check_stopping(self, where: str) -> None:
        if self._stopping.is_set():
            raise TrainingStopped(f"training stopped {where}")

    async def _promote(self, model: str, outcome: Outcome) -> None:
        config = self.state.config

        def load(found: Any) -> OnnxModel:
            return load_model(config, found.path, found.sha256)

        _, loaded = await run_with_catalog(
            self.state,
            promote,
            model,
            outcome.promoted_version,
            CHAMPION,
            ACTOR,
            outcome.reason,
            load,
        )
        previous = self.state.models.put(loaded)
        logger.info(
            "champion switched model=%s version=%d previous=%s actor=%s",
            model,
            loaded.version,
            previous.version if previous else None,
            ACTOR,
        )

    def _mark_interrupted(self) -> list[RetrainRecord]:
        """Mark runs a kill left ``running`` and return every run to resume."""
        with MonitoringStore(self.home) as store:
            killed = [_record(r) for r in store.retrain_history(outcome="running")]
            stopped = [
                _record(r)
                for r in store.retrain_history(outcome="interrupted")
                if (r.get("detail") or {}).get(_RESUME)
            ]
            for record in killed:
                store.update_retrain(_interrupted(record, resume_later=False))
            for record in stopped:
                detail = {k: v for k, v in record.detail.items() if k != _RESUME}
                store.update_retrain(dataclasses.replace(record, detail=detail or None))
        records = sorted(killed + stopped, key=lambda r: r.started_at, reverse=True)
        newest: dict[str, RetrainRecord] = {}
        for record in records:
            newest.setdefault(record.model, record)
        return list(newest.values())


async def run_scheduled(home: str, model: str, schedule: str) -> dict[str, Any]:
    """Run the scheduled retraining decision of `model`; the scheduler's job.

    Args:
        home: The daemon's home, which names the running service.
        model: Declared model name.
        schedule: The cron line, kept in the job's arguments so a changed
            schedule replaces the stored job.
    """
    job_id = f"retrain:{model}"
    service = _SERVICES.get(home)
    if service is None:
        logger.warning("retraining job without a service job=%s home=%s", job_id, home)
        return {"skipped": "the retraining service is not running"}
    started = datetime.now(UTC)
    await asyncio.to_thread(_job_started, home, job_id, started)
    outcome, detail = "finished", None
    try:
        record = await service.run_scheduled(model)
        detail = {"retrain_id": record.get("id"), "outcome": record.get("outcome")}
    except Exception as exc:
        logger.exception("job failed job=%s", job_id)
        outcome, detail = "failed", {"error": f"{type(exc).__name__}: {exc}"}
    await asyncio.to_thread(_job_finished, home, job_id, started, outcome, detail)
    return detail or {}


def schedule_retraining(scheduler: Any, config: Any) -> list[str]:
    """Add a cron job per model whose policy has a schedule; drop stale ones.

    A stored job with the same cron line keeps its next run time, so runs
    missed while the daemon was stopped coalesce into one at start-up.
    """
    from apscheduler.triggers.cron import CronTrigger

    home = str(config.storage.home)
    wanted = {
        name: cfg.retrain.schedule
        for name, cfg in config.models.items()
        if cfg.retrain.trigger in ("schedule", "both") and cfg.retrain.schedule
    }
    for job in scheduler.get_jobs():
        name = job.id.removeprefix("retrain:")
        if job.id.startswith("retrain:") and name not in wanted:
            scheduler.remove_job(job.id)
    ids = []
    for name, schedule in sorted(wanted.items()):
        job_id = f"retrain:{name}"
        args = (home, name, schedule)
        existing = scheduler.get_job(job_id)
        ids.append(job_id)
        if existing is not None and tuple(existing.args) == args:
            continue
        if existing is not None:
            scheduler.remove_job(job_id)
        scheduler.add_job(
            "appliance.retraining._service:run_scheduled",
            CronTrigger.from_crontab(schedule, timezone=UTC),
            args=args,
            id=job_id,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=None,
        )
        logger.info("job scheduled job=%s cron=%r", job_id, schedule)
    return ids


async def _in_thread(name: str, function: Callable[..., T], *args: Any) -> T:
    """Run `function` in a daemon thread, which the interpreter does not join at
    exit, and await its result."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def target() -> None:
        try:
            result, error = function(*args), None
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
            result, error = None, exc
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:
            logger.warning("retraining thread ended after the daemon stopped")

    threading.Thread(target=target, name=name, daemon=True).start()
    return await future


def _new_id() -> str:
    return uuid.uuid4().hex[:12]


def _insert(home: Any, record: RetrainRecord) -> None:
    with MonitoringStore(home) as store:
        store.record_retrain(record)


def _update(home: Any, record: RetrainRecord) -> None:
    with MonitoringStore(home) as store:
        store.update_retrain(record)


def _job_started(home: str, job_id: str, started: datetime) -> None:
    from pathlib import Path

    with MonitoringStore(Path(home)) as store:
        store.start_job_run(job_id, started, 0)


def _job_finished(
    home: str, job_id: str, started: datetime, outcome: str, detail: Any
) -> None:
    from pathlib import Path

    with MonitoringStore(Path(home)) as store:
        store.finish_job_run(job_id, started, datetime.now(UTC), outcome, detail)


def _begin_detail(resumes: str | None, note: str | None, clock: str) -> dict[str, Any]:
    detail = {"resumes": resumes, "forced": note, "clock": clock}
    return {key: value for key, value in detail.items() if value}


def _finished(record: RetrainRecord, outcome: Outcome) -> RetrainRecord:
    return RetrainRecord(
        **{
            **record.__dict__,
            "outcome": outcome.outcome,
            "reason": outcome.reason,
            "finished_at": datetime.now(UTC),
            "champion_version": outcome.champion_version,
            "challenger_version": outcome.challenger_version,
            "champion_score": outcome.champion_score,
            "challenger_score": outcome.challenger_score,
            "promoted_version": outcome.promoted_version,
            "detail": {**(record.detail or {}), **outcome.detail},
        }
    )


def _interrupted(record: RetrainRecord, resume_later: bool = True) -> RetrainRecord:
    """Return `record` as interrupted by a daemon stop.

    Args:
        record: The run's ``running`` record.
        resume_later: Mark it for the next start to run again; False when the
            start that marks it runs it again at once.
    """
    detail = dict(record.detail or {})
    if resume_later:
        detail[_RESUME] = True
    return dataclasses.replace(
        record,
        outcome="interrupted",
        reason=record.reason + "; interrupted by a daemon stop, run again once",
        finished_at=datetime.now(UTC),
        detail=detail or None,
    )


def _record(row: dict[str, Any]) -> RetrainRecord:
    names = RetrainRecord.__dataclass_fields__
    return RetrainRecord(**{k: v for k, v in row.items() if k in names})
