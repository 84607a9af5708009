"""Two ways to run a fuzz target: atheris (coverage-guided, `make fuzz`) or a plain
seeded mutation loop (no extra dependency; CI's short run). A finding is the input that
raised something other than the target's typed errors; it is written to `findings/`."""

from __future__ import annotations

import random
import sys
import time
import traceback
from pathlib import Path

from .targets import TARGETS, Target

FINDINGS = Path(__file__).parent / "findings"


def mutate(rng: random.Random, data: bytes) -> bytes:
    buffer = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        choice = rng.random()
        if choice < 0.3 and buffer:
            buffer[rng.randrange(len(buffer))] = rng.randrange(256)
        elif choice < 0.5:
            at = rng.randint(0, len(buffer))
            buffer[at:at] = rng.randbytes(rng.randint(1, 16))
        elif choice < 0.65 and buffer:
            at = rng.randrange(len(buffer))
            del buffer[at : at + rng.randint(1, 16)]
        elif choice < 0.8 and buffer:
            start = rng.randrange(len(buffer))
            piece = buffer[start : start + rng.randint(1, 32)]
            at = rng.randint(0, len(buffer))
            buffer[at:at] = piece  # repeat a piece: lengths, delimiters, nesting
        else:
            at = rng.randint(0, len(buffer))
            buffer[at:at] = rng.choice([b"\r", b"\n", b"\x00", b"+++", b"=", b"[", b'"', b"AT"])
    return bytes(buffer[:4096])


def run_plain(target: Target, *, iterations: int, seed: int = 0) -> int:
    """Returns how many inputs ran; raises AssertionError naming a finding."""
    rng = random.Random(seed)
    corpus = list(target.seeds) or [b""]
    for count in range(iterations):
        data = mutate(rng, rng.choice(corpus)) if count else corpus[0]
        try:
            target(data)
        except Exception as exc:
            FINDINGS.mkdir(exist_ok=True)
            path = FINDINGS / f"{target.name}-{seed}-{count}.bin"
            path.write_bytes(data)
            raise AssertionError(
                f"{target.name}: {type(exc).__name__}: {exc} (input saved as {path})\n"
                + "".join(traceback.format_exception(exc))
            ) from exc
        if rng.random() < 0.05 and len(corpus) < 256:
            corpus.append(data)  # keep some mutants: deeper inputs over time
    return iterations


def run_plain_for(target: Target, seconds: float, seed: int = 0) -> int:
    deadline = time.monotonic() + seconds
    total = 0
    while time.monotonic() < deadline:
        total += run_plain(target, iterations=200, seed=seed + total)
    return total


def run_atheris(name: str, seconds: int) -> None:
    """In this process (atheris.Fuzz does not return): libFuzzer for `seconds`."""
    import atheris

    target = TARGETS[name]
    target(b"")  # import what the target imports lazily, so it is instrumented too
    atheris.instrument_all()  # coverage feedback from our Python code
    corpus = FINDINGS.parent / "corpus" / name
    corpus.mkdir(parents=True, exist_ok=True)
    for index, seed in enumerate(target.seeds):
        (corpus / f"seed-{index}").write_bytes(seed)
    FINDINGS.mkdir(exist_ok=True)
    atheris.Setup(
        [
            sys.argv[0],
            f"-max_total_time={seconds}",
            f"-artifact_prefix={FINDINGS}/{name}-",
            "-rss_limit_mb=2048",
            str(corpus),
        ],
        target,
    )
    atheris.Fuzz()
