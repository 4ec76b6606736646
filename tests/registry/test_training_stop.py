"""Cooperative stop of a training: steps, folds, search candidates, iterations."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Any

import pytest
from sklearn.base import clone

from appliance.config import Config, CVConfig
from appliance.errors import TrainingStopped
from appliance.storage import Catalog, list_models, list_runs
from appliance.training import train_model
from appliance.training._frame import load_frame
from appliance.training._pipeline import build_pipeline
from appliance.training._search import DeadlineCheck, search
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
    step = clone(DeadlineCheck(None, check))

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

    with pytest.raises(TrainingStopped, match="before a search candidate's fit"):
        run_search(trips(SEARCH), event)


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

    with pytest.raises(TrainingStopped, match="after reading the training frame"):
        train_model(config, "late", stop=event)

    with Catalog(config.storage.home, read_only=True) as catalog:
        runs = list_runs(catalog)
        versions = list_models(catalog, "late")
    assert versions == []
    assert [run.status for run in runs] == ["failed"]
    assert runs[0].error is not None
    assert runs[0].error.startswith("interrupted: training stopped after reading")
