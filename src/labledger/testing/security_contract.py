"""Signed commands at append, the nonce ledger, strict mode and typed events (issue #3)."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labledger import (
    NO_STREAM,
    CommandRefused,
    EventStore,
    InvalidEvent,
    NewEvent,
    WrongExpectedVersion,
)
from labledger.events import AdaptationCommand, Event, all_types, encode
from labledger.events.security import SignedCommand
from labledger.events.typed import decode_record, typed
from labledger.ledger import open_ledger
from labledger.security import REJECTIONS_STREAM, KeyRing, sign
from labledger.testing.event_strategies import as_writer_of, events_of, example_events
from labledger.testing.profile import examples
from labledger.testing.store_contract import BackendFixtures

T0 = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)
SECRET = b"s3cret-key-bytes-0123456789abcdef"
OLD_SECRET = b"older-key-bytes-0123456789abcdefg"


class Clock:
    """A settable clock for the store (nanoseconds, like time.time_ns)."""

    def __init__(self, now: dt.datetime = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return int(self.now.timestamp() * 1_000_000) * 1000

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


def command(command_id: str = "cmd-1") -> AdaptationCommand:
    base = next(e for e in example_events() if isinstance(e, AdaptationCommand))
    return msgspec.structs.replace(base, command_id=command_id)


class SecurityFixtures(BackendFixtures):
    @pytest.fixture
    def ring(self) -> KeyRing:
        return KeyRing({"old": OLD_SECRET, "k1": SECRET}, active="k1")

    @pytest.fixture
    def clock(self) -> Clock:
        return Clock()

    @pytest.fixture
    def ledger(self, url: str, ring: KeyRing, clock: Clock) -> Iterator[EventStore]:
        with open_ledger(url, keyring=ring, clock=clock) as store:
            yield store


def _fingerprint(store: EventStore) -> tuple[int, str]:
    report = store.verify()
    assert report.ok
    return report.head, report.head_hash


class CommandSecurityContract(SecurityFixtures):
    def test_signed_command_is_admitted_once(self, ledger: EventStore, ring: KeyRing) -> None:
        signed = sign(command(), ring, now=T0).to_new_event()
        assert ledger.append("cmds", [signed]).first_position == 1
        assert ledger.append("cmds", [signed]).already_appended  # a retry, not a replay
        assert ledger.nonce_stats().size == 1
        assert ledger.head() == 1

    def test_rotation_keeps_older_keys_valid(self, ledger: EventStore, ring: KeyRing) -> None:
        ledger.append("cmds", [sign(command("a"), ring, key_id="old", now=T0)])
        ledger.append("cmds", [sign(command("b"), ring, now=T0)])
        assert ledger.stream_version("cmds") == 1

    @pytest.mark.parametrize(
        ("reason", "make"),
        [
            ("missing_signature", lambda ring: command()),
            (
                "bad_signature",
                lambda ring: msgspec.structs.replace(
                    sign(command(), ring, now=T0), command_id="forged"
                ),
            ),
            ("unknown_key", lambda ring: sign(command(), KeyRing({"ghost": b"g" * 32}), now=T0)),
            ("stale", lambda ring: sign(command(), ring, now=T0 - dt.timedelta(seconds=61))),
            ("future", lambda ring: sign(command(), ring, now=T0 + dt.timedelta(seconds=61))),
        ],
    )
    def test_refused_commands_leave_a_rejection_and_nothing_else(
        self, ledger: EventStore, ring: KeyRing, reason: str, make: object
    ) -> None:
        cmd = make(ring)  # type: ignore[operator]
        new = cmd.to_new_event(id="00000000-0000-4000-8000-000000000001")
        with pytest.raises(CommandRefused) as info:
            ledger.append("cmds", [new])
        assert info.value.reason == reason and info.value.position == 1
        assert ledger.stream_version("cmds") == -1 and ledger.nonce_stats().size == 0
        (rejection,) = ledger.read_stream(REJECTIONS_STREAM)
        record = decode_record(rejection).event
        assert record.reason == reason  # type: ignore[attr-defined]
        assert record.command_digest == hashlib.sha256(new.data).hexdigest()  # type: ignore[attr-defined]
        assert rejection.causation_id == new.id
        for stored in ledger.read_all():
            assert SECRET not in stored.data and SECRET.hex().encode() not in stored.data

    def test_replayed_nonce_is_refused(self, ledger: EventStore, ring: KeyRing) -> None:
        first = sign(command("a"), ring, now=T0, nonce="n-1")
        ledger.append("cmds", [first])
        replay = first.to_new_event()  # same bytes, new event id: a replay
        with pytest.raises(CommandRefused, match="replayed_nonce"):
            ledger.append("cmds", [replay])
        with pytest.raises(CommandRefused, match="replayed_nonce"):
            ledger.append("other", [sign(command("b"), ring, now=T0, nonce="n-1")])
        assert ledger.stream_version("cmds") == 0

    def test_replay_is_caught_after_a_restart(self, url: str, ring: KeyRing, clock: Clock) -> None:
        signed = sign(command(), ring, now=T0, nonce="n-restart")
        with open_ledger(url, keyring=ring, clock=clock) as first:
            first.append("cmds", [signed])
        with (
            open_ledger(url, keyring=ring, clock=clock) as second,
            pytest.raises(CommandRefused, match="replayed_nonce"),
        ):
            second.append("cmds", [signed])

    def test_a_refused_command_in_a_batch_writes_no_part_of_it(
        self, ledger: EventStore, ring: KeyRing
    ) -> None:
        good = sign(command("a"), ring, now=T0)
        bad = command("b")
        with pytest.raises(CommandRefused):
            ledger.append("cmds", [good, bad])
        assert ledger.stream_version("cmds") == -1
        assert ledger.nonce_stats().size == 0  # the good command's nonce is not burned
        ledger.append("cmds", [good])

    def test_conflicting_command_burns_no_nonce(self, ledger: EventStore, ring: KeyRing) -> None:
        ledger.append("cmds", [sign(command("x"), ring, now=T0)])
        signed = sign(command(), ring, now=T0)
        with pytest.raises(WrongExpectedVersion):
            ledger.append("cmds", [signed], NO_STREAM)
        assert ledger.nonce_stats().size == 1
        ledger.append("cmds", [signed], 0)

    def test_nonces_expire_and_the_ledger_stays_bounded(
        self, url: str, ring: KeyRing, clock: Clock
    ) -> None:
        with open_ledger(url, keyring=ring, clock=clock, max_nonces=3) as ledger:
            for i in range(5):
                ledger.append("cmds", [sign(command(f"c{i}"), ring, now=clock.now)])
                clock.advance(1)
            stats = ledger.nonce_stats()
            assert (stats.size, stats.evicted) == (3, 2)
            # An evicted nonce can never be replayed: its command is below the horizon.
            early = sign(command("early"), ring, now=T0 + dt.timedelta(seconds=1))
            with pytest.raises(CommandRefused, match="horizon"):
                ledger.append("cmds", [early])
            clock.advance(120)
            ledger.append("cmds", [sign(command("late"), ring, now=clock.now)])
            stats = ledger.nonce_stats()
            assert stats.expired == 3 and stats.size == 1


class TypedEventsContract(SecurityFixtures):
    @pytest.fixture
    def strict(self, url: str, ring: KeyRing, clock: Clock) -> Iterator[EventStore]:
        with open_ledger(url, keyring=ring, clock=clock, strict=True) as store:
            yield store

    def test_every_example_round_trips_through_the_store(
        self, strict: EventStore, ring: KeyRing
    ) -> None:
        originals: list[Event] = []
        for event in example_events():
            if isinstance(event, SignedCommand):  # every command type is signed to get in
                event = sign(event, ring, now=T0)
            with as_writer_of(event):
                strict.append(f"{event.SUBSYSTEM}-stream", [event])
            originals.append(event)
        decoded = [t.event for t in typed(strict.read_all())]
        assert decoded == originals
        assert {type(e) for e in decoded} == set(all_types())

    @settings(
        max_examples=examples(15),
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(data=st.data())
    def test_generated_events_round_trip(self, strict: EventStore, data: st.DataObject) -> None:
        unsigned = [c for c in all_types() if not issubclass(c, SignedCommand)]
        cls = data.draw(st.sampled_from(unsigned))
        event = data.draw(events_of(cls))
        with as_writer_of(event):
            result = strict.append("generated", [event])
        (stored,) = strict.read_stream("generated", result.first_version)
        assert decode_record(stored).event == event
        assert stored.data == encode(event)[2]

    def test_strict_mode_refuses_unknown_types(
        self, strict: EventStore, url: str, ring: KeyRing
    ) -> None:
        with pytest.raises(InvalidEvent, match="strict"):
            strict.append("s", [NewEvent.from_json("mylab.Custom", {})])
        assert strict.head() == 0
        with open_ledger(url, keyring=ring, strict=False) as raw:
            raw.append("s", [NewEvent.from_json("mylab.Custom", {})])
            with pytest.raises(InvalidEvent, match="namespaced"):
                raw.append("s", [NewEvent.from_json("NotNamespaced", {})])

    @pytest.mark.parametrize(
        "payload",
        [
            b'{"seq": "one"}',
            b"{}",
            b'{"seq": 1, "sent_at": "2026-01-01T00:00:00Z", "extra": 1}',
            b'{"seq": 18446744073709551616}',
            b'{"seq": NaN}',
            b"\xff\xfe",
            b"[1, 2]",
        ],
    )
    def test_bad_typed_payloads_leave_the_log_unchanged(
        self, strict: EventStore, payload: bytes
    ) -> None:
        strict.append("ok", [example_events()[0]])
        before = _fingerprint(strict)
        with pytest.raises(InvalidEvent):
            strict.append("s", [NewEvent(type="run.Heartbeat", data=payload)])
        assert _fingerprint(strict) == before

    def test_unknown_version_is_refused(self, strict: EventStore) -> None:
        event = example_events()[0].to_new_event()
        with pytest.raises(InvalidEvent):
            strict.append("s", [msgspec.structs.replace(event, schema_version=99)])


class RawInputContract(SecurityFixtures):
    """Hostile raw input through the Python API: a clear error, the log byte-for-byte unchanged."""

    @pytest.fixture
    def raw(self, url: str, ring: KeyRing) -> Iterator[EventStore]:
        with open_ledger(url, keyring=ring, strict=False) as store:
            store.append("seed", [NewEvent.from_json("mylab.Seeded", {"ok": True})])
            yield store

    @pytest.mark.parametrize(
        ("type_name", "data"),
        [
            ("mylab.Big", b'{"x": "' + b"a" * (1 << 20) + b'"}'),
            ("mylab.Deep", b'{"a":' * 100 + b"1" + b"}" * 100),
            ("mylab.Deeper", b'{"a":' + b"[" * 3000 + b"]" * 3000 + b"}"),
            ("mylab.Huge", b'{"n": 99999999999999999999999}'),
            ("mylab.NaN", b'{"n": NaN}'),
            ("mylab.Utf8", b'{"s": "\xc3\x28"}'),
            ("mylab.Dup", b'{"a": 1, "a": 2}'),
            ("mylab.List", b"[]"),
            ("mylab.Garbage", b"{'single': 'quotes'}"),
            ("run.Heartbeat", b'{"seq":' + b"[" * 3000 + b"]" * 3000 + b"}"),
            ("bad type", b"{}"),
            ("x.Y'; DROP TABLE ll_events; --", b"{}"),
        ],
    )
    def test_hostile_payload_is_refused_and_log_unchanged(
        self, raw: EventStore, type_name: str, data: bytes
    ) -> None:
        before = _fingerprint(raw)
        with pytest.raises(InvalidEvent):
            raw.append("s", [NewEvent(type=type_name, data=data)])
        assert _fingerprint(raw) == before

    def test_injection_shaped_names_are_just_names(self, raw: EventStore) -> None:
        # No whitespace in stream names (labledger.names, issue #18); SQL comments do instead.
        with pytest.raises(InvalidEvent, match="no whitespace"):
            raw.append("s'; DELETE FROM ll_events; --", [NewEvent.from_json("mylab.Note", {})])
        name = "s';DELETE/**/FROM/**/ll_events;--"
        raw.append(name, [NewEvent.from_json("mylab.Note", {"q": "%_' OR 1=1"})])
        assert raw.read_stream(name)[0].data == b'{"q":"%_\' OR 1=1"}'
        assert raw.verify().ok and raw.head() == 2
