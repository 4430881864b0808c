"""A deliberately tiny raw offloader (Noise XX initiator) used to validate the receiver double.

It is independent of the integration's client on purpose: it only does what docs/protocol.md
§3 says, step by step, and exposes every wire message so tests can compare bytes.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
import hashlib
import json
from typing import Any
import warnings

import aiohttp
from noise.connection import Keypair, NoiseConnection

from tests.support.receiver_double import (
    CHUNK_SIZE,
    NOISE_PROTOCOL_NAME,
    encode_json,
    new_private_key,
    pin_for_public_key,
    public_key_for,
)


class PinMismatchError(Exception):
    """The responder's key is not the one the test expected (msg3 was not sent)."""


class ClosedError(Exception):
    """The WebSocket closed while a frame was expected."""


@dataclass
class Offloader:
    """A test offloader identity: static key + dashboard_id."""

    static_private: bytes = field(default_factory=new_private_key)
    dashboard_id: str = "dash_board-ID0123456789abcdefABCD"

    @property
    def pin(self) -> str:
        return pin_for_public_key(public_key_for(self.static_private))


@dataclass
class Transcript:
    msg1: bytes = b""
    msg2: bytes = b""
    msg3: bytes = b""
    response: bytes = b""


class RawInitiator:
    """One WebSocket connection driven by hand."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, noise: Any) -> None:
        self.ws = ws
        self.noise = noise
        self.transcript = Transcript()
        self.server_pin = ""
        self.response: dict[str, Any] = {}
        self.seen: list[dict[str, Any]] = []

    @classmethod
    async def open(
        cls,
        http: aiohttp.ClientSession,
        url: str,
        offloader: Offloader,
        *,
        intent: str = "peer_link",
        msg3: Mapping[str, Any] | bytes | None = None,
        msg1_payload: bytes | None = None,
        ephemeral_private: bytes | None = None,
        expected_pin: str | None = None,
        timeout: float = 5.0,
    ) -> RawInitiator:
        """Handshake and read the intent response (raises PinMismatchError before msg3)."""
        noise = NoiseConnection.from_name(NOISE_PROTOCOL_NAME)
        noise.set_as_initiator()
        noise.set_keypair_from_private_bytes(Keypair.STATIC, offloader.static_private)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if ephemeral_private is not None:
                noise.set_keypair_from_private_bytes(Keypair.EPHEMERAL, ephemeral_private)
            noise.start_handshake()
        state = noise.noise_protocol.handshake_state
        ws = await http.ws_connect(url)
        conn = cls(ws, noise)
        try:
            payload1 = msg1_payload if msg1_payload is not None else encode_json({"intent": intent})
            conn.transcript.msg1 = bytes(noise.write_message(payload1))
            await ws.send_bytes(conn.transcript.msg1)
            conn.transcript.msg2 = await conn.recv_raw(timeout)
            noise.read_message(conn.transcript.msg2)
            conn.server_pin = pin_for_public_key(bytes(state.rs.public_bytes))
            if expected_pin is not None and expected_pin != conn.server_pin:
                raise PinMismatchError(conn.server_pin)
            if msg3 is None:
                msg3 = {"dashboard_id": offloader.dashboard_id} if intent != "preview" else b""
            payload3 = msg3 if isinstance(msg3, bytes) else encode_json(msg3)
            conn.transcript.msg3 = bytes(noise.write_message(payload3))
            await ws.send_bytes(conn.transcript.msg3)
            conn.transcript.response = await conn.recv_raw(timeout)
            conn.response = json.loads(noise.decrypt(conn.transcript.response))
        except BaseException:
            await ws.close()
            raise
        return conn

    async def recv_raw(self, timeout: float = 5.0) -> bytes:
        msg = await self.ws.receive(timeout=timeout)
        if msg.type is not aiohttp.WSMsgType.BINARY:
            raise ClosedError(msg.type)
        return bytes(msg.data)

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        frame: dict[str, Any] = json.loads(self.noise.decrypt(await self.recv_raw(timeout)))
        self.seen.append(frame)
        return frame

    async def recv_type(self, frame_type: str, timeout: float = 5.0) -> dict[str, Any]:
        """Next frame of `frame_type`, skipping (but keeping in `seen`) anything else."""
        async with asyncio.timeout(timeout):
            while (frame := await self.recv()).get("type") != frame_type:
                pass
        return frame

    async def recv_until_closed(self, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Every frame up to the close, which must come within `timeout`."""
        frames: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout):
            while True:
                try:
                    frames.append(await self.recv(timeout))
                except ClosedError:
                    return frames

    async def send(self, frame: Mapping[str, Any]) -> None:
        await self.send_plaintext(encode_json(frame))

    async def send_plaintext(self, data: bytes) -> None:
        await self.ws.send_bytes(self.noise.encrypt(data))

    async def close(self) -> None:
        await self.ws.close()

    # -- protocol helpers

    async def upload(
        self, job_id: str, bundle: bytes, *, configuration_filename: str = "dev.yaml"
    ) -> dict[str, Any]:
        """Header + chunks exactly as §5.5 prescribes; returns the ack."""
        slices = [bundle[i : i + CHUNK_SIZE] for i in range(0, len(bundle), CHUNK_SIZE)]
        await self.send(
            {
                "type": "submit_job",
                "job_id": job_id,
                "configuration_filename": configuration_filename,
                "target": "compile",
                "total_bundle_bytes": len(bundle),
                "num_chunks": len(slices),
                "bundle_sha256": hashlib.sha256(bundle).hexdigest(),
            }
        )
        for index, raw in enumerate(slices):
            await self.send(
                chunk_frame("submit_job_chunk", job_id, index, raw, index == len(slices) - 1)
            )
        return await self.recv_type("submit_job_ack")

    async def download(
        self, job_id: str
    ) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
        """Request artifacts and collect start, chunks and end (other frames go to `seen`)."""
        await self.send({"type": "download_artifacts", "job_id": job_id})
        start: dict[str, Any] = {}
        chunks: list[dict[str, Any]] = []
        while True:
            frame = await self.recv()
            match frame.get("type"):
                case "artifacts_start":
                    start = frame
                case "artifacts_chunk":
                    chunks.append(frame)
                case "artifacts_end":
                    return start, chunks, frame


def chunk_frame(
    frame_type: str, job_id: str, index: int, raw: bytes, is_last: bool
) -> dict[str, Any]:
    return {
        "type": frame_type,
        "job_id": job_id,
        "chunk_index": index,
        "data_b64": base64.b64encode(raw).decode("ascii"),
        "is_last": is_last,
    }


def reassemble(chunks: list[dict[str, Any]]) -> bytes:
    return b"".join(base64.b64decode(c["data_b64"]) for c in chunks)
