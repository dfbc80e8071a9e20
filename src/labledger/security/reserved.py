"""Reserved namespaces: what only the gate (and the lab's own verifiers) may append.

- ``security.*`` event types — the gate's verdicts (``CommandAccepted``,
  ``CommandRejected``) and key registrations (``KeyRegistered``) — and the
  gate's streams (``security-…``: ``security-rejections``, ``security-keys``).
  A forged ``CommandRejected`` would otherwise become part of an audit chain.
- A ``run.*`` lifecycle event whose envelope names a run must be in that run's
  stream (``<prefix>-<run_id>``). Written into another run's stream it would
  start, finish or abandon one run on behalf of another (the runs read model
  folds a run from its events), so it is refused. ``run.RunAbandoned`` by the
  reaper is written *for* a run but *into its own stream*, and passes.

Appends through the CLI, the HTTP API and ``append``/``append_many`` are
refused with :class:`~labledger.errors.ReservedName` (exit 4, HTTP 403) before
anything is written. The lab's in-process components that are verifiers
themselves — the gate registering a key, Kasmina recording its verdict, an
import replaying history that was verified whole — write inside
:func:`as_gate`. The CLI and the API never enter it: it is a context variable,
so it holds for the calling thread's context only, never for another request.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

from labledger.errors import ReservedName

RESERVED_TYPE_PREFIX = "security."
RESERVED_STREAM_PREFIX = "security-"
LIFECYCLE_PREFIX = "run."

_writer: ContextVar[str | None] = ContextVar("labledger_reserved_writer", default=None)


@contextlib.contextmanager
def as_gate(component: str) -> Iterator[None]:
    """Let ``component`` (e.g. ``labledger.gate``, ``esper.kasmina``) write reserved records."""
    token = _writer.set(component)
    try:
        yield
    finally:
        _writer.reset(token)


def writer() -> str | None:
    """The component writing reserved records in this context, or None."""
    return _writer.get()


def check(stream: str, type_name: str, run_id: str | None) -> None:
    """Refuse an event a caller outside :func:`as_gate` may not append.

    Raises:
        ReservedName: the rule it breaks, by name.
    """
    privileged = _writer.get() is not None
    if type_name.startswith(RESERVED_TYPE_PREFIX) and not privileged:
        raise ReservedName(
            f"{type_name}: the security.* namespace is reserved for the gate; "
            "its records are written by the gate itself, never appended"
        )
    if stream.startswith(RESERVED_STREAM_PREFIX) and not privileged:
        raise ReservedName(
            f"stream {stream!r}: security-* streams are reserved for the gate's own records"
        )
    if type_name.startswith(LIFECYCLE_PREFIX) and not _own_stream(stream, run_id):
        raise ReservedName(
            f"{type_name} for run {run_id!r} in stream {stream!r}: a run's lifecycle "
            f"events go to its own stream (<prefix>-{run_id}), never on behalf of another run"
        )


def _own_stream(stream: str, run_id: str | None) -> bool:
    """Whether ``stream`` is run ``run_id``'s (an event naming no run belongs to any)."""
    return run_id is None or stream == run_id or stream.endswith(f"-{run_id}")
