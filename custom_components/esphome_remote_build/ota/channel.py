"""The byte pipe of one OTA connection: plain TCP, or Noise frames on top of it.

The session speaks to a ``Channel`` and never learns which one it has, so after the
handshake not a single byte can slip out unencrypted. Every socket failure, closed
connection and timeout becomes an ``OTANetworkError`` here, at the one place that
touches the streams.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from .const import (
    NOISE_FRAME_HEADER_SIZE,
    NOISE_FRAME_INDICATOR,
    NOISE_HANDSHAKE_OK,
    NOISE_MAC_FAILURE_REASON,
    NOISE_MAX_PLAINTEXT,
)
from .errors import OTAEncryptionError, OTAEncryptionKeyError, OTANetworkError, OTATimeoutError
from .noise import NoiseInitiator


class Channel(Protocol):
    """What the session needs from a connection."""

    timeout: float

    async def read_exactly(self, size: int, *, timeout: float | None = None) -> bytes:
        """Return exactly ``size`` bytes; ``timeout`` overrides the phase timeout once."""

    async def send(self, data: bytes) -> None:
        """Send one protocol unit (one field, or one upload block)."""


class StreamChannel:
    """Plain TCP on asyncio streams, with a per-operation timeout like a socket timeout."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.timeout = timeout

    async def read_exactly(self, size: int, *, timeout: float | None = None) -> bytes:
        """Read ``size`` bytes, mapping a closed, reset or silent link to a network error."""
        limit = self.timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(limit):
                return await self._reader.readexactly(size)
        except asyncio.IncompleteReadError:
            raise OTANetworkError("the device closed the connection") from None
        except TimeoutError:
            raise OTATimeoutError(f"the device did not answer within {limit:g} s") from None
        except OSError as err:
            raise OTANetworkError(f"connection error while receiving: {err}") from err

    async def send(self, data: bytes) -> None:
        """Write and wait until the kernel took the bytes (bounded by the timeout)."""
        try:
            self._writer.write(data)
            async with asyncio.timeout(self.timeout):
                await self._writer.drain()
        except TimeoutError:
            raise OTATimeoutError(
                f"the device did not take data within {self.timeout:g} s"
            ) from None
        except OSError as err:
            raise OTANetworkError(f"connection error while sending: {err}") from err


def _frame(payload: bytes) -> bytes:
    return bytes([NOISE_FRAME_INDICATOR]) + len(payload).to_bytes(2, "big") + payload


async def _read_frame(raw: StreamChannel, timeout: float | None = None) -> bytes:
    header = await raw.read_exactly(NOISE_FRAME_HEADER_SIZE, timeout=timeout)
    if header[0] != NOISE_FRAME_INDICATOR:
        raise OTANetworkError(f"bad encrypted frame indicator 0x{header[0]:02X}")
    length = int.from_bytes(header[1:], "big")
    if length == 0:
        raise OTANetworkError("the device sent an empty encrypted frame")
    return await raw.read_exactly(length, timeout=timeout)


class NoiseChannel:
    """Noise transport: every ``send`` is its own frames, data split at 1024 plaintext bytes.

    The device reads each control field as exactly one frame, so a field must never be
    merged with another or split; only upload blocks span several frames.
    """

    def __init__(self, raw: StreamChannel, cipher: NoiseInitiator) -> None:
        self._raw = raw
        self._cipher = cipher
        self._buffer = b""

    @property
    def timeout(self) -> float:
        """The phase timeout of the underlying connection."""
        return self._raw.timeout

    @timeout.setter
    def timeout(self, value: float) -> None:
        self._raw.timeout = value

    async def read_exactly(self, size: int, *, timeout: float | None = None) -> bytes:
        """Return ``size`` decrypted bytes, reading as many frames as that takes."""
        while len(self._buffer) < size:
            self._buffer += self._cipher.decrypt(await _read_frame(self._raw, timeout))
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    async def send(self, data: bytes) -> None:
        """Encrypt ``data`` into frames of at most 1024 plaintext bytes and send them at once."""
        frames = b"".join(
            _frame(self._cipher.encrypt(data[offset : offset + NOISE_MAX_PLAINTEXT]))
            for offset in range(0, len(data), NOISE_MAX_PLAINTEXT)
        )
        await self._raw.send(frames)


async def noise_handshake(raw: StreamChannel, cipher: NoiseInitiator) -> NoiseChannel:
    """Run the two-message handshake and return the encrypted channel.

    A refusal from the device (a non-zero status and a reason text) is the device's verdict
    and is not retried; a transport failure on the way stays a network error.
    """
    await raw.send(_frame(bytes([NOISE_HANDSHAKE_OK]) + cipher.first_message()))
    payload = await _read_frame(raw)
    if payload[0] != NOISE_HANDSHAKE_OK:
        reason = payload[1:].decode("utf-8", "replace")
        if reason == NOISE_MAC_FAILURE_REASON:
            raise OTAEncryptionKeyError(
                f"the device rejected our encryption key ({reason}); is the key correct?"
            )
        raise OTAEncryptionError(f"the device rejected the encrypted handshake: {reason}")
    cipher.read_answer(payload[1:])
    return NoiseChannel(raw, cipher)
