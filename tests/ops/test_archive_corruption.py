"""A damaged archive is refused whole, naming the first bad record (issue #8)."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labledger.store import EventStore
from labledger.store.archive import ArchiveCorrupt, export_archive, import_archive, read_archive
from labledger.testing.backends import Backend, SqliteBackend
from labledger.testing.profile import examples
from tests.ops.helpers import fill, new_store

N = 6


def frames(raw: bytes) -> list[int]:
    """Byte offsets of every record, then of the trailer (an independent reading)."""
    (size,) = struct.unpack_from(">I", raw, 10)
    offset, found = 18 + size, []
    while struct.unpack_from(">I", raw, offset)[0] != 0xFFFFFFFF:
        found.append(offset)
        offset += 8 + struct.unpack_from(">I", raw, offset)[0] + 32
    return [*found, offset]


def _flip(raw: bytes, at: int, bit: int = 0) -> bytes:
    out = bytearray(raw)
    out[at] ^= 1 << bit
    return bytes(out)


def _body_length(raw: bytes, at: int) -> int:
    return int(struct.unpack_from(">I", raw, at)[0])


# Each case: (how to damage the file, which record index is bad, its byte offset)
Damage = Callable[[bytes, list[int]], tuple[bytes, int, int]]
CASES: dict[str, Damage] = {
    "bit in a body": lambda raw, f: (_flip(raw, f[2] + 8 + 5, 3), 2, f[2]),
    "bit in a CRC": lambda raw, f: (_flip(raw, f[3] + 5), 3, f[3]),
    "bit in a chain link": lambda raw, f: (
        _flip(raw, f[1] + 8 + _body_length(raw, f[1]) + 7),
        1,
        f[1],
    ),
    "bit in a length": lambda raw, f: (_flip(raw, f[4] + 3, 1), 4, f[4]),
    "truncated mid-record": lambda raw, f: (raw[: f[3] + 20], 3, f[3]),
    "truncated trailer": lambda raw, f: (raw[: f[N] + 30], N, f[N]),
    "trailer cut off": lambda raw, f: (raw[: f[N]], N, f[N]),
    "garbage appended": lambda raw, f: (raw + b"\x00garbage", N, f[N]),
    "records swapped": lambda raw, f: (
        raw[: f[1]] + raw[f[2] : f[3]] + raw[f[1] : f[2]] + raw[f[3] :],
        1,
        f[1],
    ),
}


def _fingerprint(store: EventStore) -> tuple[int, str, bool]:
    report = store.verify()
    return store.head(), report.head_hash, report.ok


def _files(url: str) -> Iterator[tuple[str, str]]:
    base = Path(url.removeprefix("sqlite:///"))
    for p in sorted(base.parent.glob(base.name + "*")):
        yield p.name, hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    directory = tmp_path_factory.mktemp("archive")
    store = new_store(SqliteBackend(directory))
    fill(store, N)
    export_archive(store, directory / "a.lla")
    store.close()
    return (directory / "a.lla").read_bytes()


@pytest.mark.parametrize("case", sorted(CASES))
def test_damage_is_refused_and_the_target_is_unchanged(
    case: str, archive: bytes, backend: Backend, tmp_path: Path
) -> None:
    damaged, index, offset = CASES[case](archive, frames(archive))
    path = tmp_path / "bad.lla"
    path.write_bytes(damaged)
    target = new_store(backend)
    fill(target, 3)
    before = _fingerprint(target)
    files = list(_files(target.url)) if backend.name == "sqlite" else []
    with pytest.raises(ArchiveCorrupt) as caught:
        import_archive(target, path)
    assert (caught.value.record_index, caught.value.byte_offset) == (index, offset)
    assert f"record {index}" in str(caught.value)
    assert f"byte offset {offset}" in str(caught.value)
    assert _fingerprint(target) == before
    if files:
        assert list(_files(target.url)) == files
    target.close()


def test_damaged_header_is_named(archive: bytes, tmp_path: Path) -> None:
    for at, what in ((0, "magic"), (8, "version"), (20, "header CRC")):
        (tmp_path / "h.lla").write_bytes(_flip(archive, at))
        with pytest.raises(ArchiveCorrupt, match=what) as caught:
            read_archive(tmp_path / "h.lla")
        assert caught.value.record_index is None


@settings(
    max_examples=examples(300),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_any_flipped_bit_is_detected(archive: bytes, tmp_path: Path, data: st.DataObject) -> None:
    at = data.draw(st.integers(0, len(archive) - 1), label="byte")
    bit = data.draw(st.integers(0, 7), label="bit")
    path = tmp_path / "flip.lla"
    path.write_bytes(_flip(archive, at, bit))
    with pytest.raises(ArchiveCorrupt):
        read_archive(path)
