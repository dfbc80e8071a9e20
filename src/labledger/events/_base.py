"""The event base class, the (type, version) registry, and canonical encode/decode.

Every concrete event declares three class variables:

- ``TYPE``: a stable, namespaced tag such as ``"dream.TrialRecorded"``. It is
  written once and never derived from the module or class name, so renaming or
  moving a class never orphans stored data.
- ``VERSION``: the schema version of this shape. A changed shape gets a new
  version and an upcaster from the previous one (see ``_upcast.py``).
- ``SUBSYSTEM``: the first segment of ``TYPE`` (``run``, ``dream``, ``toolgen``,
  ``repairlab``, ``esper``, ``security``).

Defining the class registers it. The highest registered version of a type is
its *current* class; older versions stay registered so stored bytes decode with
the shape they were written in and are then lifted to the current class.

The payload on disk is the canonical JSON of the struct: keys sorted, compact,
every field present (defaults are written too), no tag field — the type and
version live in the envelope.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, ClassVar, cast

import msgspec

from labledger.errors import EventDecodeError, InvalidEvent, UnknownEventType
from labledger.events._patterns import READ_TWINS, FastDecoder
from labledger.store.base import NewEvent

TYPE_NAME_PATTERN = r"^[a-z][a-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)+$"
"""A well-formed namespaced type name: a lowercase namespace, then dotted names."""

TYPE_NAME_MAX_LENGTH = 128
_TYPE_NAME_RE = re.compile(TYPE_NAME_PATTERN)

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
"""Lifts the builtins form of a payload from version N to version N + 1."""


class Record(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A frozen value nested inside an event (metrics, metadata, budgets...)."""


class Event(Record, frozen=True, kw_only=True):
    """Base of every typed event; subclasses register themselves on definition."""

    TYPE: ClassVar[str]
    VERSION: ClassVar[int]
    SUBSYSTEM: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "TYPE" in cls.__dict__:
            _register(cls)

    def to_new_event(
        self,
        *,
        id: str | None = None,
        metadata: bytes = b"{}",
        correlation_id: str | None = None,
        causation_id: str | None = None,
        run_id: str | None = None,
        actor: str | None = None,
    ) -> NewEvent:
        """This event, validated and canonically encoded, ready for ``store.append``.

        The store calls it with no arguments; pass envelope fields to set them.
        """
        type_name, version, data = encode(self)
        new = NewEvent(
            type=type_name,
            schema_version=version,
            data=data,
            metadata=metadata,
            correlation_id=correlation_id,
            causation_id=causation_id,
            run_id=run_id,
            actor=actor,
        )
        return new if id is None else msgspec.structs.replace(new, id=id)


_ENCODER = msgspec.json.Encoder(order="sorted")
_BY_KEY: dict[tuple[str, int], type[Event]] = {}
_CURRENT: dict[str, type[Event]] = {}
_DECODERS: dict[type[Event], msgspec.json.Decoder[Any]] = {}
_FAST: dict[type[Event], FastDecoder] = {}
_READ: dict[type[Event], FastDecoder] = {}
_UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def check_type_name(name: str) -> None:
    """Check that ``name`` is a well-formed namespaced event type name.

    Args:
        name: e.g. ``"esper.AdaptationCommand"`` or ``"mylab.NoteTaken"``.

    Raises:
        InvalidEvent: the name is too long or does not match ``TYPE_NAME_PATTERN``.
    """
    if len(name) > TYPE_NAME_MAX_LENGTH:
        raise InvalidEvent(
            f"event type name is {len(name)} characters long; the limit is {TYPE_NAME_MAX_LENGTH}"
        )
    if _TYPE_NAME_RE.fullmatch(name) is None:
        raise InvalidEvent(
            f"event type name {name!r} is not namespaced: use a lowercase namespace and a "
            "dotted name, e.g. 'mylab.SampleTaken'"
        )


def _register(cls: type[Event]) -> None:
    name, version, subsystem = cls.TYPE, getattr(cls, "VERSION", None), cls.SUBSYSTEM
    check_type_name(name)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise TypeError(f"{cls.__qualname__}.VERSION must be an int >= 1")
    if name.split(".", 1)[0] != subsystem:
        raise TypeError(f"{cls.__qualname__}: TYPE {name!r} must start with {subsystem!r}.")
    if (name, version) in _BY_KEY:
        other = _BY_KEY[(name, version)]
        raise TypeError(f"{name} v{version} is already registered by {other.__qualname__}")
    _BY_KEY[(name, version)] = cls
    if name not in _CURRENT or version > _CURRENT[name].VERSION:
        _CURRENT[name] = cls


def _decoder(cls: type[Event]) -> msgspec.json.Decoder[Any]:
    # Built on first use, then kept: msgspec cannot build a decoder for a struct
    # while ``__init_subclass__`` is still defining it.
    decoder = _DECODERS.get(cls)
    if decoder is None:
        decoder = _DECODERS[cls] = msgspec.json.Decoder(cls)
    return decoder


