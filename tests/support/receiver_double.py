"""An in-process stand-in for an ESPHome Device Builder build server (the peer-link receiver).

Written from the protocol description (docs/protocol.md) alone, independently of the client, so
client tests check the client against the wire protocol and not against the client's own
assumptions. It speaks the real protocol (WebSocket + Noise XX responder + JSON app
frames), keeps a receiver-like peer table and job queue, records everything it sees and
exposes explicit fault hooks so tests can make it misbehave in precise, repeatable ways.

Usage::

    async with ReceiverDouble(friendly_name="build-box") as rd:
        rd.add_peer(identity.dashboard_id, identity.pin_sha256)
        ...connect a client to rd.host / rd.port, expect pin rd.pin...
        session = await rd.wait_session()
        await session.send_frame({"type": "queue_status", "idle": True, "running": False,
                                  "queue_depth": "3"})

Every timer (ping interval, liveness, handshake, job steps) is a constructor argument or
a field of a fault/script dataclass so tests run in milliseconds.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Callable, Coroutine, Mapping
import contextlib
from dataclasses import dataclass, field
import enum
import hashlib
import hmac
import json
import re
import secrets
from types import TracebackType
from typing import Any, Final, Self, TypeGuard
import warnings

from aiohttp import WSCloseCode, WSMsgType, web
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from noise.connection import Keypair, NoiseConnection

PEER_LINK_PATH: Final = "/remote-build/peer-link"
NOISE_PROTOCOL_NAME: Final = b"Noise_XX_25519_ChaChaPoly_SHA256"
APP_FRAME_MAX_BYTES: Final = 61_440
CHUNK_SIZE: Final = 32_768
BUNDLE_MAX_TOTAL_BYTES: Final = 128 * 1024 * 1024
LABEL_MAX_CHARS: Final = 128
PAIRING_KEY_MAX_CHARS: Final = 256
PAIRING_KEY_ALPHABET: Final = "ABCDEFGHJKMNPQRSTVWXYZ23456789"
AEAD_TAG_BYTES: Final = 16

_DASHBOARD_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_PAIRING_KEY_STRIP_RE: Final = re.compile(r"[^0-9A-Z]")
_CLOSED_TYPES: Final = frozenset({WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED})
_SUBMIT_HEADER_FIELDS: Final[Mapping[str, type]] = {
    "job_id": str,
    "configuration_filename": str,
    "target": str,
    "total_bundle_bytes": int,
    "num_chunks": int,
    "bundle_sha256": str,
}
_SUBMIT_CHUNK_FIELDS: Final[Mapping[str, type]] = {
    "job_id": str,
    "chunk_index": int,
    "data_b64": str,
    "is_last": bool,
}
_BUILD_TARGETS: Final = frozenset({"compile", "clean"})
_DASHBOARD_INTENTS: Final = frozenset({"pair_request", "pair_status", "peer_link"})


class IntentResponse(enum.StrEnum):
    """Values of `intent_response` (§3.4)."""

    OK = "ok"
    APPROVED = "approved"
    PENDING = "pending"
    REJECTED = "rejected"
    NO_PAIRING_WINDOW = "no_pairing_window"


class RejectReason(enum.StrEnum):
    """Values of the intent response `reason` the receiver role can produce (§3.4)."""

    NO_APPROVED_PEER = "no_approved_peer"
    PIN_MISMATCH = "pin_mismatch"
    PENDING_NOT_APPROVED = "pending_not_approved"
    BAD_DASHBOARD_ID = "bad_dashboard_id"
    BAD_INTENT = "bad_intent"


class TerminateReason(enum.StrEnum):
    """Reasons the receiver puts in `terminate` frames (§5.3)."""

    SUPERSEDED = "superseded"
    HEARTBEAT_TIMEOUT = "heartbeat_timeout"
    SERVER_SHUTTING_DOWN = "server_shutting_down"
    MALFORMED_FRAME = "malformed_frame"


class PeerState(enum.StrEnum):
    """Row state in the receiver's peer table (§4.1)."""

    PENDING = "pending"
    APPROVED = "approved"


class JobStatus(enum.StrEnum):
    """`job_state_changed.status` values (§5.4)."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """Whether the job can no longer change state (cancel is then a no-op)."""
        return self in {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}


class HandshakeFault(enum.Enum):
    """Ways to break the Noise handshake, for the client's handshake error paths."""

    CLOSE_AFTER_MSG1 = enum.auto()
    """Close the WebSocket instead of sending msg2."""
    STALL_AFTER_MSG1 = enum.auto()
    """Never send msg2 (tests the client's msg2 timeout)."""
    GARBAGE_MSG2 = enum.auto()
    """Send 96 random bytes as msg2 (the client's Noise read must fail)."""
    CLOSE_AFTER_MSG3 = enum.auto()
    """Read msg3, then close without an intent response."""
    STALL_AFTER_MSG3 = enum.auto()
    """Read msg3, then never answer (tests the client's response timeout)."""
    GARBAGE_RESPONSE = enum.auto()
    """Send random bytes instead of the encrypted intent response."""


# --------------------------------------------------------------------------- helpers


def encode_json(obj: Mapping[str, Any]) -> bytes:
    """Serialise like the reference (orjson): compact, UTF-8, keys in insertion order."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def public_key_for(private_key: bytes) -> bytes:
    """Derive the raw X25519 public key (the pin is computed over these 32 bytes)."""
    return X25519PrivateKey.from_private_bytes(private_key).public_key().public_bytes_raw()


def pin_for_public_key(public_key: bytes) -> str:
    """Compute a pin the way §2.2 defines it: lowercase hex SHA-256 of the raw key."""
    return hashlib.sha256(public_key).hexdigest()


def new_private_key() -> bytes:
    """Make a fresh random X25519 private key (raw 32 bytes)."""
    return X25519PrivateKey.generate().private_bytes_raw()


def normalize_pairing_key(value: str) -> str:
    """Fold a typed pairing key the way the receiver compares it (§4.3)."""
    return _PAIRING_KEY_STRIP_RE.sub("", value.upper())


def generate_pairing_key() -> str:
    """Make a key in the printed `XXXX-XXXX-XXXX-XXXX` shape (§4.3)."""
    raw = "".join(secrets.choice(PAIRING_KEY_ALPHABET) for _ in range(16))
    return "-".join(raw[i : i + 4] for i in range(0, 16, 4))


def is_valid_dashboard_id(value: object) -> TypeGuard[str]:
    """Apply the wire rule of §2.3 (1-64 chars of `[A-Za-z0-9_-]`)."""
    return isinstance(value, str) and _DASHBOARD_ID_RE.fullmatch(value) is not None


def _normalize_label(value: object) -> str:
    """Receiver-side label rule: non-string -> "", strip, truncate (§2.4)."""
    return value.strip()[:LABEL_MAX_CHARS] if isinstance(value, str) else ""


def _has_type(value: object, expected: type) -> bool:
    """Strict JSON typing of §5.2: a bool is not an int, an int is not a bool."""
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def _matches(frame: Mapping[str, Any], fields: Mapping[str, type]) -> bool:
    """Check the required fields of a known frame type; extra fields are allowed."""
    return all(name in frame and _has_type(frame[name], kind) for name, kind in fields.items())


def _str_or_empty(frame: Mapping[str, Any], key: str) -> str:
    """Best-effort `job_id` echo for acks of frames that failed validation."""
    value = frame.get(key)
    return value if isinstance(value, str) else ""


def _valid_configuration_filename(name: str) -> bool:
    """Leaf `.yaml`/`.yml` name without separators or NUL (§5.5)."""
    if any(bad in name for bad in ("/", "\\", "\0")):
        return False
    stem, dot, ext = name.rpartition(".")
    return bool(dot) and ext.lower() in {"yaml", "yml"} and stem not in {"", ".", ".."}


# --------------------------------------------------------------------------- data


@dataclass
class PeerRow:
    """One row of the receiver's peer table, bound to the offloader pin at pairing time."""

    dashboard_id: str
    pin_sha256: str
    state: PeerState
    label: str = ""
    friendly_name: str = ""
    ha_addon: bool = False
    label_auto: bool = False
    connect_back_port: int = 0


