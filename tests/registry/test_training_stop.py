"""Cooperative stop of a training: steps, folds, search candidates, iterations,
the frame read's DuckDB queries and the ONNX export."""

from __future__ import annotations

import copy
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import duckdb
import pytest
from sklearn.base import clone

from appliance.config import Config, CVConfig
from appliance.errors import TrainingStopped
from appliance.features import FeatureStore
from appliance.storage import Catalog, list_models, list_runs
from appliance.training import _export, _scaled, train_model
from appliance.training._frame import _query, load_frame
from appliance.training._pipeline import build_pipeline
from appliance.training._search import StopStep, search
from appliance.training._stop import StopCheck
from appliance.training._validation import cross_validate

SEARCH = """
[models.late.search]
method = "random"
max_trials = 50
[models.late.search.space]
learning_rate = {low = 0.01, high = 0.3}
"""


def setter_at(event: threading.Event, iteration: int) -> Callable[[Any], None]:
    """Return a LightGBM callback that sets `event` at boosting `iteration`."""

    def set_event(env: Any) -> None:
        if env.iteration == iteration:
            event.set()

    return set_event


def stopping_params(event: threading.Event, iteration: int) -> dict[str, Any]:
    """Return fit parameters that set `event` at `iteration` and then stop."""
    check = StopCheck(event).fit_params("lightgbm")["estimator__callbacks"]
    return {"estimator__callbacks": [setter_at(event, iteration), *check]}


def frame_and_pipeline(config: Config) -> tuple[Any, Any]:
    cfg = config.model("late")
    with Catalog(config.storage.home, read_only=True) as catalog:
        frame = load_frame(catalog, cfg)
    return frame, build_pipeline(cfg, frame.numeric, frame.categorical)


def test_stop_check_copies_share_event() -> None:
    event = threading.Event()
    check = StopCheck(event)
    step = clone(StopStep(check))

    event.set()

    assert copy.deepcopy(check) is check
    assert step.stop is check
    with pytest.raises(TrainingStopped, match="training stopped before a search"):
        step.fit(None)


def test_stop_check_without_event() -> None:
    check = StopCheck()

    check("anywhere")

    assert check.fit_params("lightgbm") == {}
    assert StopCheck(threading.Event()).fit_params("random_forest") == {}


def test_fit_stops_at_boosting_iteration(trips: Callable[[str], Config]) -> None:
    frame, pipeline = frame_and_pipeline(trips(""))
    event = threading.Event()

    with pytest.raises(TrainingStopped, match="at boosting iteration 3$"):
        pipeline.fit(frame.x_train, frame.y_train, **stopping_params(event, 3))


def run_search(config: Config, event: threading.Event, *fit_params: Any) -> None:
    """Run the hyperparameter search of model ``late`` with stop checks."""
    cfg = config.model("late")
    frame, pipeline = frame_and_pipeline(config)
    assert cfg.search is not None
    search(
        pipeline,
        frame.x_train,
        frame.y_train,
        cfg.search,
        CVConfig(),
        cfg.primary_metric,
        len(frame.classes),
        0,
        StopCheck(event),
        *fit_params,
    )


def test_search_stops_mid_candidate(trips: Callable[[str], Config]) -> None:
    event = threading.Event()

    with pytest.raises(TrainingStopped, match="at boosting iteration 2$"):
        run_search(trips(SEARCH), event, stopping_params(event, 2))


def test_search_stops_before_candidate(trips: Callable[[str], Config]) -> None:
    event = threading.Event()
    event.set()
    # A space of lists is sampled from its grid, without a draw to check.
    grid = SEARCH.replace("{low = 0.01, high = 0.3}", "[0.05, 0.1]")

    with pytest.raises(TrainingStopped, match="before a search candidate's fit"):
        run_search(trips(grid), event)


