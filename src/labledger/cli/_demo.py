"""The main job until the lab exists: a small sample run, appended, projected and verified."""

from __future__ import annotations

import hashlib
import platform
import random
import sys
import uuid

from labledger.events.dream import DreamManifest, Regime, TrialKpis, TrialRecorded
from labledger.events.runs import Heartbeat, RunFinished, RunOutcome, RunStarted, Subsystem
from labledger.ledger import open_ledger
from labledger.projections import ProjectionEngine, all_projections
from labledger.store import NO_STREAM, StreamAppend, init_store


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def run(url: str) -> int:
    revision = init_store(url)
    run_id = f"demo-{uuid.uuid4().hex[:8]}"
    rng = random.Random(7)
    with open_ledger(url) as store:
        config = b'{"domain": "cpu", "generations": 1, "population": 2, "trials": 2}'
        blob = store.put_blob(config)
        started = RunStarted(
            subsystem=Subsystem.DREAM,
            config={"domain": "cpu", "population": 2, "trials": 2, "config_sha256": blob},
            code_version="demo",
            host=platform.node() or "localhost",
            manifest=DreamManifest(
                code_hash=_sha("demo"),
                regimes_sha256=_sha("regimes"),
                caps_sha256=_sha("caps"),
                rng_seed=7,
            ),
        ).to_new_event(run_id=run_id, actor="demo")
        stream = f"run-{run_id}"
        store.append(stream, [started], NO_STREAM)
        trials = [
            TrialRecorded(
                domain="cpu",
                regime=regime,
                cand_id=f"c{c}",
                generation=0,
                trial=t,
                genome={"threads": 2 + 2 * c, "chunk_kb": 64},
                kpis=TrialKpis(
                    perf=100.0 + 7 * c + rng.random(),
                    p95_ms=12.5 - c + rng.random(),
                    watts=None,
                    temp_peak_c=None,
                    errors=0,
                    oom=0,
                ),
            ).to_new_event(run_id=run_id, causation_id=started.id, actor="demo")
            for c in range(2)
            for regime in (Regime.IDLE, Regime.STRESS)
            for t in range(2)
        ]
        store.append(f"dream-{run_id}", trials, NO_STREAM)
        ending = [
            Heartbeat(seq=1, progress="2/2 candidates").to_new_event(run_id=run_id),
            RunFinished(outcome=RunOutcome.SUCCEEDED).to_new_event(run_id=run_id),
        ]
        store.append_many([StreamAppend(stream, ending, 0)])
        engine = ProjectionEngine(store, all_projections())
        engine.run()
        report = store.verify()
        print(f"labledger demo on {url} (schema {revision})")
        print(f"{'stream':<32} {'version':>7} {'last position':>13}")
        for info in store.streams():
            print(f"{info.stream:<32} {info.version:>7} {info.last_position:>13}")
        print(f"head position {store.head()}, config blob {blob[:12]}…")
        with engine.read("runs") as tx:
            row = tx.get("runs", run_id=run_id)
            assert row is not None
            print(
                f"run {run_id}: {row.subsystem}, {row.status} ({row.outcome}), {row.events} events"
            )
        status = "OK" if report.ok else f"FAILED: {report.message}"
        print(
            f"verify: {status} ({report.events_checked} events, head hash {report.head_hash[:16]}…)"
        )
    sys.stdout.flush()
    return 0 if report.ok else 1
