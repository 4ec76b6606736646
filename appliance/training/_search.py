"""Hyperparameter search with scikit-learn: grid, random and successive halving.

Candidates are scored by cross-validation on the training rows. The trial
budget caps the number of candidates: a larger grid is cut to a seeded random
sample. The time budget is checked before each candidate starts. Once it has
passed, no further candidate starts, and the outcome counts those left out
instead of listing them. The search never refits: the caller refits the best
candidate on all training rows.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
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
_ALL_FAILED = "fits failed"
"""Part of the error scikit-learn raises when every fold of a candidate failed."""


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
    """Time spent in the fits of all folds."""
    started_at: datetime
    seconds: float
    """Wall time from the candidate's start to its last fold's score."""
    round: int | None = None
    """Halving round; None for grid and random."""
    rows: int | None = None
    """Halving only: training rows per fold in this round."""
    error: str | None = None


@dataclass
class SearchOutcome:
    """All trials of a search and the best candidate."""

    metric: str
    trials: list[Trial]
    best: Trial
    timed_out: bool
    """Whether `SearchConfig.max_seconds` passed before every candidate started."""
    seconds: float
    candidates: int
    """Candidates the search planned to try, after the grid sample."""
    not_started: int = 0
    """Candidates not started because `SearchConfig.max_seconds` passed."""
    grid_size: int | None = None
    """Size of the full grid when only a sample of it was tried."""
    seed: int | None = None
    """Seed of the random draws and of the grid sample."""
    warnings: list[str] = field(default_factory=list)
    """Sentences for the user: a sampled grid, candidates not started."""

    def summary(self) -> dict[str, Any]:
        """Return the facts of the search recorded in its run's evaluation."""
        return {
            "candidates": self.candidates,
            "tried": len(self.trials),
            "not_started": self.not_started,
            "timed_out": self.timed_out,
            "grid_size": self.grid_size,
            "seed": self.seed,
        }


class StopStep(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Pass-through first step whose `fit` raises `TrainingStopped` once `stop`
    is set, so a stop is seen before each candidate's fit on each fold."""

    def __init__(self, stop: StopCheck | None = None) -> None:
        self.stop = stop

    def fit(self, x: Any, y: Any = None) -> StopStep:
        """Raise `TrainingStopped` once `stop` is set, else do nothing."""
        if self.stop is not None:
            self.stop("before a search candidate's fit")
        return self

    def transform(self, x: Any) -> Any:
        """Return `x` unchanged."""
        return x


class _Budget:
    """The time budget of a search: `spent` once `max_seconds` have passed."""

    def __init__(self, max_seconds: float | None) -> None:
        self.started = time.monotonic()
        self.max_seconds = max_seconds
        self.not_started = 0

    def spent(self) -> bool:
        """Return whether the budget has run out."""
        if self.max_seconds is None:
            return False
        return time.monotonic() - self.started >= self.max_seconds


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
    """Run the search that `config` declares and return every started trial.

    Each candidate is checked against `SearchConfig.max_seconds` before it
    starts. Once the time has passed, no further candidate starts, and the
    outcome counts them in `SearchOutcome.not_started`; a started candidate
    runs to its end. `stop` is checked at each random draw of a candidate and
    before each candidate's fit on each fold, and `fit_params` go to each of
    those fits.

    Raises:
        TrainingError: No candidate was scored, the metric does not fit the
            target, or a parameter is not accepted by the estimator.
        TrainingStopped: `stop` was set.
    """
    try:
        scoring = scorer_name(metric, n_classes)
    except ValueError as exc:
        raise TrainingError(str(exc)) from None
    budget = _Budget(config.max_seconds)
    stopping = Pipeline([("stop", StopStep(stop)), *pipeline.steps])
    plan = _plan(config, seed, stop)
    task = _Task(stopping, x, y, splitter(cv, seed), scoring, metric, fit_params)
    with warnings.catch_warnings():
        # A candidate's fit failures are kept as its error, not shown.
        warnings.simplefilter("ignore")
        if config.method == "halving":
            trials = _halving(task, plan, config, seed, budget)
        else:
            trials = _each(task, plan, budget)
    seconds = time.monotonic() - budget.started
    outcome = SearchOutcome(
        metric,
        trials,
        _best(trials, config, metric),
        budget.not_started > 0,
        seconds,
        plan.size,
        budget.not_started,
        plan.grid_size,
        seed,
        _warnings(config, plan, budget.not_started, seed),
    )
    logger.info(
        "search done method=%s trials=%d scored=%d not_started=%d best=%s "
        "%s=%.4g seconds=%.1f",
        config.method,
        len(trials),
        sum(not math.isnan(t.score) for t in trials),
        budget.not_started,
        outcome.best.params,
        metric,
        outcome.best.score,
        seconds,
    )
    return outcome


@dataclass
class _Plan:
    """The candidates of a search, before any is tried."""

    candidates: Iterable[dict[str, Any]]
    """Grid points or draws, with the ``estimator__`` prefix; draws are lazy."""
    size: int
    grid_size: int | None = None
    """Size of the full grid when `candidates` is a sample of it."""
    distributions: dict[str, Any] | None = None
    """Halving only: the space to draw from, when it has ranges."""


@dataclass
class _Task:
    """Rows, folds and scoring shared by every candidate."""

    pipeline: Pipeline
    x: pd.DataFrame
    y: np.ndarray
    cv: Any
    scoring: str
    metric: str
    fit_params: dict[str, Any] | None


def _plan(config: SearchConfig, seed: int, stop: StopCheck | None) -> _Plan:
    from sklearn.model_selection import ParameterSampler

    ranges = any(isinstance(v, dict) for v in config.space.values())
    if config.method == "random" or (config.method == "halving" and ranges):
        space = {_PREFIX + k: _distribution(v, stop) for k, v in config.space.items()}
        if config.method == "halving":
            return _Plan([], config.max_trials, distributions=space)
        # ParameterSampler draws lazily, one candidate per iteration.
        sampler = ParameterSampler(space, config.max_trials, random_state=seed)
        return _Plan(sampler, len(sampler))
    return _grid(config, seed)


def _grid(config: SearchConfig, seed: int) -> _Plan:
    """Return the grid, or a seeded random sample of `max_trials` of its points
    in grid order when it is larger."""
    from sklearn.model_selection import ParameterGrid

    full = ParameterGrid({_PREFIX + k: v for k, v in config.space.items()})
    if len(full) <= config.max_trials:
        return _Plan(list(full), len(full))
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(len(full), config.max_trials, replace=False))
    logger.warning(
        "search grid sampled candidates=%d max_trials=%d seed=%d",
        len(full),
        config.max_trials,
        seed,
    )
    return _Plan([full[int(i)] for i in picked], config.max_trials, len(full))


