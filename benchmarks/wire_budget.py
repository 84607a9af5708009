"""Bytes on the wire and data-phase time of the call-home protocol, against physics.

    python -m benchmarks.wire_budget [--seeds 5]

For the reference report set (small, medium, large, 64 KiB incompressible) and a line
test: bytes each way and the data-phase time (first handshake byte to the client's
"everything acknowledged") at 2,400 bit/s, against the physical limit 10*N/R of the
compressed payload N; then the goals. Runs on the virtual line model in virtual time,
so the figures are exact for the model (50 ms one way, no V.42); with bit errors the
median over `--seeds` seeds is shown.

Goals (issue 4): fixed cost per call <= 200 bytes forward and <= 120 back; a line-test
call <= 250 bytes both ways together; a 64 KiB incompressible message within 1.05x the
limit on a clean line.
"""

from __future__ import annotations

import argparse
import statistics
import sys

from callhome.wire.messages import (
    CURRENT_DICTIONARY,
    EncodedMessage,
    Kind,
    encode_message,
    load_dictionary,
)
from modem_drivers.virtual.line import LineModel

from . import reference_reports as ref
from .linesim import LinkSim, enrolled_pair


def one_call(message: EncodedMessage, rate: int, ber: float, seed: int):
    device, centre = enrolled_pair(message, seed=seed)
    sim = LinkSim(LineModel(rate=rate, latency=0.05, ber=ber, v42=False), seed=seed)
    result = sim.call(device, centre)
    if not result.closed:
        raise RuntimeError(f"call failed: {result.failed}")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    dictionary = load_dictionary(CURRENT_DICTIONARY)
    messages = {}
    for name, content in ref.reference_set().items():
        kind = Kind.LINE_TEST if name == "line-test" else Kind.REPORT
        messages[name] = encode_message(kind, content, dictionary)

    print("clean line, 2,400 bit/s, 50 ms one way")
    print(
        f"{'message':<10} {'CBOR':>7} {'sent N':>7} {'fwd B':>7} {'back B':>7} "
        f"{'fixed fwd':>9} {'time s':>8} {'10N/R s':>8} {'ratio':>6}"
    )
    results = {}
    for name, message in messages.items():
        result = one_call(message, 2400, 0.0, seed=1)
        results[name] = result
        payload = len(message.body)
        limit = 10 * payload / 2400
        print(
            f"{name:<10} {message.content_size:>7} {payload:>7} {result.bytes_up:>7} "
            f"{result.bytes_down:>7} {result.bytes_up - payload:>9} {result.seconds:>8.2f} "
            f"{limit:>8.2f} {result.seconds / limit:>6.3f}"
        )

    print(f"\n64 KiB incompressible, time / (10N/R): median over {args.seeds} seeds (min..max)")
    print(f"{'rate':>6} " + " ".join(f"{label:>22}" for label in ("clean", "BER 1e-5", "BER 1e-4")))
    big = messages["64KiB"]
    for rate in (2400, 33600):
        cells = []
        for ber in (0.0, 1e-5, 1e-4):
            seeds = 1 if ber == 0.0 else args.seeds
            limit = 10 * len(big.body) / rate
            ratios = [
                one_call(big, rate, ber, seed).seconds / limit for seed in range(1, seeds + 1)
            ]
            cells.append(f"{statistics.median(ratios):.3f} ({min(ratios):.2f}..{max(ratios):.2f})")
        print(f"{rate:>6} " + " ".join(f"{cell:>22}" for cell in cells))

    small = results["small"]
    fixed_forward = small.bytes_up - len(messages["small"].body)
    line_test = results["line-test"]
    both = line_test.bytes_up + line_test.bytes_down
    ratio = results["64KiB"].seconds / (10 * len(big.body) / 2400)
    print("\ngoals")
    checks = [
        (f"fixed cost forward  {fixed_forward:>5} B", fixed_forward <= 200, "<= 200 B"),
        (f"fixed cost back     {small.bytes_down:>5} B", small.bytes_down <= 120, "<= 120 B"),
        (f"line-test call      {both:>5} B", both <= 250, "<= 250 B both ways"),
        (f"64 KiB at 2,400     {ratio:>5.3f} x", ratio <= 1.05, "<= 1.05 x the limit"),
    ]
    for text, ok, goal in checks:
        print(f"  {text}   goal {goal:<22} {'met' if ok else 'MISSED'}")
    return 0 if all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
