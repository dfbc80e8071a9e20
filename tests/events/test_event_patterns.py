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
from labledger.events import TelemetryPacket, all_types, encode, validate_payload
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
