"""The per-byte framing codecs as they were before issue 14, kept as the reference the
fast ones in `callhome.wire.framing` must match byte for byte
(tests/wire/test_framing_fast.py)."""

from __future__ import annotations

from callhome.wire.framing import PLUS, STUFFED, CobsError


def cobs_encode(data: bytes) -> bytes:
    out = bytearray()
    block = bytearray()
    for byte in data:
        if byte == 0:
            out.append(len(block) + 1)
            out += block
            block.clear()
        else:
            block.append(byte)
            if len(block) == 254:
                out.append(255)
                out += block
                block.clear()
    out.append(len(block) + 1)
    out += block
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    out = bytearray()
    index = 0
    length = len(data)
    while index < length:
        code = data[index]
        if code == 0:
            raise CobsError("zero byte inside a COBS frame")
        end = index + code
        if end > length:
            raise CobsError("COBS block runs past the end of the frame")
        block = data[index + 1 : end]
        if 0 in block:
            raise CobsError("zero byte inside a COBS block")
        out += block
        index = end
        if code < 255 and index < length:
            out.append(0)
    return bytes(out)


def stuff(data: bytes) -> bytes:
    """Insert 0x01 after every `++`: the output never contains `+++`."""
    if b"++" not in data:
        return data
    out = bytearray()
    run = 0
    for byte in data:
        out.append(byte)
        if byte == PLUS:
            run += 1
            if run == 2:
                out.append(STUFFED)
                run = 0
        else:
            run = 0
    return bytes(out)


def unstuff(data: bytes) -> bytes:
    if b"++" not in data:
        return data
    out = bytearray()
    run = 0
    skip = False
    for byte in data:
        if skip:
            if byte != STUFFED:
                raise CobsError("`++` not followed by the stuffing byte")
            skip = False
            run = 0
            continue
        out.append(byte)
        if byte == PLUS:
            run += 1
            if run == 2:
                skip = True
        else:
            run = 0
    if skip:
        raise CobsError("frame ends inside a stuffing sequence")
    return bytes(out)
