"""One retraining run, in a worker thread: decide, train, score, and refit.

The functions take a catalog cursor and the configuration and return plain
values; `RetrainService` runs them off the event loop and moves the alias.
The training libraries are imported inside `train_challenger`, so importing
this module does not load scikit-learn or LightGBM.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from appliance.config import Config, ModelConfig
from appliance.errors import (
    ApplianceError,
    ExportError,
    TrainingError,
    TrainingStopped,
)
from appliance.monitoring import (
    Decision,
    MonitoringStore,
    RetrainRecord,
    decide_promotion,
    decide_retrain,
)
from appliance.retraining._scoring import (
    COUNTED_OUTCOMES,
    as_utc,
    effective_metric,
    score,
    time_on_clock,
    window_bounds,
)
from appliance.serving import OnnxModel, columns_to_feed
from appliance.signing import trusted_keys, version_check
from appliance.storage import (
    CHAMPION,
    Catalog,
    aliases,
    count_labels,
    latest_label_time,
    record_gate_rejection,
    set_alias,
)

logger = logging.getLogger(__name__)

_NO_ROWS = "has no labelled rows"
"""Part of the `TrainingError` messages of a data selection without rows."""
_WINDOW_NAMED = "the retraining window"
"""Part of the `TrainingError` message that already names the window's times."""

ACTOR = "retraining"
"""Actor of the alias changes the retraining job makes."""


@dataclass(frozen=True)
class RetrainDecision:
    """Whether a trigger starts a run, at which time, with how many new labels."""

    decision: Decision
    as_of: datetime | None
    new_labels: int
    clock: str = "wall"
    """Clock of `as_of`: the policy's, or ``wall`` when `as_of` is None, because
    a forced run then takes the wall clock's time."""


@dataclass
class Outcome:
    """Result of a run that trained a challenger."""

    outcome: str
    """``promoted``, ``rejected`` or ``failed``."""
    reason: str
    champion_version: int | None = None
    challenger_version: int | None = None
    champion_score: float | None = None
    challenger_score: float | None = None
    promoted_version: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def decide(
    catalog: Catalog,
    store: MonitoringStore,
    cfg: ModelConfig,
    trigger: str,
    as_of: datetime | None,
) -> RetrainDecision:
    """Decide whether `trigger` starts a retraining of `cfg` now.

    `now` is `as_of` when given, else the wall clock, or with ``clock =
    "event"`` the latest event time among the stored labels. The cool-down
    and the budget compare `now` with earlier runs on the same clock
    (`time_on_clock`). New labels are counted since the last run that
    trained: by receipt time on the wall clock, by event time on the event
    clock. After a failed run, drift alarms and scheduled ticks wait
    `retry_minutes` (`_retry_wait`).
    """
    policy = cfg.retrain
    clock = policy.clock
    missing = missing_dataset(catalog, cfg)
    if missing is not None:
        given = as_utc(as_of) if as_of is not None else None
        return RetrainDecision(
            Decision(False, missing), given, 0, clock if given else "wall"
        )
    now = as_of or (
        latest_label_time(catalog, cfg.name) if clock == "event" else datetime.now(UTC)
    )
    if now is None:
        refused = Decision(
            False,
            "no stored label has an event time yet; send feedback labels for "
            f"predictions whose requests carry {cfg.event_timestamp!r}, the "
            "model's event_timestamp",
        )
        return RetrainDecision(refused, None, 0)
    now = as_utc(now)
    history = store.retrain_history(cfg.name)
    trained = [r for r in history if r["outcome"] in COUNTED_OUTCOMES]
    placed = [(time_on_clock(r, clock), r) for r in trained]
    past = [(at, r) for at, r in placed if at is not None]
    new_labels, no_labels = _new_labels(catalog, cfg, trained, past)
    last = max(past, key=lambda pair: pair[0])[1] if past else None
    decision = decide_retrain(
        policy,
        trigger,  # type: ignore[arg-type]
        now,
        [at for at, _ in past],
        new_labels,
        no_labels,
        _last_run(last) if last is not None else "the last retraining",
        clock,
    )
    if decision.act and trigger != "manual":
        decision = _retry_wait(cfg, history) or decision
    return RetrainDecision(decision, now, new_labels, clock)


