"""Queries that follow a single-row read on the same DuckDB connection."""

from __future__ import annotations

import json
import re
from pathlib import Path

from support import load_config_text

from appliance.storage import Catalog, ingest, list_quarantine

CONFIG = """
[storage]
home = "home"

[feature_views.planes]
sql = "SELECT tailnum, year AS year_built, seats FROM planes"
entities = ["tailnum"]
"""

ROOT = Path(__file__).resolve().parents[2]


def test_json_append_to_view_dataset_quarantines(tmp_path: Path) -> None:
    config = load_config_text(tmp_path, CONFIG)
    views = list(config.feature_views.values())
    first = tmp_path / "planes.jsonl"
    # The appended file lacks the column `model`, so the ingest parses the
    # view's SQL to check whether the view reads it.
    first.write_text(
        json.dumps({"tailnum": "N1", "year": 2001, "seats": 100, "model": "A"}) + "\n"
    )
    bad = tmp_path / "bad.jsonl"
    row = {"tailnum": "N2", "year": "notayear", "seats": "x" * 5000}
    bad.write_text(json.dumps(row) + "\n")

    with Catalog(config.storage.home) as catalog:
        ingest(catalog, "planes", [first], views=views)
        result = ingest(catalog, "planes", [bad], "append", views=views)
        quarantined = list_quarantine(catalog, "planes")

    assert (result.accepted, result.quarantined) == (0, 1)
    assert {q.column for q in quarantined} == {"year", "seats"}


def test_package_reads_no_row_with_fetchone() -> None:
    # fetchone leaves a one-row result open, so DuckDB fails the next relation
    # query on that connection. `appliance.dbrows.first_row` reads rows instead.
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted((ROOT / "appliance").rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\.fetchone\(\)", line)
    ]

    assert found == []
