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
from datetime import UTC, datetime
from typing import Any

from appliance.config import Config, ModelConfig
from appliance.errors import ExportError, TrainingError, TrainingStopped
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
    set_alias,
)

logger = logging.getLogger(__name__)

_NO_ROWS = "has no labelled rows"
"""Part of the `TrainingError` messages of a data selection without rows."""

ACTOR = "retraining"
"""Actor of the alias changes the retraining job makes."""


@dataclass(frozen=True)
class RetrainDecision:
    """Whether a trigger starts a run, at which time, with how many new labels."""

    decision: Decision
    as_of: datetime | None
    new_labels: int


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
    "event"`` the latest event time among the stored labels. New labels are
    counted since the last run that trained: by receipt time on the wall
    clock, by event time on the event clock.
    """
    policy = cfg.retrain
    event_clock = policy.clock == "event"
    now = as_of or (
        latest_label_time(catalog, cfg.name) if event_clock else datetime.now(UTC)
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
    past = [as_utc(r["as_of"] or r["started_at"]) for r in trained]
    section = f"[models.{cfg.name}.retrain]"
    no_labels = (
        f"no feedback labels stored for model {cfg.name!r} yet, and "
        f"min_new_labels = {policy.min_new_labels} of {section} needs that many; "
        f"send labels to POST /v1/models/{cfg.name}/feedback"
    )
    if trained and event_clock:
        new_labels = count_labels(catalog, cfg.name, event_after=max(past))
        # Labels that arrive late for events before the last run's as-of
        # time are not new on the event clock.
        no_labels = (
            f"no labels for events after {max(past).isoformat()}, the last "
            "retraining's as-of time; labels for earlier events do not count "
            "on the event clock"
        )
    elif trained:
        last = max(as_utc(r["started_at"]) for r in trained)
        new_labels = count_labels(catalog, cfg.name, received_after=last)
        no_labels = (
            f"no labels received since the last retraining started at "
            f"{last.isoformat()}, and min_new_labels = {policy.min_new_labels} of "
            f"{section} needs that many"
        )
    else:
        new_labels = count_labels(catalog, cfg.name)
    decision = decide_retrain(
        policy,
        trigger,  # type: ignore[arg-type]
        now,
        past,
        new_labels,
        no_labels,
    )
    return RetrainDecision(decision, now, new_labels)


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
    try:
        result = train_model(config, name, catalog, window, tags, stop)
    except ExportError as exc:
        return Outcome(
            "rejected", f"challenger failed the ONNX export or parity check: {exc}"
        )
    except TrainingError as exc:
        reason = f"challenger not trained: {exc}"
        if window is not None and _NO_ROWS in str(exc):
            reason += f". {_window_hint(cfg, window)}"
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


def _window_hint(cfg: ModelConfig, window: Any) -> str:
    """Explain where a retraining looked for rows, and how to move it."""
    policy = cfg.retrain
    span = f"holdout_days = {policy.holdout_days:g}"
    if window.start is not None:
        span = f"window_days = {policy.window_days:g} and {span}"
    start = window.start.isoformat() if window.start is not None else "the first"
    hint = (
        f"The run read rows with {cfg.event_timestamp} from {start} to "
        f"{window.end.isoformat()} ({span} before the run's as_of time). "
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
            as_of=decided.as_of or as_of or started,
        )
        if not decided.decision.act and not force:
            finished = dataclasses.replace(base, finished_at=datetime.now(UTC))
            _store_record(home, finished)
            return record_dict(finished.__dict__)
        champion = _served(catalog, config, name, resolve_version)
        if champion is not None:
            pin_champion(catalog, name, champion.version)
        assert base.as_of is not None
        outcome = train_challenger(
            catalog, config, name, champion, base.as_of, record_id
        )
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
        detail=outcome.detail,
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