def test_search_stops_while_drawing(trips: Callable[[str], Config]) -> None:
    event = threading.Event()
    event.set()
    many = SEARCH.replace("max_trials = 50", "max_trials = 100000")

    with pytest.raises(TrainingStopped, match="while drawing search candidates$"):
        run_search(trips(many), event)


def test_cross_validation_stops_between_folds(trips: Callable[[str], Config]) -> None:
    frame, pipeline = frame_and_pipeline(trips(""))
    event = threading.Event()

    def run(*fit_params: Any) -> None:
        cross_validate(
            pipeline,
            frame.x_train,
            frame.y_train,
            CVConfig(),
            0,
            len(frame.classes),
            StopCheck(event),
            *fit_params,
        )

    with pytest.raises(TrainingStopped, match="at boosting iteration 4$"):
        run(stopping_params(event, 4))
    with pytest.raises(TrainingStopped, match="before cross-validation fold 0$"):
        run()


def test_stopped_training_registers_nothing(trips: Callable[[str], Config]) -> None:
    config = trips(SEARCH)
    event = threading.Event()
    event.set()

    with pytest.raises(TrainingStopped, match="before reading the training frame"):
        train_model(config, "late", stop=event)

    with Catalog(config.storage.home, read_only=True) as catalog:
        runs = list_runs(catalog)
        versions = list_models(catalog, "late")
    assert versions == []
    assert [run.status for run in runs] == ["interrupted"]
    assert runs[0].error is not None
    assert runs[0].error.startswith("interrupted: training stopped before reading")


ENDLESS = "(SELECT count(*) FROM range(10000000000000) t(i) WHERE hash(i) = 0)"
"""A scalar subquery that runs for hours unless it is interrupted."""
SLOW_READS = f"""
[models.filtered]
dataset = "trips"
target = "late"
task = "classification"
features = ["distance", "hour", "carrier"]
where = "{ENDLESS} >= 0"

[feature_views.carriers]
sql = "SELECT carrier, {ENDLESS} AS rare FROM (SELECT DISTINCT carrier FROM trips)"
entities = ["carrier"]

[models.joined]
dataset = "trips"
target = "late"
task = "classification"
features = ["distance", "hour", "carrier"]
feature_views = ["carriers"]
"""
READING = "while reading the training frame"
STOP_BOUND_SECONDS = 120.0
"""Maximum wait for a stopped training to end. Without its stop, each training
in these tests would run for hours or register a version."""


