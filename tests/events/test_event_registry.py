"""The (type, version) registry, type names, and the upcasting mechanism."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from labledger.errors import EventDecodeError, InvalidEvent, UnknownEventType
from labledger.events import (
    TYPE_NAME_PATTERN,
    Event,
    TelemetryPacket,
    _base,
    all_types,
    all_versions,
    check_type_name,
    current_version,
    decode,
    encode,
    event_class,
    is_known,
    missing_upcasters,
    register_upcaster,
)
from labledger.events._upcast import TelemetryPacketV1, _SystemHealthV1
from labledger.events.telemetry import HealthStatus


@pytest.fixture
def scratch_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Let a test define event classes without leaking them into the catalog."""
    for name in ("_BY_KEY", "_CURRENT", "_DECODERS", "_UPCASTERS"):
        monkeypatch.setattr(_base, name, dict(getattr(_base, name)))
    yield


def test_lookup_functions() -> None:
    assert is_known("esper.TelemetryPacket")
    assert not is_known("mylab.SampleTaken")
    assert current_version("esper.TelemetryPacket") == 2
    assert event_class("esper.TelemetryPacket") is TelemetryPacket
    assert TelemetryPacket not in [c for c in all_versions() if c.VERSION == 1]
    assert TelemetryPacketV1 in all_versions()
    assert TelemetryPacketV1 not in all_types()
    assert [c.TYPE for c in all_types()] == sorted({c.TYPE for c in all_versions()})
    with pytest.raises(UnknownEventType):
        event_class("mylab.SampleTaken")
    with pytest.raises(UnknownEventType):
        current_version("mylab.SampleTaken")


def test_every_type_is_explicit_namespaced_and_prefixed_by_its_subsystem() -> None:
    for cls in all_versions():
        assert "TYPE" in cls.__dict__, cls
        assert re.fullmatch(TYPE_NAME_PATTERN, cls.TYPE)
        assert cls.TYPE.split(".")[0] == cls.SUBSYSTEM
        assert cls.__struct_config__.frozen and cls.__struct_config__.forbid_unknown_fields


def test_every_old_version_can_be_lifted() -> None:
    assert missing_upcasters() == []


def test_unknown_type_or_version_is_a_clear_error() -> None:
    with pytest.raises(UnknownEventType, match=r"'mylab.SampleTaken'"):
        decode("mylab.SampleTaken", 1, b"{}")
    with pytest.raises(UnknownEventType, match="known versions: 1, 2") as caught:
        decode("esper.TelemetryPacket", 3, b"{}")
    assert isinstance(caught.value, EventDecodeError)
    assert caught.value.type_name == "esper.TelemetryPacket"


@pytest.mark.parametrize(
    "name", ["mylab.SampleTaken", "esper.TelemetryPacket", "a.b.C_2", "lab_1.x"]
)
def test_well_formed_type_names(name: str) -> None:
    check_type_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "SampleTaken",
        "MyLab.Sample",
        "mylab.",
        ".Sample",
        "mylab.2x",
        "my-lab.X",
        "mylab.X\n",
        "mylab.X Y",
        "",
        "a." + "x" * 127,
    ],
)
def test_malformed_type_names(name: str) -> None:
    with pytest.raises(InvalidEvent):
        check_type_name(name)


def test_old_versions_are_never_written() -> None:
    health = _SystemHealthV1(status=HealthStatus.HEALTHY, indicators={"priority": "LOW"})
    packet = TelemetryPacketV1(source="s", health=health, metrics=[], events=[])
    with pytest.raises(InvalidEvent, match="old version; write v2"):
        encode(packet)


def test_unregistered_struct_is_refused() -> None:
    class Loose(Event, frozen=True, kw_only=True):
        x: int

    with pytest.raises(InvalidEvent, match="not a registered event class"):
        encode(Loose(x=1))


