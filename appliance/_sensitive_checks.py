"""Checks of the sensitive columns declared in the configuration.

A sensitive column is stored as AES-SIV ciphertext. It may be a feature
view's entity key, because equal values stay equal, but not a model input,
label or segment, because its ciphertext would be a meaningless category.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from appliance.errors import ConfigError


def check_sensitive_columns(
    models: Mapping[str, Any],
    datasets: Mapping[str, Any],
    views: Mapping[str, Any],
    source: Path,
) -> None:
    """Reject models that use a sensitive column other than as an entity key.

    Also reject a model whose dataset stores an entity key in plaintext while
    another dataset encrypts it, because the training join would then compare
    plaintext with ciphertext.

    Raises:
        ConfigError: Naming the model and the column.
    """
    declared_by: dict[str, list[str]] = {}
    for dataset in datasets.values():
        for column in dataset.sensitive:
            declared_by.setdefault(column, []).append(dataset.name)
    for model in models.values():
        _check_uses(model, declared_by, source)
        _check_keys(model, datasets, views, declared_by, source)


def _check_uses(model: Any, declared_by: dict[str, list[str]], source: Path) -> None:
    # NOTE: SQL of `where` and `derive` that reads a sensitive column compares
    # ciphertext with its literals, and is not rejected here.
    uses = [
        ("a feature", model.features or ()),
        ("the target", (model.target,)),
        ("a segment", model.segments),
        ("a categorical feature", model.categorical),
    ]
    for role, columns in uses:
        for column in columns:
            if column in declared_by:
                raise ConfigError(
                    f"model {model.name!r} in {source} uses column {column!r} as "
                    f"{role}, but dataset {declared_by[column][0]!r} declares it "
                    "sensitive, so it is stored encrypted and its ciphertext "
                    "would be a meaningless category; remove it from the model "
                    "(it may still be an entity key of a feature view)"
                )


def _check_keys(
    model: Any,
    datasets: Mapping[str, Any],
    views: Mapping[str, Any],
    declared_by: dict[str, list[str]],
    source: Path,
) -> None:
    # NOTE: A view's key is matched to datasets by column name only: the view
    # SQL is not parsed, so a key renamed in the SQL is not checked.
    own = datasets.get(model.dataset)
    encrypted = set(own.sensitive) if own is not None else set()
    for name in model.feature_views:
        view = views.get(name)
        for key in view.entities if view is not None else ():
            if key in declared_by and key not in encrypted:
                raise ConfigError(
                    f"model {model.name!r} in {source} joins feature view "
                    f"{name!r} on {key!r}, which dataset "
                    f"{declared_by[key][0]!r} declares sensitive, but its "
                    f"dataset {model.dataset!r} does not, so the join would "
                    "compare plaintext with ciphertext; add "
                    f"sensitive = [{key!r}] to [datasets.{model.dataset}]"
                )