@dataclass(frozen=True)
class Artifacts:
    """What a completed job serves on `download_artifacts`: the tarball and its offset."""

    tarball: bytes
    firmware_offset: str = "0x10000"


@dataclass
class JobScript:
    """How the double plays a build once a bundle was accepted.

    `hold` parks the job in `running` (after its output lines) until
    `ReceiverDouble.release_job` or a `cancel_job`, so a test can observe the running
    state without timing assumptions.
    """

    lines: list[str] = field(
        default_factory=lambda: [
            "INFO Reading configuration...\n",
            "Compiling .pioenvs/dev/src/main.cpp.o\r",
            "INFO Successfully compiled program.\n",
        ]
    )
    outcome: JobStatus = JobStatus.COMPLETED
    error_message: str = ""
    failure_reason: str | None = None
    step_delay: float = 0.0
    hold: bool = False


@dataclass
class JobRecord:
    """A job as the receiver knows it; `bundle` holds the uploaded bytes verbatim."""

    dashboard_id: str
    job_id: str
    header: dict[str, Any]
    bundle: bytes
    script: JobScript
    status: JobStatus = JobStatus.QUEUED
    artifacts: Artifacts | None = None
    release: asyncio.Event = field(default_factory=asyncio.Event)
    cancel_requested: bool = False
    interrupt: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def is_reset(self) -> bool:
        """Whether this is a build-environment reset (§5.6), not a build."""
        return self.header.get("type") == "reset_build_env"

    @property
    def target_esphome_version(self) -> str:
        """The ESPHome version the build asked for (`""`: the server's own, §5.5)."""
        value = self.header.get("target_esphome_version")
        return value if isinstance(value, str) else ""


@dataclass
class DownloadFaults:
    """Ways to corrupt the next artifact streams (read when a stream starts).

    Chunk positions are 0-based positions in the real chunk sequence.
    """

    drop_after_chunk: int | None = None
    """Abort the TCP connection (no terminate, no close frame) after this chunk."""
    stall_after_chunk: int | None = None
    """Stop the stream after this chunk; the session (and pings) stay alive."""
    chunk_delay: float = 0.0
    """Pause before every chunk, so pings interleave and client chunk timers can fire."""
    wrong_sha256: bool = False
    """Declare a SHA-256 that does not match the tarball."""
    total_bytes_delta: int = 0
    """Declared `total_bytes` = real size + delta (chunks carry the real bytes)."""
    num_chunks_delta: int = 0
    """Declared `num_chunks` = real count + delta."""
    chunk_index_override: dict[int, int] = field(default_factory=dict)
    """Position -> `chunk_index` written on the wire (out-of-order indexes)."""
    duplicate_chunk: int | None = None
    """Send the chunk at this position twice."""
    is_last_early_at: int | None = None
    """Put `is_last: true` on this position instead of the final chunk."""
    omit_is_last: bool = False
    """Never set `is_last` (the final chunk says false)."""
    chunk_before_start: bool = False
    """Send chunk 0 once before `artifacts_start`."""
    omit_start: bool = False
    """Do not send `artifacts_start` at all."""
    extra_chunk_after_last: bool = False
    """Send one more chunk after the final one, before `artifacts_end`."""
    refusal: tuple[str, str | None] | None = None
    """Answer every otherwise valid request with artifacts_end{accepted:false, reason, detail}."""


@dataclass
class Faults:
    """Fault switches read at the point where they apply; replace or mutate at will."""

    handshake: HandshakeFault | None = None
    refuse_intent: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    """Intent -> (intent_response, reason) answered instead of the outcome matrix."""
    response_extra: dict[str, Any] = field(default_factory=dict)
    """Fields merged into every intent response (wrong types, extra keys, overrides)."""
    response_plaintext: bytes | None = None
    """Encrypt these bytes as the intent response instead of its JSON (valid JSON that a
    strict parser refuses, e.g. a 5000-digit integer, which `json.dumps` cannot write)."""
    ignore_pings: bool = False
    """Never answer the client's `ping` (exercises the client's liveness timer)."""
    withhold_submit_ack: bool = False
    reset_refusal: str | None = None
    """Refuse every `reset_build_env` with this reason (e.g. `not_ready`, §5.6)."""
    """Take a complete upload silently: no `submit_job_ack` (the client's ack timer)."""
    download: DownloadFaults = field(default_factory=DownloadFaults)


@dataclass
class ConnectionRecord:
    """Everything observed on one WebSocket connection (= one handshake = one intent)."""

    index: int
    remote: str | None
    msg1: bytes | None = None
    intent: str | None = None
    msg3_received: bool = False
    """True as soon as a message arrived in the msg3 slot, even if it failed to decrypt."""
    msg3_payload: dict[str, Any] | None = None
    offloader_pin: str | None = None
    response: dict[str, Any] | None = None
    received: list[dict[str, Any]] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    terminate_sent: str | None = None
    terminate_received: str | None = None
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def dashboard_id(self) -> str | None:
        """The `dashboard_id` the client claimed in msg3, if any."""
        value = self.msg3_payload.get("dashboard_id") if self.msg3_payload else None
        return value if isinstance(value, str) else None

    def received_of(self, frame_type: str) -> list[dict[str, Any]]:
        """Frames of one `type` the client sent on this connection, in order."""
        return [f for f in self.received if f.get("type") == frame_type]

    def sent_of(self, frame_type: str) -> list[dict[str, Any]]:
        """Frames of one `type` the double sent on this connection, in order."""
        return [f for f in self.sent if f.get("type") == frame_type]


@dataclass
class _Handshake:
    """Result of a completed responder handshake."""

    noise: Any
    intent: str | None
    msg3: dict[str, Any]
    pin: str


@dataclass
class _Upload:
    """An in-flight bundle upload on one session."""

    job_id: str
    header: dict[str, Any]
    total_bytes: int
    num_chunks: int
    sha256: str
    buffer: bytearray = field(default_factory=bytearray)
    next_index: int = 0


# --------------------------------------------------------------------------- session


