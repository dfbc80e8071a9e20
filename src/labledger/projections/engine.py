"""Running projections: catch up, follow, rebuild into shadow tables, build as of a position.

Read models are never written inside the append transaction: a projection
batch is its own transaction, after the events are durable, so appends stay
fast and cannot deadlock on a read model. Each batch commits its rows and
its checkpoint together (see ``checkpoint.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from itertools import islice
from typing import Protocol

import anyio
import anyio.to_thread
import msgspec
from sqlalchemy import Connection

from labledger.errors import ProjectionError
from labledger.events.typed import decode_for_fold
from labledger.projections import checkpoint as cps
from labledger.projections._pass import Fold, OnePass
from labledger.projections.base import Projection, TableSet, Tx
from labledger.projections.checkpoint import Checkpoint, CheckpointMoved
from labledger.projections.state_hash import state_hash
from labledger.store import EventStore, RecordedEvent
from labledger.store.subscribe import watcher_for


class LogSource(Protocol):
    """Where events come from: a store, or a view of one (e.g. truncated at a position)."""

    def head(self) -> int: ...

    def read_all(
        self, from_position: int = 0, *, batch_size: int = 1000, limit: int | None = None
    ) -> Iterator[RecordedEvent]: ...


Progress = Callable[[int, int], None]
"""Called with (events done, events to do) as a long operation advances."""

DEFAULT_BATCH = 500
REBUILD_BATCH = 5_000
"""A rebuild's batches into its shadow tables (no checkpoint rides on them)."""
READ_PAGE = 1000  # the store's own default page
# A catch-up that loses a batch to another runner starts again from that runner's
# checkpoint. Each loss follows someone else's commit, so this bound is only hit
# by a checkpoint that is moved without end (a rebuild loop, say).
_RETRIES = 100


