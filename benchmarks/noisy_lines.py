"""Calls of many reports over noisy lines without error correction, on the line model in
virtual time: how many deliver everything, and how long they take, with the call's first
frames at the default size and at a size given for the comparison.

    python -m benchmarks.noisy_lines [--rates 2400,33600] [--bers 0,1e-4,2e-4]
        [--seeds 10] [--reports 40] [--size 1500] [--compare 1024]

Each cell: the calls that delivered every report, and the median time of those calls
from the first byte of HS1 to the end; then the failures as (seed, reports
acknowledged, error). The keys and the line's errors come from the seeds, so the figures
repeat from one invocation to the next.
"""

from __future__ import annotations

import argparse
import random
import statistics

from callhome.wire.messages import Kind, encode_message
from callhome.wire.transfer import TransferConfig
from modem_drivers.virtual.line import LineModel

from .linesim import CallResult, LinkSim, enrolled_pair


def one_call(
    rate: int, ber: float, seed: int, reports: int = 40, size: int = 1500, first: int | None = None
) -> tuple[CallResult, int]:
    """One call of `reports` reports of `size` bytes; the result and how many of the
    reports were acknowledged."""
    rng = random.Random(seed)
    messages = [
        encode_message(Kind.REPORT, {"blob": rng.randbytes(size)}, None) for _ in range(reports)
    ]
    device, centre = enrolled_pair(*messages, seed=seed)
    model = LineModel(rate=rate, latency=0.05, ber=ber, v42=False)
    config = TransferConfig(line_rate=rate, initial_frame=first)
    result = LinkSim(model, seed=seed, config=config).call(device, centre)
    return result, sum(1 for seq in range(1, reports + 1) if device.acknowledged.get(seq))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", default="2400,33600")
    parser.add_argument("--bers", default="0,1e-4,2e-4")  # 5e-4: only 2,400 gets through
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--reports", type=int, default=40)
    parser.add_argument("--size", type=int, default=1500)
    parser.add_argument("--compare", type=int, default=1024, help="first frames of this size")
    options = parser.parse_args()
    print(
        f"{options.reports} reports of {options.size} B a call, no error correction, "
        f"seeds 0-{options.seeds - 1}"
    )
    print(f"{'rate':>6} {'BER':>7} {'first frame':>12} {'ok':>5} {'median s':>8}  failures")
    for rate in (int(r) for r in options.rates.split(",")):
        for ber in (float(b) for b in options.bers.split(",")):
            for first in (None, options.compare):
                size = TransferConfig(line_rate=rate, initial_frame=first).first_frame
                ok, failures = [], []
                for seed in range(options.seeds):
                    result, done = one_call(rate, ber, seed, options.reports, options.size, first)
                    if done == options.reports:
                        ok.append(result.seconds)
                    else:
                        error = type(result.failed).__name__ if result.failed else ""
                        failures.append((seed, done, error))
                label = f"{size}{'' if first else ' (default)'}"
                median = statistics.median(ok) if ok else float("nan")
                print(
                    f"{rate:>6} {ber:>7g} {label:>12} {len(ok):>2}/{options.seeds:<2} "
                    f"{median:>8.1f}  {failures or ''}"
                )


if __name__ == "__main__":
    main()