class Session:
    """One accepted `peer_link` session; its methods are the on-demand fault injections."""

    def __init__(
        self,
        double: ReceiverDouble,
        ws: web.WebSocketResponse,
        request: web.Request,
        noise: Any,
        record: ConnectionRecord,
        dashboard_id: str,
    ) -> None:
        self.dashboard_id = dashboard_id
        self.record = record
        self._double = double
        self._ws = ws
        self._request = request
        self._noise = noise
        self._send_lock = asyncio.Lock()
        self._last_inbound = asyncio.get_running_loop().time()
        self._ping_nonce = 0
        self._upload: _Upload | None = None
        self._completed_upload: str | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._download: asyncio.Task[None] | None = None
        self._terminator: asyncio.Task[Any] | None = None
        self._closing = False
        self._frozen = False

    @property
    def received(self) -> list[dict[str, Any]]:
        """Decrypted frames received from the client on this session."""
        return self.record.received

    @property
    def sent(self) -> list[dict[str, Any]]:
        """JSON frames the double sent on this session (raw injections excluded)."""
        return self.record.sent

    @property
    def closed(self) -> bool:
        """Whether the session's WebSocket has ended."""
        return self.record.closed.is_set()

    @property
    def download_active(self) -> bool:
        """Whether an artifact stream holds this session's single download slot."""
        return self._download is not None and not self._download.done()

    async def wait_received(
        self, frame_type: str, *, count: int = 1, timeout: float = 5.0
    ) -> dict[str, Any]:
        """Wait until the client sent `count` frames of `frame_type`; return the last one."""
        await self._double.wait_for(
            lambda: len(self.record.received_of(frame_type)) >= count, timeout=timeout
        )
        return self.record.received_of(frame_type)[count - 1]

    async def wait_sent(
        self, frame_type: str, *, count: int = 1, timeout: float = 5.0
    ) -> dict[str, Any]:
        """Wait until the double sent `count` frames of `frame_type`; return the last one."""
        await self._double.wait_for(
            lambda: len(self.record.sent_of(frame_type)) >= count, timeout=timeout
        )
        return self.record.sent_of(frame_type)[count - 1]

    async def wait_closed(self, timeout: float = 5.0) -> None:
        """Wait for the session's WebSocket to end."""
        async with asyncio.timeout(timeout):
            await self.record.closed.wait()

    # -- sending (all encrypted output goes through one lock: nonce order)

    async def send_frame(self, frame: Mapping[str, Any]) -> None:
        """Encrypt and send one JSON object, whatever its fields (wrong types included)."""
        async with self._send_lock:
            await self._ws.send_bytes(self._noise.encrypt(encode_json(frame)))
        self.record.sent.append(dict(frame))
        self._double.notify()

    async def send_plaintext(self, plaintext: bytes) -> None:
        """Encrypt and send arbitrary bytes (garbage, JSON that is not an object)."""
        async with self._send_lock:
            await self._ws.send_bytes(self._noise.encrypt(plaintext))

    async def send_raw(self, data: bytes) -> None:
        """Send a binary message that is not encrypted (the client cannot decrypt it)."""
        async with self._send_lock:
            await self._ws.send_bytes(data)

    async def send_text(self, text: str = '{"type":"ping","nonce":1}') -> None:
        """Send a WebSocket text frame, which the protocol never allows."""
        async with self._send_lock:
            await self._ws.send_str(text)

    async def send_oversized(self, ciphertext_bytes: int = APP_FRAME_MAX_BYTES + 1) -> None:
        """Send a correctly encrypted JSON object whose ciphertext has exactly this size."""
        empty = encode_json({"type": "padding", "pad": ""})
        pad = ciphertext_bytes - AEAD_TAG_BYTES - len(empty)
        if pad < 0:
            raise ValueError(f"ciphertext_bytes must be >= {len(empty) + AEAD_TAG_BYTES}")
        await self.send_plaintext(encode_json({"type": "padding", "pad": "x" * pad}))

    async def terminate(self, reason: str, *, code: int = WSCloseCode.OK) -> None:
        """Send `terminate{reason}` and close, like the receiver's structured close."""
        if self._closing:
            return
        if self._frozen:  # a hung process says nothing: the connection just goes away
            await self.drop()
            return
        self._closing = True
        self._terminator = asyncio.current_task()
        self.record.terminate_sent = reason
        with contextlib.suppress(ConnectionError):
            await self.send_frame({"type": "terminate", "reason": reason})
        await self._ws.close(code=code)

    async def drop(self) -> None:
        """Abort the TCP connection: no terminate frame, no WebSocket close handshake."""
        self._closing = True
        transport = self._request.transport
        if transport is not None:
            transport.abort()
        else:
            await self._ws.close()

    def freeze(self) -> None:
        """Hang like a stopped process: the TCP connection stays open, nothing moves.

        The double stops reading (the kernel buffers what the client sends), stops its
        heartbeat and sends nothing more: the client can tell only by its own liveness
        check.  A frozen session ends when the double stops or the session is superseded.
        """
        self._frozen = True
        transport = self._request.transport
        if transport is not None:
            transport.pause_reading()
        self._double.notify()

    @property
    def frozen(self) -> bool:
        """Whether `freeze()` was called."""
        return self._frozen

    async def send_best_effort(self, frame: Mapping[str, Any]) -> None:
        """Best-effort send for fan-out: a frame for a session that just died is lost."""
        if self._closing or self._ws.closed or self._frozen:
            return
        with contextlib.suppress(ConnectionError):
            await self.send_frame(frame)

    # -- life cycle

    async def run(self) -> None:
        """Serve the session until either side ends it."""
        self._heartbeat = asyncio.create_task(self._heartbeat_loop())
        try:
            await self._receive_loop()
        finally:
            tasks = [t for t in (self._heartbeat, self._download) if t is not None]
            for task in tasks:
                if task is not self._terminator:
                    task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._upload = None
            self._double.forget_session(self)

    async def _heartbeat_loop(self) -> None:
        """Ping on the interval; declare the client dead after the liveness window (§5.3)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._double.ping_interval)
            if self._frozen:
                continue  # a hung process runs no timers
            if loop.time() - self._last_inbound > self._double.liveness_timeout:
                await self.terminate(TerminateReason.HEARTBEAT_TIMEOUT)
                return
            self._ping_nonce += 1
            await self.send_best_effort({"type": "ping", "nonce": self._ping_nonce})

    async def _receive_loop(self) -> None:
        while True:
            message = await self._ws.receive()
            if message.type in _CLOSED_TYPES or message.type is WSMsgType.ERROR:
                return
            if self._frozen:
                continue  # already buffered before the freeze: never looked at
            frame = self._open(message.data) if message.type is WSMsgType.BINARY else None
            if frame is None:
                await self.terminate(TerminateReason.MALFORMED_FRAME)
                return
            self._last_inbound = asyncio.get_running_loop().time()
            self.record.received.append(frame)
            self._double.notify()
            if not await self._dispatch(frame):
                return

    def _open(self, data: bytes) -> dict[str, Any] | None:
        """Decrypt and parse one app frame; None means malformed (§5.2)."""
        if len(data) > APP_FRAME_MAX_BYTES:
            return None
        try:
            frame = json.loads(self._noise.decrypt(data))
        except Exception:  # any decrypt or parse failure: same verdict
            return None
        return frame if isinstance(frame, dict) else None

    async def _dispatch(self, frame: dict[str, Any]) -> bool:
        """Act on one frame; False ends the session."""
        match frame.get("type"):
            case "ping":
                if not self._double.faults.ignore_pings:
                    await self.send_frame({"type": "pong", "nonce": frame.get("nonce")})
            case "terminate":
                reason = frame.get("reason")
                self.record.terminate_received = reason if isinstance(reason, str) else ""
                self._closing = True
                return False
            case "submit_job":
                return await self._on_submit_header(frame)
            case "submit_job_chunk":
                return await self._on_submit_chunk(frame)
            case "cancel_job":
                job_id = frame.get("job_id")
                if isinstance(job_id, str):
                    await self._double.cancel_job(self.dashboard_id, job_id)
            case "download_artifacts":
                return await self._on_download(frame)
            case "reset_build_env":
                return await self._on_reset_build_env(frame)
            case _:
                pass  # pong and unknown types: ignored (forward compatibility)
        return True

    # -- submit (§5.5)

    async def _ack(self, job_id: str, reason: str | None = None, *, fatal: bool = False) -> bool:
        """Send a submit_job_ack; a fatal rejection also terminates. Returns keep-going."""
        ack: dict[str, Any] = {"type": "submit_job_ack", "job_id": job_id}
        ack["accepted"] = reason is None
        if reason is not None:
            ack["reason"] = reason
        await self.send_frame(ack)
        if fatal:
            await self.terminate(TerminateReason.MALFORMED_FRAME)
        return not fatal

    async def _on_submit_header(self, frame: dict[str, Any]) -> bool:
        if not _matches(frame, _SUBMIT_HEADER_FIELDS):
            return await self._ack(_str_or_empty(frame, "job_id"), "invalid_header", fatal=True)
        job_id: str = frame["job_id"]
        total: int = frame["total_bundle_bytes"]
        num_chunks: int = frame["num_chunks"]
        # In the receiver's order; none of these is fatal: the chunk stream has not started.
        checks = (
            (not _valid_configuration_filename(frame["configuration_filename"]), "invalid_header"),
            (
                self._upload is not None or self._double.has_live_job(self.dashboard_id, job_id),
                "duplicate_submit",
            ),
            (frame["target"] == "upload", "upload_unsupported"),
            (frame["target"] not in _BUILD_TARGETS, "invalid_header"),
            (total <= 0, "empty_bundle"),
            (num_chunks <= 0, "chunk_count_mismatch"),
            (total > BUNDLE_MAX_TOTAL_BYTES, "oversized"),
        )
        if reason := next((reason for failed, reason in checks if failed), None):
            return await self._ack(job_id, reason)
        self._upload = _Upload(
            job_id=job_id,
            header=dict(frame),
            total_bytes=total,
            num_chunks=num_chunks,
            sha256=frame["bundle_sha256"].lower(),
        )
        return True

    async def _on_submit_chunk(self, frame: dict[str, Any]) -> bool:
        if not _matches(frame, _SUBMIT_CHUNK_FIELDS):
            self._upload = None
            return await self._ack(_str_or_empty(frame, "job_id"), "invalid_chunk", fatal=True)
        job_id: str = frame["job_id"]
        upload = self._upload
        if upload is None:
            # A chunk for the upload that just completed is the spec's "anything after the
            # last chunk" (post_completion); otherwise there is simply nothing in flight.
            after_last = job_id == self._completed_upload
            reason = "post_completion" if after_last else "no_inflight_submit"
            return await self._ack(job_id, reason, fatal=after_last)
        if job_id != upload.job_id:
            return await self._ack(job_id, "job_id_mismatch")
        if rejection := _feed(upload, frame):
            self._upload = None
            return await self._ack(job_id, rejection[0], fatal=rejection[1])
        if frame["is_last"]:
            await self._finish_upload(upload)
        return True

    async def _finish_upload(self, upload: _Upload) -> None:
        """Verify the complete bundle, answer, and queue the job when it is good."""
        self._upload = None
        self._completed_upload = upload.job_id
        bundle = bytes(upload.buffer)
        final_checks = (
            (len(bundle) != upload.total_bytes, "undersized"),
            (hashlib.sha256(bundle).hexdigest() != upload.sha256, "hash_mismatch"),
        )
        verdict = next((reason for failed, reason in final_checks if failed), None)
        if self._double.faults.withhold_submit_ack:
            return
        await self._ack(upload.job_id, verdict)
        if verdict is None:
            await self._double.accept_job(self.dashboard_id, upload.job_id, upload.header, bundle)

    # -- reset (§5.6)

    async def _on_reset_build_env(self, frame: dict[str, Any]) -> bool:
        """Queue a build-environment reset as a job, or refuse it; the ack comes last."""
        job_id = frame.get("job_id")
        ack: dict[str, Any] = {"type": "reset_build_env_ack", "job_id": "", "accepted": False}
        if not isinstance(job_id, str):
            await self.send_frame(ack | {"reason": "invalid_frame"})
            await self.terminate(TerminateReason.MALFORMED_FRAME)
            return False
        ack["job_id"] = job_id
        refusal = self._double.faults.reset_refusal
        if refusal is None and self._double.reset_busy():
            refusal = "busy"
        if refusal is not None:
            await self.send_frame(ack | {"reason": refusal})
            return True
        # The job is queued (and says so) before the ack goes out, as on the real server.
        await self._double.accept_reset(self.dashboard_id, job_id)
        await self.send_frame(ack | {"accepted": True})
        return True

    @property
    def upload_in_flight(self) -> bool:
        """Whether a bundle upload is under way on this session."""
        return self._upload is not None

    # -- download (§5.7)

    async def _refuse_download(self, job_id: str, reason: str, detail: str | None = None) -> bool:
        end: dict[str, Any] = {"type": "artifacts_end", "job_id": job_id, "accepted": False}
        end["reason"] = reason
        if detail is not None:
            end["detail"] = detail
        await self.send_frame(end)
        return True

    async def _on_download(self, frame: dict[str, Any]) -> bool:
        job_id = frame.get("job_id")
        if not isinstance(job_id, str):
            await self.terminate(TerminateReason.MALFORMED_FRAME)
            return False
        job = self._double.jobs.get((self.dashboard_id, job_id))
        checks = (  # the receiver's order (§5.7)
            (self.download_active, "duplicate_download"),
            (job is None, "unknown_job"),
            (job is not None and job.status is not JobStatus.COMPLETED, "job_not_completed"),
            (self._double.build_env_reset_active, "busy"),
            (self._double.shutting_down, "shutting_down"),
        )
        if reason := next((reason for failed, reason in checks if failed), None):
            return await self._refuse_download(job_id, reason)
        assert job is not None
        faults = self._double.faults.download
        if faults.refusal is not None:
            return await self._refuse_download(job_id, *faults.refusal)
        if job.artifacts is None:
            missing = f"/config/.esphome/build/{job_id}/.pioenvs/{job_id}/firmware.bin"
            return await self._refuse_download(job_id, "build_dir_missing", missing)
        self._download = asyncio.create_task(self._stream_artifacts(job_id, job.artifacts, faults))
        return True

    async def _stream_artifacts(
        self, job_id: str, artifacts: Artifacts, faults: DownloadFaults
    ) -> None:
        """Stream one tarball; runs beside the receive loop so pings keep flowing."""
        data = artifacts.tarball
        slices = [data[i : i + CHUNK_SIZE] for i in range(0, len(data), CHUNK_SIZE)]
        final = len(slices) - 1

        def chunk(index: int, raw: bytes, is_last: bool) -> dict[str, Any]:
            return {
                "type": "artifacts_chunk",
                "job_id": job_id,
                "chunk_index": index,
                "data_b64": base64.b64encode(raw).decode("ascii"),
                "is_last": is_last,
            }

        try:
            if faults.chunk_before_start and slices:
                await self.send_frame(chunk(0, slices[0], final == 0))
            if not faults.omit_start:
                digest = hashlib.sha256(data).hexdigest()
                await self.send_frame(
                    {
                        "type": "artifacts_start",
                        "job_id": job_id,
                        "total_bytes": len(data) + faults.total_bytes_delta,
                        "num_chunks": len(slices) + faults.num_chunks_delta,
                        "artifacts_sha256": digest[::-1] if faults.wrong_sha256 else digest,
                        "firmware_offset": artifacts.firmware_offset,
                    }
                )
            for position, raw in enumerate(slices):
                if faults.chunk_delay:
                    await asyncio.sleep(faults.chunk_delay)
                is_last = position == final and not faults.omit_is_last
                if faults.is_last_early_at is not None:
                    is_last = position == faults.is_last_early_at
                index = faults.chunk_index_override.get(position, position)
                for _ in range(2 if faults.duplicate_chunk == position else 1):
                    await self.send_frame(chunk(index, raw, is_last))
                if faults.drop_after_chunk == position:
                    await self.drop()
                    return
                if faults.stall_after_chunk == position:
                    await self.record.closed.wait()
                    return
            if faults.extra_chunk_after_last:
                await self.send_frame(chunk(len(slices), b"extra", True))
            await self.send_frame({"type": "artifacts_end", "job_id": job_id, "accepted": True})
        except ConnectionError:
            return  # session lost mid-stream: nothing to tell anyone


# --------------------------------------------------------------------------- receiver


class ReceiverDouble:
    """The build server: listener, identity, peer table, job queue, fault hooks, records."""

    def __init__(
        self,
        *,
        static_private: bytes | None = None,
        ephemeral_private: bytes | None = None,
        friendly_name: str = "build-box",
        esphome_version: str = "2026.10.0",
        ha_addon: bool = False,
        auto_provision_supported: bool = True,
        reset_build_env_supported: bool = True,
        requires_pairing_key: bool = False,
        pairing_key: str | None = None,
        pairing_window_open: bool | None = None,
        ping_interval: float = 30.0,
        liveness_timeout: float = 90.0,
        handshake_timeout: float = 10.0,
        close_timeout: float = 1.0,
        job_script: JobScript | None = None,
        reset_script: JobScript | None = None,
        provisionable_versions: frozenset[str] = frozenset(),
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        """Configure the double; nothing listens until `start()` / `async with`.

        `ephemeral_private` pins the responder's ephemeral key for every handshake: test
        vectors only. A headless server (`requires_pairing_key=True`) gets a generated
        pairing key when none is given and starts with its bootstrap window open.
        """
        self._static_private = static_private or new_private_key()
        self.ephemeral_private = ephemeral_private
        self.friendly_name = friendly_name
        self.esphome_version = esphome_version
        self.ha_addon = ha_addon
        self.auto_provision_supported = auto_provision_supported
        self.reset_build_env_supported = reset_build_env_supported
        self.requires_pairing_key = requires_pairing_key
        self.pairing_key = pairing_key or (generate_pairing_key() if requires_pairing_key else None)
        self.pairing_window_open = (
            requires_pairing_key if pairing_window_open is None else pairing_window_open
        )
        self.ping_interval = ping_interval
        self.liveness_timeout = liveness_timeout
        self.handshake_timeout = handshake_timeout
        self.close_timeout = close_timeout
        self.job_script = job_script or JobScript()
        self.reset_script = reset_script or JobScript(
            lines=["INFO Cleaning all build files...\n", "INFO Done.\n"]
        )
        # ESPHome versions a build may ask for besides our own (§5.5): the "installable" ones.
        self.provisionable_versions = set(provisionable_versions)
        self.default_artifacts: Artifacts | None = None
        self.build_env_reset_active = False
        self.shutting_down = False
        self.faults = Faults()
        self.peers: dict[str, PeerRow] = {}
        self.jobs: dict[tuple[str, str], JobRecord] = {}
        self.connections: list[ConnectionRecord] = []
        self._sessions: dict[str, Session] = {}
        self._bind_host = host
        self._bind_port = port
        self._port: int | None = None
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Event()
        self._job_queue: asyncio.Queue[JobRecord] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._open_ws: set[web.WebSocketResponse] = set()

    # -- lifecycle

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Bind the listener on a free loopback port and start the job worker."""
        app = web.Application()
        app.router.add_get(PEER_LINK_PATH, self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=self.close_timeout)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._bind_host, self._bind_port)
        await site.start()
        self._port = int(self._runner.addresses[0][1])
        self._worker = asyncio.create_task(self._job_worker())

    async def stop(self) -> None:
        """Shut down like the receiver: terminate sessions with server_shutting_down."""
        if self._runner is None:
            return
        self.shutting_down = True
        await asyncio.gather(
            *(
                s.terminate(TerminateReason.SERVER_SHUTTING_DOWN, code=WSCloseCode.GOING_AWAY)
                for s in list(self._sessions.values())
            )
        )
        self.notify()  # wakes long-polls and stalls, which then close quietly
        await asyncio.gather(*(ws.close(code=WSCloseCode.GOING_AWAY) for ws in list(self._open_ws)))
        tasks = [*self._background]
        if self._worker is not None:
            tasks.append(self._worker)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._runner.cleanup()
        self._runner = None

    @property
    def host(self) -> str:
        """Address to dial (always loopback)."""
        return self._bind_host

    @property
    def port(self) -> int:
        """The bound port (only valid after `start()`)."""
        if self._port is None:
            raise RuntimeError("ReceiverDouble is not started")
        return self._port

    @property
    def ws_url(self) -> str:
        """Full peer-link URL, for raw test initiators."""
        return f"ws://{self.host}:{self.port}{PEER_LINK_PATH}"

    @property
    def static_public(self) -> bytes:
        """The current raw X25519 static public key."""
        return public_key_for(self._static_private)

    @property
    def pin(self) -> str:
        """The current pin (changes after `set_static_key`)."""
        return pin_for_public_key(self.static_public)

    def set_static_key(self, private_key: bytes | None = None) -> str:
        """Rotate the server key for the following handshakes; returns the new pin."""
        self._static_private = private_key or new_private_key()
        return self.pin

    # -- observation

    @property
    def connection_count(self) -> int:
        """WebSocket connections accepted so far (every intent is one connection)."""
        return len(self.connections)

    @property
    def msg3_payloads(self) -> list[dict[str, Any] | None]:
        """Decrypted msg3 payloads of every connection that got as far as msg3."""
        return [c.msg3_payload for c in self.connections if c.msg3_received]

    @property
    def sessions(self) -> Mapping[str, Session]:
        """Live sessions by dashboard_id."""
        return self._sessions

    def session(self, dashboard_id: str | None = None) -> Session:
        """The live session of `dashboard_id`, or the only live session."""
        if dashboard_id is not None:
            return self._sessions[dashboard_id]
        if len(self._sessions) != 1:
            raise LookupError(f"{len(self._sessions)} live sessions; pass a dashboard_id")
        return next(iter(self._sessions.values()))

    def connections_for(self, intent: str) -> list[ConnectionRecord]:
        """Records of the connections that announced `intent` in msg1."""
        return [c for c in self.connections if c.intent == intent]

    def notify(self) -> None:
        """Wake every `wait_for` (called on any observable change)."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(self, predicate: Callable[[], bool], *, timeout: float = 5.0) -> None:
        """Wait until `predicate()` holds, re-checking after every change of the double."""
        async with asyncio.timeout(timeout):
            while not predicate():
                await self._changed.wait()

    async def wait_session(self, dashboard_id: str | None = None, timeout: float = 5.0) -> Session:
        """Wait for a live session (of `dashboard_id`, or exactly one)."""

        def ready() -> bool:
            if dashboard_id is None:
                return len(self._sessions) == 1
            return dashboard_id in self._sessions

        await self.wait_for(ready, timeout=timeout)
        return self.session(dashboard_id)

    async def wait_connections(self, count: int, timeout: float = 5.0) -> None:
        """Wait until at least `count` connections were accepted."""
        await self.wait_for(lambda: self.connection_count >= count, timeout=timeout)

    # -- peer table (§4)

    def add_peer(
        self,
        dashboard_id: str,
        pin_sha256: str,
        *,
        approved: bool = True,
        label: str = "",
        friendly_name: str = "",
        ha_addon: bool = False,
    ) -> PeerRow:
        """Seed a row as if a pairing had already happened."""
        state = PeerState.APPROVED if approved else PeerState.PENDING
        row = PeerRow(dashboard_id, pin_sha256, state, label, friendly_name, ha_addon)
        self.peers[dashboard_id] = row
        self.notify()
        return row

    def approve(self, dashboard_id: str) -> None:
        """The admin clicks Accept: the PENDING row becomes APPROVED (long-polls answer)."""
        self.peers[dashboard_id].state = PeerState.APPROVED
        self.notify()

    def remove(self, dashboard_id: str) -> None:
        """The admin removes/rejects the row; a live session is left running (§4.7)."""
        del self.peers[dashboard_id]
        self.notify()

    def open_pairing_window(self) -> None:
        """Open the pairing window (new pair_requests become PENDING)."""
        self.pairing_window_open = True
        self.notify()

    def close_pairing_window(self) -> None:
        """Close the window; every PENDING row is dropped (§4.1)."""
        self.pairing_window_open = False
        self.peers = {k: r for k, r in self.peers.items() if r.state is PeerState.APPROVED}
        self.notify()

    # -- jobs

    def set_artifacts(self, tarball: bytes, firmware_offset: str = "0x10000") -> None:
        """Artifacts that every job completing from now on will serve."""
        self.default_artifacts = Artifacts(tarball, firmware_offset)

    def add_job(
        self,
        dashboard_id: str,
        job_id: str,
        *,
        status: JobStatus = JobStatus.COMPLETED,
        artifacts: Artifacts | None = None,
    ) -> JobRecord:
        """Seed a job (e.g. a completed one to download) without uploading a bundle."""
        job = JobRecord(dashboard_id, job_id, {}, b"", self.job_script, status, artifacts)
        self.jobs[dashboard_id, job_id] = job
        self.notify()
        return job

    def job(self, job_id: str, dashboard_id: str | None = None) -> JobRecord:
        """Look a job up by the offloader's id (optionally scoped to one offloader)."""
        for (owner, jid), job in self.jobs.items():
            if jid == job_id and dashboard_id in (None, owner):
                return job
        raise KeyError(job_id)

    async def wait_job_status(
        self, job_id: str, status: JobStatus, timeout: float = 5.0
    ) -> JobRecord:
        """Wait until the job exists and reached `status`."""

        def reached() -> bool:
            with contextlib.suppress(KeyError):
                return self.job(job_id).status is status
            return False

        await self.wait_for(reached, timeout=timeout)
        return self.job(job_id)

    def release_job(self, job_id: str, dashboard_id: str | None = None) -> None:
        """Let a job held by `JobScript.hold` finish with its scripted outcome."""
        self.job(job_id, dashboard_id).release.set()

    def has_live_job(self, dashboard_id: str, job_id: str) -> bool:
        """Whether a resubmit of `job_id` would collide with a queued/running job."""
        job = self.jobs.get((dashboard_id, job_id))
        return job is not None and not job.status.is_terminal

    def queue_status_frame(self) -> dict[str, Any]:
        """The receiver's current queue as a `queue_status` frame."""
        running = any(j.status is JobStatus.RUNNING for j in self.jobs.values())
        depth = sum(j.status is JobStatus.QUEUED for j in self.jobs.values())
        idle = not running and depth == 0
        return {"type": "queue_status", "idle": idle, "running": running, "queue_depth": depth}

    async def accept_job(
        self, dashboard_id: str, job_id: str, header: dict[str, Any], bundle: bytes
    ) -> None:
        """Queue an uploaded bundle as a job and tell the offloader (after the ack)."""
        job = JobRecord(dashboard_id, job_id, header, bundle, self.job_script)
        self.jobs[dashboard_id, job_id] = job
        await self._job_event(job)
        await self._broadcast(self.queue_status_frame())
        self._job_queue.put_nowait(job)

    async def accept_reset(self, dashboard_id: str, job_id: str) -> JobRecord:
        """Queue a build-environment reset as a job of `dashboard_id` (§5.6)."""
        header = {"type": "reset_build_env", "job_id": job_id}
        job = JobRecord(dashboard_id, job_id, header, b"", self.reset_script)
        self.jobs[dashboard_id, job_id] = job
        await self._job_event(job)
        await self._broadcast(self.queue_status_frame())
        self._job_queue.put_nowait(job)
        return job

    def reset_busy(self) -> bool:
        """Whether a reset must be refused: a job lives, an upload or a download runs (§5.6)."""
        return (
            any(not job.status.is_terminal for job in self.jobs.values())
            or any(s.upload_in_flight or s.download_active for s in self._sessions.values())
            or self.build_env_reset_active
        )

    async def cancel_job(self, dashboard_id: str, job_id: str) -> None:
        """Handle `cancel_job`: unknown or finished jobs are ignored (§5.6)."""
        job = self.jobs.get((dashboard_id, job_id))
        if job is None or job.status.is_terminal:
            return
        if job.status is JobStatus.QUEUED:
            await self._finish_job(job, JobStatus.CANCELLED, "Job cancelled")
            return
        # Cooperative: cancelling the task could cut a send after its nonce was used.
        job.cancel_requested = True
        job.interrupt.set()
        job.release.set()

    def forget_session(self, session: Session) -> None:
        """Drop a closed session from the live table (unless it was already replaced)."""
        if self._sessions.get(session.dashboard_id) is session:
            del self._sessions[session.dashboard_id]
        self.notify()

    async def _job_worker(self) -> None:
        """Run queued jobs one at a time, like the receiver's single compile lane."""
        while True:
            job = await self._job_queue.get()
            if job.status is JobStatus.QUEUED:
                await self._play(job)

    async def _play(self, job: JobRecord) -> None:
        script = job.script
        job.status = JobStatus.RUNNING
        if job.is_reset:
            self.build_env_reset_active = True
        try:
            await self._job_event(job)
            await self._broadcast(self.queue_status_frame())
            if not await self._provision(job):
                await self._run_script(job, script)
        finally:
            if job.is_reset:
                self.build_env_reset_active = False

    async def _provision(self, job: JobRecord) -> bool:
        """Fail a build whose ESPHome version cannot be installed here (§5.5); True if so.

        Our own version, or none, builds as is; a version in `provisionable_versions` is
        "installed" (one output line) and then builds.
        """
        version = job.target_esphome_version
        if not version or version == self.esphome_version:
            return False
        installable = version in self.provisionable_versions
        line = f"Installing esphome=={version} into a new environment...\n"
        await self._output(job, line)
        if installable:
            return False
        await self._output(job, f"ERROR: No matching distribution found for esphome=={version}\n")
        await self._finish_job(
            job,
            JobStatus.FAILED,
            f"could not provision esphome {version}",
            failure_reason="provision",
        )
        return True

    async def _output(self, job: JobRecord, line: str) -> None:
        await self._send_to(
            job.dashboard_id,
            {"type": "job_output", "job_id": job.job_id, "stream": "stdout", "line": line},
        )

    async def _run_script(self, job: JobRecord, script: JobScript) -> None:
        for line in script.lines:
            await _pause(job, script.step_delay)
            if job.cancel_requested:
                break
            await self._output(job, line)
        if script.hold:
            await job.release.wait()  # a cancel releases too
        await _pause(job, script.step_delay)
        if job.cancel_requested:
            await self._finish_job(job, JobStatus.CANCELLED, "Job cancelled")
        else:
            await self._finish_job(job, script.outcome, script.error_message, script.failure_reason)

    async def _finish_job(
        self,
        job: JobRecord,
        status: JobStatus,
        error_message: str = "",
        failure_reason: str | None = None,
    ) -> None:
        job.status = status
        if status is JobStatus.COMPLETED and job.artifacts is None and not job.is_reset:
            job.artifacts = self.default_artifacts
        await self._job_event(job, error_message, failure_reason)
        await self._broadcast(self.queue_status_frame())

    async def _job_event(
        self, job: JobRecord, error_message: str = "", failure_reason: str | None = None
    ) -> None:
        frame: dict[str, Any] = {
            "type": "job_state_changed",
            "job_id": job.job_id,
            "status": job.status.value,
            "error_message": error_message,
        }
        if failure_reason is not None:
            frame["failure_reason"] = failure_reason
        self.notify()
        await self._send_to(job.dashboard_id, frame)

    async def _send_to(self, dashboard_id: str, frame: Mapping[str, Any]) -> None:
        """Best-effort fan-out: frames for an offloader without a session are lost (§5.5)."""
        session = self._sessions.get(dashboard_id)
        if session is not None:
            await session.send_best_effort(frame)

    async def _broadcast(self, frame: Mapping[str, Any]) -> None:
        for session in list(self._sessions.values()):
            await session.send_best_effort(frame)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- connection handling

    async def _handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(timeout=self.close_timeout)
        await ws.prepare(request)
        record = ConnectionRecord(index=len(self.connections), remote=request.remote)
        self.connections.append(record)
        self._open_ws.add(ws)
        self.notify()
        try:
            await self._serve(ws, request, record)
        finally:
            if not ws.closed:
                await ws.close()
            self._open_ws.discard(ws)
            record.closed.set()
            self.notify()
        return ws

    async def _serve(
        self, ws: web.WebSocketResponse, request: web.Request, record: ConnectionRecord
    ) -> None:
        handshake = await self._handshake(ws, record)
        if handshake is None:
            return
        fault = self.faults.handshake
        if fault is HandshakeFault.STALL_AFTER_MSG3:
            await self._hold(ws, lambda: None)
        if fault in {HandshakeFault.CLOSE_AFTER_MSG3, HandshakeFault.STALL_AFTER_MSG3}:
            return
        decision = await self._decide(ws, handshake)
        if decision is None:
            return
        outcome, reason = decision
        record.response = self._intent_response(handshake.intent, outcome, reason)
        if fault is HandshakeFault.GARBAGE_RESPONSE:
            await ws.send_bytes(secrets.token_bytes(64))
            return
        if self.faults.response_plaintext is not None:
            await ws.send_bytes(handshake.noise.encrypt(self.faults.response_plaintext))
            return
        await ws.send_bytes(handshake.noise.encrypt(encode_json(record.response)))
        self.notify()
        if handshake.intent == "peer_link" and outcome == IntentResponse.OK:
            dashboard_id = record.dashboard_id
            assert dashboard_id is not None
            await self._run_session(ws, request, handshake, record, dashboard_id)

    async def _run_session(
        self,
        ws: web.WebSocketResponse,
        request: web.Request,
        handshake: _Handshake,
        record: ConnectionRecord,
        dashboard_id: str,
    ) -> None:
        session = Session(self, ws, request, handshake.noise, record, dashboard_id)
        previous = self._sessions.get(dashboard_id)
        self._sessions[dashboard_id] = session
        if previous is not None:
            self._spawn(previous.terminate(TerminateReason.SUPERSEDED))
        await session.send_frame(self.queue_status_frame())
        await session.run()

    def _new_responder(self) -> Any:
        noise = NoiseConnection.from_name(NOISE_PROTOCOL_NAME)
        noise.set_as_responder()
        noise.set_keypair_from_private_bytes(Keypair.STATIC, self._static_private)
        with warnings.catch_warnings():
            if self.ephemeral_private is not None:
                warnings.simplefilter("ignore")  # noise warns about fixed ephemerals
                noise.set_keypair_from_private_bytes(Keypair.EPHEMERAL, self.ephemeral_private)
            noise.start_handshake()
        return noise

    async def _handshake(
        self, ws: web.WebSocketResponse, record: ConnectionRecord
    ) -> _Handshake | None:
        """Run the responder side of XX; None means the connection is abandoned."""
        msg1 = await self._receive_binary(ws)
        if msg1 is None:
            return None
        record.msg1 = msg1
        noise = self._new_responder()
        # noiseprotocol deletes handshake_state once msg3 is read: keep it for `rs`.
        state = noise.noise_protocol.handshake_state
        try:
            payload1 = bytes(noise.read_message(msg1))
        except Exception:  # a broken msg1 just drops the connection
            return None
        record.intent = _parse_intent(payload1)
        self.notify()
        fault = self.faults.handshake
        if fault is HandshakeFault.STALL_AFTER_MSG1:
            await self._hold(ws, lambda: None)
        if fault in {HandshakeFault.CLOSE_AFTER_MSG1, HandshakeFault.STALL_AFTER_MSG1}:
            return None
        msg2 = bytes(noise.write_message(b""))
        if fault is HandshakeFault.GARBAGE_MSG2:
            msg2 = secrets.token_bytes(len(msg2))
        await ws.send_bytes(msg2)
        msg3 = await self._receive_binary(ws)
        if msg3 is None:
            return None
        record.msg3_received = True
        self.notify()
        try:
            payload3 = bytes(noise.read_message(msg3))
        except Exception:  # undecryptable msg3: drop, like the receiver
            return None
        record.offloader_pin = pin_for_public_key(bytes(state.rs.public_bytes))
        record.msg3_payload = _parse_object(payload3)
        self.notify()
        return _Handshake(noise, record.intent, record.msg3_payload, record.offloader_pin)

    async def _receive_binary(self, ws: web.WebSocketResponse) -> bytes | None:
        """One handshake message; a timeout, close or text frame abandons the connection."""
        try:
            message = await ws.receive(timeout=self.handshake_timeout)
        except TimeoutError:
            return None
        return message.data if message.type is WSMsgType.BINARY else None

    async def _hold[T](self, ws: web.WebSocketResponse, ready: Callable[[], T | None]) -> T | None:
        """Wait until `ready()` gives a value, the peer goes away, or the double stops."""
        peer = asyncio.ensure_future(ws.receive())
        try:
            while (result := ready()) is None:
                if self.shutting_down:
                    return None
                changed = asyncio.ensure_future(self._changed.wait())
                done, _ = await asyncio.wait({peer, changed}, return_when=asyncio.FIRST_COMPLETED)
                changed.cancel()
                if peer in done:
                    return None
            return result
        finally:
            peer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await peer

    # -- intent decisions (§4.4)

    def _intent_response(
        self, intent: str | None, outcome: str, reason: str | None
    ) -> dict[str, Any]:
        response: dict[str, Any] = {
            "intent_response": outcome,
            "esphome_version": self.esphome_version,
            "auto_provision_supported": self.auto_provision_supported,
            "reset_build_env_supported": self.reset_build_env_supported,
            "friendly_name": self.friendly_name,
            "ha_addon": self.ha_addon,
        }
        if reason is not None:
            response["reason"] = reason
        if intent == "preview" and outcome == IntentResponse.OK and self.requires_pairing_key:
            response["requires_pairing_key"] = True
        response.update(self.faults.response_extra)
        return response

    async def _decide(  # noqa: PLR0911 - one return per intent branch of §4.4
        self, ws: web.WebSocketResponse, handshake: _Handshake
    ) -> tuple[str, str | None] | None:
        """Pick the intent response; None means a long-poll ended without an answer."""
        intent = handshake.intent
        if intent is not None and intent in self.faults.refuse_intent:
            return self.faults.refuse_intent[intent]
        if intent == "preview":
            return IntentResponse.OK, None
        if intent not in _DASHBOARD_INTENTS:
            return IntentResponse.REJECTED, RejectReason.BAD_INTENT
        dashboard_id = handshake.msg3.get("dashboard_id")
        if not is_valid_dashboard_id(dashboard_id):
            return IntentResponse.REJECTED, RejectReason.BAD_DASHBOARD_ID
        if intent == "pair_request":
            return self._pair_request(dashboard_id, handshake)
        if intent == "pair_status":
            return await self._hold(ws, lambda: self._pair_status(dashboard_id, handshake.pin))
        return self._peer_link(dashboard_id, handshake)

    def _pair_request(  # noqa: PLR0911 - one return per row of the §4.4 table
        self, dashboard_id: str, handshake: _Handshake
    ) -> tuple[str, str | None]:
        """The §4.4 pair_request table, evaluated top to bottom."""
        msg3 = handshake.msg3
        row = self.peers.get(dashboard_id)
        if row is not None and row.state is PeerState.APPROVED:
            if row.pin_sha256 != handshake.pin:
                return IntentResponse.REJECTED, RejectReason.PIN_MISMATCH
            self._refresh_row(row, msg3)
            return IntentResponse.APPROVED, None
        if not self.pairing_window_open:
            return IntentResponse.NO_PAIRING_WINDOW, None
        if self.requires_pairing_key:
            if not self._pairing_key_matches(msg3.get("pairing_key")):
                return IntentResponse.NO_PAIRING_WINDOW, None
            self.peers[dashboard_id] = self._new_row(dashboard_id, handshake, PeerState.APPROVED)
            self.close_pairing_window()  # the bootstrap window admits exactly one pairing
            return IntentResponse.APPROVED, None
        if row is not None and row.pin_sha256 != handshake.pin:
            return IntentResponse.REJECTED, RejectReason.PIN_MISMATCH
        if row is None:
            self.peers[dashboard_id] = self._new_row(dashboard_id, handshake, PeerState.PENDING)
        else:
            self._refresh_row(row, msg3)
        self.notify()
        return IntentResponse.PENDING, None

    def _pair_status(self, dashboard_id: str, pin: str) -> tuple[str, str | None] | None:
        row = self.peers.get(dashboard_id)
        if row is None:
            return IntentResponse.REJECTED, RejectReason.NO_APPROVED_PEER
        if row.pin_sha256 != pin:
            return IntentResponse.REJECTED, RejectReason.PIN_MISMATCH
        if row.state is PeerState.APPROVED:
            return IntentResponse.APPROVED, None
        return None  # PENDING and pin matches: keep the long-poll open

    def _peer_link(self, dashboard_id: str, handshake: _Handshake) -> tuple[str, str | None]:
        row = self.peers.get(dashboard_id)
        if row is None:
            return IntentResponse.REJECTED, RejectReason.NO_APPROVED_PEER
        if row.pin_sha256 != handshake.pin:
            return IntentResponse.REJECTED, RejectReason.PIN_MISMATCH
        if row.state is PeerState.PENDING:
            return IntentResponse.PENDING, RejectReason.PENDING_NOT_APPROVED
        msg3 = handshake.msg3
        if friendly := _normalize_label(msg3.get("friendly_name")):
            row.friendly_name = friendly
        row.ha_addon = msg3.get("ha_addon") is True
        port = msg3.get("connect_back_port")
        if isinstance(port, int) and not isinstance(port, bool) and 1 <= port <= 65535:
            row.connect_back_port = port
        return IntentResponse.OK, None

    def _pairing_key_matches(self, presented: object) -> bool:
        if self.pairing_key is None or not isinstance(presented, str):
            return False
        if not presented or len(presented) > PAIRING_KEY_MAX_CHARS:
            return False
        given = normalize_pairing_key(presented)
        return bool(given) and hmac.compare_digest(given, normalize_pairing_key(self.pairing_key))

    @staticmethod
    def _new_row(dashboard_id: str, handshake: _Handshake, state: PeerState) -> PeerRow:
        row = PeerRow(dashboard_id, handshake.pin, state)
        ReceiverDouble._refresh_row(row, handshake.msg3)
        return row

    @staticmethod
    def _refresh_row(row: PeerRow, msg3: Mapping[str, Any]) -> None:
        """Update display fields from a pair_request (non-empty strings only)."""
        if label := _normalize_label(msg3.get("label")):
            row.label = label
        if friendly := _normalize_label(msg3.get("friendly_name")):
            row.friendly_name = friendly
        row.ha_addon = msg3.get("ha_addon") is True
        row.label_auto = msg3.get("label_auto") is True


