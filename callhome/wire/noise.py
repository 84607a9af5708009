"""Noise_IK_25519_ChaChaPoly_BLAKE2s (and IKpsk2) on pyca/cryptography primitives.

Noise Protocol Framework rev. 34, sections 5 (processing rules) and 7.5 (IK):

    IK:  <- s
         ...
         -> e, es, s, ss
         <- e, ee, se          (psk2: ..., psk)

One round trip; the initiator (a device) knows the responder's (the centre's) static
key; the responder learns the device's static key from message 1. Both sides get fresh
transport keys every call. The test suite reproduces the cacophony vectors byte for
byte and interoperates with the `noiseprotocol` package in both roles.

Transport keys are handed out as `TransportKeys`; records use them with explicit nonces
(`records.py`), because frames on a lossy line are retransmitted and may be dropped.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from .errors import HandshakeFailed

DHLEN = 32
HASHLEN = 32
TAGLEN = 16
IK = b"Noise_IK_25519_ChaChaPoly_BLAKE2s"
IK_PSK2 = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
MSG1_OVERHEAD = DHLEN + DHLEN + TAGLEN + TAGLEN  # e, encrypted s, payload tag: 96
MSG2_OVERHEAD = DHLEN + TAGLEN  # 48


def _hash(data: bytes) -> bytes:
    return hashlib.blake2s(data).digest()


_BLOCK = 64  # BLAKE2s's block size
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


def _hmac(key: bytes, data: bytes) -> bytes:
    """HMAC-BLAKE2s (RFC 2104), written out: `hmac.new` takes its slow pure-Python path
    for a hash OpenSSL does not provide, and a handshake makes 15 of these."""
    if len(key) > _BLOCK:
        key = hashlib.blake2s(key).digest()
    key = key.ljust(_BLOCK, b"\x00")
    inner = hashlib.blake2s(key.translate(_IPAD) + data).digest()
    return hashlib.blake2s(key.translate(_OPAD) + inner).digest()


def hkdf(chaining_key: bytes, material: bytes, outputs: int) -> tuple[bytes, ...]:
    temp = _hmac(chaining_key, material)
    out1 = _hmac(temp, b"\x01")
    out2 = _hmac(temp, out1 + b"\x02")
    if outputs == 2:
        return out1, out2
    return out1, out2, _hmac(temp, out2 + b"\x03")


def nonce_bytes(counter: int) -> bytes:
    """ChaChaPoly's 96-bit nonce: 32 zero bits, then the 64-bit counter little-endian."""
    return b"\x00" * 4 + counter.to_bytes(8, "little")


def public_key(private: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


def generate_private_key() -> bytes:
    return X25519PrivateKey.generate().private_bytes_raw()


@functools.lru_cache(maxsize=8)
def _static_key(private: bytes) -> X25519PrivateKey:
    """A static key is used in every call: loading it derives its public key, a scalar
    multiplication as dear as a DH (80 us), so it is loaded once (the centre's, once
    per process, not once per call)."""
    return X25519PrivateKey.from_private_bytes(private)


def _dh(private: X25519PrivateKey, public: bytes) -> bytes:
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError as exc:  # a low-order point: all-zero shared secret
        raise HandshakeFailed("invalid public key") from exc


class CipherState:
    def __init__(self, key: bytes | None = None) -> None:
        self.key = key
        self.nonce = 0
        self._aead = ChaCha20Poly1305(key) if key is not None else None

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes) -> bytes:
        if self._aead is None:
            return plaintext
        ciphertext = self._aead.encrypt(nonce_bytes(self.nonce), plaintext, ad)
        self.nonce += 1
        return ciphertext

    def copy(self) -> CipherState:
        twin = CipherState(self.key)
        twin.nonce = self.nonce
        return twin

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes) -> bytes:
        if self._aead is None:
            return ciphertext
        try:
            plaintext = self._aead.decrypt(nonce_bytes(self.nonce), ciphertext, ad)
        except InvalidTag:
            raise HandshakeFailed("authentication failed") from None
        self.nonce += 1  # only after success: a forgery must not move us on
        return plaintext