def _warnings(
    config: SearchConfig, plan: _Plan, not_started: int, seed: int
) -> list[str]:
    found = []
    if plan.grid_size is not None:
        found.append(
            f"the search grid has {plan.grid_size} candidates, more than "
            f"max_trials={config.max_trials}, so a random sample of "
            f"{config.max_trials} was tried (seed {seed}); raise "
            "max_trials to try more"
        )
    if not_started and config.method == "halving":
        # A halving round tries the best candidates of the round before again,
        # so the count is of trials, not of distinct candidates.
        found.append(
            f"the search reached max_seconds={config.max_seconds} before "
            f"{not_started} trials of its halving rounds started, so they were "
            "not tried; raise max_seconds or lower max_trials"
        )
    elif not_started:
        found.append(
            f"the search reached max_seconds={config.max_seconds} before "
            f"{not_started} of its {plan.size} candidates started, so they were "
            "not tried; raise max_seconds or lower max_trials"
        )
    return found


def _each(task: _Task, plan: _Plan, budget: _Budget) -> list[Trial]:
    """Cross-validate the candidates one by one until the budget is spent."""
    trials = []
    for index, params in enumerate(plan.candidates):
        if budget.spent():
            budget.not_started = plan.size - index
            break
        trials.append(_evaluate(task, params))
    return trials


