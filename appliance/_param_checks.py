"""Checks of ``[models.NAME.params]`` and its search space, without the libraries.

They run when the config loads, so a CLI command, ``appliance serve`` and a
SIGHUP reload reject an unknown name or an invalid value before any training.
The names and scikit-learn's constraints come from `appliance._param_table`,
generated from the libraries. LightGBM checks its values in C++ and exports no
table of them, so `LIGHTGBM_RULES` lists the rules of its common parameters,
and a test probes each rule against LightGBM. Training checks every value
again with the libraries themselves (`appliance.training._params`).

A rule is a tuple: ``("type", KIND)``, ``("interval", KIND, LEFT, RIGHT,
CLOSED)`` with None for an open end, ``("options", VALUES)``, or
``("hidden", RULE)`` for a value accepted but not listed in messages.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from appliance._param_table import (
    CLASSES,
    CONSTRAINTS,
    LIGHTGBM_ALIASES,
    LIGHTGBM_PARAMS,
    NAMES,
)

Rule = tuple[Any, ...]

LIGHTGBM_RULES: dict[str, list[Rule]] = {
    "num_iterations": [("interval", "int", 0, None, "neither")],
    "learning_rate": [("interval", "real", 0, None, "neither")],
    "num_leaves": [("interval", "int", 1, 131072, "right")],
    "max_depth": [("type", "int")],
    "min_data_in_leaf": [("interval", "int", 0, None, "left")],
    "min_sum_hessian_in_leaf": [("interval", "real", 0, None, "left")],
    "bagging_fraction": [("interval", "real", 0, 1, "right")],
    "bagging_freq": [("type", "int")],
    "feature_fraction": [("interval", "real", 0, 1, "right")],
    "feature_fraction_bynode": [("interval", "real", 0, 1, "right")],
    "lambda_l1": [("interval", "real", 0, None, "left")],
    "lambda_l2": [("interval", "real", 0, None, "left")],
    "min_gain_to_split": [("interval", "real", 0, None, "left")],
    "max_bin": [("interval", "int", 1, None, "neither")],
    "min_data_in_bin": [("interval", "int", 0, None, "neither")],
    "bin_construct_sample_cnt": [("interval", "int", 0, None, "neither")],
    "num_threads": [("type", "int")],
    "seed": [("type", "int")],
    "extra_trees": [("type", "bool")],
    "path_smooth": [("interval", "real", 0, None, "left")],
    "max_delta_step": [("type", "real")],
    "drop_rate": [("interval", "real", 0, 1, "both")],
    "skip_drop": [("interval", "real", 0, 1, "both")],
    "max_drop": [("type", "int")],
    "max_cat_threshold": [("interval", "int", 0, None, "neither")],
    "cat_l2": [("interval", "real", 0, None, "left")],
    "cat_smooth": [("interval", "real", 0, None, "left")],
    "max_cat_to_onehot": [("interval", "int", 0, None, "neither")],
    "min_data_per_group": [("interval", "int", 0, None, "neither")],
    "scale_pos_weight": [("interval", "real", 0, None, "neither")],
    "is_unbalance": [("type", "bool")],
    "sigmoid": [("interval", "real", 0, None, "neither")],
    "verbosity": [("type", "int")],
    "deterministic": [("type", "bool")],
}
"""Rules of LightGBM 4.7's values by its own parameter name; aliases map to it.

