"""The pattern-remembering twin decoders (``events._patterns``) agree with the real classes.

Whatever the payload, the twin either declines (the strict decoder then
words the refusal) or accepts exactly what the real class accepts, with the
same canonical bytes; a value that was refused once is refused again.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labledger.errors import EventDecodeError
from labledger.events import TelemetryPacket, all_types, class_of, encode, validate_payload
from labledger.events import _base as registry
from labledger.events._patterns import _EXACT
from labledger.testing.event_strategies import events_of
from labledger.testing.profile import examples

CURRENT = all_types()
IDS = [cls.TYPE for cls in CURRENT]
_ENCODE = msgspec.json.Encoder(order="sorted").encode

# Strings near every edge of the Name/Text/Path/TypeName patterns.
_TRICKY = st.one_of(
    st.text(max_size=12),
    st.text(alphabet=" \t\n\r\x00\x0b\x0c\x85\xa0\u2028\u3000ab.Z_9", max_size=8),
    st.sampled_from(["", " ", "a", "a ", " a", "a\n", "a\nb", "a\x00", "\x00", "a b", "x" * 300]),
)


def _mutate(value: Any, data: st.DataObject) -> Any:
    """``value`` (builtins form) with some of its strings, keys included, replaced."""
    if isinstance(value, str):
        return data.draw(_TRICKY) if data.draw(st.booleans()) else value
    if isinstance(value, list):
        return [_mutate(v, data) for v in value]
    if isinstance(value, dict):
        return {_mutate(k, data): _mutate(v, data) for k, v in value.items()}
    return value


def _strict(cls: type[registry.Event], payload: bytes) -> bytes | None:
    try:
        return _ENCODE(msgspec.json.Decoder(cls).decode(payload))
    except (msgspec.DecodeError, RecursionError):
        return None


@pytest.mark.parametrize("cls", CURRENT, ids=IDS)
@settings(max_examples=examples(40), deadline=None)
@given(data=st.data())
def test_the_twin_accepts_exactly_what_the_class_accepts(
    cls: type[registry.Event], data: st.DataObject
) -> None:
    event = data.draw(events_of(cls))
    payload = _ENCODE(_mutate(msgspec.to_builtins(event), data))
    strict = _strict(cls, payload)
    for _ in range(2):  # the second time, what passed is remembered
        fast = registry._fast(cls).decode(payload)
        if strict is None:
            assert fast is None
        elif registry._fast(cls).active:
            assert fast is not None
            assert _ENCODE(fast) == strict


@pytest.mark.parametrize("cls", CURRENT, ids=IDS)
@settings(max_examples=examples(40), deadline=None)
@given(data=st.data())
def test_a_read_twin_is_its_class_to_every_reader(
    cls: type[registry.Event], data: st.DataObject
) -> None:
    """Issue #19: the log's read path decodes into read twins (subclasses without the
    patterns); they accept what the class accepts, and equal, hash, print and encode
    like the strictly decoded event."""
    event = data.draw(events_of(cls))
    payload = _ENCODE(_mutate(msgspec.to_builtins(event), data))
    strict = _strict(cls, payload)
    for _ in range(2):
        if strict is None:
            assert registry._read(cls).decode(payload) is None
            with pytest.raises(EventDecodeError):
                registry.decode(cls.TYPE, cls.VERSION, payload, twins=True)
            continue
        real = msgspec.json.Decoder(cls).decode(payload)
        read = registry.decode(cls.TYPE, cls.VERSION, payload, twins=True)
        assert isinstance(read, cls) and type(read).__name__ == cls.__name__
        assert read == real and real == read
        assert (read != real, real != read) == (False, False)  # __ne__ too, not only __eq__
        assert repr(read) == repr(real)
        assert _ENCODE(read) == strict and encode(read) == encode(real)
        try:
            expected_hash = hash(real)
        except TypeError:  # a field holds a list or a dict: unhashable either way
            continue
        assert hash(read) == expected_hash


def test_a_read_twin_differs_from_a_different_event() -> None:
    packet = TelemetryPacket(
        source="rig-1",
        priority="NORMAL",  # type: ignore[arg-type]
        health={"status": "HEALTHY", "indicators": {}},  # type: ignore[arg-type]
        metrics=[],
        events=[],
    )
    _, version, payload = encode(packet)
    packet = msgspec.json.Decoder(TelemetryPacket).decode(payload)  # enums and structs, not str
    read = registry.decode(TelemetryPacket.TYPE, version, payload, twins=True)
    assert type(read) is not TelemetryPacket  # the twin: the strict path was not taken
    assert class_of(read) is TelemetryPacket
    assert type(registry.decode(TelemetryPacket.TYPE, version, payload)) is TelemetryPacket
    other = msgspec.structs.replace(packet, source="rig-2")
    assert read == packet and read != other and other != read
    assert (read == other, other == read) == (False, False)
    assert read != "rig-1" and read != msgspec.to_builtins(packet)


@pytest.mark.parametrize("pattern", sorted(_EXACT))
@settings(max_examples=examples(300), deadline=None)
@given(value=_TRICKY)
def test_plain_string_tests_match_their_patterns(pattern: str, value: str) -> None:
    assert _EXACT[pattern](value) == (re.search(pattern, value) is not None)


def test_a_refusal_is_worded_by_the_real_class_and_never_remembered() -> None:
    good = TelemetryPacket(
        source="rig-1",
        priority="NORMAL",  # type: ignore[arg-type]
        health={"status": "HEALTHY", "indicators": {}},  # type: ignore[arg-type]
        metrics=[],
        events=[],
    )
    raw = msgspec.to_builtins(good)
    raw["source"] = "rig-1 "
    bad = _ENCODE(raw)
    with pytest.raises(EventDecodeError) as first:
        validate_payload(TelemetryPacket.TYPE, bad)
    expected = msgspec.json.Decoder(TelemetryPacket)
    with pytest.raises(msgspec.ValidationError) as strict:
        expected.decode(bad)
    assert str(strict.value) in str(first.value)
    with pytest.raises(EventDecodeError) as second:
        validate_payload(TelemetryPacket.TYPE, bad)
    assert str(second.value) == str(first.value)
    raw["source"] = "rig-1"
    assert validate_payload(TelemetryPacket.TYPE, _ENCODE(raw)) == encode(good)[2]


def test_telemetry_packets_take_the_twin() -> None:
    """The hot path of appends; classes with a ``__post_init__`` check keep the strict one."""
    assert registry._fast(TelemetryPacket).active
    assert not registry._fast(registry.event_class("esper.AdaptationCommand")).active
