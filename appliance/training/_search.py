"""Hyperparameter search with scikit-learn: grid, random and successive halving.

Candidates are scored by cross-validation on the training rows. The trial
budget caps the number of candidates. The time budget is enforced by a
pass-through first step that raises once the deadline has passed, so
candidates not started in time fail at once and are recorded as not scored.
The search never refits: the caller refits the best candidate on all
training rows, without the deadline step.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import Pipeline

from appliance.config import LOWER_IS_BETTER, CVConfig, SearchConfig
from appliance.errors import TrainingError
from appliance.training._metrics import from_score, scorer_name
from appliance.training._stop import StopCheck
from appliance.training._validation import splitter

logger = logging.getLogger(__name__)

_PREFIX = "estimator__"
_BUDGET_MESSAGE = "time budget of the search ran out"


@dataclass
class Trial:
    """One scored (or unscored) candidate of a search."""

    params: dict[str, Any]
    """The candidate's estimator parameters."""
    folds: list[dict[str, float]]
    """Per fold: the metric on validation rows and on training rows."""
    score: float
    """Mean validation metric; NaN when the candidate was not scored."""
    train_score: float
    fit_seconds: float
    round: int = 0
    """Halving round (0 for grid and random)."""
    rows: int = 0
    """Training rows per fold in this round."""
    error: str | None = None


@dataclass
class SearchOutcome:
    """All trials of a search and the best candidate."""

    metric: str
    trials: list[Trial]
    best: Trial
    timed_out: bool
    seconds: float
    warnings: list[str] = field(default_factory=list)


