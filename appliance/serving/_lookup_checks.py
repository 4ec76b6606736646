"""Checks of the request columns that a model's feature lookup reads.

The lookup matches rows by the entity keys of the model's feature views,
which are not always model inputs, so the input conversion does not check
them. These checks run on the request before the lookup, for JSON rows, Arrow
tables and files scored in a batch alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from appliance.features import FeatureServer
from appliance.serving._text_checks import check_table_texts, check_texts


def check_lookup_rows(features: FeatureServer, model: str, rows: Sequence[Any]) -> None:
    """Reject JSON rows whose entity key text contains a NUL byte.

    Raises:
        RequestError: Such a value is found. The error names its row and column.
    """
    if features.uses_features(model):
        check_texts(model, rows, features.entity_keys(model))


def check_lookup_table(features: FeatureServer, model: str, table: pa.Table) -> None:
    """Reject a table whose entity key text contains a NUL byte.

    Raises:
        RequestError: Such a value is found. The error names its row and column.
    """
    if features.uses_features(model):
        check_table_texts(model, table, features.entity_keys(model))
