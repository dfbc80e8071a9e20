"""Background CPU load for the stress and mixed regimes when stress-ng is missing.

Spins until ``--seconds`` have passed or its parent (the runner) is gone.
"""

from __future__ import annotations

import argparse
import os
import time


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=60.0)
    a = p.parse_args()
    parent, until = os.getppid(), time.monotonic() + a.seconds
    x = 0
    while time.monotonic() < until and os.getppid() == parent:
        for i in range(20_000):
            x = (x * 31 + i) % 1_000_003


if __name__ == "__main__":
    main()
