"""Public entry point: flash one image onto one device, with ESPHome's retry rules.

Retries follow esphome PR #18332: only network failures, every resolved address once plus
two extra attempts, waiting between attempts that reached the device (it may still be
cleaning up the half-open session). A device-reported error is final, and so is any
failure after the whole image was sent (see ``OTAMaybeCommittedError``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
import logging
from pathlib import Path
import socket
import time
from typing import Any

from .channel import StreamChannel
from .const import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_DATA_TIMEOUT,
    DEFAULT_RETRY_DELAY,
    EXTRA_ATTEMPTS,
    OTAType,
)
from .errors import OTANetworkError, OTAResolveError, OTATimeoutError
from .noise import decode_noise_psk
from .payload import ImageSource, load_image
from .session import ProgressCallback, SessionOptions, SessionResult, run_session

_LOGGER = logging.getLogger(__name__)

#: How long a closing connection may take to flush before it is reset.
_CLOSE_TIMEOUT = 1.0

type _Address = tuple[socket.AddressFamily, tuple[Any, ...]]


@dataclass(frozen=True, slots=True)
class FlashResult:
    """What a successful upload did."""

    host: str
    port: int
    #: The resolved address that took the image.
    address: str
    #: Bytes that went over the air (the compressed size when ``compressed``).
    bytes_sent: int
    image_size: int
    #: Seconds from the first connection attempt to the device's final answer.
    duration: float
    compressed: bool
    encrypted: bool
    ota_version: int
    attempts: int


async def async_flash(
    host: str,
    port: int,
    image: bytes | Path,
    *,
    password: str | None = None,
    noise_psk: str | bytes | None = None,
    ota_type: OTAType = OTAType.APPLICATION,
    progress: ProgressCallback | None = None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    data_timeout: float = DEFAULT_DATA_TIMEOUT,
    retry_delay: float = DEFAULT_RETRY_DELAY,
) -> FlashResult:
    """Upload ``image`` to the ESPHome device at ``host``:``port`` over native OTA.

    ``noise_psk`` is the device's API encryption key (base64 ``str`` as in YAML, or the
    32 raw bytes); with a key the upload is encrypted or refused, never plaintext.
    ``progress(acknowledged_bytes, total_bytes)`` is called from the event loop; it starts
    again at 0 if an attempt is retried. ``connect_timeout`` bounds connecting and every
    handshake read, ``data_timeout`` every read and write of the data phase.
    Raises an ``OTAError`` subclass on failure.
    """
    psk = None if noise_psk is None else decode_noise_psk(noise_psk)
    source = ImageSource(await load_image(image))
    options = SessionOptions(password, psk, OTAType(ota_type), data_timeout, progress)
    addresses = await _resolve(host, port, connect_timeout)
    total_attempts = len(addresses) + EXTRA_ATTEMPTS
    started = time.monotonic()
    last_error: OTANetworkError | None = None
    reached_device = False
    for attempt in range(total_attempts):
        family, sockaddr = addresses[attempt % len(addresses)]
        if reached_device or attempt >= len(addresses):
            _LOGGER.info(
                "Retrying OTA to %s in %g s (attempt %d of %d)",
                host,
                retry_delay,
                attempt + 1,
                total_attempts,
            )
            await asyncio.sleep(retry_delay)
        reached_device = False
        try:
            reader, writer = await _connect(family, sockaddr, connect_timeout)
        except OTANetworkError as err:
            _LOGGER.warning("Connecting to %s port %s failed: %s", sockaddr[0], port, err)
            last_error = err
            continue
        reached_device = True
        try:
            result = await run_session(
                StreamChannel(reader, writer, connect_timeout), source, options
            )
        except OTANetworkError as err:
            _LOGGER.warning("OTA upload to %s failed: %s", sockaddr[0], err)
            last_error = err
            continue
        finally:
            await _close(writer)
        return _flash_result(host, port, sockaddr[0], source, result, started, attempt + 1)
    assert last_error is not None  # the loop runs at least once and only continues on errors
    raise type(last_error)(
        f"{last_error} (gave up after {total_attempts} attempts)"
    ) from last_error


def _flash_result(
    host: str,
    port: int,
    address: str,
    source: ImageSource,
    result: SessionResult,
    started: float,
    attempts: int,
) -> FlashResult:
    return FlashResult(
        host=host,
        port=port,
        address=address,
        bytes_sent=result.bytes_sent,
        image_size=len(source.image),
        duration=time.monotonic() - started,
        compressed=result.compressed,
        encrypted=result.encrypted,
        ota_version=result.version,
        attempts=attempts,
    )


async def _resolve(host: str, port: int, timeout: float) -> list[_Address]:
    """Resolve once; every address found gets its own attempt."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError) as err:
        raise OTAResolveError(f"cannot resolve {host}: {err}") from err
    addresses: list[_Address] = []
    for family, _type, _proto, _canonname, sockaddr in infos:
        if (family, sockaddr) not in addresses:
            addresses.append((family, sockaddr))
    return addresses


async def _connect(
    family: socket.AddressFamily, sockaddr: tuple[Any, ...], timeout: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open one resolved address (asyncio turns TCP_NODELAY on, as the protocol wants)."""
    try:
        async with asyncio.timeout(timeout):
            return await asyncio.open_connection(sockaddr[0], sockaddr[1], family=family)
    except TimeoutError:
        raise OTATimeoutError(f"no connection within {timeout:g} s") from None
    except OSError as err:
        raise OTANetworkError(f"cannot connect: {err.strerror or err}") from err


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close gracefully so the final ack gets out; reset if the device stopped reading."""
    writer.close()
    try:
        async with asyncio.timeout(_CLOSE_TIMEOUT):
            await writer.wait_closed()
    except (OSError, TimeoutError):
        writer.transport.abort()
