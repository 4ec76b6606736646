"""The reference server: a bare Litestar endpoint around the same ONNX session.

It decodes one JSON body, builds the feed and runs the session inline, with no
logging, metrics, limits or batching: the practical limit of this stack.
Run: python bare_litestar.py MODEL_FOLDER PORT, with the folder
HOME/models/NAME/VERSION of a home whose own key signed the version.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import msgspec
import uvicorn
from litestar import Litestar, Request, Response, get, post

from appliance.config import Config, StorageConfig
from appliance.serving import OnnxModel, rows_to_feed
from appliance.signing import trusted_keys

folder = Path(sys.argv[1]).resolve()
home = Config(folder / "config.toml", storage=StorageConfig(home=folder.parents[2]))
model = OnnxModel.load(folder, trusted=trusted_keys(home))
decoder = msgspec.json.Decoder()
encode = msgspec.json.Encoder().encode


@get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@post("/predict", status_code=200)
async def predict(request: Request[Any, Any, Any]) -> Response[bytes]:
    rows = decoder.decode(await request.body())["rows"]
    output = model.run(rows_to_feed(model.name, model.inputs, rows))
    return Response(
        encode({"predictions": model.format(output)}), media_type="application/json"
    )


app = Litestar([health, predict], logging_config=None)

if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[2]),
        log_level="warning",
        access_log=False,
    )
