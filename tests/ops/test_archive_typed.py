"""Imports through the lab's gate: typed events validated, signed commands as history (#8)."""

from __future__ import annotations

from pathlib import Path

import pytest

from labledger.errors import InvalidEvent
from labledger.ledger import open_ledger
from labledger.security import KeyRing, sign
from labledger.security.gate import LabGate
from labledger.store import init_store, open_store
from labledger.store.archive import HistoricalGate, export_archive, import_archive
from labledger.store.archive.format import _native_crc32c, crc32c
from labledger.testing.backends import Backend
from labledger.testing.security_contract import SECRET, T0, Clock, command
from tests.ops.helpers import envelope


def test_old_signed_commands_import_as_history_all_or_nothing(
    pair: tuple[Backend, Backend], tmp_path: Path
) -> None:
    ring = KeyRing({"k1": SECRET}, active="k1")
    source_url, target_url = pair[0].fresh_url(), pair[1].fresh_url()
    init_store(source_url)
    init_store(target_url)
    with open_ledger(source_url, keyring=ring, clock=Clock()) as source:
        source.append("esper-commands", [sign(command(), ring, now=T0)])
        export_archive(source, tmp_path / "cmd.lla")
        original = [envelope(e) for e in source.read_all()]

    stranger = HistoricalGate(LabGate(KeyRing({"k9": b"x" * 32}, active="k9"), strict=False))
    with open_store(target_url, gate=stranger) as target:
        with pytest.raises(InvalidEvent, match="does not verify"):
            import_archive(target, tmp_path / "cmd.lla")
        assert target.head() == 0  # no rejection record either: nothing at all

    # Weeks after T0 the command is stale, yet as history it is admitted once.
    with open_store(target_url, gate=HistoricalGate(LabGate(ring, strict=False))) as target:
        assert import_archive(target, tmp_path / "cmd.lla").imported == 1
        assert [envelope(e) for e in target.read_all()] == original
        assert import_archive(target, tmp_path / "cmd.lla").imported == 0


def test_pure_python_crc32c_matches_the_standard() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value (RFC 3720)
    if _native_crc32c is not None:
        import labledger.store.archive.format as archive_format

        saved, archive_format._native_crc32c = archive_format._native_crc32c, None
        try:
            for sample in (b"", b"a", bytes(range(256)) * 3):
                assert crc32c(sample) == saved(sample)
        finally:
            archive_format._native_crc32c = saved