def _fast(cls: type[Event]) -> FastDecoder:
    """The pattern-remembering twin decoder of ``cls`` (``_patterns``), built on first use."""
    fast = _FAST.get(cls)
    if fast is None:
        fast = _FAST[cls] = FastDecoder(cls)
    return fast


def _read(cls: type[Event]) -> FastDecoder:
    """The read-twin decoder of ``cls`` (``_patterns``), built on first use."""
    fast = _READ.get(cls)
    if fast is None:
        fast = _READ[cls] = FastDecoder(cls, subclass=True)
    return fast


def register_upcaster(type_name: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register a function lifting ``type_name`` payloads from ``from_version`` by one.

    The function receives the builtins form (``msgspec.to_builtins``) of a payload
    already validated against the ``from_version`` class and returns the builtins
    form of the next version; the last step is validated against the current class.

    Raises:
        TypeError: an upcaster for this (type, version) is already registered.
    """

    def decorate(fn: Upcaster) -> Upcaster:
        key = (type_name, from_version)
        if key in _UPCASTERS:
            raise TypeError(f"an upcaster for {type_name} v{from_version} already exists")
        _UPCASTERS[key] = fn
        return fn

    return decorate


def missing_upcasters() -> list[tuple[str, int]]:
    """(type, from_version) steps needed to lift a registered old version but absent."""
    return sorted(
        (name, v)
        for (name, version) in _BY_KEY
        for v in range(version, _CURRENT[name].VERSION)
        if (name, v) not in _UPCASTERS
    )


def is_known(type_name: str) -> bool:
    """Whether a typed class is registered for ``type_name`` (any version)."""
    return type_name in _CURRENT


def event_class(type_name: str) -> type[Event]:
    """The current class of ``type_name``.

    Raises:
        UnknownEventType: no class is registered under that name.
    """
    try:
        return _CURRENT[type_name]
    except KeyError:
        raise UnknownEventType(
            "no typed event class is registered under this name", type_name=type_name
        ) from None


def current_version(type_name: str) -> int:
    """The schema version new events of ``type_name`` are written at.

    Raises:
        UnknownEventType: no class is registered under that name.
    """
    return event_class(type_name).VERSION


def all_types() -> list[type[Event]]:
    """The current class of every registered type, sorted by type name."""
    return [_CURRENT[name] for name in sorted(_CURRENT)]


def all_versions() -> list[type[Event]]:
    """Every registered class, old versions included, sorted by (type, version)."""
    return [_BY_KEY[key] for key in sorted(_BY_KEY)]


def class_of(event: Event) -> type[Event]:
    """The event class of ``event``: its type, or for an event read from the log (a read
    twin, ``_patterns``) the class it stands for. ``isinstance`` needs no help."""
    cls = type(event)
    return cast("type[Event]", READ_TWINS.get(cls, cls))


def _is_registered(cls: type[Event]) -> bool:
    key = (getattr(cls, "TYPE", ""), getattr(cls, "VERSION", 0))
    return _BY_KEY.get(key) is cls


def canonical_bytes(event: Event) -> bytes:
    """The canonical JSON payload of a registered event of any version.

    The event is validated first. msgspec checks types and ``Meta`` constraints
    only when decoding, never on construction, so the struct is encoded, decoded
    with its class's decoder (which validates), and the decoded struct encoded
    again. The second encoding is what makes the bytes canonical: a float field
    constructed with ``1`` is written ``1.0``, exactly as a decoded one would be.

    Raises:
        InvalidEvent: the event's class is not registered or a field is out of
            its type or range (NaN and infinity included).
    """
    cls = class_of(event)
    if not _is_registered(cls):
        raise InvalidEvent(f"{cls.__qualname__} is not a registered event class")
    try:
        raw = _ENCODER.encode(event)
    except (TypeError, ValueError, msgspec.EncodeError) as exc:
        raise InvalidEvent(f"{cls.TYPE} v{cls.VERSION} cannot be encoded: {exc}") from exc
    valid = _fast(cls).decode(raw)
    if valid is not None:
        return _ENCODER.encode(valid)
    try:
        validated = _decoder(cls).decode(raw)
    except msgspec.ValidationError as exc:
        hint = " (NaN and infinity are refused)" if "got `null`" in str(exc) else ""
        raise InvalidEvent(f"{cls.TYPE} v{cls.VERSION} is invalid: {exc}{hint}") from exc
    return _ENCODER.encode(validated)


def encode(event: Event) -> tuple[str, int, bytes]:
    """Validate an event and return what the store records for it.

    Args:
        event: an instance of a *current* event class.

    Returns:
        ``(type name, schema_version, canonical JSON payload)``; the payload has
        sorted keys, no whitespace and no tag field.

    Raises:
        InvalidEvent: the class is unregistered or an old version (new records
            are always written at the current version), or a field is invalid.
    """
    cls = class_of(event)
    if _is_registered(cls) and _CURRENT[cls.TYPE] is not cls:
        raise InvalidEvent(
            f"{cls.__qualname__} is {cls.TYPE} v{cls.VERSION}, an old version; "
            f"write v{_CURRENT[cls.TYPE].VERSION} ({_CURRENT[cls.TYPE].__qualname__})"
        )
    payload = canonical_bytes(event)
    return cls.TYPE, cls.VERSION, payload


def decode(type_name: str, schema_version: int, data: bytes, *, twins: bool = False) -> Event:
    """Decode a stored payload into the current class of its type.

    Args:
        type_name: the envelope's type.
        schema_version: the envelope's schema version.
        data: the payload bytes exactly as stored.

    Returns:
        An instance of the current class; older versions are decoded with the
        shape they were written in and lifted by the registered upcasters.
        With ``twins`` (the projection engine's folds) it may be a *read twin*:
        a private subclass that decodes faster and is the class to
        ``isinstance``, ``match``, ``==``, ``hash``, ``repr`` and encoding
        alike; ``type(event)`` is the one thing that tells (:func:`class_of`
        gives the class).

    Raises:
        UnknownEventType: no class is registered for ``(type_name, schema_version)``.
        EventDecodeError: the bytes are not valid for that shape (the msgspec
            error is chained), or an upcaster could not lift them.
    """
    cls = _BY_KEY.get((type_name, schema_version))
    if cls is None:
        known = f"; known versions: {_known_versions(type_name)}" if is_known(type_name) else ""
        raise UnknownEventType(
            f"no typed event class for schema version {schema_version}{known}",
            type_name=type_name,
        )
    # Read twins check each patterned string once per distinct value, not once per
    # event (issue #19: three quarters of a telemetry packet's decode); anything
    # they decline is decoded strictly below, which words the refusal.
    fast: Event | None = _read(cls).decode(data) if twins else None
    if fast is not None:
        current = _CURRENT[type_name]
        return fast if cls is current else _upcast(fast, current)
    try:
        event: Event = _decoder(cls).decode(data)
    except msgspec.DecodeError as exc:
        raise EventDecodeError(
            f"v{schema_version} payload does not decode: {exc}", type_name=type_name
        ) from exc
    except RecursionError as exc:  # msgspec's own limit, near depth 1,000
        raise EventDecodeError("payload is nested too deeply", type_name=type_name) from exc
    current = _CURRENT[type_name]
    return event if cls is current else _upcast(event, current)


def _known_versions(type_name: str) -> str:
    return ", ".join(str(v) for (name, v) in sorted(_BY_KEY) if name == type_name)


def _upcast(event: Event, current: type[Event]) -> Event:
    name, version = event.TYPE, event.VERSION
    data: dict[str, Any] = msgspec.to_builtins(event)
    for step in range(version, current.VERSION):
        upcaster = _UPCASTERS.get((name, step))
        if upcaster is None:
            raise EventDecodeError(
                f"cannot lift v{version} to v{current.VERSION}: no upcaster from v{step}",
                type_name=name,
            )
        try:
            data = upcaster(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise EventDecodeError(
                f"cannot lift v{version} to v{current.VERSION}: upcaster from v{step} "
                f"failed: {exc!r}",
                type_name=name,
            ) from exc
    try:
        return msgspec.convert(data, current)
    except msgspec.ValidationError as exc:
        raise EventDecodeError(
            f"v{version} payload lifted to v{current.VERSION} is invalid: {exc}",
            type_name=name,
        ) from exc


def validate_payload(type_name: str, data: bytes) -> bytes:
    """Validate a submitted payload against the catalog and return its canonical bytes.

    Used by the CLI's JSON path: the payload must match the *current* version of
    a known type; key order, whitespace and number spelling may differ from the
    canonical form and are normalised.

    Raises:
        InvalidEvent: ``type_name`` is malformed or not a known typed event.
        EventDecodeError: the payload does not match the current schema.
    """
    current = _CURRENT.get(type_name)
    if current is not None:
        # A registered name passed check_type_name at registration. A payload the
        # twin accepts is valid; anything else is decoded again below, so every
        # refusal is the strict decoder's own.
        valid = _fast(current).decode(data)
        if valid is not None:
            return _ENCODER.encode(valid)
    check_type_name(type_name)
    if not is_known(type_name):
        raise InvalidEvent(
            f"{type_name!r} is not a typed event in the catalog; record it through the raw "
            "path, or use one of the catalogued types"
        )
    event = decode(type_name, current_version(type_name), data)
    return _ENCODER.encode(event)
