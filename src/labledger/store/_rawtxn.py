"""The append hot path's view of a database transaction, on the driver connection.

Appends bypass SQLAlchemy's statement layer: each of its calls costs tens of
microseconds, several times per append, which is most of what labledger
added over a raw insert. SQL is written once with ``?`` placeholders;
PostgreSQL's transaction rewrites them to ``%s`` and sends a batch of reads
as one pipelined round trip.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

Params = Sequence[Any]


class RawTxn(abc.ABC):
    """One write transaction, already holding the append lock when its first read runs."""

    @abc.abstractmethod
    def fetch(self, queries: Sequence[tuple[str, Params]]) -> list[list[tuple[Any, ...]]]:
        """Run read queries (in one round trip where the driver can) and return their rows."""

    @abc.abstractmethod
    def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; returns the row count."""

    @abc.abstractmethod
    def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        """Run one statement for many rows (one round trip where the driver can)."""

    @abc.abstractmethod
    def any_of(self, column: str) -> str:
        """A predicate ``column`` is one of a list bound as one parameter (see ``list_param``)."""

    @abc.abstractmethod
    def list_param(self, values: Sequence[Any]) -> Any:
        """The parameter value for an ``any_of`` predicate."""