async def _pause(job: JobRecord, delay: float) -> None:
    """Sleep a script step, cut short by a cancel."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(delay):
            await job.interrupt.wait()


def _feed(upload: _Upload, frame: Mapping[str, Any]) -> tuple[str, bool] | None:
    """Add one validated chunk to an upload; returns (reason, fatal) on rejection (§5.5)."""
    try:
        raw = base64.b64decode(frame["data_b64"], validate=True)
    except binascii.Error:
        return "chunk_decode_failed", True
    if frame["chunk_index"] != upload.next_index:
        return "out_of_order", True
    if len(upload.buffer) + len(raw) > upload.total_bytes:
        return "oversized", False
    upload.buffer += raw
    upload.next_index += 1
    if frame["is_last"] != (upload.next_index == upload.num_chunks):
        return "chunk_count_mismatch", True
    return None


def _parse_object(payload: bytes) -> dict[str, Any]:
    """msg3 rule: anything that is not a JSON object counts as `{}` (§3.2)."""
    try:
        value = json.loads(payload) if payload else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _parse_intent(payload: bytes) -> str | None:
    """msg1 carries plaintext `{"intent": ...}`; anything else means no usable intent."""
    intent = _parse_object(payload).get("intent")
    return intent if isinstance(intent, str) else None
