"""Build the preset compression dictionary `callhome/wire/dictionaries/<id>.bin`.

    python -m benchmarks.build_dictionary [--id 1] [--check]

Deflate's preset dictionary is a window of earlier text: strings near its end are the
cheapest to refer to, so the most typical content goes last. The samples come from a
seed other than the benchmark's, so the benchmark does not measure its own training
data. `--check` verifies that the shipped file is what this script builds.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import cbor2

from . import reference_reports as ref

SIZE = 32 * 1024
TRAINING_SEED = 7
TARGET = Path(__file__).resolve().parent.parent / "callhome" / "wire" / "dictionaries"


def build() -> bytes:
    rng = random.Random(TRAINING_SEED)
    samples: list[bytes] = []
    for index in range(400):
        size = ("small", "medium", "large")[index % 3]
        samples.append(cbor2.dumps(ref.report(rng, size), canonical=True))
        if index % 4 == 0:
            samples.append(cbor2.dumps(ref.inventory(rng), canonical=True))
    line_tests = [cbor2.dumps(ref.line_test(rng), canonical=True) for _ in range(40)]
    body = b"".join(samples)
    tail = b"".join(line_tests)
    return (body + tail)[-SIZE:]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--id", type=int, default=1)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    target = TARGET / f"{args.id}.bin"
    data = build()
    if args.check:
        same = target.exists() and target.read_bytes() == data
        print(f"{target}: {'up to date' if same else 'DIFFERS from what this script builds'}")
        return 0 if same else 1
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    print(f"wrote {target} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
