"""Generate `appliance._param_table` from the installed scikit-learn and LightGBM.

The config checks ``[models.NAME.params]`` against that table without
importing either library, which the serving daemon never loads. A test
compares the table with a fresh one, so it fails when the libraries change;
write a new table with ``python -m appliance.training._param_source``.
"""

from __future__ import annotations

import numbers
import pprint
import sys
from pathlib import Path
from typing import Any

from appliance.config import ALGORITHMS

TABLE_PATH = Path(__file__).resolve().parent.parent / "_param_table.py"

_HEADER = '''"""Parameters of the estimators, generated from scikit-learn and LightGBM.

Do not edit: ``python -m appliance.training._param_source`` writes this file
from the installed libraries (scikit-learn {sklearn}, LightGBM {lightgbm}).
`appliance._param_checks` reads it.
"""

'''


def build_table() -> dict[str, Any]:
    """Return the parameter names and constraints of every estimator we train.

    ``classes`` maps ``(algorithm, task)`` to the estimator class name.
    ``names`` maps a class name to its sorted parameter names. ``constraints``
    maps a scikit-learn class name to its encoded parameter constraints.
    ``lightgbm_params`` lists LightGBM's own parameter names, and
    ``lightgbm_aliases`` maps each of their aliases to one of them.
    """
    from lightgbm.basic import _ConfigAliases

    from appliance.training._pipeline import estimator_class

    classes: dict[tuple[str, str], str] = {}
    names: dict[str, list[str]] = {}
    constraints: dict[str, dict[str, list[tuple[Any, ...]]]] = {}
    for task, algorithms in ALGORITHMS.items():
        for algorithm in algorithms:
            cls = estimator_class(task, algorithm)
            classes[(algorithm, task)] = cls.__name__
            names[cls.__name__] = sorted(cls().get_params())
            if algorithm != "lightgbm":
                constraints[cls.__name__] = {
                    name: encode_constraints(cls.__name__, name, rules)
                    for name, rules in sorted(cls._parameter_constraints.items())
                }
    lightgbm = _ConfigAliases._get_all_param_aliases()
    aliases = {
        alias: name
        for name, listed in lightgbm.items()
        for alias in listed
        if alias != name
    }
    return {
        "classes": classes,
        "names": names,
        "constraints": constraints,
        "lightgbm_params": sorted(lightgbm),
        "lightgbm_aliases": dict(sorted(aliases.items())),
    }


def encode_constraints(owner: str, name: str, rules: list[Any]) -> list[tuple]:
    """Encode scikit-learn's constraints of one parameter as plain tuples.

    A constraint that no TOML value can meet (None, a callable, an instance
    of a class) is left out. The encodings are ``("type", KIND)``,
    ``("interval", KIND, LEFT, RIGHT, CLOSED)`` and ``("options", VALUES)``,
    and ``("hidden", ENCODED)`` for a value accepted but not listed.

    Raises:
        TypeError: A constraint of a kind this function does not know; teach
            it here and in `appliance._param_checks`.
    """
    from sklearn.utils._param_validation import Hidden

    encoded = []
    for rule in rules:
        hidden = isinstance(rule, Hidden)
        inner = _encode(owner, name, rule.constraint if hidden else rule)
        if inner is not None:
            encoded.append(("hidden", inner) if hidden else inner)
    return encoded


def _encode(owner: str, name: str, rule: Any) -> tuple | None:
    from sklearn.utils._param_validation import (
        Interval,
        Options,
        RealNotInt,
        StrOptions,
    )

    kinds = {
        numbers.Integral: "int",
        numbers.Real: "real",
        RealNotInt: "float",
        int: "int",
        float: "float",
        str: "str",
        dict: "dict",
        list: "list",
        bool: "bool",
    }
    strings = {"boolean": "bool", "verbose": "verbose", "array-like": "list"}
    if rule is None or rule is callable or rule in ("sparse matrix", "nan"):
        return None
    if isinstance(rule, str) and rule in strings:
        return ("type", strings[rule])
    if rule == "random_state":
        return ("interval", "int", 0, 2**32 - 1, "both")
    if isinstance(rule, Interval):
        return ("interval", kinds[rule.type], rule.left, rule.right, rule.closed)
    if isinstance(rule, (StrOptions, Options)):
        return ("options", tuple(sorted(rule.options)))
    if isinstance(rule, type) and rule in kinds:
        return ("type", kinds[rule])
    if isinstance(rule, type):
        return None
    raise TypeError(f"unknown constraint {rule!r} of {owner} parameter {name!r}")


def render(table: dict[str, Any]) -> str:
    """Return the source of the module that defines `table`."""
    import lightgbm
    import sklearn

    header = _HEADER.format(sklearn=sklearn.__version__, lightgbm=lightgbm.__version__)
    body = [
        f"{key.upper()} = {pprint.pformat(value, width=88)}\n"
        for key, value in table.items()
    ]
    return header + "\n".join(body)


def main() -> None:
    """Write `TABLE_PATH` from the installed libraries."""
    TABLE_PATH.write_text(render(build_table()), encoding="utf-8")
    print(f"wrote {TABLE_PATH}; format it with ruff format", file=sys.stderr)


if __name__ == "__main__":
    main()
