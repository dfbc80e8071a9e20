"""Round trips and canonical encoding of every catalog event type."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labledger.events import (
    Event,
    EventLevel,
    Heartbeat,
    RunAbandoned,
    TelemetryPacket,
    TelemetryPriority,
    all_types,
    canonical_bytes,
    decode,
    encode,
    validate_payload,
)
from labledger.events._upcast import TelemetryPacketV1
from labledger.testing.event_strategies import events_of, example_events
from labledger.testing.profile import examples

CURRENT = all_types()
IDS = [cls.TYPE for cls in CURRENT]


@pytest.mark.parametrize("cls", CURRENT, ids=IDS)
@settings(max_examples=examples(30), deadline=None)
@given(data=st.data())
def test_round_trip_is_identity_and_bytes_are_stable(cls: type[Event], data: st.DataObject) -> None:
    event = data.draw(events_of(cls))
    type_name, version, payload = encode(event)
    assert (type_name, version) == (cls.TYPE, cls.VERSION)
    decoded = decode(type_name, version, payload)
    assert decoded == event
    assert encode(decoded)[2] == payload


def _reordered(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _reordered(value[key]) for key in reversed(list(value))}
    if isinstance(value, list):
        return [_reordered(item) for item in value]
    return value


@pytest.mark.parametrize("cls", CURRENT, ids=IDS)
@settings(max_examples=examples(15), deadline=None)
@given(data=st.data())
def test_canonical_bytes_do_not_depend_on_key_order_or_spacing(
    cls: type[Event], data: st.DataObject
) -> None:
    event = data.draw(events_of(cls))
    _, _, payload = encode(event)
    assert list(json.loads(payload)) == sorted(json.loads(payload))
    shuffled = json.dumps(_reordered(json.loads(payload)), indent=1).encode()
    assert validate_payload(cls.TYPE, shuffled) == payload


def test_every_current_type_has_an_example() -> None:
    assert [event.TYPE for event in example_events()] == IDS


@pytest.mark.parametrize("event", example_events(), ids=IDS)
def test_example_payload_is_compact_sorted_and_untagged(event: Event) -> None:
    _, _, payload = encode(event)
    as_dict = msgspec.json.decode(payload)
    assert "type" not in as_dict and "TYPE" not in as_dict
    assert payload == msgspec.json.encode(as_dict, order="sorted")


def test_an_int_given_for_a_float_field_is_written_as_a_decode_would_give_it() -> None:
    reaped = RunAbandoned(last_heartbeat_seq=None, silent_for_s=90, reaper="r")
    assert b'"silent_for_s":90.0' in encode(reaped)[2]
    assert encode(Heartbeat(seq=1))[2] == b'{"attempt":0,"progress":"","seq":1}'


@settings(max_examples=examples(60), deadline=None)
@given(
    packet=events_of(TelemetryPacketV1),
    priority=st.sampled_from(TelemetryPriority),
    spelling=st.sampled_from(["{}", "{}".lower(), "MESSAGE_PRIORITY_{}"]),
)
def test_any_v1_packet_with_a_priority_indicator_reads_as_v2(
    packet: Event, priority: TelemetryPriority, spelling: str
) -> None:
    assert isinstance(packet, TelemetryPacketV1)
    indicators = {**packet.health.indicators, "priority": spelling.format(priority.value)}
    old = msgspec.structs.replace(
        packet, health=msgspec.structs.replace(packet.health, indicators=indicators)
    )
    lifted = decode(old.TYPE, 1, canonical_bytes(old))
    assert isinstance(lifted, TelemetryPacket)
    assert lifted.priority is priority
    assert "priority" not in lifted.health.indicators
    assert lifted.source == old.source
    assert [m.name for m in lifted.metrics] == [m.name for m in old.metrics]


@settings(max_examples=examples(60), deadline=None)
@given(packet=events_of(TelemetryPacketV1))
def test_v1_packet_without_indicator_gets_priority_from_its_events(packet: Event) -> None:
    assert isinstance(packet, TelemetryPacketV1)
    indicators = {k: v for k, v in packet.health.indicators.items() if k != "priority"}
    old = msgspec.structs.replace(
        packet, health=msgspec.structs.replace(packet.health, indicators=indicators)
    )
    lifted = decode(old.TYPE, 1, canonical_bytes(old))
    assert isinstance(lifted, TelemetryPacket)
    levels = {e.level for e in old.events}
    expected = (
        TelemetryPriority.CRITICAL
        if EventLevel.CRITICAL in levels
        else TelemetryPriority.HIGH
        if EventLevel.ERROR in levels
        else TelemetryPriority.NORMAL
    )
    assert lifted.priority is expected