def missing_dataset(catalog: Catalog, cfg: ModelConfig) -> str | None:
    """Return why model `cfg` cannot train because its dataset has no version."""
    from appliance.storage import latest_version

    if latest_version(catalog, cfg.dataset, missing_ok=True) is not None:
        return None
    return (
        f"dataset {cfg.dataset!r} of model {cfg.name!r} has no version in this "
        f"home; ingest it with 'appliance ingest {cfg.dataset} FILE', or set "
        f"dataset in [models.{cfg.name}] to a dataset that 'appliance datasets "
        "list' shows"
    )


def _new_labels(
    catalog: Catalog,
    cfg: ModelConfig,
    trained: list[dict[str, Any]],
    past: list[tuple[datetime, dict[str, Any]]],
) -> tuple[int, str]:
    """Count the labels since the last run that trained, with the skip reason for 0."""
    policy = cfg.retrain
    section = f"[models.{cfg.name}.retrain]"
    if policy.clock == "event" and past:
        last = max(at for at, _ in past)
        # Labels that arrive late for events before the last run's as-of
        # time are not new on the event clock.
        return count_labels(catalog, cfg.name, event_after=last), (
            f"no labels for events after {last.isoformat()}, the last "
            "retraining's as-of time; labels for earlier events do not count "
            "on the event clock"
        )
    if policy.clock == "wall" and trained:
        last = max(as_utc(r["started_at"]) for r in trained)
        return count_labels(catalog, cfg.name, received_after=last), (
            f"no labels received since the last retraining started at "
            f"{last.isoformat()}, and min_new_labels = {policy.min_new_labels} of "
            f"{section} needs that many"
        )
    return count_labels(catalog, cfg.name), (
        f"no feedback labels stored for model {cfg.name!r} yet, and "
        f"min_new_labels = {policy.min_new_labels} of {section} needs that many; "
        f"send labels to POST /v1/models/{cfg.name}/feedback"
    )


def _last_run(record: dict[str, Any]) -> str:
    return f"the last retraining, run {record['id']} ({record['outcome']}),"


def _retry_wait(cfg: ModelConfig, history: list[dict[str, Any]]) -> Decision | None:
    """Return a skip while the latest run failed less than `retry_minutes` ago.

    The wait is on the wall clock whatever the policy's clock, because it
    paces retries of a failing run rather than the use of new data.
    """
    runs = [r for r in history if r["outcome"] in (*COUNTED_OUTCOMES, "failed")]
    latest = max(runs, key=lambda r: as_utc(r["started_at"]), default=None)
    if latest is None or latest["outcome"] != "failed":
        return None
    failed_at = as_utc(latest["finished_at"] or latest["started_at"])
    retry_at = failed_at + timedelta(minutes=cfg.retrain.retry_minutes)
    now = datetime.now(UTC)
    if now >= retry_at:
        return None
    return Decision(
        False,
        f"the last run, {latest['id']}, failed at {failed_at.isoformat()}, and "
        f"retry_minutes = {cfg.retrain.retry_minutes:g} allows the next try from "
        f"{retry_at.isoformat()} on the wall clock, which reads {now.isoformat()} "
        f"now. A failed run starts no cool-down. To try at once, fix its cause "
        f"(appliance retrain {cfg.name} --history shows it) and run "
        f"appliance retrain {cfg.name}",
    )