class SymmetricState:
    def __init__(self, protocol_name: bytes) -> None:
        if len(protocol_name) <= HASHLEN:
            self.h = protocol_name.ljust(HASHLEN, b"\x00")
        else:
            self.h = _hash(protocol_name)
        self.ck = self.h
        self.cipher = CipherState()

    def copy(self) -> SymmetricState:
        """A twin to work on: a handshake step that fails must leave no trace."""
        twin = SymmetricState.__new__(SymmetricState)
        twin.h, twin.ck, twin.cipher = self.h, self.ck, self.cipher.copy()
        return twin

    def mix_key(self, material: bytes) -> None:
        self.ck, temp_key = hkdf(self.ck, material, 2)
        self.cipher = CipherState(temp_key)

    def mix_hash(self, data: bytes) -> None:
        self.h = _hash(self.h + data)

    def mix_key_and_hash(self, material: bytes) -> None:
        self.ck, temp_hash, temp_key = hkdf(self.ck, material, 3)
        self.mix_hash(temp_hash)
        self.cipher = CipherState(temp_key)

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        ciphertext = self.cipher.encrypt_with_ad(self.h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        plaintext = self.cipher.decrypt_with_ad(self.h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[bytes, bytes]:
        first, second = hkdf(self.ck, b"", 2)
        return first, second


@dataclass(frozen=True)
class TransportKeys:
    send: bytes
    receive: bytes
    handshake_hash: bytes


class IKHandshake:
    """One side of a Noise IK handshake; two messages, then `keys()`."""

    def __init__(
        self,
        *,
        initiator: bool,
        static_private: bytes,
        remote_static: bytes | None = None,
        prologue: bytes = b"",
        psk: bytes | None = None,
        ephemeral_private: bytes | None = None,
    ) -> None:
        if initiator and remote_static is None:
            raise ValueError("the initiator must know the responder's static key")
        self.initiator = initiator
        self.psk = psk
        self._s = _static_key(static_private)
        self._s_pub = self._s.public_key().public_bytes_raw()
        self._ephemeral_private = ephemeral_private
        self._e_key: X25519PrivateKey | None = None
        self._e_pub_key = b""
        self.remote_static = remote_static
        self._re: bytes | None = None
        self._state = SymmetricState(IK_PSK2 if psk is not None else IK)
        self._state.mix_hash(prologue)
        responder_static = remote_static if initiator else self._s_pub
        assert responder_static is not None
        self._state.mix_hash(responder_static)
        self._step = 0

    @property
    def _e(self) -> X25519PrivateKey:
        return self._e_key or self._make_ephemeral()

    @property
    def _e_pub(self) -> bytes:
        if self._e_key is None:
            self._make_ephemeral()
        return self._e_pub_key

    def _make_ephemeral(self) -> X25519PrivateKey:
        """The ephemeral key, made when first needed: a responder needs it only for
        message 2, so an HS1 that fails (a forgery: free to send) costs no key
        generation, a scalar multiplication as dear as a DH."""
        self._e_key = key = (
            X25519PrivateKey.from_private_bytes(self._ephemeral_private)
            if self._ephemeral_private
            else X25519PrivateKey.generate()
        )
        self._e_pub_key = key.public_key().public_bytes_raw()
        return key

    # message 1: -> e, es, s, ss

    def write_message_1(self, payload: bytes) -> bytes:
        self._expect(0, initiator=True)
        assert self.remote_static is not None
        e_pub = self._e_pub
        state = self._state.copy()
        self._token_e(state, e_pub)
        state.mix_key(_dh(self._e, self.remote_static))
        encrypted_s = state.encrypt_and_hash(self._s_pub)
        state.mix_key(_dh(self._s, self.remote_static))
        message = e_pub + encrypted_s + state.encrypt_and_hash(payload)
        self._state, self._step = state, 1
        return message

    def read_message_1(self, message: bytes) -> bytes:
        self._expect(0, initiator=False)
        message = bytes(message)
        if len(message) < MSG1_OVERHEAD:
            raise HandshakeFailed("handshake message 1 too short")
        # every step works on a copy, kept only when the whole message authenticated:
        # a forged or damaged message leaves the handshake as it was
        state = self._state.copy()
        re = message[:DHLEN]
        self._token_e(state, re)
        state.mix_key(_dh(self._s, re))
        rs = state.decrypt_and_hash(message[DHLEN : 2 * DHLEN + TAGLEN])
        state.mix_key(_dh(self._s, rs))
        payload = state.decrypt_and_hash(message[2 * DHLEN + TAGLEN :])
        self._state, self._step = state, 1
        self._re = re
        self.remote_static = rs
        return payload

    # message 2: <- e, ee, se (, psk)

    def write_message_2(self, payload: bytes) -> bytes:
        self._expect(1, initiator=False)
        assert self._re is not None and self.remote_static is not None
        e_pub = self._e_pub
        state = self._state.copy()
        self._token_e(state, e_pub)
        state.mix_key(_dh(self._e, self._re))
        state.mix_key(_dh(self._e, self.remote_static))
        if self.psk is not None:
            state.mix_key_and_hash(self.psk)
        message = e_pub + state.encrypt_and_hash(payload)
        self._state, self._step = state, 2
        return message

    def read_message_2(self, message: bytes) -> bytes:
        self._expect(1, initiator=True)
        message = bytes(message)
        if len(message) < MSG2_OVERHEAD:
            raise HandshakeFailed("handshake message 2 too short")
        state = self._state.copy()  # kept only on success (see read_message_1)
        re = message[:DHLEN]
        self._token_e(state, re)
        state.mix_key(_dh(self._e, re))
        state.mix_key(_dh(self._s, re))
        if self.psk is not None:
            state.mix_key_and_hash(self.psk)
        payload = state.decrypt_and_hash(message[DHLEN:])
        self._state, self._step = state, 2
        self._re = re
        return payload

    def keys(self) -> TransportKeys:
        if self._step != 2:
            raise HandshakeFailed("handshake not finished")
        first, second = self._state.split()
        if self.initiator:
            return TransportKeys(first, second, self._state.h)
        return TransportKeys(second, first, self._state.h)

    @property
    def handshake_hash(self) -> bytes:
        return self._state.h

    def _token_e(self, state: SymmetricState, ephemeral_public: bytes) -> None:
        """The `e` token: hashed, and with a PSK also mixed into the key (Noise §9.2)."""
        state.mix_hash(ephemeral_public)
        if self.psk is not None:
            state.mix_key(ephemeral_public)

    def _expect(self, step: int, *, initiator: bool) -> None:
        if self._step != step or self.initiator != initiator:
            raise HandshakeFailed("handshake message out of order")
