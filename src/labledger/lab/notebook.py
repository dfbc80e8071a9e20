"""The notebook face: ``lab = labledger.open_lab(url)`` and the read models as DataFrames.

::

    lab = labledger.open_lab("sqlite:///labledger.db")
    lab.runs()                                # one row per run, every subsystem
    lab.candidates(run="dream-…")             # D-REAM candidate packs, flattened
    lab.leaderboard(spec="dedupe", run="tg…") # ToolGen standings of one run
    lab.audit("cmd-…")                        # one decision's chain, one row per link
    lab.metrics("t…")                         # a tracked run's points: step × metric
    ds = lab.training_set()                   # the Simic set as a torch Dataset

Tables come back as **pandas** DataFrames (``df.pipe(polars.from_pandas)`` if
you prefer polars); pandas is imported only when a table is asked for. Every
read catches the read model up to the head first, so a frame is the log as
of the moment it was read. Times stay exact (``*_at_us``, µs since the epoch)
and get a timezone-aware (UTC) ``datetime64`` twin (``*_at``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import msgspec
import sqlalchemy as sa

from labledger.errors import MissingExtra, UsageError
from labledger.events import Event
from labledger.events.track import MetricsLogged
from labledger.events.typed import Typed
from labledger.lab.tracking import TrackedRun
from labledger.ledger import open_ledger, read_typed
from labledger.projections import ProjectionEngine, all_projections
from labledger.projections import audit as audit_model
from labledger.projections import dream as dream_model
from labledger.projections import toolgen as toolgen_model
from labledger.projections.decisions import decisions
from labledger.projections.runs import decoded, run_rows
from labledger.store import EventStore

if TYPE_CHECKING:
    from labledger.projections.training_data import TrainingSetDataset

DataFrame = Any
"""A ``pandas.DataFrame`` (typed ``Any``: pandas ships no type stubs in our locks)."""
_TOOL_TYPES = ("toolgen.ToolSynthesized", "toolgen.ChallengerEntered")


def _frame(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> DataFrame:
    try:
        import pandas as pd  # type: ignore[import-untyped]
    except ModuleNotFoundError:
        raise MissingExtra("open_lab tables", "notebook", ["pandas"]) from None
    frame = pd.DataFrame(list(rows), columns=list(columns) if columns and not rows else None)
    for column in [c for c in frame.columns if str(c).endswith("_at_us")]:
        frame[str(column)[: -len("_us")]] = pd.to_datetime(frame[column], unit="us", utc=True)
    return frame


class Lab:
    """The lab's read models over one ledger (see the module docstring).

    Args:
        store: the ledger.
        owns_store: close it with the lab.
    """

    def __init__(self, store: EventStore, *, owns_store: bool = False) -> None:
        self.store, self._owns_store = store, owns_store
        self.engine = ProjectionEngine(store, all_projections())

    def _tx(self, name: str) -> Any:
        self.engine.catch_up(name)
        return self.engine.read(name)

    def runs(self, *, subsystem: str | None = None, status: str | None = None) -> DataFrame:
        """One row per run: status, subsystem, times, attempt, ``config`` and last ``metrics``."""
        with self._tx("runs") as tx:
            rows = [decoded(r) for r in run_rows(tx, status=status, subsystem=subsystem)]
        return _frame(rows, ["run_id", "subsystem", "status", "outcome", "config", "metrics"])

    def candidates(self, *, run: str | None = None, domain: str | None = None) -> DataFrame:
        """D-REAM candidate packs (``candidate_pack.v2``), one row per (domain, candidate).

        Top-level fields are columns (``safe``, ``genome``, …), and so are the
        aggregate's scalars (``score_v2``, ``baseline_score_v2``,
        ``improves_over_baseline``); nested values stay dicts.
        """
        with self._tx("dream_candidates") as tx:
            trials = tx.table("trials")
            select = sa.select(trials.c.domain, trials.c.cand_id).distinct()
            if run is not None:
                select = select.where(trials.c.run_id == run)
            if domain is not None:
                select = select.where(trials.c.domain == domain)
            keys = sorted(tuple(row) for row in tx.conn.execute(select))
            packs = [dream_model.candidate_pack(tx, d, c) for d, c in keys]
        rows = [_lift_aggregate(p) for p in packs if p is not None]
        return _frame(rows, ["domain", "cand_id", "run_id", "score_v2"])

    def leaderboard(
        self, *, spec: str | None = None, run: str | None = None, top: int = 10
    ) -> DataFrame:
        """ToolGen's top ``top`` tools per spec by fitness; with ``run``, of that run only
        (ranked among its own tools)."""
        with self._tx("toolgen") as tx:
            standings = toolgen_model.leaderboard(tx, spec, top if run is None else 1 << 30)
        rows = [msgspec.to_builtins(s) for s in standings]
        if run is not None:
            tools = {t.event.tool_id for t in self.read_all(types=_TOOL_TYPES, run_id=run)}  # type: ignore[attr-defined]
            rows = _rerank([r for r in rows if r["tool_id"] in tools], top)
        return _frame(rows, ["spec_id", "rank", "tool_id", "fitness"])

    def audit(self, command_id: str) -> DataFrame:
        """One decision's chain — command, verification, effects, field report, reward.

        Raises:
            UsageError: no command ``command_id`` in the log.
        """
        with self._tx("audit") as tx:
            links = audit_model.trail(tx, command_id)
        if not links:
            raise UsageError(f"no command {command_id!r} in the log (lab.decisions() lists them)")
        return _frame(links)

    def decisions(self, *, run: str | None = None) -> DataFrame:
        """Every command (the ids :meth:`audit` takes), with its outcome and reward."""
        with self._tx("audit") as tx:
            rows = decisions(tx, run_id=run)
        return _frame(rows, ["position", "run_id", "command_id", "operation"])

    def metrics(self, run: str) -> DataFrame:
        """A tracked run's logged points: one row per logged step, one column per metric."""
        rows = [
            {"step": point.step, **point.values}
            for item in self.read_all(types=[MetricsLogged.TYPE], run_id=run)
            for point in item.event.points  # type: ignore[attr-defined]
        ]
        return _frame(rows, ["step"])

    def training_set(
        self, path: str | Path | None = None, *, float_dtype: Any = None
    ) -> TrainingSetDataset:
        """The Simic training set as of the verified head, as a torch ``Dataset``.

        Exported to ``path`` (default: a temporary file) with its manifest, then
        loaded checked against it — the same bytes ``esper training-set export``
        writes. Needs the ``ml`` extra (torch).
        """
        from labledger import extras

        extras.require("ml", "lab.training_set()")
        from labledger.projections import training_data
        from labledger.projections.esper_training import completed, pending_count

        report = self.store.verify()
        if not report.ok:
            from labledger.errors import CorruptionDetected

            raise CorruptionDetected(f"the log fails verification ({report.message})")
        self.engine.catch_up("esper_training", until=report.head)
        with self.engine.read("esper_training") as tx:
            rows, pending = completed(tx, as_of=report.head), pending_count(tx, as_of=report.head)
        out = Path(path) if path else Path(tempfile.mkdtemp(prefix="labledger-")) / "train.pt"
        training_data.write_training_set(
            rows, out, head_position=report.head, head_hash=report.head_hash, pending=pending
        )
        return training_data.TrainingSetDataset(out, float_dtype=float_dtype)

    def read_all(
        self,
        from_position: int = 0,
        *,
        types: Collection[str] | None = None,
        run_id: str | None = None,
        limit: int | None = None,
    ) -> Iterator[Typed[Event]]:
        """Typed events (``.event``, ``.record``) of ``types`` and/or run ``run_id``."""
        return read_typed(self.store, from_position, types=types, run_id=run_id, limit=limit)

    def track(self, experiment: str, params: Mapping[str, Any] | None = None) -> TrackedRun:
        """A tracked run in this lab's ledger (``with lab.track(...) as run``)."""
        return TrackedRun(self.store, experiment=experiment, params=params)

    def close(self) -> None:
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> Lab:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _lift_aggregate(pack: dict[str, Any]) -> dict[str, Any]:
    aggregate = pack.get("aggregate") or {}
    scalars = {k: v for k, v in aggregate.items() if not isinstance(v, dict | list)}
    return {**pack, **scalars}


def _rerank(rows: list[dict[str, Any]], top: int) -> list[dict[str, Any]]:
    out, seen = [], dict[str, int]()
    for row in rows:  # already in (spec, rank) order
        seen[row["spec_id"]] = seen.get(row["spec_id"], 0) + 1
        if seen[row["spec_id"]] <= top:
            out.append({**row, "rank": seen[row["spec_id"]]})
    return out


def open_lab(url: str | None = None, *, read_only: bool = False) -> Lab:
    """The lab at ``url`` (default ``$LABLEDGER_DB``, then ``sqlite:///labledger.db``).

    Raises:
        SchemaNotInitialized: no schema there (``labledger init`` makes one).
        StoreUnavailable: the database cannot be reached.
    """
    return Lab(open_ledger(url, read_only=read_only), owns_store=True)


__all__ = ["Lab", "open_lab"]
