"""Error responses name the request parameter that failed validation."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from litestar import Litestar, get
from litestar.params import QueryParameter
from litestar.testing import TestClient

from appliance.serving._errors import error_response


@get("/items", sync_to_thread=False)
def items(
    since: Annotated[datetime | None, QueryParameter()] = None,
    limit: Annotated[int, QueryParameter()] = 5,
) -> dict:
    return {"since": since, "limit": limit}


def test_invalid_query_parameters_named() -> None:
    app = Litestar([items], exception_handlers={Exception: error_response})

    with TestClient(app) as client:
        response = client.get("/items", params={"since": "yesterday", "limit": "x"})

    assert response.status_code == 400
    message = response.json()["error"]
    assert message.startswith("Validation failed for GET /items?")
    assert "query parameter 'since': Invalid RFC3339 encoded datetime" in message
    assert "query parameter 'limit': Expected `int`, got `str`" in message
    assert response.json()["parameters"] == ["since", "limit"]
