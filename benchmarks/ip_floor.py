"""The floor under the receiver's CPU per TCP line-test call: what its pieces cost alone,
in one thread, without asyncio or sockets (`ip_throughput` measures the whole).

    python -m benchmarks.ip_floor [--calls 400]

Prints the X25519 and ChaCha20-Poly1305 operations a call needs, the centre's whole
Noise IK responder (read HS1, write HS2, split: four DHs and a key generation), a
forged HS1, the centre's `ServerSession` for a whole call in memory (handshake, one
line-test message, its answer, close), and the SQLite store's work for a call (three
reads, four writes), each write committed alone and eight calls' writes committed
together (group commit). Best of several repeats for the primitives (the least
disturbed by other work on a shared machine), CPU time for the rest.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import timeit
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from callhome.tcp import tcp_transfer_config
from callhome.wire.endpoint import PROLOGUE
from callhome.wire.errors import HandshakeFailed
from callhome.wire.noise import IKHandshake, generate_private_key, public_key
from callhome.wire.session import (
    ClientSession,
    HandshakeRequested,
    MessageReceived,
    ServerSession,
)
from receiver.store import (
    AdvanceCounter,
    CallEnd,
    FinishCall,
    Operation,
    SQLiteStore,
    StartCall,
    StoreMessage,
)

from .ip_common import MESSAGE


def _best_us(function: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(function, number=number, repeat=7)) / number * 1e6


def primitives() -> None:
    private = X25519PrivateKey.generate()
    peer = X25519PrivateKey.generate().public_key()
    aead = ChaCha20Poly1305(os.urandom(32))
    nonce, record = os.urandom(12), os.urandom(120)
    centre, device = generate_private_key(), generate_private_key()
    hs1 = IKHandshake(
        initiator=True, static_private=device, remote_static=public_key(centre), prologue=PROLOGUE
    ).write_message_1(b"\x01" * 10)
    forged = os.urandom(105)

    def responder() -> None:
        handshake = IKHandshake(initiator=False, static_private=centre, prologue=PROLOGUE)
        handshake.read_message_1(hs1)
        handshake.write_message_2(b"\x02" * 6)
        handshake.keys()

    def forgery() -> None:
        try:
            IKHandshake(initiator=False, static_private=centre, prologue=PROLOGUE).read_message_1(
                forged
            )
        except HandshakeFailed:
            pass

    def generate() -> bytes:
        return X25519PrivateKey.generate().public_key().public_bytes_raw()

    print(f"X25519 exchange: {_best_us(lambda: private.exchange(peer), 2000):.1f} us")
    print(f"X25519 key generation (with its public key): {_best_us(generate, 2000):.1f} us")
    print(
        "ChaCha20-Poly1305, a 120-byte record: "
        f"{_best_us(lambda: aead.encrypt(nonce, record, b'header'), 20000):.2f} us"
    )
    print(f"Noise IK responder, a whole handshake: {_best_us(responder, 300):.0f} us")
    print(f"Noise IK responder, a forged HS1: {_best_us(forgery, 300):.0f} us")


def session_cpu(calls: int) -> None:
    centre = generate_private_key()
    devices = [generate_private_key() for _ in range(16)]
    config = tcp_transfer_config()
    spent = 0.0
    for index in range(calls):
        now = 1000.0
        client = ClientSession(
            static_private=devices[index % 16],
            server_public=public_key(centre),
            call_counter=index + 1,
            epoch=1,
            config=config,
        )
        client.queue(1, MESSAGE)
        client.finish()
        client.start(now)
        started = time.thread_time()
        server = ServerSession(static_private=centre, config=config)
        server.start(now)
        spent += time.thread_time() - started
        out = client.data_to_send()
        while out:
            started = time.thread_time()
            for event in server.receive_data(out, now):
                if isinstance(event, HandshakeRequested):
                    server.accept(now, clock_ms=1, resume={}, test_interval=86400)
                elif isinstance(event, MessageReceived):
                    server.message_stored(event.seq, now)
            back = server.data_to_send()
            spent += time.thread_time() - started
            client.receive_data(back, now)
            out = client.data_to_send()
            now += 0.001
    print(
        "ServerSession, a whole line-test call in memory (crypto included): "
        f"{spent / calls * 1e6:.0f} us of CPU"
    )


def store_cpu(calls: int) -> None:
    keys = [public_key(generate_private_key()) for _ in range(64)]
    content = MESSAGE.body

    def end(device_id: int) -> CallEnd:
        return CallEnd(
            ended=time.time(),
            outcome="completed",
            device_id=device_id,
            rate=None,
            modulation="TCP",
            error_correction=None,
            bytes_in=300,
            bytes_out=200,
            messages=1,
            error=None,
            security={},
        )

    with tempfile.TemporaryDirectory(dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as d:
        store = SQLiteStore(Path(d) / "centre.db", create=True)
        for index, key in enumerate(keys):
            store.enroll(f"d{index}", key, test_interval=86400, grace=900, site=None)
        for group in (1, 8):
            started = time.process_time()
            for first in range(0, calls, group):
                batch = range(first, first + group)
                call_ids = store.apply_batch(
                    [StartCall("ip", "127.0.0.1:1", time.time(), "ip", store.receiver)] * group
                )
                operations: list[Operation] = []
                finishes: list[Operation] = []
                for n, call_id in zip(batch, call_ids, strict=True):
                    seq = group * 1_000_000 + n
                    device = store.device_by_key(keys[n % 64])
                    assert device is not None
                    store.partials(device.id, 1)
                    store.has_message(device.id, 1, seq)
                    operations += [
                        AdvanceCounter(device.id, seq, time.time()),
                        StoreMessage(
                            device.id,
                            1,
                            seq,
                            "line-test",
                            content,
                            {},
                            call_id,
                            time.time(),
                            None,
                            store.receiver,
                        ),
                    ]
                    finishes.append(FinishCall(call_id, end(device.id)))
                if group == 1:  # each write a transaction of its own
                    for operation in [*operations, *finishes]:
                        store.apply_batch([operation])
                else:
                    store.apply_batch(operations)
                    store.apply_batch(finishes)
            spent = time.process_time() - started
            how = "each write committed alone" if group == 1 else f"{group} calls per commit"
            print(
                f"SQLite store, a call's 3 reads and 4 writes ({how}): "
                f"{spent / calls * 1e6:.0f} us of CPU"
            )
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=400)
    options = parser.parse_args()
    primitives()
    session_cpu(options.calls)
    store_cpu(options.calls - options.calls % 8)


if __name__ == "__main__":
    main()