class ProjectionEngine:
    """Projections over ``source``'s log, with tables in ``target`` (default: the same database)."""

    def __init__(
        self,
        source: EventStore | LogSource,
        projections: Sequence[Projection],
        *,
        target: EventStore | None = None,
        batch_size: int = DEFAULT_BATCH,
    ) -> None:
        self.source = source
        self.target = target if target is not None else _store(source)
        self.projections = {p.name: p for p in projections}
        self.batch_size = batch_size
        self._tables: dict[tuple[str, int, int], TableSet] = {}

    def get(self, name: str) -> Projection:
        try:
            return self.projections[name]
        except KeyError:
            known = ", ".join(sorted(self.projections))
            raise ProjectionError(f"no projection {name!r}; known: {known}") from None

    # -- transactions ------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.target.write() as conn:
            yield conn

    @contextmanager
    def read(self, name: str) -> Iterator[Tx]:
        """A consistent read of one projection: the old state or the new, never half a swap."""
        proj = self.get(name)
        with self.target.read(snapshot=True) as conn:
            cp = cps.load(conn, name)
            if cp is None or cp.version != proj.version:
                raise ProjectionError(
                    f"projection {name!r} has not been built at version {proj.version}: "
                    f"run `labledger project run {name}`"
                )
            yield Tx(conn, self.tables(proj, cp.version, cp.generation))

    def tables(self, proj: Projection, version: int, generation: int) -> TableSet:
        key = (proj.name, version, generation)
        if key not in self._tables:
            tables = TableSet(proj.name, version, generation)
            proj.define(tables)
            self._tables[key] = tables
        return self._tables[key]

    # -- catching up -------------------------------------------------------------

    def checkpoint(self, name: str) -> Checkpoint | None:
        """The checkpoint of ``name`` in the target database; None where it was never built."""
        with self.target.read() as conn:
            return cps.load(conn, name)

    def ensure(self, proj: Projection, progress: Progress | None = None) -> Checkpoint:
        """The checkpoint, creating the tables on first use and rebuilding on a version bump."""
        with self._write() as conn:
            cp = cps.load(conn, proj.name)
            if cp is None:
                cp = Checkpoint(
                    name=proj.name,
                    version=proj.version,
                    generation=1,
                    position=0,
                    events_applied=0,
                    updated_at_us=_now_us(),
                )
                tables = self.tables(proj, cp.version, cp.generation)
                tables.metadata.drop_all(conn)
                tables.metadata.create_all(conn)
                cps.create(conn, cp)
                return cp
        if cp.version != proj.version:
            return self.rebuild(proj.name, progress)
        return cp

    def catch_up(
        self, name: str, *, until: int | None = None, progress: Progress | None = None
    ) -> Checkpoint:
        """Apply every event after the checkpoint (up to ``until``), batch by batch."""
        proj = self.get(name)
        for _ in range(_RETRIES):
            cp = self.ensure(proj, progress)
            try:
                return self._fill(proj, cp, until=until, progress=progress)
            except CheckpointMoved:
                continue  # another runner got there first: go on from where it stands
        raise CheckpointMoved(f"projection {name!r} kept moving under {_RETRIES} catch-ups")

    def run(
        self, names: Sequence[str] | None = None, progress: Progress | None = None
    ) -> dict[str, Checkpoint]:
        """Catch several projections up in one pass over the log (default: all of them).

        Each event is read once and decoded once, whichever projections handle
        it; each batch commits every projection's rows with its checkpoint in one
        transaction, so a crash anywhere still leaves an exactly-once state.
        """
        chosen = self._chosen(names)
        for _ in range(_RETRIES):
            try:
                return self._run(chosen, progress)
            except CheckpointMoved:
                continue  # another runner got there first: go on from where it stands
        raise CheckpointMoved(f"projections kept moving under {_RETRIES} catch-ups")

    def _run(
        self, chosen: Sequence[Projection], progress: Progress | None
    ) -> dict[str, Checkpoint]:
        points = {p.name: self.ensure(p, progress) for p in chosen}
        folds = {p.name: self._fold_of(p, points[p.name]) for p in chosen}
        one = OnePass(list(folds.values()))
        start = min((cp.position for cp in points.values()), default=0)
        total, done = max(0, self.source.head() - start), 0
        for records in self._batches(start + 1):
            last = records[-1].position
            with self._write() as conn:
                for name, fold in folds.items():
                    cp = points[name]
                    _still_at(conn, cp)
                    fold.begin(conn, cp.position, fresh=cp.position == 0)
                one.fold(records, decode_for_fold)
                for name, fold in folds.items():
                    cp = points[name]
                    if last > cp.position:  # the batch had events past this checkpoint
                        points[name] = self._commit(conn, fold, cp, last)
            done += len(records)
            if progress:
                progress(done, max(total, done))
        return points

    def _chosen(self, names: Sequence[str] | None) -> list[Projection]:
        return [self.get(n) for n in (names or sorted(self.projections))]

    def _fold_of(self, proj: Projection, cp: Checkpoint) -> Fold:
        return Fold(proj, self.tables(proj, cp.version, cp.generation))

    @staticmethod
    def _commit(conn: Connection, fold: Fold, cp: Checkpoint, last: int) -> Checkpoint:
        """Flush ``fold``'s batch and move its checkpoint to ``last``, in ``conn``'s transaction."""
        assert fold.tx is not None
        fold.tx.flush()
        new = _advanced(cp, last, fold.applied)
        cps.advance(conn, cp, new)
        return new

    def _tx(self, txs: dict[str, Tx], conn: Connection, proj: Projection, cp: Checkpoint) -> Tx:
        """The pass's unit of work for ``proj``, carried into this batch's transaction."""
        tx = txs.get(proj.name)
        if tx is None:
            tables = self.tables(proj, cp.version, cp.generation)
            tx = txs[proj.name] = Tx(conn, tables, fresh=cp.position == 0)
            return tx
        return tx.carry(conn)

    def _fill(
        self, proj: Projection, cp: Checkpoint, *, until: int | None, progress: Progress | None
    ) -> Checkpoint:
        total = max(0, (self.source.head() if until is None else until) - cp.position)
        done = 0
        txs: dict[str, Tx] = {}
        for records in self._batches(cp.position + 1, until):
            cp = self._apply_batch(proj, cp, records, txs)
            done += len(records)
            if progress:
                progress(done, max(total, done))
        if progress:
            progress(done, max(total, done))
        return cp

    def _batches(
        self, start: int, until: int | None = None, *, size: int | None = None
    ) -> Iterator[list[RecordedEvent]]:
        """The log from ``start`` (up to ``until``) in batches of ``size`` (``batch_size``).

        Pages are read at least READ_PAGE long whatever the batch: a page is a
        query (two round trips on PostgreSQL), a batch only a commit. ``until``
        bounds the read too, so the last page stops there, not a page past it.
        """
        size = size or self.batch_size
        limit = None if until is None else max(0, until - start + 1)
        page = max(size, READ_PAGE)
        records = iter(self.source.read_all(start, batch_size=page, limit=limit))
        while batch := list(islice(records, size)):
            if until is not None and batch[-1].position > until:  # a source with gaps
                batch = [r for r in batch if r.position <= until]
                if batch:
                    yield batch
                return
            yield batch

    @staticmethod
    def _fold(tx: Tx, proj: Projection, records: Sequence[RecordedEvent]) -> int:
        """Apply the records ``proj`` handles; how many it applied."""
        wanted, apply, applied = proj.type_names(), proj.apply, 0
        for record in records:
            if record.type in wanted:
                apply(tx, decode_for_fold(record))
                applied += 1
        return applied

    def _apply_batch(
        self,
        proj: Projection,
        cp: Checkpoint,
        records: Sequence[RecordedEvent],
        txs: dict[str, Tx] | None = None,
    ) -> Checkpoint:
        with self._write() as conn:
            _still_at(conn, cp)
            tx = self._tx({} if txs is None else txs, conn, proj, cp)
            applied = self._fold(tx, proj, records)
            tx.flush()  # the batch's rows, then its checkpoint, in one transaction
            new = _advanced(cp, records[-1].position, applied)
            cps.advance(conn, cp, new)
        return new

    # -- following ---------------------------------------------------------------

    async def follow(
        self, names: Sequence[str] | None = None, stop: anyio.Event | None = None
    ) -> None:
        """Catch up, then apply new events as they are appended, until ``stop`` is set."""
        chosen = list(names or sorted(self.projections))
        # the store's one change watcher (store.subscribe): no thread or connection held here
        with watcher_for(_store(self.source)).following() as changes:
            while stop is None or not stop.is_set():
                for name in chosen:
                    try:
                        await anyio.to_thread.run_sync(self.catch_up, name)
                    except CheckpointMoved:
                        continue  # another runner or a rebuild moved it: reload next round
                await changes.wait(0.5)

    # -- rebuilding ----------------------------------------------------------------

    def rebuild(self, name: str, progress: Progress | None = None) -> Checkpoint:
        """Build the projection from zero into new tables, then swap them in atomically."""
        return self.rebuild_many([name], progress)[name]

    def rebuild_many(
        self, names: Sequence[str] | None = None, progress: Progress | None = None
    ) -> dict[str, Checkpoint]:
        """Rebuild several projections (default: all) from one pass over the log.

        Each gets new tables (a shadow generation) filled from the same scan, each
        event decoded once; then each is caught up to the head and swapped in
        atomically, one by one, so readers see the old state or the new.
        """
        chosen = self._chosen(names)
        olds = {p.name: self._built(p) for p in chosen}
        shadows = {p.name: self._shadow(p, olds[p.name]) for p in chosen}
        folds = {p.name: self._fold_of(p, shadows[p.name]) for p in chosen}
        one = OnePass(list(folds.values()))
        head, done = self.source.head(), 0
        # The shadows are not in ll_projections yet: batches carry no checkpoint
        # row, and an interrupted rebuild starts again from zero. So a batch is only
        # a flush: larger ones fill the multi-row statements (issue #19).
        for records in self._batches(1, size=max(self.batch_size, REBUILD_BATCH)):
            with self._write() as conn:
                for name, fold in folds.items():
                    fold.begin(conn, shadows[name].position, fresh=True)  # just created
                one.fold(records, decode_for_fold)
                for name, fold in folds.items():
                    assert fold.tx is not None
                    fold.tx.flush()
                    shadows[name] = _advanced(shadows[name], records[-1].position, fold.applied)
            done += len(records)
            if progress:
                progress(done, max(head, done))
        for proj in chosen:
            with self._write() as conn:
                fold = folds[proj.name]
                shadow = shadows[proj.name]
                shadows[proj.name] = self._swap(conn, fold, olds[proj.name], shadow)
            self._drop_generations_before(proj, olds[proj.name].generation)
        return shadows

    def _built(self, proj: Projection) -> Checkpoint:
        """The current checkpoint, at whatever version; an empty first build if none."""
        with self._write() as conn:
            old = cps.load(conn, proj.name)
        return self.ensure(proj) if old is None else old

    def _shadow(self, proj: Projection, old: Checkpoint) -> Checkpoint:
        """Empty tables of the next generation, and their (unrecorded) checkpoint."""
        shadow = Checkpoint(
            name=proj.name,
            version=proj.version,
            generation=old.generation + 1,
            position=0,
            events_applied=0,
            updated_at_us=_now_us(),
        )
        tables = self.tables(proj, shadow.version, shadow.generation)
        with self._write() as conn:
            tables.metadata.drop_all(conn)  # leftovers of an interrupted rebuild
            tables.metadata.create_all(conn)
        return shadow

    def _swap(
        self, conn: Connection, fold: Fold, old: Checkpoint, shadow: Checkpoint
    ) -> Checkpoint:
        """Catch the shadow up to the head and make it the projection's generation."""
        proj = fold.proj
        tx = fold.begin(conn, shadow.position)
        for records in self._batches(shadow.position + 1):
            applied = self._fold(tx, proj, records)
            shadow = _advanced(shadow, records[-1].position, applied)
        tx.flush()
        current = cps.load(conn, proj.name)
        if current is None or current.generation != old.generation:
            raise CheckpointMoved(f"projection {proj.name!r} was rebuilt concurrently")
        cps.advance(conn, current, shadow)
        return shadow

    def _drop_generations_before(self, proj: Projection, keep_from: int) -> None:
        """Drop generations older than the previous one: a reader that looked up the
        previous generation just before the swap can still finish its read."""
        with self._write() as conn:
            for (name, version, generation), tables in list(self._tables.items()):
                if name == proj.name and generation < keep_from:
                    tables.metadata.drop_all(conn)
                    del self._tables[(name, version, generation)]
            for generation in range(max(1, keep_from - 3), keep_from):
                for version in range(1, proj.version + 1):
                    stale = TableSet(proj.name, version, generation)
                    proj.define(stale)
                    stale.metadata.drop_all(conn, checkfirst=True)

    # -- inspecting --------------------------------------------------------------

    def state_hash(self, name: str) -> str:
        with self.read(name) as tx:
            return state_hash(tx.conn, tx.tables)


def _store(store: EventStore | LogSource) -> EventStore:
    if not isinstance(store, EventStore):
        raise ProjectionError("projections need a store to hold their tables, not a bare log")
    return store


def _advanced(cp: Checkpoint, position: int, applied: int) -> Checkpoint:
    return msgspec.structs.replace(
        cp,
        position=position,
        events_applied=cp.events_applied + applied,
        updated_at_us=_now_us(),
    )


def _now_us() -> int:
    return time.time_ns() // 1000


def _still_at(conn: Connection, cp: Checkpoint) -> None:
    """Raise CheckpointMoved unless ``cp`` is still the recorded checkpoint.

    Checked first in each batch's transaction, under the write lock: what a
    runner carries from its last batch (the unit of work's rows, its fresh
    tables' key sets) holds only while nobody else moved the checkpoint.
    """
    now = cps.load(conn, cp.name)
    if now is None or (now.generation, now.position) != (cp.generation, cp.position):
        raise CheckpointMoved(
            f"projection {cp.name!r} moved past position {cp.position} / generation "
            f"{cp.generation} before this batch began"
        )