def train_challenger(
    catalog: Catalog,
    config: Config,
    name: str,
    champion: OnnxModel | None,
    as_of: datetime,
    run_id: str,
    stop: threading.Event | None = None,
) -> Outcome:
    """Train a challenger on the policy's window and score it against `champion`.

    Both are scored with their ONNX sessions on the same holdout: the last
    `holdout_days` before `as_of`, or the model's own split when it has no
    `event_timestamp`. A challenger that wins is trained again on the whole
    window when `refit` is on.

    Raises:
        TrainingStopped: `stop` was set during a training, or before the
            refit. A challenger registered before the refit stays registered
            and unpromoted.
    """
    from appliance.training import TrainingWindow, train_model

    cfg = config.model(name)
    policy = cfg.retrain
    metric = effective_metric(cfg.task, policy.metric)
    window = None
    if cfg.event_timestamp:
        start, holdout_start, max_rows = window_bounds(policy, as_of)
        window = TrainingWindow(holdout_start, as_of, start, max_rows)
    tags = {"retrain": run_id}
    detail: dict[str, Any] = {
        "metric": metric,
        "window": window.to_dict() if window is not None else None,
    }
    missing = missing_dataset(catalog, cfg)
    if missing is not None:
        return Outcome("failed", f"challenger not trained: {missing}", detail=detail)
    try:
        result = train_model(config, name, catalog, window, tags, stop)
    except ExportError as exc:
        return Outcome(
            "rejected", f"challenger failed the ONNX export or parity check: {exc}"
        )
    except TrainingError as exc:
        reason = f"challenger not trained: {exc}"
        if window is not None and _NO_ROWS in str(exc):
            reason += f". {_window_hint(cfg, window, _WINDOW_NAMED not in str(exc))}"
        return Outcome("failed", reason, detail=detail)

    version = result.model_version
    challenger = OnnxModel.load(
        version.path, version.sha256, trusted=trusted_keys(config)
    )
    y = result.y_holdout
    challenger_score = score(metric, y, _output(challenger, result.x_holdout))
    champion_score = None
    if champion is not None:
        champion_score = _champion_score(champion, metric, result, detail)
    detail.update(
        rows_train=result.rows_train,
        rows_holdout=result.rows_test,
        run_id=result.run_id,
        parity=result.parity,
    )
    scored = dataclasses.replace(policy, metric=metric)  # type: ignore[arg-type]
    promotion = decide_promotion(scored, champion_score, challenger_score, True)
    outcome = Outcome(
        "promoted" if promotion.act else "rejected",
        promotion.reason,
        champion.version if champion is not None else None,
        version.version,
        champion_score,
        challenger_score,
        version.version if promotion.act else None,
        detail,
    )
    if not promotion.act:
        record_gate_rejection(catalog, name, version.version, run_id, promotion.reason)
    if promotion.act and policy.refit and window is not None:
        if stop is not None and stop.is_set():
            raise TrainingStopped(
                f"training stopped before the refit of challenger version "
                f"{version.version}"
            )
        refit_window = dataclasses.replace(
            window, refit=True, reference_metrics=result.metrics
        )
        _refit(catalog, config, name, refit_window, tags, outcome, stop)
    return outcome


def forced_note(decision: Decision) -> str:
    """Return the note recorded with a run the operator forced past a skip."""
    return f"forced by the operator, although the policy skips: {decision.reason}"


def _window_hint(cfg: ModelConfig, window: Any, with_times: bool = True) -> str:
    """Explain where a retraining looked for rows, and how to move it.

    Args:
        with_times: Name the window's first and last event times, which a
            message that leads with the window has named already.
    """
    policy = cfg.retrain
    span = f"holdout_days = {policy.holdout_days:g}"
    if window.start is not None:
        span = f"window_days = {policy.window_days:g} and {span}"
    start = window.start.isoformat() if window.start is not None else "the first"
    read = f"The run read rows with {cfg.event_timestamp} from {start} to "
    read += f"{window.end.isoformat()} ({span} before the run's as_of time). "
    if not with_times:
        read = f"The window is {span} before the run's as_of time. "
    hint = read + (
        "If the data's event times lie elsewhere, give an as_of time within "
        'them (--as-of, or "as_of" over HTTP)'
    )
    if policy.clock == "wall":
        hint += (
            f', or set clock = "event" in [models.{cfg.name}.retrain] to take '
            "the latest labelled event time as now"
        )
    return hint


def _champion_score(
    champion: OnnxModel, metric: str, result: Any, detail: dict[str, Any]
) -> float | None:
    missing = [i["name"] for i in champion.inputs if i["name"] not in result.x_holdout]
    if missing:
        detail["champion_error"] = (
            f"champion version {champion.version} needs inputs {missing} that the "
            "challenger's holdout lacks"
        )
        return None
    return score(metric, result.y_holdout, _output(champion, result.x_holdout))