NOTE: a value of a LightGBM parameter not listed here is checked at training
only, by `appliance.training._params`."""

_COMMAND_LINE = "only LightGBM's command-line program reads it"
_FILE_LOADING = "LightGBM reads it only when it loads the data from a file"
_DISTRIBUTED = "it sets up LightGBM's training on several machines"

LIGHTGBM_UNUSED: dict[str, str] = {
    **dict.fromkeys(
        (
            "config",
            "task",
            "data",
            "valid",
            "input_model",
            "output_model",
            "snapshot_freq",
            "save_binary",
            "output_result",
            "convert_model_language",
            "convert_model",
            "metric_freq",
            "is_provide_training_metric",
        ),
        _COMMAND_LINE,
    ),
    **dict.fromkeys(
        (
            "two_round",
            "header",
            "label_column",
            "weight_column",
            "group_column",
            "ignore_column",
        ),
        _FILE_LOADING,
    ),
    **dict.fromkeys(
        (
            "num_machines",
            "local_listen_port",
            "time_out",
            "machine_list_filename",
            "machines",
            "pre_partition",
        ),
        _DISTRIBUTED,
    ),
}
"""LightGBM parameters the appliance cannot use, with the reason, because it
fits through LightGBM's scikit-learn API on in-memory data on one machine.
LightGBM's docs/Parameters.rst marks the first group "can be used only in CLI
version" and the second "works only in case of loading data directly from
file". The config rejects them and their aliases, and leaves them out of the
names it lists."""

_KIND_NAMES = {
    "bool": "true or false",
    "int": "an integer",
    "real": "a number",
    "float": "a number with a decimal point",
    "verbose": "an integer or true or false",
    "str": "a string",
    "dict": "a table",
    "list": "a list",
}


def check_params(
    model: str,
    algorithm: str,
    task: str,
    params: dict,
    table: str = "params",
    model_keys: frozenset[str] = frozenset(),
) -> None:
    """Reject an unknown name or an invalid value in a model's ``params``.

    Args:
        model: The model's name.
        algorithm: The model's ``algorithm``.
        task: The model's ``task``.
        params: Parameter names and values.
        table: The table of ``[models.NAME]`` named in messages.
        model_keys: Keys of ``[models.NAME]`` itself. One of them in
            ``params`` was most likely written below the ``params`` header.

    Raises:
        ValueError: The message names ``[models.NAME.TABLE] KEY``, the value
            and the allowed values, or lists the known names.
    """
    owner = CLASSES[(algorithm, task)]
    lightgbm = algorithm == "lightgbm"
    listed = set(NAMES[owner])
    known = set(listed)
    if lightgbm:
        listed.update(set(LIGHTGBM_PARAMS) - set(LIGHTGBM_UNUSED))
        known.update(LIGHTGBM_PARAMS, LIGHTGBM_ALIASES)
    for key, value in params.items():
        canonical = LIGHTGBM_ALIASES.get(key, key) if lightgbm else key
        if key in model_keys and (key not in known or canonical in LIGHTGBM_UNUSED):
            raise ValueError(_misplaced(model, table, key, owner))
        if key not in known:
            aliases = LIGHTGBM_ALIASES if lightgbm else None
            raise ValueError(_unknown(f"{model}.{table}", owner, key, listed, aliases))
        if lightgbm and canonical in LIGHTGBM_UNUSED:
            raise ValueError(
                f"[models.{model}.{table}] {key} is a LightGBM parameter that the "
                f"appliance cannot use: {LIGHTGBM_UNUSED[canonical]}; remove it"
            )
        if lightgbm:
            # Per-feature and per-class settings, such as monotone_constraints,
            # depend on the real columns and classes, so training checks them.
            if isinstance(value, (list, dict)):
                continue
            rules = LIGHTGBM_RULES.get(LIGHTGBM_ALIASES.get(key, key), [])
        else:
            rules = CONSTRAINTS[owner].get(key, [])
        if rules and not any(_satisfies(value, rule) for rule in rules):
            raise ValueError(
                f"[models.{model}.{table}] {key} = {value!r} is invalid for "
                f"{algorithm}: it must be {describe(rules)}; fix the value in the "
                "config file"
            )


def check_search_space(
    model: str, algorithm: str, task: str, space: dict[str, Any]
) -> None:
    """Reject a search-space name, or a listed value or range end, that
    `check_params` rejects in ``params``.

    Raises:
        ValueError: The message names ``[models.NAME.search.space] KEY`` and
            the value.
    """
    for key, values in space.items():
        if isinstance(values, dict):
            # An integer range draws both ends, and a real range comes as
            # close to them as the sampler's precision allows.
            values = [values["low"], values["high"]]
        for value in values:
            check_params(model, algorithm, task, {key: value}, "search.space")


def describe(rules: list[Rule]) -> str:
    """Return the values that `rules` allow, in words, without hidden ones."""
    parts = [_describe(rule) for rule in rules if rule[0] != "hidden"]
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " or " + parts[-1]


def _misplaced(model: str, table: str, key: str, owner: str) -> str:
    return (
        f"[models.{model}.{table}] {key} is not a parameter of {owner} but a key "
        f"of [models.{model}]: TOML puts every key below the [models.{model}."
        f"{table}] header into that table, so move {key} above the header"
    )


def _unknown(
    table: str,
    owner: str,
    key: str,
    listed: set[str],
    aliases: dict[str, str] | None,
) -> str:
    close = suggest(key, listed, aliases)
    hint = f"did you mean {close!r}? " if close else ""
    also = " (LightGBM also takes their aliases)" if aliases else ""
    return (
        f"[models.{table}] {key} is not a parameter of {owner}; {hint}"
        f"known parameters{also}: {', '.join(sorted(listed))}"
    )


def suggest(
    key: str, names: set[str], aliases: dict[str, str] | None = None
) -> str | None:
    """Return the name of `names` closest to the unknown `key`, or None.

    An alias close to `key` counts as the name it maps to, so with LightGBM's
    aliases ``num_leafs`` suggests ``num_leaves`` and not the alias
    ``num_leaf``. An alias that is itself in `names`, such as scikit-learn's
    ``n_estimators``, stays as it is.
    """
    import difflib

    aliases = aliases or {}
    candidates = names | {alias for alias, name in aliases.items() if name in names}
    close = difflib.get_close_matches(key, sorted(candidates), n=1, cutoff=0.8)
    if not close:
        return None
    return close[0] if close[0] in names else aliases[close[0]]


def _satisfies(value: Any, rule: Rule) -> bool:
    kind = rule[0]
    if kind == "hidden":
        return _satisfies(value, rule[1])
    if kind == "options":
        return any(isinstance(value, type(item)) and value == item for item in rule[1])
    if kind == "type":
        return _is_kind(value, rule[1])
    _, number_kind, left, right, closed = rule
    if not _is_kind(value, number_kind) or math.isnan(value):
        return False
    low = -math.inf if left is None else left
    high = math.inf if right is None else right
    above = value >= low if closed in ("left", "both") else value > low
    below = value <= high if closed in ("right", "both") else value < high
    return above and below


def _is_kind(value: Any, kind: str) -> bool:
    # TOML's true and false are Python bools, which are ints too. A number
    # parameter set to true is a mistake, so only "bool" and "verbose" take them.
    # The numbers ABCs also take NumPy's numbers, which a search samples.
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "verbose":
        return isinstance(value, numbers.Integral)
    if isinstance(value, bool):
        return False
    if kind == "int":
        return isinstance(value, numbers.Integral)
    if kind == "real":
        return isinstance(value, numbers.Real)
    if kind == "float":
        return isinstance(value, numbers.Real) and not isinstance(
            value, numbers.Integral
        )
    types = {"str": str, "dict": dict, "list": list}
    return isinstance(value, types[kind])


def _describe(rule: Rule) -> str:
    kind = rule[0]
    if kind == "options":
        return "one of " + ", ".join(repr(item) for item in rule[1])
    if kind == "type":
        return _KIND_NAMES[rule[1]]
    _, number_kind, left, right, closed = rule
    opening = "[" if closed in ("left", "both") and left is not None else "("
    closing = "]" if closed in ("right", "both") and right is not None else ")"
    low = "-inf" if left is None else left
    high = "inf" if right is None else right
    return f"{_KIND_NAMES[number_kind]} in the range {opening}{low}, {high}{closing}"
