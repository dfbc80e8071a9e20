"""The generated catalog under top-level ``events/`` matches the code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labledger.events import all_versions, event_class
from labledger.events.catalog import (
    build_catalog,
    check_catalog,
    default_root,
    main,
    write_catalog,
)

CHECKED_IN = Path(__file__).resolve().parents[2] / "events"


def test_checked_in_catalog_matches_the_code() -> None:
    problems = check_catalog(CHECKED_IN)
    assert not problems, (
        "the event catalog is out of date; run `python -m labledger.events.catalog --write`:\n"
        + "\n".join(problems)
    )


def test_default_root_is_the_checkout_catalog() -> None:
    assert default_root() == CHECKED_IN


def test_index_lists_every_type_and_version() -> None:
    index = json.loads(build_catalog()["index.json"])["events"]
    assert [(e["type"], e["schema_version"]) for e in index] == [
        (cls.TYPE, cls.VERSION) for cls in all_versions()
    ]
    for entry in index:
        cls = event_class(entry["type"])
        assert entry["current"] == (entry["schema_version"] == cls.VERSION)
        assert entry["subsystem"] == entry["type"].split(".")[0]
        assert entry["description"] and "\n" not in entry["description"]
        assert entry["schema"] == f"schemas/{entry['type']}.v{entry['schema_version']}.json"


def test_schema_carries_constraints() -> None:
    schema = json.loads(build_catalog()["schemas/esper.AdaptationCommand.v1.json"])
    heads = schema["$defs"]["ActionHeads"]["properties"]["alpha_target"]["anyOf"][0]
    assert (heads["minimum"], heads["maximum"]) == (0.0, 1.0)
    assert schema["x-labledger"] == {
        "type": "esper.AdaptationCommand",
        "schema_version": 1,
        "subsystem": "esper",
    }
    assert schema["$defs"]["AdaptationCommand"]["additionalProperties"] is False


def test_write_then_check_and_drift_detection(tmp_path: Path) -> None:
    assert check_catalog(tmp_path)[0].startswith("missing: ")
    written = write_catalog(tmp_path)
    assert "index.json" in written
    assert check_catalog(tmp_path) == []
    assert write_catalog(tmp_path) == []

    schema = tmp_path / "schemas" / "run.Heartbeat.v1.json"
    schema.write_text(schema.read_text().replace("seq", "sequence"))
    (tmp_path / "schemas" / "run.Gone.v1.json").write_text("{}")
    assert check_catalog(tmp_path) == [
        "stale (no such class): schemas/run.Gone.v1.json",
        "out of date: schemas/run.Heartbeat.v1.json",
    ]
    assert sorted(write_catalog(tmp_path)) == [
        "schemas/run.Gone.v1.json",
        "schemas/run.Heartbeat.v1.json",
    ]
    assert check_catalog(tmp_path) == []


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--check", "--root", str(tmp_path)]) == 1
    assert "--write" in capsys.readouterr().err
    assert main(["--write", "--root", str(tmp_path)]) == 0
    assert main(["--check", "--root", str(tmp_path)]) == 0
    assert "up to date" in capsys.readouterr().out


def test_docstring_layout_is_not_drift_but_a_contract_change_is(tmp_path: Path) -> None:
    """Issue #12: msgspec 0.23 dedents docstrings that 0.19 copied verbatim."""
    write_catalog(tmp_path)
    path = tmp_path / "schemas" / "run.RunResumed.v1.json"
    schema = json.loads(path.read_text())
    body = schema["$defs"]["RunResumed"]
    body["description"] = body["description"].replace("\n", "\n    ") + "\n   "
    path.write_text(json.dumps(schema, indent=4))  # other indentation, other key order
    assert check_catalog(tmp_path) == []

    body["properties"]["attempt"]["type"] = "string"
    path.write_text(json.dumps(schema))
    assert check_catalog(tmp_path) == ["out of date: schemas/run.RunResumed.v1.json"]
    del body["properties"]["attempt"]
    body["required"].remove("attempt")
    path.write_text(json.dumps(schema))
    assert check_catalog(tmp_path) == ["out of date: schemas/run.RunResumed.v1.json"]
