"""Compression on held-out reports: deflate and zstd, with and without dictionaries.

    python -m benchmarks.compression

Every figure is measured on `benchmarks.corpora.evaluation` (160 reports and 120 agent
events written apart from the training corpus); dictionaries are built from
`benchmarks.corpora.training` only. Sizes are bytes of message body (what crosses the
wire before framing). Needs `zstandard` (the `test` extra) for the zstd rows.
"""

from __future__ import annotations

import json
import statistics
import sys
import zlib
from collections.abc import Callable

import cbor2

from benchmarks.corpora import evaluation, training
from callhome.wire.messages import load_dictionary


def _deflate(data: bytes, zdict: bytes | None = None) -> bytes:
    extra = (zdict,) if zdict else ()
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, *extra)
    return compressor.compress(data) + compressor.flush()


def main() -> int:
    held_out = [cbor2.dumps(c, canonical=True) for c in evaluation.corpus()]
    as_json = [json.dumps(c, separators=(",", ":")).encode() for c in evaluation.corpus()]
    events = [cbor2.dumps(c, canonical=True) for c in evaluation.agent_events()]
    train = [cbor2.dumps(c, canonical=True) for c in training.corpus()]
    train_agent = train + [cbor2.dumps(c, canonical=True) for c in training.agent_corpus()]
    d1, d2, d3 = load_dictionary(1), load_dictionary(2), load_dictionary(3)
    assert d1 is not None and d2 is not None and d3 is not None
    rows: list[tuple[str, Callable[[bytes], bytes]]] = [
        ("CBOR, uncompressed", lambda b: b),
        ("deflate-9, no dictionary", _deflate),
        ("deflate-9 + dictionary 1 (old: benchmark's own reports)", lambda b: _deflate(b, d1.data)),
        ("deflate-9 + dictionary 2 (trained on reports)", lambda b: _deflate(b, d2.data)),
        ("deflate-9 + dictionary 3 (+ agent messages, SHIPPED)", lambda b: _deflate(b, d3.data)),
    ]
    try:
        import zstandard
    except ImportError:
        print("(zstandard not installed: no zstd rows)")
    else:
        trained = zstandard.train_dictionary(64 * 1024, train_agent, threads=0)
        plain = zstandard.ZstdCompressor(level=19, write_checksum=False, write_content_size=False)
        with_dict = zstandard.ZstdCompressor(
            level=19,
            dict_data=trained,
            write_checksum=False,
            write_content_size=False,
            write_dict_id=False,
        )
        rows += [
            ("zstd-19, no dictionary", plain.compress),
            ("zstd-19 + trained 64 KiB dictionary", with_dict.compress),
            # the 4-byte magic is implied by the protocol (zstd's magicless format)
            ("zstd-19 + trained dictionary, magicless", lambda b: with_dict.compress(b)[4:]),
        ]
    raw_total = sum(map(len, held_out))
    json_total = sum(map(len, as_json))
    print(
        f"held-out corpus: {len(held_out)} reports, CBOR {raw_total} B "
        f"(median {statistics.median(map(len, held_out)):.0f} B), "
        f"compact JSON {json_total} B (what a file transfer would send)"
    )
    print(
        f"held-out agent events: {len(events)}, CBOR {sum(map(len, events))} B "
        f"(median {statistics.median(map(len, events)):.0f} B)"
    )
    print(f"{'codec':58} {'total B':>8} {'median':>7} {'vs JSON':>8} {'events':>7} {'median':>7}")
    for name, codec in rows:
        # a message is sent uncompressed when compression does not pay (messages.py)
        sizes = [min(len(codec(b)), len(b)) for b in held_out]
        small = [min(len(codec(b)), len(b)) for b in events]
        print(
            f"{name:58} {sum(sizes):8d} {statistics.median(sizes):7.0f} "
            f"{json_total / sum(sizes):7.2f}x {sum(small):7d} {statistics.median(small):7.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
