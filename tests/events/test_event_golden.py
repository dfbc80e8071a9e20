"""Golden event logs: bytes written by every schema version still read (DESIGN §3.7).

``events/golden/v<N>.jsonl`` holds, per line, a record as the store keeps it —
``type``, ``schema_version`` and the exact payload ``data`` — plus ``current``,
the canonical payload of the current class it must decode to. The files are
append-only: once a version's bytes are committed they are never regenerated,
so a class change that breaks old bytes fails here.

When a new type or version is added, append its records with::

    PYTHONPATH=src python tests/events/test_event_golden.py --add-missing
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from labledger.events import all_versions, canonical_bytes, decode, event_class
from labledger.testing.event_strategies import example_events

GOLDEN = Path(__file__).resolve().parents[2] / "events" / "golden"


def _records() -> list[dict[str, Any]]:
    records = []
    for path in sorted(GOLDEN.glob("v*.jsonl")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            record = json.loads(line)
            record["where"] = f"{path.name}:{number}"
            records.append(record)
    return records


RECORDS = _records()


@pytest.mark.parametrize("record", RECORDS, ids=[r["where"] for r in RECORDS])
def test_golden_record_decodes_to_current_class(record: dict[str, Any]) -> None:
    event = decode(record["type"], record["schema_version"], record["data"].encode())
    assert type(event) is event_class(record["type"])
    assert canonical_bytes(event) == record["current"].encode()


def test_golden_files_are_named_by_version() -> None:
    for record in RECORDS:
        assert record["where"].startswith(f"v{record['schema_version']}.jsonl:")


def test_every_registered_version_has_golden_bytes() -> None:
    covered = {(r["type"], r["schema_version"]) for r in RECORDS}
    missing = [
        f"{cls.TYPE} v{cls.VERSION}"
        for cls in all_versions()
        if (cls.TYPE, cls.VERSION) not in covered
    ]
    assert not missing, (
        f"no golden records for {missing}; run "
        "PYTHONPATH=src python tests/events/test_event_golden.py --add-missing"
    )


def add_missing() -> list[str]:
    """Append golden records for current (type, version) pairs that have none."""
    covered = {(r["type"], r["schema_version"]) for r in RECORDS}
    added = []
    for event in example_events():
        if (event.TYPE, event.VERSION) in covered:
            continue
        data = canonical_bytes(event).decode()
        line = {"type": event.TYPE, "schema_version": event.VERSION, "data": data}
        line["current"] = data
        with (GOLDEN / f"v{event.VERSION}.jsonl").open("a", encoding="utf-8") as out:
            out.write(json.dumps(line, sort_keys=True, ensure_ascii=False) + "\n")
        added.append(f"{event.TYPE} v{event.VERSION}")
    return added


if __name__ == "__main__":
    if sys.argv[1:] != ["--add-missing"]:
        raise SystemExit(f"usage: {sys.argv[0]} --add-missing")
    for name in add_missing():
        print(f"added {name}")
