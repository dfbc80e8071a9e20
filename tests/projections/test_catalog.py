"""The generated projections/ catalog matches the code (issue #4)."""

from __future__ import annotations

import json
from pathlib import Path

from labledger.projections import all_projections
from labledger.projections.catalog import build_catalog, check_catalog, write_catalog


def test_catalog_matches_the_code() -> None:
    assert check_catalog() == [], "run: python -m labledger.projections.catalog --write"


def test_catalog_lists_every_projection_with_tables(tmp_path: Path) -> None:
    write_catalog(tmp_path)
    doc = json.loads((tmp_path / "index.json").read_text())
    names = [p["name"] for p in doc["projections"]]
    assert names == sorted(p.name for p in all_projections())
    for entry in doc["projections"]:
        assert entry["version"] >= 1 and entry["consumes"] and entry["tables"]
        for table in entry["tables"].values():
            assert table["primary_key"]


def test_drift_is_detected(tmp_path: Path) -> None:
    write_catalog(tmp_path)
    (tmp_path / "index.json").write_bytes(build_catalog().replace(b'"version": 1', b'"version": 9'))
    assert check_catalog(tmp_path)
