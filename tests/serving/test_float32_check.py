"""The float32 range check of request columns before they reach a session."""

from __future__ import annotations

import math

import numpy as np
import pytest

from appliance.errors import RequestError
from appliance.serving._inputs import check_float32

INPUTS = [
    {"name": "a", "type": "number"},
    {"name": "text", "type": "string"},
    {"name": "b", "type": "number"},
]


def test_float32_check_names_first_column_row() -> None:
    columns = {
        "a": np.array([1.0, math.nan, -1e39]),
        "text": np.array(["x", "y", "z"], dtype=object),
        "b": np.array([1e39, 2.0, 1e39]),
    }

    with pytest.raises(RequestError) as raised:
        check_float32("m", INPUTS, columns)

    assert raised.value.detail["column"] == "a"
    assert raised.value.detail["row"] == 2
    assert "-1e+39" in str(raised.value)


def test_float32_check_passes_nan_and_limits() -> None:
    largest = float(np.finfo(np.float32).max)
    columns = {
        "a": np.array([math.nan, largest, -largest]),
        "text": np.array(["", "", ""], dtype=object),
        "b": np.array([0.0, math.nan, 3.0]),
    }

    check_float32("m", INPUTS, columns)


def test_float32_check_large_request_names_first_column_row() -> None:
    # Above 65,536 values the columns are checked one at a time.
    rows = 40_000
    a = np.zeros(rows)
    b = np.zeros(rows)
    a[30_000] = -1e39
    b[10] = 1e39
    a[:5] = math.nan
    columns = {"a": a, "text": np.full(rows, "x", dtype=object), "b": b}

    with pytest.raises(RequestError) as raised:
        check_float32("m", INPUTS, columns)

    assert raised.value.detail["column"] == "a"
    assert raised.value.detail["row"] == 30_000


def test_float32_check_large_request_passes_nan_and_limits() -> None:
    largest = float(np.finfo(np.float32).max)
    rows = 40_000
    a = np.full(rows, math.nan)
    b = np.zeros(rows)
    b[0], b[1] = largest, -largest
    columns = {"a": a, "text": np.full(rows, "", dtype=object), "b": b}

    check_float32("m", INPUTS, columns)
