"""Hyperparameter search: child runs per candidate, budgets, best refit."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from appliance.config import Config, SearchConfig
from appliance.errors import TrainingError
from appliance.storage import Catalog, get_run, list_models, list_runs
from appliance.training import train_model
from appliance.training._search import _grid


def test_grid_search_records_child_runs(trips: Callable[[str], Config]) -> None:
    config = trips(
        """
        [models.late.cv]
        method = "stratified"
        folds = 3

        [models.late.search]
        method = "grid"
        space = {num_leaves = [3, 7], learning_rate = [0.05, 0.2]}
        max_trials = 3
        """
    )

    result = train_model(config, "late")

    with Catalog(config.storage.home, read_only=True) as catalog:
        parent = get_run(catalog, result.run_id)
        children = list_runs(catalog, parent_run_id=result.run_id)
        versions = list_models(catalog, "late")
    # The grid has 4 points; the trial budget tries a seeded sample of 3.
    assert result.trials == 3
    assert len(children) == 3
    assert parent.kind == "search"
    assert parent.status == "finished"
    assert all(child.kind == "trial" for child in children)
    assert all(child.status == "finished" for child in children)
    tried = {(c.params["num_leaves"], c.params["learning_rate"]) for c in children}
    assert len(tried) == 3
    for child in children:
        assert child.metrics is not None
        assert child.folds is not None and len(child.folds) == 3
        assert child.metrics["roc_auc"] == pytest.approx(
            sum(fold["roc_auc"] for fold in child.folds) / 3
        )
        assert "overfit_gap" in child.metrics
    best = max(children, key=lambda c: c.metrics["roc_auc"])  # type: ignore[index]
    assert parent.params["num_leaves"] == best.params["num_leaves"]
    assert parent.params["learning_rate"] == best.params["learning_rate"]
    assert parent.metrics is not None
    assert parent.metrics["search_best_roc_auc"] == best.metrics["roc_auc"]  # type: ignore[index]
    assert parent.folds == best.folds
    # Only the refitted best is registered, not each candidate.
    assert [v.version for v in versions] == [1]
    assert versions[0].run_id == parent.run_id


def test_halving_search_records_rounds(trips: Callable[[str], Config]) -> None:
    config = trips(
        """
        [models.late.search]
        method = "halving"
        space = {num_leaves = [3, 5, 7, 9]}
        max_trials = 4
        factor = 2
        """
    )

    result = train_model(config, "late")

    with Catalog(config.storage.home, read_only=True) as catalog:
        children = list_runs(catalog, parent_run_id=result.run_id)
    rounds: dict[float, list[int]] = {}
    for child in children:
        assert child.metrics is not None
        rounds.setdefault(child.metrics["round"], []).append(child.params["num_leaves"])
    # Successive halving with factor 2: 4 candidates, then 2, then 1.
    assert sorted(len(found) for found in rounds.values()) == [1, 2, 4]
    assert len(children) == result.trials == 7
    rows = {c.metrics["round"]: c.metrics["rows"] for c in children}  # type: ignore[index]
    assert rows[0.0] < rows[1.0] < rows[2.0]


def test_random_search_samples_ranges(trips: Callable[[str], Config]) -> None:
    config = trips(
        """
        [models.late.search]
        method = "random"
        max_trials = 3

        [models.late.search.space]
        num_leaves = {low = 3, high = 15}
        learning_rate = {low = 0.01, high = 0.3, log = true}
        """
    )

    result = train_model(config, "late")

    with Catalog(config.storage.home, read_only=True) as catalog:
        children = list_runs(catalog, parent_run_id=result.run_id)
    assert len(children) == 3
    for child in children:
        assert 3 <= child.params["num_leaves"] <= 15
        assert isinstance(child.params["num_leaves"], int)
        assert 0.01 <= child.params["learning_rate"] <= 0.3


def test_search_out_of_time_fails_run(trips: Callable[[str], Config]) -> None:
    config = trips(
        """
        [models.late.search]
        method = "random"
        space = {num_leaves = [3, 5, 7]}
        max_trials = 3
        max_seconds = 0.000001
        """
    )

    with pytest.raises(TrainingError, match="search"):
        train_model(config, "late")

    with Catalog(config.storage.home, read_only=True) as catalog:
        (parent,) = list_runs(catalog, "late")
    assert parent.status == "failed"
    assert parent.error is not None and "TrainingError" in parent.error
    assert parent.metrics is None


def test_invalid_candidate_recorded_as_failed(trips: Callable[[str], Config]) -> None:
    # The config has no rule for top_rate, so top_rate = 2.0 passes the load
    # check, and LightGBM's own check fails only its candidate.
    config = trips(
        """
        [models.late.search]
        method = "grid"
        space = {top_rate = [2.0, 0.2]}
        """
    )

    result = train_model(config, "late")

    with Catalog(config.storage.home, read_only=True) as catalog:
        children = list_runs(catalog, parent_run_id=result.run_id)
    status = {child.params["top_rate"]: child.status for child in children}
    assert status == {2.0: "failed", 0.2: "finished"}


def test_max_seconds_stops_starting_candidates(
    trips: Callable[[str], Config],
) -> None:
    config = trips(
        """
        [models.late.search]
        method = "random"
        max_trials = 300
        max_seconds = 1

        [models.late.search.space]
        num_leaves = {low = 3, high = 15}
        learning_rate = {low = 0.01, high = 0.3, log = true}
        """
    )

    started = time.monotonic()
    result = train_model(config, "late")
    elapsed = time.monotonic() - started

    with Catalog(config.storage.home, read_only=True) as catalog:
        parent = get_run(catalog, result.run_id)
        children = list_runs(catalog, parent_run_id=result.run_id)
    tried = len(children)
    assert 0 < tried < 300
    # Candidates not started are counted once, not recorded one by one.
    assert all(child.status == "finished" for child in children)
    assert result.trials == tried
    assert parent.metrics is not None
    assert parent.metrics["search_not_started"] == 300 - tried
    assert parent.metrics["search_seconds"] < 10
    warning = (
        f"the search reached max_seconds=1.0 before {300 - tried} of its 300 "
        "candidates started, so they were not tried; raise max_seconds or lower "
        "max_trials"
    )
    assert warning in result.warnings
    assert parent.evaluation is not None
    assert warning in parent.evaluation["warnings"]
    assert parent.evaluation["search"]["not_started"] == 300 - tried
    assert elapsed < 60


def test_large_grid_sampled_with_warning(trips: Callable[[str], Config]) -> None:
    config = trips(
        """
        [models.late.search]
        method = "grid"
        space = {num_leaves = [3, 5, 7, 9], learning_rate = [0.05, 0.1, 0.2, 0.3]}
        max_trials = 4
        """
    )

    seed = config.model("late").split.seed

    result = train_model(config, "late")

    with Catalog(config.storage.home, read_only=True) as catalog:
        parent = get_run(catalog, result.run_id)
        children = list_runs(catalog, parent_run_id=result.run_id)
    tried = {(c.params["num_leaves"], c.params["learning_rate"]) for c in children}
    assert len(tried) == 4
    # The first 4 points in grid order share one num_leaves value.
    assert len({leaves for leaves, _ in tried}) > 1
    warning = (
        "the search grid has 16 candidates, more than max_trials=4, so a random "
        f"sample of 4 was tried (seed {seed}); raise max_trials to try more"
    )
    assert warning in result.warnings
    assert parent.evaluation is not None
    assert warning in parent.evaluation["warnings"]
    assert parent.evaluation["search"]["grid_size"] == 16
    assert parent.evaluation["search"]["seed"] == seed


def test_grid_sample_repeats_with_seed() -> None:
    space = {"num_leaves": [3, 5, 7, 9, 11], "max_depth": [2, 3, 4, 5, 6]}
    config = SearchConfig(method="grid", space=space, max_trials=6)

    first = _grid(config, 3)
    again = _grid(config, 3)
    other = _grid(config, 4)

    assert first.size == 6
    assert first.grid_size == 25
    assert list(first.candidates) == list(again.candidates)
    assert list(first.candidates) != list(other.candidates)


def test_trial_runs_record_real_duration(trips: Callable[[str], Config]) -> None:
    config = trips(
        """
        [models.late.search]
        method = "grid"
        space = {n_estimators = [200, 300]}
        """
    )

    result = train_model(config, "late")

    with Catalog(config.storage.home, read_only=True) as catalog:
        children = list_runs(catalog, parent_run_id=result.run_id)
    assert len(children) == 2
    for child in children:
        assert child.metrics is not None
        assert child.duration_seconds is not None
        # The run lasted at least as long as its folds' fits.
        assert child.duration_seconds >= child.metrics["fit_seconds"]
        assert child.finished_at is not None
        assert child.finished_at > child.started_at
        # Halving rounds and rows mean nothing to a grid search.
        assert "round" not in child.metrics
        assert "rows" not in child.metrics


def test_halving_max_seconds_stops_trials(trips: Callable[[str], Config]) -> None:
    # Regression, because the first halving round fits on so few rows that
    # a fold's roc_auc may be undefined, while its rmse is not.
    config = trips(
        """
        [models.distance]
        dataset = "trips"
        target = "distance"
        task = "regression"
        algorithm = "lightgbm"
        features = ["hour", "carrier"]
        categorical = ["carrier"]

        [models.distance.search]
        method = "halving"
        max_trials = 300
        max_seconds = 1

        [models.distance.search.space]
        num_leaves = {low = 3, high = 15}
        """
    )

    result = train_model(config, "distance")

    with Catalog(config.storage.home, read_only=True) as catalog:
        parent = get_run(catalog, result.run_id)
        children = list_runs(catalog, parent_run_id=result.run_id)
    assert 0 < len(children) < 300
    assert all(child.status == "finished" for child in children)
    assert parent.metrics is not None
    assert parent.metrics["search_not_started"] > 0
    assert parent.metrics["search_seconds"] < 10
    assert any("trials of its halving rounds started" in w for w in result.warnings)
