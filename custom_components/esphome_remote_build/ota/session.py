"""One OTA attempt over an open connection, step by step as docs/ota.md describes it.

The order of checks is the safety contract: everything that can refuse the upload locally
(no Noise offered while a key is configured, partition access missing, no password for a
challenge) is decided before a single byte of the image leaves, and a failure after the
whole image was sent is reported as "may be committing" so nobody retries it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
import hashlib
import logging
import secrets

from .channel import Channel, StreamChannel, noise_handshake
from .const import (
    ACK_WINDOW,
    ERROR_PROBE_TIMEOUT,
    FIRST_ERROR_CODE,
    MAGIC,
    SIZE_FIELD_BYTES,
    SUPPORTED_VERSIONS,
    UPLOAD_BLOCK_SIZE,
    VERSION_WITH_BLOCK_ACKS,
    ClientFeature,
    OTAType,
    Response,
    ServerFeature,
)
from .errors import (
    OTAEncryptionUnavailableError,
    OTAMaybeCommittedError,
    OTANetworkError,
    OTAPasswordRequiredError,
    OTAProtocolError,
    OTAUnsupportedError,
    device_error,
)
from .noise import NoiseInitiator, build_prologue
from .payload import ImageSource

_LOGGER = logging.getLogger(__name__)

type ProgressCallback = Callable[[int, int], None]

# Challenge byte -> (hash, length of the nonces in hex characters)
_AUTH_SCHEMES: dict[int, tuple[str, int]] = {
    Response.REQUEST_MD5_AUTH: ("md5", 32),
    Response.REQUEST_SHA256_AUTH: ("sha256", 64),
}


@dataclass(frozen=True, slots=True)
class SessionOptions:
    """What the caller asked for; the same for every attempt."""

    password: str | None
    psk: bytes | None
    ota_type: OTAType
    data_timeout: float
    progress: ProgressCallback | None


@dataclass(frozen=True, slots=True)
class SessionResult:
    """What one successful attempt did."""

    version: int
    bytes_sent: int
    compressed: bool
    encrypted: bool


class _Session:
    """State of one attempt: the channel switches to Noise mid-way, the rest stays put."""

    def __init__(self, raw: StreamChannel, source: ImageSource, options: SessionOptions) -> None:
        self._raw = raw
        self._channel: Channel = raw
        self._source = source
        self._options = options
        self._features = (
            ClientFeature.COMPRESSION | ClientFeature.SHA256_AUTH | ClientFeature.EXTENDED_PROTOCOL
        )
        if options.psk is not None:
            self._features |= ClientFeature.NOISE

    async def run(self) -> SessionResult:
        version, extended, flags = await self._negotiate()
        encrypted = await self._secure(version, extended, flags)
        self._check_ota_type(extended, flags)
        await self._authenticate()

        self._channel.timeout = self._options.data_timeout
        payload = await self._source.payload(compress=bool(flags & ServerFeature.COMPRESSION))
        if extended:
            await self._channel.send(bytes([self._options.ota_type]))
        await self._channel.send(len(payload.data).to_bytes(SIZE_FIELD_BYTES, "big"))
        await self._response("the upload size", Response.UPDATE_PREPARE_OK)
        await self._channel.send(payload.md5_hex.encode("ascii"))
        await self._response("the upload checksum", Response.BIN_MD5_OK)
        await self._upload(payload.data, version)
        await self._finish()
        return SessionResult(version, len(payload.data), payload.compressed, encrypted)

    async def _response(self, what: str, *expected: Response) -> int:
        """Read one answer byte; error codes become the device's typed error."""
        value = (await self._channel.read_exactly(1))[0]
        if value >= FIRST_ERROR_CODE:
            raise device_error(value)
        if value not in expected:
            raise OTAProtocolError(f"unexpected answer 0x{value:02X} to {what}")
        return value

    async def _negotiate(self) -> tuple[int, bool, int]:
        """Magic, version and feature exchange; returns (version, extended, server flags)."""
        await self._channel.send(MAGIC)
        await self._response("the magic bytes", Response.OK)
        version = (await self._channel.read_exactly(1))[0]
        if version not in SUPPORTED_VERSIONS:
            raise OTAProtocolError(f"the device speaks OTA protocol version {version}")
        await self._channel.send(bytes([self._features]))
        answer = await self._response(
            "the feature negotiation",
            Response.FEATURE_FLAGS,
            Response.SUPPORTS_COMPRESSION,
            Response.HEADER_OK,
        )
        if answer == Response.FEATURE_FLAGS:
            return version, True, (await self._channel.read_exactly(1))[0]
        if answer == Response.SUPPORTS_COMPRESSION:
            return version, False, ServerFeature.COMPRESSION
        return version, False, 0

    async def _secure(self, version: int, extended: bool, flags: int) -> bool:
        """Switch to Noise when we hold a key; refuse plaintext if the device cannot."""
        if self._options.psk is None:
            return False
        if not (extended and flags & ServerFeature.NOISE):
            raise OTAEncryptionUnavailableError(
                "an encryption key is configured but the device does not offer encrypted "
                "OTA; refusing to send the image (it holds Wi-Fi credentials and keys) in "
                "plaintext. Update the device once with a firmware that offers encryption"
            )
        cipher = NoiseInitiator(self._options.psk, build_prologue(version, self._features, flags))
        self._channel = await noise_handshake(self._raw, cipher)
        _LOGGER.debug("Encrypted OTA session established")
        return True

    def _check_ota_type(self, extended: bool, flags: int) -> None:
        ota_type = self._options.ota_type
        if ota_type is OTAType.APPLICATION:
            return
        if not (extended and flags & ServerFeature.PARTITION_ACCESS):
            raise OTAUnsupportedError(
                f"the device does not allow {ota_type.name.lower().replace('_', ' ')} "
                "updates over the air; its firmware needs 'allow_partition_access: true' "
                "in the esphome OTA platform (ESP32 only)"
            )

    async def _authenticate(self) -> None:
        challenge = await self._response(
            "the authentication request",
            Response.AUTH_OK,
            Response.REQUEST_MD5_AUTH,
            Response.REQUEST_SHA256_AUTH,
        )
        if challenge == Response.AUTH_OK:
            return
        if self._options.password is None:
            raise OTAPasswordRequiredError("the device requires an OTA password and none was given")
        algorithm, nonce_size = _AUTH_SCHEMES[challenge]
        first = await self._channel.read_exactly(1)
        if first[0] >= FIRST_ERROR_CODE:
            raise device_error(first[0])
        nonce = first + await self._channel.read_exactly(nonce_size - 1)
        cnonce = secrets.token_hex(nonce_size // 2).encode("ascii")
        await self._channel.send(cnonce)
        # The hash is the protocol's challenge response; MD5 only on devices that ask for it
        digest = hashlib.new(algorithm, usedforsecurity=False)
        digest.update(self._options.password.encode("utf-8") + nonce + cnonce)
        await self._channel.send(digest.hexdigest().encode("ascii"))
        await self._response("the password", Response.AUTH_OK)

    async def _upload(self, data: bytes, version: int) -> None:
        """Stream the payload; version 2 acknowledges every block and drives the progress.

        Up to ``ACK_WINDOW`` blocks travel before we wait for the oldest one's ack: the
        device acknowledges by bytes received, so sending the next block while an ack is
        on its way hides one round trip per block without changing what it sees.
        """
        total = len(data)
        progress = self._options.progress or _no_progress
        progress(0, total)
        acknowledged = version >= VERSION_WITH_BLOCK_ACKS
        unacked: deque[int] = deque()  # end offsets of blocks sent, not yet acknowledged
        for offset in range(0, total, UPLOAD_BLOCK_SIZE):
            end = min(offset + UPLOAD_BLOCK_SIZE, total)
            try:
                await self._channel.send(data[offset:end])
            except OTANetworkError:
                await self._raise_reported_error()
                raise
            if not acknowledged:
                progress(end, total)
                continue
            unacked.append(end)
            if len(unacked) >= ACK_WINDOW:
                await self._block_ack(unacked.popleft(), total, all_sent=end == total)
        while unacked:
            await self._block_ack(unacked.popleft(), total, all_sent=True)

    async def _block_ack(self, end: int, total: int, *, all_sent: bool) -> None:
        try:
            await self._response("an upload block", Response.CHUNK_OK)
        except OTANetworkError as err:
            if all_sent:
                raise _committing(err) from err
            raise
        (self._options.progress or _no_progress)(end, total)

    async def _raise_reported_error(self) -> None:
        """Surface an error byte the device may have sent just before our send failed."""
        try:
            answer = await self._channel.read_exactly(1, timeout=ERROR_PROBE_TIMEOUT)
        except OTANetworkError:
            return
        if answer[0] >= FIRST_ERROR_CODE:
            raise device_error(answer[0])

    async def _finish(self) -> None:
        try:
            await self._response("the end of the upload", Response.RECEIVE_OK)
            await self._response("the update", Response.UPDATE_END_OK)
        except OTANetworkError as err:
            raise _committing(err) from err
        try:
            await self._channel.send(bytes([Response.OK]))
        except OTANetworkError as err:
            # The device treats a missing final ack as harmless and reboots anyway
            _LOGGER.debug("Final acknowledgement not delivered: %s", err)


def _no_progress(_sent: int, _total: int) -> None:
    """Stand in for a missing progress callback."""


def _committing(err: OTANetworkError) -> OTAMaybeCommittedError:
    return OTAMaybeCommittedError(
        f"{err} after the whole image was sent; the device may be committing the update "
        "and rebooting. Wait for it to come back before uploading again"
    )


async def run_session(
    raw: StreamChannel, source: ImageSource, options: SessionOptions
) -> SessionResult:
    """Run one complete attempt on an open connection."""
    return await _Session(raw, source, options).run()
