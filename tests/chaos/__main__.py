"""`python -m tests.chaos --seconds 300`: the chaos soak (see tests/chaos/soak.py)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from .soak import chaos


def main() -> int:
    parser = argparse.ArgumentParser(description="the chaos soak of the bank")
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--bank", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--kill-every", type=float, default=30.0, help="0: never")
    parser.add_argument("--fault-every", type=float, default=3.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        tally = asyncio.run(
            chaos(
                Path(folder),
                seconds=args.seconds,
                seed=args.seed,
                clients=args.clients,
                bank=args.bank,
                kill_every=args.kill_every or None,
                fault_every=args.fault_every,
            )
        )
    print(tally.summary())
    return 0 if tally.clean else 1


if __name__ == "__main__":
    sys.exit(main())