def test_interrupt_spares_other_cursors() -> None:
    db = duckdb.connect()
    event = threading.Event()
    event.set()
    check = StopCheck(event)

    with pytest.raises(TrainingStopped, match="while testing$") as raised:
        with check.interrupting("while testing") as watch:
            watched = watch(db.cursor())
            with pytest.raises(duckdb.InterruptException):
                watched.execute(f"SELECT {ENDLESS}").fetchall()
            # The watcher goes on interrupting `watched` while these run.
            other = db.cursor().execute("SELECT sum(i) FROM range(50000000) t(i)")
            total = other.fetchall()
            parent = db.execute("SELECT 42").fetchall()

    assert total == [(50000000 * 49999999 // 2,)]
    assert parent == [(42,)]
    assert raised.value.__cause__ is None


def test_interrupting_without_stop() -> None:
    db = duckdb.connect()

    with StopCheck().interrupting("while testing") as watch:
        rows = watch(db.cursor()).execute("SELECT 1").fetchall()
    with pytest.raises(ValueError, match="not a stop"):
        with StopCheck(threading.Event()).interrupting("while testing"):
            raise ValueError("not a stop")

    assert rows == [(1,)]


def setting_profile(
    event: threading.Event, function: Callable[..., Any], kind: str
) -> Callable[[FrameType, str, Any], None]:
    """Return a profile hook that sets `event` at a `kind` event of `function`:
    ``call`` as it starts, ``return`` as it ends."""
    code = function.__code__

    def set_event(frame: FrameType, seen: str, arg: Any) -> None:
        if seen == kind and frame.f_code is code:
            event.set()

    return set_event


def stopped_training(
    config: Config,
    model: str,
    function: Callable[..., Any],
    kind: str = "call",
    catalog: Catalog | None = None,
) -> TrainingStopped:
    """Train `model` in a thread with a stop set at `function`'s `kind` event.

    Returns:
        The `TrainingStopped` that the training raised.
    """
    event = threading.Event()
    raised: list[BaseException] = []

    def run() -> None:
        sys.setprofile(setting_profile(event, function, kind))
        try:
            train_model(config, model, catalog, stop=event)
        except BaseException as exc:
            raised.append(exc)
        finally:
            sys.setprofile(None)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(STOP_BOUND_SECONDS)

    assert not thread.is_alive(), f"training still running after the stop: {event}"
    assert event.is_set(), f"{function.__name__} was not reached"
    assert len(raised) == 1
    assert isinstance(raised[0], TrainingStopped), raised[0]
    return raised[0]


def assert_nothing_registered(catalog: Catalog, model: str, where: str) -> None:
    runs = list_runs(catalog, model)
    assert list_models(catalog, model) == []
    assert [run.status for run in runs] == ["interrupted"]
    assert runs[0].error is not None
    assert runs[0].error.startswith(f"interrupted: training stopped {where}, on a")


def test_frame_query_interrupted(trips: Callable[[str], Config]) -> None:
    config = trips(SLOW_READS)

    with Catalog(config.storage.home) as catalog:
        # The daemon trains on a cursor of its catalog connection.
        view = catalog.cursor()
        stopped = stopped_training(config, "filtered", _query, catalog=view)
        view.close()
        assert_nothing_registered(catalog, "filtered", READING)

    assert str(stopped) == f"training stopped {READING}"
    assert isinstance(stopped.__cause__, duckdb.InterruptException)


def test_feature_view_query_interrupted(trips: Callable[[str], Config]) -> None:
    config = trips(SLOW_READS)

    stopped = stopped_training(config, "joined", FeatureStore.joined_source)

    assert str(stopped) == f"training stopped {READING}"
    assert isinstance(stopped.__cause__, duckdb.InterruptException)
    with Catalog(config.storage.home, read_only=True) as catalog:
        assert_nothing_registered(catalog, "joined", READING)


@pytest.mark.parametrize(
    ("function", "kind", "where"),
    [
        (_export.round_thresholds, "call", "while converting to ONNX"),
        (_export.to_onnx, "return", "after the ONNX conversion"),
        (_export.probe_rows, "return", "before the parity check"),
        (_export.parity, "return", "before registering the version"),
    ],
)
def test_export_stops_between_steps(
    trips: Callable[[str], Config],
    function: Callable[..., Any],
    kind: str,
    where: str,
) -> None:
    config = trips("")

    stopped = stopped_training(config, "late", function, kind)

    assert str(stopped) == f"training stopped {where}"
    with Catalog(config.storage.home, read_only=True) as catalog:
        assert_nothing_registered(catalog, "late", where)


def test_scaled_export_stops_while_placing(trips: Callable[[str], Config]) -> None:
    config = trips('[models.late.preprocess]\nscale = "standard"\n')
    where = "while converting to ONNX"

    stopped = stopped_training(config, "late", _scaled.place_scaled_lightgbm)

    assert str(stopped) == f"training stopped {where}"
    with Catalog(config.storage.home, read_only=True) as catalog:
        assert_nothing_registered(catalog, "late", where)


def test_training_stops_while_drawing(trips: Callable[[str], Config]) -> None:
    config = trips(SEARCH.replace("max_trials = 50", "max_trials = 100000"))

    stopped = stopped_training(config, "late", search)

    assert str(stopped) == "training stopped while drawing search candidates"
    with Catalog(config.storage.home, read_only=True) as catalog:
        assert_nothing_registered(catalog, "late", "while drawing search candidates")
