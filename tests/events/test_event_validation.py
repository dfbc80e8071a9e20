"""Decoding and encoding refuse what the seeds rule out: ranges, enums, NaN, big ints."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import msgspec
import pytest

from labledger.errors import EventDecodeError, InvalidEvent
from labledger.events import (
    AdaptationCommand,
    CommandSecurity,
    Event,
    LifecycleOp,
    TrialRecorded,
    decode,
    encode,
    event_class,
    signing_bytes,
    validate_payload,
)
from labledger.testing.event_strategies import example_events

EXAMPLES = {event.TYPE: event for event in example_events()}


def _payload(type_name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(encode(EXAMPLES[type_name])[2])
    return result


def _decode_edited(type_name: str, edit: Any) -> Event:
    data = _payload(type_name)
    edit(data)
    return decode(type_name, event_class(type_name).VERSION, json.dumps(data).encode())


def _set(path: str, value: Any) -> Any:
    *parents, last = path.split(".")

    def edit(data: dict[str, Any]) -> None:
        for key in parents:
            data = data[key]
        data[last] = value

    return edit


REFUSED = [
    ("esper.AdaptationCommand", "heads.alpha_target", 1.5, "<= 1.0"),
    ("esper.AdaptationCommand", "heads.alpha_target", -0.1, ">= 0.0"),
    ("esper.AdaptationCommand", "metadata.risk", 2, "<= 1.0"),
    ("esper.AdaptationCommand", "operation", "EXPLODE", "Invalid enum value"),
    ("esper.TelemetryPacket", "priority", "URGENT", "Invalid enum value"),
    ("esper.TelemetryPacket", "priority", None, "Expected `str`"),
    ("esper.SeedStageChanged", "to_stage", "CULLED", "Invalid enum value"),
    ("esper.FieldReport", "delta.accuracy_delta", 1.5, "<= 1.0"),
    ("esper.FieldReport", "delta.observation_window_epochs", 0, ">= 1"),
    ("dream.TrialRecorded", "kpis.p95_ms", -1.0, ">= 0.0"),
    ("dream.TrialRecorded", "kpis.errors", 1.5, "Expected `int | null`"),
    ("dream.TrialRecorded", "regime", "chaos", "Invalid enum value"),
    ("dream.TrialRecorded", "generation", 2**63, "<= 9223372036854775807"),
    ("dream.TrialRecorded", "generation", 2**80, "<= 9223372036854775807"),
    ("dream.TrialRecorded", "cand_id", "", "length >= 1"),
    ("dream.TrialRecorded", "cand_id", " padded", "matching regex"),
    ("dream.TrialRecorded", "cand_id", "line\n", "matching regex"),
    ("toolgen.ToolSynthesized", "code_sha256", "ABC", "length >= 64"),
    ("toolgen.ToolSynthesized", "code_sha256", "a" * 63 + "\n", "matching regex"),
    ("toolgen.ToolSynthesized", "impl_style", "bogosort", "Invalid enum value"),
    ("toolgen.ToolEvaluated", "stability", 1.01, "<= 1.0"),
    ("run.RunStarted", "unexpected_field", 1, "unknown field"),
    ("run.RunStarted", "heartbeat_interval_s", 0.0, "> 0.0"),
    ("run.RunResumed", "attempt", 0, "greater than resumes_attempt"),
]


@pytest.mark.parametrize(("type_name", "path", "value", "message"), REFUSED)
def test_out_of_range_or_wrong_enum_is_refused(
    type_name: str, path: str, value: Any, message: str
) -> None:
    with pytest.raises(EventDecodeError, match="payload does not decode") as caught:
        _decode_edited(type_name, _set(path, value))
    assert message in str(caught.value)
    assert caught.value.type_name == type_name
    assert isinstance(caught.value.__cause__, msgspec.ValidationError)


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e999"])
def test_non_finite_numbers_are_refused_on_decode(literal: bytes) -> None:
    data = encode(EXAMPLES["esper.EpisodeEnded"])[2]
    data = data.replace(b'"episode_reward":3.75', b'"episode_reward":' + literal)
    with pytest.raises(EventDecodeError):
        decode("esper.EpisodeEnded", 1, data)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_numbers_are_refused_on_encode(value: float) -> None:
    event = msgspec.structs.replace(EXAMPLES["esper.EpisodeEnded"], episode_reward=value)
    with pytest.raises(InvalidEvent, match="NaN and infinity are refused"):
        encode(event)


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 2**100])
def test_integers_beyond_64_bits_are_refused_on_encode(value: int) -> None:
    event = msgspec.structs.replace(EXAMPLES["run.RunResumed"], checkpoint_position=value)
    with pytest.raises(InvalidEvent, match="checkpoint_position"):
        encode(event)


def test_construction_does_not_validate_but_encode_does() -> None:
    command = EXAMPLES["esper.AdaptationCommand"]
    assert isinstance(command, AdaptationCommand)
    event = msgspec.structs.replace(
        command, heads=msgspec.structs.replace(command.heads, alpha_target=3)
    )
    with pytest.raises(InvalidEvent, match=r"heads\.alpha_target"):
        encode(event)


def test_wrong_python_type_is_refused_on_encode() -> None:
    event = msgspec.structs.replace(EXAMPLES["dream.TrialRecorded"], generation="zero")
    with pytest.raises(InvalidEvent, match="generation"):
        encode(event)


def test_cross_field_rule_runs_on_construction_and_on_decode() -> None:
    command = EXAMPLES["esper.AdaptationCommand"]
    assert isinstance(command, AdaptationCommand)
    assert command.operation is LifecycleOp.GERMINATE
    with pytest.raises(ValueError, match="needs a blueprint_id"):
        msgspec.structs.replace(command, blueprint_id=None)
    with pytest.raises(EventDecodeError, match="needs a blueprint_id"):
        _decode_edited(command.TYPE, _set("blueprint_id", None))


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("security.issued_at", "2025-10-08T10:55:17", "timezone"),
        ("security.issued_at", "2025-10-08T11:55:17+01:00", "must be in UTC"),
        ("security.freshness_window", "PT0S", "must be positive"),
        ("security.freshness_window", "P2D", "at most one day"),
        ("security.nonce", "", "length >= 1"),
    ],
)
def test_command_security_is_validated(path: str, value: Any, message: str) -> None:
    with pytest.raises(EventDecodeError, match=message):
        _decode_edited(AdaptationCommand.TYPE, _set(path, value))


def test_signing_bytes_cover_everything_but_the_signature() -> None:
    command = EXAMPLES["esper.AdaptationCommand"]
    assert isinstance(command, AdaptationCommand)
    signed = msgspec.structs.replace(
        command, security=msgspec.structs.replace(command.security, signature="ab" * 32)
    )
    unsigned_bytes = signing_bytes(signed)
    assert unsigned_bytes == signing_bytes(command) == encode(command)[2]
    assert b'"signature":""' in unsigned_bytes
    assert encode(signed)[2] != unsigned_bytes
    other = msgspec.structs.replace(signed, target_slot="r9c9")
    assert signing_bytes(other) != unsigned_bytes


def test_command_security_fields() -> None:
    assert CommandSecurity.__struct_fields__ == (
        "signature",
        "nonce",
        "issued_at",
        "freshness_window",
        "key_id",
    )
    security = EXAMPLES["esper.AdaptationCommand"].security  # type: ignore[attr-defined]
    assert security.issued_at.tzinfo is not None
    assert security.freshness_window == dt.timedelta(seconds=30)


def test_validate_payload_accepts_a_loose_spelling_and_returns_canonical_bytes() -> None:
    trial = EXAMPLES[TrialRecorded.TYPE]
    loose = json.dumps(json.loads(encode(trial)[2]), indent=4).encode()
    assert validate_payload(TrialRecorded.TYPE, loose) == encode(trial)[2]


@pytest.mark.parametrize("data", [b"", b"{", b"[]", b'"x"', b"\xff\xfe", b"{}"])
def test_validate_payload_refuses_malformed_json(data: bytes) -> None:
    with pytest.raises(EventDecodeError, match=r"dream\.TrialRecorded"):
        validate_payload(TrialRecorded.TYPE, data)


def test_validate_payload_refuses_unknown_and_malformed_type_names() -> None:
    with pytest.raises(InvalidEvent, match="not a typed event"):
        validate_payload("mylab.SampleTaken", b"{}")
    with pytest.raises(InvalidEvent, match="not namespaced"):
        validate_payload("SampleTaken", b"{}")


@pytest.mark.parametrize("field", ["host", "code_version"])
def test_nul_is_refused_in_strings(field: str) -> None:
    """PostgreSQL text cannot hold NUL; the catalog refuses it before it reaches a read model."""
    from labledger.events.runs import RunStarted

    fields = {"subsystem": "dream", "config": {}, "code_version": "v", "host": "h"}
    fields[field] = "a\x00b"
    with pytest.raises(InvalidEvent):
        encode(RunStarted(**fields))  # type: ignore[arg-type]
