"""Checks of the retrain request body, which name values in JSON spelling."""

from __future__ import annotations

import json

import pytest

from appliance.errors import RequestError
from appliance.serving._routes_retrain import _decode


@pytest.mark.parametrize(
    ("body", "shown"),
    [
        ({"force": True, "trigger": "drift"}, 'got true with trigger "drift"'),
        ({"force": "yes"}, 'got "yes" with trigger "manual"'),
        ({"force": None}, 'got null with trigger "manual"'),
    ],
)
def test_retrain_force_invalid_json_spelling(body: dict, shown: str) -> None:
    with pytest.raises(RequestError) as raised:
        _decode(json.dumps(body).encode(), "late")
    message = str(raised.value)
    assert shown in message
    assert "True" not in message
    assert "None" not in message


def test_retrain_force_value_cut() -> None:
    with pytest.raises(RequestError) as raised:
        _decode(json.dumps({"force": "x" * 500}).encode(), "late")
    assert "(502 characters)" in str(raised.value)