class DeadlineCheck(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Pass-through step whose `fit` raises once `deadline` (epoch seconds)
    passed or `stop` is set."""

    def __init__(
        self, deadline: float | None = None, stop: StopCheck | None = None
    ) -> None:
        self.deadline = deadline
        self.stop = stop

    def fit(self, x: Any, y: Any = None) -> DeadlineCheck:
        """Raise `TimeoutError` after the deadline, `TrainingStopped` once
        `stop` is set, else do nothing."""
        if self.stop is not None:
            self.stop("before a search candidate's fit")
        if self.deadline is not None and time.time() > self.deadline:
            raise TimeoutError(_BUDGET_MESSAGE)
        return self

    def transform(self, x: Any) -> Any:
        """Return `x` unchanged."""
        return x


def search(
    pipeline: Pipeline,
    x: pd.DataFrame,
    y: np.ndarray,
    config: SearchConfig,
    cv: CVConfig,
    metric: str,
    n_classes: int | None,
    seed: int,
    stop: StopCheck | None = None,
    fit_params: dict[str, Any] | None = None,
) -> SearchOutcome:
    """Run the search that `config` declares and return every trial.

    `stop` is checked at each random draw of a candidate and before each
    candidate's fit on each fold, and `fit_params` go to each of those fits.

    Raises:
        TrainingError: No candidate was scored, the metric does not fit the
            target, or a parameter is not accepted by the estimator.
        TrainingStopped: `stop` was set.
    """
    try:
        scoring = scorer_name(metric, n_classes)
    except ValueError as exc:
        raise TrainingError(str(exc)) from None
    started = time.time()
    deadline = None if config.max_seconds is None else started + config.max_seconds
    check = DeadlineCheck(deadline, stop)
    budgeted = Pipeline([("deadline", check), *pipeline.steps])
    searcher = _searcher(budgeted, config, splitter(cv, seed), scoring, seed, stop)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            searcher.fit(x, y, **(fit_params or {}))
        except ValueError as exc:
            raise TrainingError(f"hyperparameter search failed: {exc}") from exc
    seconds = time.time() - started
    timed_out = deadline is not None and time.time() > deadline
    messages = _fit_failures(caught)
    trials = _trials(searcher.cv_results_, metric, timed_out, messages)
    best = _best(trials, config, metric)
    logger.info(
        "search done method=%s trials=%d scored=%d best=%s %s=%.4g seconds=%.1f",
        config.method,
        len(trials),
        sum(not math.isnan(t.score) for t in trials),
        best.params,
        metric,
        best.score,
        seconds,
    )
    return SearchOutcome(metric, trials, best, timed_out, seconds, messages)


def _searcher(
    pipeline: Pipeline,
    config: SearchConfig,
    cv: Any,
    scoring: str,
    seed: int,
    stop: StopCheck | None = None,
) -> Any:
    from sklearn.experimental import enable_halving_search_cv  # noqa: F401
    from sklearn.model_selection import (
        GridSearchCV,
        HalvingGridSearchCV,
        HalvingRandomSearchCV,
        RandomizedSearchCV,
    )

    common: dict[str, Any] = {
        "scoring": scoring,
        "cv": cv,
        "refit": False,
        "error_score": np.nan,
        "return_train_score": True,
        "n_jobs": 1,
    }
    ranges = any(isinstance(v, dict) for v in config.space.values())
    if config.method == "random" or (config.method == "halving" and ranges):
        space = {_PREFIX + k: _distribution(v, stop) for k, v in config.space.items()}
        if config.method == "random":
            # NOTE: the search draws all max_trials candidates before its first
            # fit, and that time counts against max_seconds: 100000 took 8 s
            # on a shared 2-core host. A stop ends the drawing at once.
            return RandomizedSearchCV(
                pipeline, space, n_iter=config.max_trials, random_state=seed, **common
            )
        return HalvingRandomSearchCV(
            pipeline,
            space,
            n_candidates=config.max_trials,
            factor=config.factor,
            random_state=seed,
            **common,
        )
    grid = _grid(config)
    if config.method == "grid":
        return GridSearchCV(pipeline, grid, **common)
    return HalvingGridSearchCV(
        pipeline, grid, factor=config.factor, random_state=seed, **common
    )


def _grid(config: SearchConfig) -> list[dict[str, list[Any]]]:
    """Return the first `max_trials` grid points as one-point grids."""
    from sklearn.model_selection import ParameterGrid

    full = ParameterGrid({_PREFIX + k: v for k, v in config.space.items()})
    if len(full) > config.max_trials:
        logger.warning(
            "search grid cut candidates=%d max_trials=%d", len(full), config.max_trials
        )
    return [
        {key: [value] for key, value in point.items()}
        for point in islice(full, config.max_trials)
    ]


def _distribution(values: Any, stop: StopCheck | None = None) -> Any:
    """Return a list as is, or a ``{low, high, log}`` table as a distribution
    whose draws check `stop`."""
    if isinstance(values, list):
        return values
    from scipy import stats

    low, high = values["low"], values["high"]
    integer = isinstance(low, int) and isinstance(high, int)
    if values.get("log"):
        dist = stats.loguniform(low, high)
        if integer:
            dist = _Rounded(dist)
    elif integer:
        dist = stats.randint(low, high + 1)
    else:
        dist = stats.uniform(low, high - low)
    return dist if stop is None else _Checked(dist, stop)


class _Rounded:
    """An integer view of a continuous distribution, for log-spaced integers."""

    def __init__(self, dist: Any) -> None:
        self.dist = dist

    def rvs(self, random_state: Any = None) -> int:
        return int(round(float(self.dist.rvs(random_state=random_state))))


class _Checked:
    """A distribution whose every draw checks a stop first.

    scikit-learn draws every random candidate before the first fit, and a
    space of only lists is sampled from its grid without any draw, which is
    fast.
    """

    def __init__(self, dist: Any, stop: StopCheck) -> None:
        self.dist = dist
        self.stop = stop

    def rvs(self, random_state: Any = None) -> Any:
        self.stop("while drawing search candidates")
        return self.dist.rvs(random_state=random_state)


def _trials(
    results: dict[str, Any], metric: str, timed_out: bool, messages: list[str]
) -> list[Trial]:
    n_folds = sum(
        1 for key in results if key.startswith("split") and key.endswith("_test_score")
    )
    trials = []
    for index, params in enumerate(results["params"]):
        folds = [
            {
                metric: from_score(
                    metric, float(results[f"split{k}_test_score"][index])
                ),
                f"train_{metric}": from_score(
                    metric, float(results[f"split{k}_train_score"][index])
                ),
            }
            for k in range(n_folds)
        ]
        score = float(results["mean_test_score"][index])
        error = None
        if math.isnan(score):
            error = _unscored_reason(timed_out, messages)
        trials.append(
            Trial(
                params={k.removeprefix(_PREFIX): _plain(v) for k, v in params.items()},
                folds=folds,
                score=from_score(metric, score),
                train_score=from_score(
                    metric, float(results["mean_train_score"][index])
                ),
                fit_seconds=float(results["mean_fit_time"][index]) * n_folds,
                round=int(results["iter"][index]) if "iter" in results else 0,
                rows=int(results["n_resources"][index])
                if "n_resources" in results
                else 0,
                error=error,
            )
        )
    return trials


def _fit_failures(caught: list[warnings.WarningMessage]) -> list[str]:
    """Return the fit errors scikit-learn reported, leaving out budget refusals."""
    from sklearn.exceptions import FitFailedWarning

    found = set()
    for warning in caught:
        text = str(warning.message)
        if (
            issubclass(warning.category, FitFailedWarning)
            and _BUDGET_MESSAGE not in text
        ):
            found.add(text.strip().splitlines()[-1])
    return sorted(found)


def _unscored_reason(timed_out: bool, messages: list[str]) -> str:
    if timed_out and not messages:
        return f"not scored: the {_BUDGET_MESSAGE} before this candidate was fitted"
    text = "; ".join(messages[:3]) or "unknown error"
    prefix = f"the {_BUDGET_MESSAGE}, or " if timed_out else ""
    return f"not scored: {prefix}a fit failed: {text}"


def _best(trials: list[Trial], config: SearchConfig, metric: str) -> Trial:
    scored = [t for t in trials if not math.isnan(t.score)]
    if not scored:
        budget = (
            f" within max_seconds={config.max_seconds}" if config.max_seconds else ""
        )
        raise TrainingError(
            f"the search scored no candidate{budget}; raise the budget or check "
            f"the parameter space: {trials[0].error if trials else 'no candidates'}"
        )
    last_round = max(t.round for t in scored)
    final = [t for t in scored if t.round == last_round]
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    return max(final, key=lambda t: sign * t.score)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value