@pytest.mark.usefixtures("scratch_registry")
def test_registration_rules() -> None:
    with pytest.raises(TypeError, match="already registered"):

        class Again(Event, frozen=True, kw_only=True):
            TYPE = "esper.TelemetryPacket"
            VERSION = 2
            SUBSYSTEM = "esper"

    with pytest.raises(TypeError, match="must start with"):

        class Misplaced(Event, frozen=True, kw_only=True):
            TYPE = "dream.Misplaced"
            VERSION = 1
            SUBSYSTEM = "esper"

    with pytest.raises(TypeError, match="VERSION"):

        class Unversioned(Event, frozen=True, kw_only=True):
            TYPE = "labtest.Unversioned"
            VERSION = 0
            SUBSYSTEM = "labtest"

    with pytest.raises(InvalidEvent, match="not namespaced"):

        class BadName(Event, frozen=True, kw_only=True):
            TYPE = "NoNamespace"
            VERSION = 1
            SUBSYSTEM = "NoNamespace"

    with pytest.raises(TypeError, match="already exists"):
        register_upcaster("esper.TelemetryPacket", 1)(lambda data: data)


@pytest.mark.usefixtures("scratch_registry")
def test_a_type_evolves_twice_and_its_first_bytes_still_read() -> None:
    """Bytes stored by an old class still decode after the class changed (twice)."""

    class NoteV1(Event, frozen=True, kw_only=True):
        TYPE = "labtest.NoteTaken"
        VERSION = 1
        SUBSYSTEM = "labtest"
        text: str

    _, _, stored_v1 = encode(NoteV1(text="hello"))
    assert stored_v1 == b'{"text":"hello"}'

    class NoteV2(Event, frozen=True, kw_only=True):
        TYPE = "labtest.NoteTaken"
        VERSION = 2
        SUBSYSTEM = "labtest"
        body: str

    assert missing_upcasters() == [("labtest.NoteTaken", 1)]
    with pytest.raises(EventDecodeError, match="no upcaster from v1"):
        decode("labtest.NoteTaken", 1, stored_v1)

    @register_upcaster("labtest.NoteTaken", 1)
    def _rename(data: dict[str, Any]) -> dict[str, Any]:
        return {"body": data["text"]}

    class NoteV3(Event, frozen=True, kw_only=True):
        TYPE = "labtest.NoteTaken"
        VERSION = 3
        SUBSYSTEM = "labtest"
        body: str
        words: int

    @register_upcaster("labtest.NoteTaken", 2)
    def _count(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "words": len(data["body"].split())}

    assert missing_upcasters() == []
    assert decode("labtest.NoteTaken", 1, stored_v1) == NoteV3(body="hello", words=1)
    assert decode("labtest.NoteTaken", 2, b'{"body":"a b"}') == NoteV3(body="a b", words=2)
    with pytest.raises(InvalidEvent, match="old version"):
        encode(NoteV2(body="x"))


@pytest.mark.usefixtures("scratch_registry")
def test_an_upcaster_that_breaks_is_a_decode_error() -> None:
    class ThingV1(Event, frozen=True, kw_only=True):
        TYPE = "labtest.Thing"
        VERSION = 1
        SUBSYSTEM = "labtest"
        n: int

    class Thing(Event, frozen=True, kw_only=True):
        TYPE = "labtest.Thing"
        VERSION = 2
        SUBSYSTEM = "labtest"
        n: int
        half: int

    @register_upcaster("labtest.Thing", 1)
    def _lift(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "half": data["n"] / 2}  # a float: invalid for the v2 int field

    stored = msgspec.json.encode({"n": 3})
    with pytest.raises(EventDecodeError, match="lifted to v2 is invalid"):
        decode("labtest.Thing", 1, stored)
    with pytest.raises(EventDecodeError, match="failed: KeyError"):
        _base._UPCASTERS[("labtest.Thing", 1)] = lambda data: {"half": data["missing"]}
        decode("labtest.Thing", 1, stored)


def test_unknown_v1_priority_spelling_is_a_decode_error() -> None:
    data = (
        b'{"events":[],"health":{"indicators":{"priority":"URGENT"},"status":"HEALTHY"},'
        b'"metrics":[],"source":"tolaria"}'
    )
    with pytest.raises(EventDecodeError, match="unknown v1 priority indicator 'URGENT'"):
        decode("esper.TelemetryPacket", 1, data)
