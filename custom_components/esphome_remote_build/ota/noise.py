"""Sans-IO Noise initiator of the encrypted OTA session.

Kept apart from the stream code so the crypto can be tested without sockets, the way
aioesphomeapi splits its Noise helper from its connection. Pattern, prologue and framing
follow ``espota2.NoiseSocketWrapper`` (ESPHome 2026.10) byte for byte.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import InvalidTag
from noise.connection import NoiseConnection
from noise.exceptions import NoiseInvalidMessage, NoiseValueError

from .const import (
    MAGIC,
    NOISE_PROLOGUE_INIT,
    NOISE_PROTOCOL_NAME,
    NOISE_PSK_SIZE,
    ClientFeature,
    Response,
)
from .errors import OTAEncryptionKeyError, OTAInvalidKeyError, OTANetworkError


def decode_noise_psk(psk: str | bytes) -> bytes:
    """Return the 32 raw key bytes of an API encryption key.

    A ``str`` is the base64 form ESPHome YAML and Home Assistant's ``esphome`` integration
    store; ``bytes`` are taken as the raw key. Decoding is strict: a typo must not turn
    into a different key that only fails at the device.
    """
    if isinstance(psk, bytes):
        raw = psk
    else:
        try:
            raw = base64.b64decode(psk.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise OTAInvalidKeyError("the encryption key is not valid base64") from None
    if len(raw) != NOISE_PSK_SIZE:
        raise OTAInvalidKeyError(
            f"the encryption key must be {NOISE_PSK_SIZE} bytes, got {len(raw)}"
        )
    return raw


def build_prologue(version: int, client_features: ClientFeature, server_flags: int) -> bytes:
    """Bind every plaintext negotiation byte both sides saw into the handshake.

    Tampering with the preamble (a stripped flag, a changed version) then breaks the
    first handshake MAC instead of silently weakening the session.
    """
    return (
        NOISE_PROLOGUE_INIT
        + MAGIC
        + bytes([Response.OK, version, client_features])
        + bytes([Response.FEATURE_FLAGS, server_flags])
    )


class NoiseInitiator:
    """Drives ``Noise_NNpsk0_25519_ChaChaPoly_SHA256`` as initiator, then the transport ciphers."""

    def __init__(self, psk: bytes, prologue: bytes) -> None:
        proto = NoiseConnection.from_name(NOISE_PROTOCOL_NAME)
        proto.set_as_initiator()
        proto.set_psks(psk)
        proto.set_prologue(prologue)
        proto.start_handshake()
        self._proto = proto

    def first_message(self) -> bytes:
        """Return the initiator's handshake message (``psk, e``)."""
        return bytes(self._proto.write_message())

    def read_answer(self, message: bytes) -> None:
        """Process the responder's message (``e, ee``); a failure means another key."""
        try:
            self._proto.read_message(message)
        except (InvalidTag, NoiseValueError, ValueError) as err:
            raise OTAEncryptionKeyError(
                "the encrypted handshake failed; is the encryption key correct?"
            ) from err

    def encrypt(self, plaintext: bytes) -> bytes:
        """Encrypt one frame's payload."""
        return bytes(self._proto.encrypt(plaintext))

    def decrypt(self, ciphertext: bytes) -> bytes:
        """Decrypt one frame's payload.

        A bad MAC or an empty frame is a broken transport, not the device's verdict, so
        it is a network error and a fresh connection may succeed (as espota2 treats it).
        """
        try:
            plaintext = bytes(self._proto.decrypt(ciphertext))
        except NoiseInvalidMessage as err:
            raise OTANetworkError(
                "decrypting a frame from the device failed (corrupted or tampered)"
            ) from err
        if not plaintext:
            raise OTANetworkError("the device sent an empty encrypted frame")
        return plaintext