def _refit(
    catalog: Catalog,
    config: Config,
    name: str,
    window: Any,
    tags: dict[str, str],
    outcome: Outcome,
    stop: threading.Event | None,
) -> None:
    """Train the winner again on the refit `window`; keep the challenger on failure."""
    from appliance.training import train_model

    refit_tags = {**tags, "refit": "1"}
    try:
        refit = train_model(config, name, catalog, window, refit_tags, stop)
    except (TrainingError, ExportError) as exc:
        outcome.detail["refit_error"] = str(exc)
        outcome.reason += f"; refit failed, so the challenger serves: {exc}"
        return
    outcome.promoted_version = refit.model_version.version
    outcome.detail["refit_run_id"] = refit.run_id
    outcome.reason += (
        f"; refit on the whole window as version {refit.model_version.version}"
    )


def _output(model: OnnxModel, x: Any) -> Any:
    return model.run(columns_to_feed(model.inputs, x))


def run_offline(
    config: Config,
    name: str,
    trigger: str = "manual",
    as_of: datetime | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Decide and run one retraining without a daemon, on the home's catalog.

    The decision, training, scoring and promotion are the daemon job's, and
    the record goes to the same store. The champion is the version the
    registry serves: its ``champion`` alias, else the latest version.

    Returns:
        The record as JSON-ready values.
    """
    import uuid

    from appliance.registry import promote
    from appliance.retraining._scoring import record_dict
    from appliance.storage import resolve_version

    cfg = config.model(name)
    home = config.storage.home
    started = datetime.now(UTC)
    record_id = uuid.uuid4().hex[:12]
    with Catalog(home) as catalog:
        with MonitoringStore(home) as store:
            decided = decide(catalog, store, cfg, trigger, as_of)
        base = RetrainRecord(
            name,
            trigger,
            "skipped",
            decided.decision.reason,
            started,
            new_labels=decided.new_labels,
            id=record_id,
            as_of=decided.as_of or started,
            detail={"clock": decided.clock},
        )
        if not decided.decision.act and not force:
            finished = dataclasses.replace(base, finished_at=datetime.now(UTC))
            _store_record(home, finished)
            return record_dict(finished.__dict__)
        champion = _served(catalog, config, name, resolve_version)
        if champion is not None:
            pin_champion(catalog, name, champion.version)
        assert base.as_of is not None
        try:
            outcome = train_challenger(
                catalog, config, name, champion, base.as_of, record_id
            )
        except ApplianceError as exc:
            # The daemon's job records these as failed runs too.
            logger.error(
                "retraining failed model=%s id=%s error=%s", name, record_id, exc
            )
            outcome = Outcome("failed", str(exc))
        if not decided.decision.act:
            outcome.detail["forced"] = forced_note(decided.decision)
        if outcome.promoted_version is not None:
            promote(
                catalog,
                name,
                outcome.promoted_version,
                CHAMPION,
                "retraining",
                outcome.reason,
                load=version_check(trusted_keys(config)),
            )
    finished = dataclasses.replace(
        base,
        outcome=outcome.outcome,
        reason=outcome.reason,
        finished_at=datetime.now(UTC),
        champion_version=outcome.champion_version,
        challenger_version=outcome.challenger_version,
        champion_score=outcome.champion_score,
        challenger_score=outcome.challenger_score,
        promoted_version=outcome.promoted_version,
        detail={**(base.detail or {}), **outcome.detail},
    )
    _store_record(home, finished)
    return record_dict(finished.__dict__)


def pin_champion(view: Any, model: str, version: int) -> None:
    """Point ``champion`` at the served version before a challenger registers.

    Without an alias the daemon serves the latest version, so registering the
    challenger would change what a restarted daemon serves.
    """
    if CHAMPION in aliases(view).get(model, {}):
        return
    set_alias(
        view,
        model,
        CHAMPION,
        version,
        ACTOR,
        "kept the served version as champion while a challenger trains",
    )


def _served(
    catalog: Catalog, config: Config, name: str, resolve: Any
) -> OnnxModel | None:
    from appliance.errors import NotFoundError

    try:
        found = resolve(catalog, name)
    except NotFoundError:
        return None
    return OnnxModel.load(found.path, found.sha256, trusted=trusted_keys(config))


def _store_record(home: Any, record: RetrainRecord) -> None:
    with MonitoringStore(home) as store:
        store.record_retrain(record)
