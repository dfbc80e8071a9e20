"""The main job until the lab exists: a small sample run, appended and verified."""

from __future__ import annotations

import platform
import sys
import uuid

from labledger.store import NO_STREAM, NewEvent, StreamAppend, init_store, open_store


def run(url: str) -> int:
    revision = init_store(url)
    run_id = f"demo-{uuid.uuid4().hex[:8]}"
    stream = f"run-{run_id}"
    with open_store(url) as store:
        config = b'{"domain": "cpu", "generations": 1, "population": 2, "trials": 2}'
        blob = store.put_blob(config)
        ev = NewEvent.from_json
        started = ev(
            "run.RunStarted",
            {"subsystem": "dream", "config_sha256": blob, "host": platform.node()},
            run_id=run_id,
            actor="demo",
        )
        store.append(stream, [started], NO_STREAM)
        trials = [
            ev(
                "dream.TrialRecorded",
                {
                    "domain": "cpu",
                    "regime": regime,
                    "cand_id": f"c{c}",
                    "trial_index": t,
                    "kpis": {"perf": 100.0 + 7 * c + t, "p95_ms": 12.5 - c, "watts": None},
                },
                run_id=run_id,
                causation_id=started.id,
                actor="demo",
            )
            for c in range(2)
            for regime in ("idle", "stress")
            for t in range(2)
        ]
        store.append(f"dream-{run_id}", trials, NO_STREAM)
        finished = ev("run.RunFinished", {"outcome": "succeeded"}, run_id=run_id, actor="demo")
        heartbeat = ev("run.Heartbeat", {"seq": 1}, run_id=run_id, actor="demo")
        store.append_many([StreamAppend(stream, [heartbeat, finished], 0)])
        report = store.verify()
        print(f"labledger demo on {url} (schema {revision})")
        print(f"{'stream':<32} {'version':>7} {'last position':>13}")
        for info in store.streams():
            print(f"{info.stream:<32} {info.version:>7} {info.last_position:>13}")
        print(f"head position {store.head()}, blob {blob[:12]}…")
        status = "OK" if report.ok else f"FAILED: {report.message}"
        print(
            f"verify: {status} ({report.events_checked} events, head hash {report.head_hash[:16]}…)"
        )
    sys.stdout.flush()
    return 0 if report.ok else 1