def _evaluate(task: _Task, params: dict[str, Any]) -> Trial:
    """Cross-validate one candidate and return it as a trial."""
    from sklearn.base import clone
    from sklearn.model_selection import cross_validate

    started_at = datetime.now(timezone.utc)
    started = time.perf_counter()
    pipeline = clone(task.pipeline).set_params(**params)
    error = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = cross_validate(
                pipeline,
                task.x,
                task.y,
                cv=task.cv,
                scoring=task.scoring,
                return_train_score=True,
                error_score=np.nan,
                params=task.fit_params,
            )
        except ValueError as exc:
            if _ALL_FAILED not in str(exc):
                raise TrainingError(f"hyperparameter search failed: {exc}") from exc
            error = _last_line(str(exc))
            result = None
    if result is not None:
        error = "; ".join(_fit_failures(caught)) or None
    seconds = time.perf_counter() - started
    plain = {k.removeprefix(_PREFIX): _plain(v) for k, v in params.items()}
    if result is None:
        nan = float("nan")
        return Trial(
            plain, [], nan, nan, seconds, started_at, seconds, error=_unscored(error)
        )
    tests = [from_score(task.metric, float(v)) for v in result["test_score"]]
    trains = [from_score(task.metric, float(v)) for v in result["train_score"]]
    score = float(np.mean(tests))
    return Trial(
        params=plain,
        folds=[
            {task.metric: test, f"train_{task.metric}": train}
            for test, train in zip(tests, trains)
        ],
        score=score,
        train_score=float(np.mean(trains)),
        fit_seconds=float(np.sum(result["fit_time"])),
        started_at=started_at,
        seconds=seconds,
        error=_unscored(error) if math.isnan(score) else None,
    )


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

    A random search draws each candidate just before it starts, but halving
    draws all of them before the first fit. A space of only lists is sampled
    from its grid without any draw, which is fast.
    """

    def __init__(self, dist: Any, stop: StopCheck) -> None:
        self.dist = dist
        self.stop = stop

    def rvs(self, random_state: Any = None) -> Any:
        self.stop("while drawing search candidates")
        return self.dist.rvs(random_state=random_state)


def _halving(
    task: _Task, plan: _Plan, config: SearchConfig, seed: int, budget: _Budget
) -> list[Trial]:
    """Run scikit-learn's successive halving, starting no candidate once the
    budget is spent."""
    from sklearn.experimental import enable_halving_search_cv  # noqa: F401
    from sklearn.model_selection import HalvingGridSearchCV, HalvingRandomSearchCV

    common: dict[str, Any] = {
        "scoring": task.scoring,
        "cv": task.cv,
        "refit": False,
        "error_score": np.nan,
        "return_train_score": True,
        "n_jobs": 1,
        "factor": config.factor,
        "random_state": seed,
    }
    if plan.distributions is not None:
        searcher = HalvingRandomSearchCV(
            task.pipeline, plan.distributions, n_candidates=plan.size, **common
        )
    else:
        grid = [{k: [v] for k, v in point.items()} for point in plan.candidates]
        searcher = HalvingGridSearchCV(task.pipeline, grid, **common)
    rounds = _Rounds(searcher, budget)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            searcher.fit(task.x, task.y, **(task.fit_params or {}))
        except _NothingStarted:
            return []
        except ValueError as exc:
            raise TrainingError(f"hyperparameter search failed: {exc}") from exc
    return _halving_trials(searcher.cv_results_, task.metric, rounds.starts, caught)


class _NothingStarted(Exception):
    """The budget was spent before the first candidate started."""


class _Rounds:
    """Wrapper of a halving searcher's `_run_search` that starts each round's
    candidates one at a time, and only while the budget lasts.

    Without a time budget a round is evaluated in one call, as scikit-learn
    does, because scikit-learn formats all results so far after every call.
    """

    def __init__(self, searcher: Any, budget: _Budget) -> None:
        self.budget = budget
        self.results: dict[str, Any] | None = None
        self.starts: list[datetime] = []
        """Start of each evaluated candidate, or of its round without a budget."""
        run_search = searcher._run_search

        # BaseSearchCV.fit passes callback_ctx only to a method that names it.
        def budgeted(evaluate: Any, *, callback_ctx: Any = None) -> Any:
            return run_search(self._wrap(evaluate), callback_ctx=callback_ctx)

        searcher._run_search = budgeted

    def _wrap(self, evaluate: Any) -> Any:
        def evaluate_within(
            candidates: Any,
            cv: Any = None,
            more_results: Any = None,
            callback_ctx: Any = None,
        ) -> Any:
            candidates = list(candidates)
            if self.budget.max_seconds is None:
                self.starts += [datetime.now(timezone.utc)] * len(candidates)
                self.results = evaluate(candidates, cv, more_results, callback_ctx)
                return self.results
            # The round's callback context numbers the fits of one call, so
            # the calls of single candidates go without it.
            for index, params in enumerate(candidates):
                if self.budget.spent():
                    self.budget.not_started += len(candidates) - index
                    break
                more = {k: [v[index]] for k, v in (more_results or {}).items()}
                self.starts.append(datetime.now(timezone.utc))
                self.results = evaluate([params], cv, more)
            if self.results is None:
                raise _NothingStarted
            return self.results

        return evaluate_within


def _halving_trials(
    results: dict[str, Any],
    metric: str,
    starts: list[datetime],
    caught: list[warnings.WarningMessage],
) -> list[Trial]:
    n_folds = sum(
        1 for key in results if key.startswith("split") and key.endswith("_test_score")
    )
    failures = "; ".join(_fit_failures(caught)) or None
    trials = []
    offset = 0.0
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
        score = from_score(metric, float(results["mean_test_score"][index]))
        fit = float(results["mean_fit_time"][index]) * n_folds
        seconds = fit + float(results["mean_score_time"][index]) * n_folds
        # Candidates of a round evaluated in one call share its start, so
        # each one is taken to start when the one before it ended.
        shared = index > 0 and starts[index] == starts[index - 1]
        offset = offset + trials[-1].seconds if shared else 0.0
        trials.append(
            Trial(
                params={k.removeprefix(_PREFIX): _plain(v) for k, v in params.items()},
                folds=folds,
                score=score,
                train_score=from_score(
                    metric, float(results["mean_train_score"][index])
                ),
                fit_seconds=fit,
                started_at=starts[index] + timedelta(seconds=offset),
                seconds=seconds,
                round=int(results["iter"][index]),
                rows=int(results["n_resources"][index]),
                error=_unscored(failures) if math.isnan(score) else None,
            )
        )
    return trials


def _fit_failures(caught: list[warnings.WarningMessage]) -> list[str]:
    """Return the last line of each distinct fit error scikit-learn reported."""
    from sklearn.exceptions import FitFailedWarning

    found = set()
    for warning in caught:
        if issubclass(warning.category, FitFailedWarning):
            found.add(_last_line(str(warning.message)))
    return sorted(found)


def _last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def _unscored(error: str | None) -> str:
    return f"not scored: a fit failed: {error or 'unknown error'}"


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
    rounds = [t.round or 0 for t in scored]
    final = [t for t, r in zip(scored, rounds) if r == max(rounds)]
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    return max(final, key=lambda t: sign * t.score)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value
