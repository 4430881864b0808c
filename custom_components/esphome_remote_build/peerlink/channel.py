"""One WebSocket connection, one Noise handshake, one intent — and the frames after it.

``open_channel`` dials, runs the handshake (pin checked before msg3) and reads the intent
response; the returned :class:`Channel` then carries encrypted JSON app frames, one per
binary WebSocket message, with encrypt-and-send serialised so nonces stay in order.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
import logging
from typing import Any

import aiohttp
from yarl import URL

from . import frames
from .errors import CannotConnectError, NoPeerLinkError, ProtocolError
from .frames import Intent, IntentResponseFrame
from .identity import Identity
from .noise import NoiseInitiator

_LOGGER = logging.getLogger(__name__)

PEER_LINK_PATH = "/remote-build/peer-link"
HANDSHAKE_STEP_TIMEOUT = 10.0
CONNECT_TIMEOUT = 10.0


def peer_link_url(host: str, port: int) -> URL:
    """Build the endpoint URL; yarl brackets IPv6 literals and refuses path injection."""
    return URL.build(scheme="ws", host=host, port=port, path=PEER_LINK_PATH)


class ConnectionClosedError(CannotConnectError):
    """The server closed the WebSocket."""

    reason = "connection_closed"


@dataclass(slots=True)
class Channel:
    """The encrypted app-frame pipe of one connection."""

    ws: aiohttp.ClientWebSocketResponse
    noise: NoiseInitiator
    remote_pin: str
    _send_lock: asyncio.Lock

    async def send(self, frame: object) -> None:
        """Encrypt and send one frame; the lock keeps nonce order equal to wire order."""
        plaintext = frames.encode(frame)
        async with self._send_lock:
            ciphertext = self.noise.encrypt(plaintext)
            try:
                await self.ws.send_bytes(ciphertext)
            except (aiohttp.ClientError, ConnectionError, RuntimeError) as err:
                raise ConnectionClosedError("could not send to the server") from err

    async def receive(self, timeout: float | None = None) -> dict[str, Any]:
        """Return the next decrypted frame as a JSON object."""
        data = await _receive_binary(self.ws, timeout)
        return frames.decode_object(self.noise.decrypt(data))

    async def close(self) -> None:
        """Close the WebSocket; never raises."""
        try:
            await self.ws.close()
        except (aiohttp.ClientError, ConnectionError, RuntimeError):  # pragma: no cover
            _LOGGER.debug("error while closing the peer-link socket", exc_info=True)


async def _receive_binary(ws: aiohttp.ClientWebSocketResponse, timeout: float | None) -> bytes:
    try:
        if timeout is None:  # the session's hot path: no timer per frame
            msg = await ws.receive()
        else:
            async with asyncio.timeout(timeout):
                msg = await ws.receive()
    except TimeoutError as err:
        raise CannotConnectError("the server did not answer in time") from err
    except (aiohttp.ClientError, ConnectionError) as err:  # pragma: no cover - aiohttp wraps
        raise ConnectionClosedError("connection to the server broke") from err
    if msg.type is aiohttp.WSMsgType.BINARY:
        data: bytes = msg.data
        return data
    if msg.type is aiohttp.WSMsgType.TEXT:
        raise ProtocolError("the server sent a text frame")
    if msg.type is aiohttp.WSMsgType.ERROR:
        raise ProtocolError(f"websocket error: {msg.data}")
    raise ConnectionClosedError("the server closed the connection")


async def open_channel(
    session: aiohttp.ClientSession,
    host: str,
    port: int,
    identity: Identity,
    intent: Intent,
    payload: dict[str, object] | None,
    expected_pin: str | None,
    *,
    max_msg_size: int,
    response_timeout: float | None = HANDSHAKE_STEP_TIMEOUT,
    ephemeral_private_key: bytes | None = None,
) -> tuple[Channel, IntentResponseFrame]:
    """Connect, run the handshake for ``intent`` and return the channel and the response.

    On any failure the socket is closed before the exception leaves.
    """
    try:
        ws = await asyncio.wait_for(
            session.ws_connect(
                peer_link_url(host, port), max_msg_size=max_msg_size, heartbeat=None, compress=0
            ),
            CONNECT_TIMEOUT,
        )
    except aiohttp.WSServerHandshakeError as err:
        # Something answered HTTP at that address, but not with the peer link: a Device
        # Builder too old to have it, ESPHome's old dashboard, or the dashboard's own port.
        raise NoPeerLinkError(
            f"{host}:{port} answered HTTP {err.status}, not the peer link"
        ) from err
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as err:
        raise CannotConnectError(f"cannot connect to {host}:{port}: {err}") from err
    noise = NoiseInitiator(identity.private_key, ephemeral_private_key=ephemeral_private_key)
    channel: Channel | None = None
    try:
        await ws.send_bytes(noise.message1(frames.encode({"intent": intent.value})))
        msg2 = await _receive_binary(ws, HANDSHAKE_STEP_TIMEOUT)
        remote_pin = noise.read_message2(msg2, expected_pin)
        body = b"" if payload is None else frames.encode(payload)
        await ws.send_bytes(noise.message3(body))
        channel = Channel(ws, noise, remote_pin, asyncio.Lock())
        response = frames.parse_intent_response(await channel.receive(response_timeout))
    except (aiohttp.ClientError, ConnectionError) as err:
        await ws.close()
        raise ConnectionClosedError("connection to the server broke") from err
    except BaseException:
        await ws.close()
        raise
    return channel, response
