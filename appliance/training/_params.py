"""Checks of ``[models.NAME.params]``: known names and values the estimator takes.

The config already rejected what `appliance._param_checks` covers without the
libraries. These checks run at training time with scikit-learn and LightGBM
themselves, so they also catch values of LightGBM parameters that table has no
rule for.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

import numpy as np

from appliance.config import ModelConfig
from appliance.errors import TrainingError

_PROBE_ROWS = 20
# LightGBM's C++ checks end with the source file and line that raised them.
_SOURCE_PLACE = re.compile(r"\s+at \S+, line \d+\s*\.?\s*$")
_SKLEARN_PARAMETER = re.compile(r"The '(\w+)' parameter")


def check_params(
    cfg: ModelConfig, cls: type[Any], params: dict[str, Any], classes: int | None
) -> None:
    """Reject an unknown name or an invalid value in the model's ``params``.

    Args:
        cfg: The model; its ``params`` are the keys checked.
        cls: The estimator class.
        params: Every keyword argument of the estimator, defaults included.
        classes: Number of classes of a classifier, None for a regressor.

    Raises:
        TrainingError: The error names ``[models.NAME.params] KEY``, the value
            and the estimator's message, or lists the known names.
    """
    if cfg.algorithm == "lightgbm":
        aliases = _lightgbm_aliases()
        known = set(cls().get_params()) | set(aliases)
        listed = sorted(known)
        for names in aliases.values():
            known.update(names)
        _check_names(cfg, cls, known, listed)
        _check_lightgbm_values(cfg, cls, classes, set(aliases["num_iterations"]))
    else:
        known = set(cls().get_params())
        _check_names(cfg, cls, known, sorted(known))
        _check_sklearn_values(cfg, cls, params)


def _lightgbm_aliases() -> dict[str, list[str]]:
    """Return LightGBM's own parameter names, each with its aliases."""
    from lightgbm.basic import _ConfigAliases

    return _ConfigAliases._get_all_param_aliases()


def _check_names(
    cfg: ModelConfig, cls: type[Any], known: set[str], listed: list[str]
) -> None:
    for key in cfg.params:
        if key in known:
            continue
        close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.8)
        hint = f"did you mean {close[0]!r}? " if close else ""
        aliases = (
            " (LightGBM also takes their aliases)"
            if cfg.algorithm == "lightgbm"
            else ""
        )
        raise TrainingError(
            f"[models.{cfg.name}.params] {key} is not a parameter of "
            f"{cls.__name__}; {hint}known parameters{aliases}: {', '.join(listed)}"
        )


def _check_sklearn_values(
    cfg: ModelConfig, cls: type[Any], params: dict[str, Any]
) -> None:
    """Check the values against scikit-learn's declared parameter constraints."""
    from sklearn.utils._param_validation import InvalidParameterError

    try:
        cls(**params)._validate_params()
    except InvalidParameterError as exc:
        named = _SKLEARN_PARAMETER.search(str(exc))
        key = named.group(1) if named else None
        if key in cfg.params:
            raise _invalid(cfg, key, str(exc)) from None
        raise TrainingError(f"[models.{cfg.name}.params] are invalid: {exc}") from None


def _check_lightgbm_values(
    cfg: ModelConfig, cls: type[Any], classes: int | None, rounds: set[str]
) -> None:
    """Fit a one-round model on a few synthetic rows with each value alone.

    LightGBM checks its parameters in C++ only when it builds a booster. Each
    probe takes a few milliseconds, and a failing probe names its key. A probe
    of the number of rounds keeps its value and ends after the first round, so
    ``n_estimators = 200000`` does not train 200000 rounds twice.
    """
    from lightgbm.basic import LightGBMError

    rng = np.random.default_rng(0)
    x = rng.normal(size=(_PROBE_ROWS, 2))
    y: np.ndarray = np.arange(_PROBE_ROWS) % (classes or 2)
    if classes is None:
        y = y.astype(np.float64)
    for key, value in cfg.params.items():
        if isinstance(value, (list, dict)):
            # Per-feature and per-class settings, such as monotone_constraints,
            # depend on the real columns and classes, so the real fit checks them.
            continue
        probe = {"verbose": -1, key: value}
        callbacks = []
        if key in rounds:
            callbacks.append(_end_after_first_round)
        else:
            probe["n_estimators"] = 1
        try:
            cls(**probe).fit(x, y, callbacks=callbacks)
        except (LightGBMError, ValueError, TypeError) as exc:
            raise _invalid(cfg, key, _SOURCE_PLACE.sub("", str(exc))) from None


def _end_after_first_round(env: Any) -> None:
    """End a LightGBM training after its first round, as early stopping does."""
    from lightgbm.callback import EarlyStopException

    raise EarlyStopException(env.iteration, env.evaluation_result_list)


def _invalid(cfg: ModelConfig, key: str, message: str) -> TrainingError:
    return TrainingError(
        f"[models.{cfg.name}.params] {key} = {cfg.params[key]!r} is invalid for "
        f"{cfg.algorithm}: {message.rstrip('. ')}; fix the value in the config file"
    )
