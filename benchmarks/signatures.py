"""Per-command cost of signing and re-checking a command: Ed25519 against HMAC (issue #18).

Unit of work: one ``esper.AdaptationCommand`` (the catalog's example), signed,
then checked (canonical encoding included, as the gate and ``verify --signatures``
do it). Best of 5 repeats of 2000. Run: ``.venv/bin/python benchmarks/signatures.py``.
"""

from __future__ import annotations

import datetime as dt
import timeit

from labledger.events import AdaptationCommand
from labledger.security import KeyRing, check_signature, new_key, sign
from labledger.testing.event_strategies import example_events

N, REPEAT = 2000, 5


def main() -> None:
    cmd = next(e for e in example_events() if isinstance(e, AdaptationCommand))
    ed25519 = KeyRing()
    new_key(ed25519)
    rings = {"ed25519": ed25519, "hmac-sha256": KeyRing({"old": b"h" * 32})}
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    for name, ring in rings.items():
        t_sign, t_check = _timed(cmd, ring, now)
        print(
            f"{name:<12} sign {t_sign / N * 1e6:7.1f} µs/command   "
            f"check {t_check / N * 1e6:7.1f} µs/command   (n={N}, best of {REPEAT})"
        )


def _timed(cmd: AdaptationCommand, ring: KeyRing, now: dt.datetime) -> tuple[float, float]:
    signed = sign(cmd, ring, now=now, nonce="n")
    t_sign = min(
        timeit.repeat(lambda: sign(cmd, ring, now=now, nonce="n"), number=N, repeat=REPEAT)
    )
    t_check = min(timeit.repeat(lambda: check_signature(signed, ring), number=N, repeat=REPEAT))
    return t_sign, t_check


if __name__ == "__main__":
    main()
