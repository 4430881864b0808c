"""Sans-IO Noise XX initiator with the pin check between msg2 and msg3.

Kept free of sockets so the handshake is testable byte for byte against the protocol's
test vectors.  The one safety rule lives here: the responder's static key is checked
against the pin we trust *before* msg3 — the first message that carries anything about
us — is produced.
"""

from __future__ import annotations

from typing import Any

from cryptography.exceptions import InvalidTag
from noise.connection import Keypair, NoiseConnection
from noise.exceptions import NoiseInvalidMessage, NoiseValueError

from .errors import PinMismatchError, ProtocolError, SelfLoopbackError
from .identity import pin_sha256_for_pubkey

NOISE_PROTOCOL = b"Noise_XX_25519_ChaChaPoly_SHA256"
_NOISE_ERRORS = (InvalidTag, NoiseInvalidMessage, NoiseValueError, ValueError)


class NoiseInitiator:
    """One handshake plus the transport cipher states that follow it."""

    def __init__(self, private_key: bytes, *, ephemeral_private_key: bytes | None = None) -> None:
        self._conn = NoiseConnection.from_name(NOISE_PROTOCOL)
        self._conn.set_as_initiator()
        self._conn.set_keypair_from_private_bytes(Keypair.STATIC, private_key)
        if ephemeral_private_key is not None:  # fixed ephemeral keys: test vectors only
            self._conn.set_keypair_from_private_bytes(Keypair.EPHEMERAL, ephemeral_private_key)
        self._conn.start_handshake()
        # noiseprotocol drops handshake_state once msg3 is written; keep our own reference.
        self._handshake: Any = self._conn.noise_protocol.handshake_state
        self._own_public = self._handshake.s.public_bytes
        self.remote_pin: str | None = None

    def message1(self, payload: bytes) -> bytes:
        """Return ``-> e`` with the plaintext intent payload."""
        return bytes(self._conn.write_message(payload))

    def read_message2(self, message: bytes, expected_pin: str | None) -> str:
        """Read ``<- e, ee, s, es``, learn the server's pin and enforce it.

        ``expected_pin`` is ``None`` only for ``preview``, whose purpose is to learn the pin.
        """
        try:
            self._conn.read_message(message)
        except _NOISE_ERRORS as err:
            raise ProtocolError("handshake message 2 is invalid") from err
        remote_static = bytes(self._handshake.rs.public_bytes)
        if remote_static == self._own_public:
            raise SelfLoopbackError("the server presented our own key: we dialled ourselves")
        pin = pin_sha256_for_pubkey(remote_static)
        if expected_pin is not None and pin != expected_pin:
            raise PinMismatchError(expected_pin, pin)
        self.remote_pin = pin
        return pin

    def message3(self, payload: bytes) -> bytes:
        """Return ``-> s, se`` carrying the (encrypted) intent details."""
        if self.remote_pin is None:
            raise RuntimeError("message 3 before the server's key was checked")
        return bytes(self._conn.write_message(payload))

    def encrypt(self, plaintext: bytes) -> bytes:
        """Encrypt one transport message (the nonce counter is implicit)."""
        return bytes(self._conn.encrypt(plaintext))

    def decrypt(self, ciphertext: bytes) -> bytes:
        """Decrypt one transport message; any failure breaks the session."""
        try:
            return bytes(self._conn.decrypt(ciphertext))
        except _NOISE_ERRORS as err:
            raise ProtocolError("could not decrypt a frame from the server") from err
