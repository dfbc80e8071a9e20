"""One scan of the log feeding many projections: a dispatch table by event type.

The engine reads a batch once; :meth:`OnePass.fold` walks it once, and for
each record looks up (one dict probe) the projections that handle its type,
decodes it at most once if any of them still needs it, and hands the typed
event to each one's ``apply`` with that projection's own :class:`Tx`. The
projections' tables are disjoint, so interleaving their applies record by
record leaves each with exactly what a pass of its own would (the
one-pass-against-each test checks that, hash for hash).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy import Connection

from labledger.events import Event
from labledger.events.typed import Typed
from labledger.projections.base import Projection, TableSet, Tx
from labledger.store import RecordedEvent

Decode = Callable[[RecordedEvent], Typed[Event]]


class Fold:
    """One projection's share of a pass: its unit of work, carried from batch to batch."""

    __slots__ = ("after", "applied", "apply", "proj", "tables", "tx")

    def __init__(self, proj: Projection, tables: TableSet) -> None:
        self.proj, self.tables = proj, tables
        self.apply = proj.apply  # bound once, not looked up per event
        self.tx: Tx | None = None
        self.after = 0  # its checkpoint position when the batch began
        self.applied = 0  # events it applied in this batch

    def begin(self, conn: Connection, after: int, *, fresh: bool = False) -> Tx:
        """Start a batch in ``conn``'s transaction, from checkpoint position ``after``.

        ``fresh``: the tables are known empty (see :class:`Tx`); read on the first batch only.
        """
        if self.tx is None:
            self.tx = Tx(conn, self.tables, fresh=fresh)
        else:
            self.tx = self.tx.carry(conn)
        self.after, self.applied = after, 0
        return self.tx


class OnePass:
    """The folds of a pass, indexed by the event types they handle."""

    def __init__(self, folds: Sequence[Fold]) -> None:
        self.folds = list(folds)
        by_type: dict[str, list[Fold]] = {}
        for fold in self.folds:
            for type_name in sorted(fold.proj.type_names()):
                by_type.setdefault(type_name, []).append(fold)
        self._by_type = {t: tuple(fs) for t, fs in by_type.items()}

    def fold(self, records: Sequence[RecordedEvent], decode: Decode) -> None:
        """Apply every record to every fold that handles it and has not seen it yet."""
        by_type = self._by_type
        for record in records:
            folds = by_type.get(record.type)
            if folds is None:
                continue
            item: Typed[Event] | None = None
            position = record.position
            for fold in folds:
                if position > fold.after:
                    if item is None:
                        item = decode(record)
                    fold.apply(fold.tx, item)  # type: ignore[arg-type]  # begun by the engine
                    fold.applied += 1
