"""How soon a bank port is back in service after a call: N line tests back to back from
one device to a one-port bank over the virtual network (real receiver and client
processes, pty ports), timed from the receiver's own log.

    python -m benchmarks.bank_turnaround [--calls 10] [--profile usr]

For each call: *caller done* is when the device hung up (the virtual network's call
record, converted to the wall clock of the receiver's log), *protocol over* is when the
bank's session closed and it began to end the call (`call.hangup` time less its
`seconds`; a call the device ended first has none), *carrier gone* is the driver's
`call.summary`, *in service* is `call.ended` (the call is recorded and the port waits for
the next ring). The network runs at the e2e scale (0.1), and so do the driver's waits;
the store's work does not scale. So the figure printed for real time is an upper bound:
real seconds / scale. The bank's port is a pty (no DCD): the caller's hang-up reaches it
as the modem's NO CARRIER, S10 after the carrier went (0.7 s on the virtual USR).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

from tests.e2e.system import SCALE, System


def _at(event: dict[str, object]) -> float:
    return datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).timestamp()


async def measure(calls: int, profile: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        system = System(Path(folder))
        await system.start(bank=1, profiles=[profile])
        await system.start_receiver()
        try:
            client = await system.add_client("bench", "5550077")
            failures = 0
            for _ in range(calls):
                result = await client.cli("line-test")
                failures += result.code != 0
            await system.wait_for("call.ended", count=calls - failures)
            events = system.events()
            # the network's clock, in its seconds, to the wall clock the log is in
            runner = system.runner
            wall_at = time.time() - runner.now() * SCALE
            hung_up = [
                wall_at + record.ended * SCALE
                for record in system.network.history
                if record.caller == "bench" and record.ended is not None
            ]
        finally:
            await system.stop()
    ends = [_at(e) for e in events if e.get("event") == "call.summary"]
    served = [_at(e) for e in events if e.get("event") == "call.ended"]
    # paired by order, one of each per call: a missing event would shift every pair
    assert len(ends) == len(served), (len(ends), len(served))
    gaps = [s - e for e, s in zip(ends, served, strict=True)]
    hangups = [e for e in events if e.get("event") == "call.hangup"]
    methods = [e.get("method") for e in hangups]
    over = [_at(e) - float(str(e["seconds"])) for e in hangups]
    # a call the caller ended before the bank's session returned has no hang-up of ours
    totals = [s - o for o, s in zip(over, served, strict=True)] if len(over) == len(served) else []
    print(f"bank profile {profile}: {calls} back-to-back line tests, {failures} failed")
    print(
        f"hang-up methods: {dict((m, methods.count(m)) for m in set(methods))}; "
        f"{len(served) - len(hangups)} calls over before the bank's session returned"
    )
    if gaps:
        median = statistics.median(gaps)
        print(
            f"call end -> port in service: median {median * 1000:.0f} ms, "
            f"max {max(gaps) * 1000:.0f} ms (real, at scale {SCALE}); "
            f"at real time at most {median / SCALE:.2f} s median, {max(gaps) / SCALE:.2f} s max"
        )
    if len(hung_up) == len(ends):
        heard = [e - h for h, e in zip(hung_up, ends, strict=True)]
        median = statistics.median(heard)
        print(
            f"caller done -> carrier gone at the bank: median {median * 1000:+.0f} ms "
            f"(real, at scale {SCALE}; the modem's S10 and the bank's check)"
        )
    if len(hung_up) == len(served):
        after = [s - h for h, s in zip(hung_up, served, strict=True)]
        median = statistics.median(after)
        print(
            f"caller done -> port in service: median {median * 1000:+.0f} ms, "
            f"max {max(after) * 1000:+.0f} ms (real, at scale {SCALE}); "
            f"at real time at most {median / SCALE:+.2f} s median, {max(after) / SCALE:+.2f} s max"
        )
    if totals:
        median = statistics.median(totals)
        print(
            f"protocol over -> port in service: median {median * 1000:.0f} ms, "
            f"max {max(totals) * 1000:.0f} ms (real, at scale {SCALE}); "
            f"at real time at most {median / SCALE:.2f} s median, {max(totals) / SCALE:.2f} s max"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--profile", default="usr")
    args = parser.parse_args()
    asyncio.run(measure(args.calls, args.profile))


if __name__ == "__main__":
    main()
