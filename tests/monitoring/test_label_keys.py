"""Label keys of feedback: each label names its request id and row explicitly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from appliance.config import MonitoringConfig
from appliance.errors import RequestError
from appliance.monitoring import ModelInfo, MonitoringService, output_values

INFO = ModelInfo("m", 1, "classification", ("x",), (), (0, 1))


def no_lookup(model: str, request_ids: list[str]) -> dict:
    raise AssertionError("a label with an invalid key must be rejected first")


@pytest.mark.parametrize(
    ("label", "shown"),
    [
        ({"request_id": "abc", "row": True, "label": 1}, "True"),
        ({"request_id": "abc", "row": -1, "label": 1}, "-1"),
        ({"request_id": "abc", "row": "0", "label": 1}, "'0'"),
    ],
)
def test_label_invalid_row_rejected(
    tmp_path: Path, label: dict[str, Any], shown: str
) -> None:
    service = MonitoringService(tmp_path, MonitoringConfig())

    with pytest.raises(
        RequestError, match=f"row index of at least 0, got 'abc' and {shown}"
    ):
        service.apply_labels(INFO, [label], no_lookup)


def test_label_without_row_rejected(tmp_path: Path) -> None:
    service = MonitoringService(tmp_path, MonitoringConfig())
    label = {"request_id": "abc", "label": 1}

    with pytest.raises(RequestError, match="label 0 .* 'abc'.* has no 'row'; send"):
        service.apply_labels(INFO, [label], no_lookup)


@pytest.mark.parametrize(("label", "index"), [(1, 1.0), (0, 0.0), ("true", 1.0)])
def test_boolean_class_label_forms(label: Any, index: float) -> None:
    from appliance.monitoring._service import _target

    info = ModelInfo("b", 1, "classification", ("x",), (), (False, True))

    assert _target(info, 0, {"label": label}) == index


def test_boolean_class_label_two_rejected() -> None:
    from appliance.monitoring._service import _target

    info = ModelInfo("b", 1, "classification", ("x",), (), (False, True))

    with pytest.raises(RequestError, match="label 2 is not a class of model 'b'"):
        _target(info, 0, {"label": 2})


def test_null_class_label_shown_as_json() -> None:
    from appliance.monitoring._service import _target

    info = ModelInfo("b", 1, "classification", ("x",), (), (False, True))

    with pytest.raises(RequestError) as raised:
        _target(info, 3, {"label": None})

    assert str(raised.value) == (
        "label null is not a class of model 'b' (label 3 of the request); "
        "classes: false, true"
    )


def test_output_values_reads_json_and_arrow_outputs() -> None:
    binary = ModelInfo("b", 1, "classification", ("x",), (), (False, True))
    regression = ModelInfo("r", 1, "regression", ("x",), (), None)
    json_output = {"label": True, "probabilities": {"false": 0.25, "true": 0.75}}
    arrow_output = {
        "prediction": True,
        "probability_false": 0.25,
        "probability_true": 0.75,
    }

    assert output_values(binary, json_output) == [0.25, 0.75]
    assert output_values(binary, arrow_output) == [0.25, 0.75]
    assert output_values(regression, {"value": 1.5}) == 1.5
    assert output_values(regression, {"prediction": 1.5}) == 1.5
