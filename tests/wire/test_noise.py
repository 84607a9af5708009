"""Noise IK: the cacophony vectors byte for byte, and interop with `noiseprotocol`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from noise.connection import Keypair, NoiseConnection

from callhome.wire.errors import HandshakeFailed
from callhome.wire.noise import CipherState, IKHandshake, generate_private_key, public_key

# a copy of shared/vectors/noise-cacophony-ik-xk.json (the cacophony project's vectors)
VECTORS = Path(__file__).resolve().parent / "noise-cacophony-ik-xk.json"


def ik_vectors():
    return [
        v
        for v in json.loads(VECTORS.read_text())
        if v["protocol_name"]
        in ("Noise_IK_25519_ChaChaPoly_BLAKE2s", "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s")
    ]


@pytest.mark.parametrize("vector", ik_vectors(), ids=lambda v: v["protocol_name"])
def test_cacophony_vectors_byte_for_byte(vector):
    h = bytes.fromhex
    psk = h(vector["init_psks"][0]) if "init_psks" in vector else None
    initiator = IKHandshake(
        initiator=True,
        static_private=h(vector["init_static"]),
        remote_static=h(vector["init_remote_static"]),
        prologue=h(vector["init_prologue"]),
        psk=psk,
        ephemeral_private=h(vector["init_ephemeral"]),
    )
    responder = IKHandshake(
        initiator=False,
        static_private=h(vector["resp_static"]),
        prologue=h(vector["resp_prologue"]),
        psk=psk,
        ephemeral_private=h(vector["resp_ephemeral"]),
    )
    messages = vector["messages"]
    first = initiator.write_message_1(h(messages[0]["payload"]))
    assert first.hex() == messages[0]["ciphertext"]
    assert responder.read_message_1(first) == h(messages[0]["payload"])
    second = responder.write_message_2(h(messages[1]["payload"]))
    assert second.hex() == messages[1]["ciphertext"]
    assert initiator.read_message_2(second) == h(messages[1]["payload"])
    assert initiator.handshake_hash.hex() == vector["handshake_hash"]
    assert responder.handshake_hash.hex() == vector["handshake_hash"]
    keys_i, keys_r = initiator.keys(), responder.keys()
    assert (keys_i.send, keys_i.receive) == (keys_r.receive, keys_r.send)
    senders = [CipherState(keys_i.send), CipherState(keys_r.send)]
    receivers = [CipherState(keys_r.receive), CipherState(keys_i.receive)]
    for index, message in enumerate(messages[2:]):
        ciphertext = senders[index % 2].encrypt_with_ad(b"", h(message["payload"]))
        assert ciphertext.hex() == message["ciphertext"]
        assert receivers[index % 2].decrypt_with_ad(b"", ciphertext) == h(message["payload"])


def _their(initiator: bool, static: bytes, remote: bytes | None, psk: bytes | None = None):
    name = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s" if psk else b"Noise_IK_25519_ChaChaPoly_BLAKE2s"
    connection = NoiseConnection.from_name(name)
    if initiator:
        connection.set_as_initiator()
    else:
        connection.set_as_responder()
    connection.set_keypair_from_private_bytes(Keypair.STATIC, static)
    if remote is not None:
        connection.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, remote)
    connection.set_prologue(b"callhome/1")
    if psk:
        connection.set_psks(psk)
    connection.start_handshake()
    return connection


@pytest.mark.parametrize("psk", [None, os.urandom(32)], ids=["IK", "IKpsk2"])
def test_interop_we_initiate(psk):
    device, centre = generate_private_key(), generate_private_key()
    ours = IKHandshake(
        initiator=True,
        static_private=device,
        remote_static=public_key(centre),
        prologue=b"callhome/1",
        psk=psk,
    )
    theirs = _their(False, centre, None, psk)
    assert theirs.read_message(ours.write_message_1(b"hello")) == b"hello"
    assert ours.read_message_2(theirs.write_message(b"welcome")) == b"welcome"
    keys = ours.keys()
    assert theirs.decrypt(CipherState(keys.send).encrypt_with_ad(b"", b"data")) == b"data"
    assert CipherState(keys.receive).decrypt_with_ad(b"", theirs.encrypt(b"back")) == b"back"


@pytest.mark.parametrize("psk", [None, os.urandom(32)], ids=["IK", "IKpsk2"])
def test_interop_they_initiate(psk):
    device, centre = generate_private_key(), generate_private_key()
    theirs = _their(True, device, public_key(centre), psk)
    ours = IKHandshake(initiator=False, static_private=centre, prologue=b"callhome/1", psk=psk)
    assert ours.read_message_1(theirs.write_message(b"hello")) == b"hello"
    assert ours.remote_static == public_key(device)
    assert theirs.read_message(ours.write_message_2(b"welcome")) == b"welcome"
    assert theirs.get_handshake_hash() == ours.handshake_hash


def test_every_single_bit_flip_of_message_1_is_rejected():
    device, centre = generate_private_key(), generate_private_key()
    message = IKHandshake(
        initiator=True, static_private=device, remote_static=public_key(centre)
    ).write_message_1(b"payload")
    for bit in range(len(message) * 8):
        damaged = bytearray(message)
        damaged[bit // 8] ^= 1 << (bit % 8)
        responder = IKHandshake(initiator=False, static_private=centre)
        with pytest.raises(HandshakeFailed):
            responder.read_message_1(bytes(damaged))


def test_wrong_centre_key_cannot_be_read():
    device, centre, impostor = (generate_private_key() for _ in range(3))
    message = IKHandshake(
        initiator=True, static_private=device, remote_static=public_key(impostor)
    ).write_message_1(b"x")
    with pytest.raises(HandshakeFailed):
        IKHandshake(initiator=False, static_private=centre).read_message_1(message)


def test_low_order_public_key_is_refused():
    centre = generate_private_key()
    responder = IKHandshake(initiator=False, static_private=centre)
    with pytest.raises(HandshakeFailed):
        responder.read_message_1(bytes(32) + bytes(64 + 16))


def test_messages_out_of_order_are_refused():
    device, centre = generate_private_key(), generate_private_key()
    initiator = IKHandshake(initiator=True, static_private=device, remote_static=public_key(centre))
    with pytest.raises(HandshakeFailed):
        initiator.keys()
    with pytest.raises(HandshakeFailed):
        initiator.read_message_2(bytes(48))
    with pytest.raises(HandshakeFailed):
        IKHandshake(initiator=False, static_private=centre).read_message_1(b"short")


# -- a failed step leaves the handshake as it was (issue 10, defect 1) -------------------


def _pair() -> tuple[IKHandshake, IKHandshake, bytes]:
    centre = generate_private_key()
    initiator = IKHandshake(
        initiator=True, static_private=generate_private_key(), remote_static=public_key(centre)
    )
    responder = IKHandshake(initiator=False, static_private=centre)
    return initiator, responder, initiator.write_message_1(b"hello")


def test_a_forged_second_message_leaves_the_initiator_able_to_read_the_real_one():
    initiator, responder, first = _pair()
    responder.read_message_1(first)
    genuine = responder.write_message_2(b"welcome")
    for forged in (os.urandom(len(genuine)), os.urandom(200), genuine[:32] + os.urandom(16)):
        with pytest.raises(HandshakeFailed):
            initiator.read_message_2(forged)
    for index in range(len(genuine) * 8):  # every single-bit flip of the genuine answer
        flipped = bytearray(genuine)
        flipped[index // 8] ^= 1 << (index % 8)
        with pytest.raises(HandshakeFailed):
            initiator.read_message_2(bytes(flipped))
    assert initiator.read_message_2(genuine) == b"welcome"
    assert initiator.keys().send == responder.keys().receive


def test_a_forged_first_message_leaves_the_responder_able_to_read_the_real_one():
    _, responder, first = _pair()
    for forged in (os.urandom(len(first)), first[:-1] + bytes([first[-1] ^ 1]), b"\x00" * 96):
        with pytest.raises(HandshakeFailed):
            responder.read_message_1(forged)
    assert responder.read_message_1(first) == b"hello"


@pytest.mark.parametrize("key_length", [0, 1, 32, 64, 65, 200])
def test_hmac_blake2s_is_rfc_2104(key_length):
    """The written-out HMAC-BLAKE2s gives what the standard library's `hmac` gives, for
    keys shorter than, as long as and longer than BLAKE2s's 64-byte block."""
    import hashlib
    import hmac

    from callhome.wire.noise import _hmac

    key = os.urandom(key_length)
    for data in (b"", b"\x01", os.urandom(33), os.urandom(300)):
        assert _hmac(key, data) == hmac.new(key, data, hashlib.blake2s).digest()
