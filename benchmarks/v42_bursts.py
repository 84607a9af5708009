"""Reports over error-corrected (V.42) lines with error bursts, on the line model in
virtual time: the sender's resends and the call's length, per line rate and burst rate.

    python -m benchmarks.v42_bursts [--rates 33600,9600] [--bursts 0,0.5,2]
        [--seeds 20] [--size 40000] [--max-frame 1024]

Each burst is a retransmission by the modems and a 1 s retrain: the line stalls, and
nothing is lost. Printed per cell: the calls that completed (a call can fail at the
handshake when a burst holds up the HS2 past the centre's deadline), the resends in all
and in the worst call, and the median and longest time from the handshake's end to the
end of the call. `--max-frame 1024` keeps the sender to frames of 1 KiB at most (no
LARGE_FRAME), for the comparison. The keys come from the seeds too, so the figures
repeat from one invocation to the next.
"""

from __future__ import annotations

import argparse
import random
import statistics

from callhome.wire.messages import Kind, encode_message
from callhome.wire.transfer import FRAME_SIZES, TransferConfig
from modem_drivers.virtual.line import LineModel

from .linesim import LinkSim, enrolled_pair


class SmallFrames(TransferConfig):
    """A sender that never chooses frames over 1 KiB."""

    @property
    def frame_sizes(self) -> tuple[int, ...]:
        return FRAME_SIZES


def one_call(rate: int, bursts: float, seed: int, size: int, config: type[TransferConfig]):
    blob = random.Random(seed).randbytes(size)
    device, centre = enrolled_pair(encode_message(Kind.REPORT, {"blob": blob}, None), seed=seed)
    model = LineModel(rate=rate, latency=0.05, training_time=1.0, v42=True, burst_rate=bursts)
    sim = LinkSim(model, seed=seed, config=config(line_rate=rate, error_corrected=True))
    result = sim.call(device, centre)
    if result.handshake_done_at is None or not device.acknowledged.get(1):
        return None
    return result.client.stats()["retransmissions"], result.seconds - result.handshake_done_at


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", default="33600,9600")
    parser.add_argument("--bursts", default="0,0.5,2")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--size", type=int, default=40_000)
    parser.add_argument("--max-frame", type=int, choices=(1024,), help="no frames over 1 KiB")
    options = parser.parse_args()
    config = SmallFrames if options.max_frame else TransferConfig
    print(
        f"{options.size} B reports over V.42, seeds 0-{options.seeds - 1}, "
        f"frames up to {1024 if options.max_frame else 'LARGE_FRAME on fast lines'}"
    )
    print(
        f"{'rate':>6} {'bursts/s':>8} {'ok':>5} {'resends':>7} {'worst':>5} {'median s':>8} "
        f"{'longest s':>9}"
    )
    for rate in (int(r) for r in options.rates.split(",")):
        for bursts in (float(b) for b in options.bursts.split(",")):
            results = [
                r
                for seed in range(options.seeds)
                if (r := one_call(rate, bursts, seed, options.size, config)) is not None
            ]
            resends = [r for r, _ in results]
            seconds = [s for _, s in results]
            print(
                f"{rate:>6} {bursts:>8g} {len(results):>2}/{options.seeds:<2} "
                f"{sum(resends):>7} {max(resends, default=0):>5} "
                f"{statistics.median(seconds) if seconds else float('nan'):>8.1f} "
                f"{max(seconds, default=float('nan')):>9.1f}"
            )


if __name__ == "__main__":
    main()
