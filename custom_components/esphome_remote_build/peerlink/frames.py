"""Wire shapes of the peer link and their validation at the boundary.

Every peer-supplied value is type-checked and bounded here, before any other module sees
it, so the rest of the client can trust what it reads.  JSON types are strict, like the
receiver's own schema: an int field rejects ``true`` and ``1.0``; a bool field rejects ``1``.
"""

from __future__ import annotations

from enum import StrEnum
import json
import math
from typing import Any, Literal, NoReturn, NotRequired, TypedDict

from .errors import ProtocolError

APP_FRAME_MAX_BYTES = 61_440
ONE_SHOT_MAX_BYTES = 65_536
CHUNK_BYTES = 32_768
ARTIFACTS_MAX_BYTES = 256 * 1024 * 1024
BUNDLE_MAX_BYTES = 128 * 1024 * 1024
MAX_LABEL_CHARS = 128
MAX_REASON_CHARS = 64
MAX_DETAIL_CHARS = 256
MAX_JOB_ID_CHARS = 64
MAX_OUTPUT_LINE_CHARS = 16_384
MAX_VERSION_CHARS = 64


class Intent(StrEnum):
    """What one WebSocket connection is for."""

    PREVIEW = "preview"
    PAIR_REQUEST = "pair_request"
    PAIR_STATUS = "pair_status"
    PEER_LINK = "peer_link"


class IntentResponse(StrEnum):
    """The server's verdict on an intent."""

    OK = "ok"
    APPROVED = "approved"
    PENDING = "pending"
    REJECTED = "rejected"
    NO_PAIRING_WINDOW = "no_pairing_window"


class RejectReason(StrEnum):
    """Reasons that ride with a ``rejected``/``pending`` intent response."""

    NO_APPROVED_PEER = "no_approved_peer"
    PIN_MISMATCH = "pin_mismatch"
    PENDING_NOT_APPROVED = "pending_not_approved"
    BAD_DASHBOARD_ID = "bad_dashboard_id"
    BAD_INTENT = "bad_intent"


TERMINAL_REJECTS = frozenset({RejectReason.NO_APPROVED_PEER, RejectReason.PIN_MISMATCH})


class MessageType(StrEnum):
    """App-frame discriminator (field ``type``)."""

    PING = "ping"
    PONG = "pong"
    TERMINATE = "terminate"
    QUEUE_STATUS = "queue_status"
    SUBMIT_JOB = "submit_job"
    SUBMIT_JOB_CHUNK = "submit_job_chunk"
    SUBMIT_JOB_ACK = "submit_job_ack"
    CANCEL_JOB = "cancel_job"
    JOB_STATE_CHANGED = "job_state_changed"
    JOB_OUTPUT = "job_output"
    DOWNLOAD_ARTIFACTS = "download_artifacts"
    ARTIFACTS_START = "artifacts_start"
    ARTIFACTS_CHUNK = "artifacts_chunk"
    ARTIFACTS_END = "artifacts_end"
    RESET_BUILD_ENV = "reset_build_env"
    RESET_BUILD_ENV_ACK = "reset_build_env_ack"


class TerminateReason(StrEnum):
    """Reasons for a structured close, ours and the server's."""

    SUPERSEDED = "superseded"
    HEARTBEAT_TIMEOUT = "heartbeat_timeout"
    SERVER_SHUTTING_DOWN = "server_shutting_down"
    MALFORMED_FRAME = "malformed_frame"
    CLIENT_STOPPED = "client_stopped"


class JobStatus(StrEnum):
    """Life-cycle of a build job on the server."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """Tell whether the job can no longer change."""
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


class FailureReason(StrEnum):
    """Known values of ``job_state_changed.failure_reason`` (others are passed on as text)."""

    PROVISION = "provision"
    """The server could not install the ESPHome version the job asked for (§5.5)."""


# --- frames we send ------------------------------------------------------------------


class PingFrame(TypedDict):
    """Liveness probe; the peer echoes ``nonce`` in a pong."""

    type: Literal[MessageType.PING, MessageType.PONG]
    nonce: int


class TerminateFrame(TypedDict):
    """Structured close, sent just before closing the WebSocket."""

    type: Literal[MessageType.TERMINATE]
    reason: str


class SubmitJobFrame(TypedDict):
    """Header of a bundle upload."""

    type: Literal[MessageType.SUBMIT_JOB]
    job_id: str
    configuration_filename: str
    target: Literal["compile", "clean"]
    total_bundle_bytes: int
    num_chunks: int
    bundle_sha256: str
    device_name: NotRequired[str]
    target_esphome_version: NotRequired[str]


class SubmitJobChunkFrame(TypedDict):
    """One base64 slice of the bundle."""

    type: Literal[MessageType.SUBMIT_JOB_CHUNK]
    job_id: str
    chunk_index: int
    data_b64: str
    is_last: bool


class JobIdFrame(TypedDict):
    """``cancel_job``, ``download_artifacts`` and ``reset_build_env`` carry only the job id."""

    type: Literal[
        MessageType.CANCEL_JOB, MessageType.DOWNLOAD_ARTIFACTS, MessageType.RESET_BUILD_ENV
    ]
    job_id: str


# --- frames we receive (validated) ---------------------------------------------------


class QueueStatusFrame(TypedDict):
    """The server's queue, pushed on session open and on every change."""

    idle: bool
    running: bool
    queue_depth: int


class SubmitJobAckFrame(TypedDict):
    """Verdict on an upload."""

    job_id: str
    accepted: bool
    reason: str


class ResetBuildEnvAckFrame(TypedDict):
    """Verdict on a build-environment reset (§5.6)."""

    job_id: str
    accepted: bool
    reason: str


class JobStateChangedFrame(TypedDict):
    """A job moved to a new status."""

    job_id: str
    status: JobStatus
    error_message: str
    failure_reason: str


class JobOutputFrame(TypedDict):
    """One line of compiler output, terminator preserved."""

    job_id: str
    stream: Literal["stdout", "stderr"]
    line: str


class ArtifactsStartFrame(TypedDict):
    """Opens an artifacts stream."""

    job_id: str
    total_bytes: int
    num_chunks: int
    artifacts_sha256: str
    firmware_offset: str


class ArtifactsChunkFrame(TypedDict):
    """One base64 slice of the artifacts tarball."""

    job_id: str
    chunk_index: int
    data_b64: str
    is_last: bool


class ArtifactsEndFrame(TypedDict):
    """Closes an artifacts stream (or refuses it)."""

    job_id: str
    accepted: bool
    reason: str
    detail: str


class IntentResponseFrame(TypedDict):
    """The first transport message after the handshake."""

    intent_response: IntentResponse
    reason: str
    esphome_version: str
    friendly_name: str
    ha_addon: bool
    requires_pairing_key: bool
    auto_provision_supported: bool
    reset_build_env_supported: bool


def encode(frame: object) -> bytes:
    """Serialise compactly, as the receiver does; strict JSON (no NaN)."""
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


_BULK_KEY = b'"data_b64":"'
_BULK_MIN_BYTES = 4096


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400: JSON allows it, no float holds it
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def _not_json(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _loads(data: bytes) -> object:
    """Parse strict JSON, like the receiver's orjson: no NaN/Infinity, no infinite floats.

    What this refuses could not be written back either (``encode`` is strict), so nothing
    that passes here can make a later send fail.  Integers of more than 4300 digits are
    refused by ``json`` itself, with a plain ``ValueError``.
    """
    return json.loads(data, parse_float=_finite_float, parse_constant=_not_json)


def decode_object(data: bytes) -> dict[str, Any]:
    """Decode one plaintext frame; anything but a JSON object is a protocol error.

    *Every* parse failure becomes :class:`ProtocolError` — ``json`` raises plain
    ``ValueError`` (huge integers) and ``RecursionError`` (deep nesting) besides its own
    error — so one odd frame can end a session but never the task that reads it.
    """
    if len(data) >= _BULK_MIN_BYTES and (fast := _decode_bulk_frame(data)) is not None:
        return fast
    try:
        value = _loads(data)
    except (ValueError, RecursionError) as err:  # JSONDecodeError/UnicodeDecodeError too
        raise ProtocolError(f"frame is not valid JSON: {str(err)[:100]}") from err
    if not isinstance(value, dict):
        raise ProtocolError("frame is not a JSON object")
    return value


def _decode_bulk_frame(data: bytes) -> dict[str, Any] | None:
    """Decode a chunk frame without scanning its 43 KB base64 string as JSON.

    The base64 alphabet holds no quote or backslash, so the value ends at the next quote;
    the small remainder is parsed normally.  Anything unusual (escapes, a repeated key,
    non-ASCII) returns ``None`` and takes the ordinary path, so both paths agree.
    """
    key_at = data.find(_BULK_KEY)
    if key_at < 0:
        return None
    value_at = key_at + len(_BULK_KEY)
    value_end = data.find(b'"', value_at)
    # find() gave the first key and the value holds no quote, so a repeated key can only
    # follow the value
    if value_end < 0 or data.find(b'"data_b64"', value_end) >= 0:
        return None
    value = data[value_at:value_end]
    if b"\\" in value:
        return None
    try:
        rest = _loads(data[:value_at] + data[value_end:])
        text = value.decode("ascii")
    except (ValueError, RecursionError):
        return None  # the ordinary path says what is wrong
    if not isinstance(rest, dict) or rest.get("data_b64") != "":
        return None
    rest["data_b64"] = text
    return rest


def _str(frame: dict[str, Any], key: str, max_chars: int, *, default: str | None = None) -> str:
    value = frame.get(key, default)
    if not isinstance(value, str) or len(value) > max_chars:
        raise ProtocolError(f"field {key!r} must be a string of at most {max_chars} characters")
    return value


def _bool(frame: dict[str, Any], key: str) -> bool:
    value = frame.get(key)
    if not isinstance(value, bool):
        raise ProtocolError(f"field {key!r} must be a boolean")
    return value


def _int(frame: dict[str, Any], key: str, low: int, high: int) -> int:
    value = frame.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ProtocolError(f"field {key!r} must be an integer in [{low}, {high}]")
    return value


def _soft_str(frame: dict[str, Any], key: str, max_chars: int) -> str:
    """Read an optional display string: wrong types read as empty, long ones are cut."""
    value = frame.get(key)
    return value.strip()[:max_chars] if isinstance(value, str) else ""


def _soft_bool(frame: dict[str, Any], key: str) -> bool:
    return frame.get(key) is True


def _version(frame: dict[str, Any]) -> str:
    value = _soft_str(frame, "esphome_version", MAX_VERSION_CHARS + 1)
    if len(value) > MAX_VERSION_CHARS or not value.isprintable():
        return ""
    return value


def parse_intent_response(frame: dict[str, Any]) -> IntentResponseFrame:
    """Validate the intent response; missing optional fields read as empty/false."""
    try:
        verdict = IntentResponse(str(frame.get("intent_response")))
    except ValueError as err:
        raise ProtocolError("unknown intent_response") from err
    return {
        "intent_response": verdict,
        "reason": _soft_str(frame, "reason", MAX_REASON_CHARS),
        "esphome_version": _version(frame),
        "friendly_name": _soft_str(frame, "friendly_name", MAX_LABEL_CHARS),
        "ha_addon": _soft_bool(frame, "ha_addon"),
        "requires_pairing_key": _soft_bool(frame, "requires_pairing_key"),
        "auto_provision_supported": _soft_bool(frame, "auto_provision_supported"),
        "reset_build_env_supported": _soft_bool(frame, "reset_build_env_supported"),
    }


def parse_ping(frame: dict[str, Any]) -> int:
    """Validate ``ping`` and return its nonce (an int, §5.4), to be echoed in the pong."""
    return _int(frame, "nonce", -(2**63), 2**63)


def parse_queue_status(frame: dict[str, Any]) -> QueueStatusFrame:
    """Validate ``queue_status``."""
    return {
        "idle": _bool(frame, "idle"),
        "running": _bool(frame, "running"),
        "queue_depth": _int(frame, "queue_depth", 0, 1_000_000),
    }


def parse_submit_job_ack(frame: dict[str, Any]) -> SubmitJobAckFrame:
    """Validate ``submit_job_ack``."""
    accepted = _bool(frame, "accepted")
    return {
        "job_id": _str(frame, "job_id", MAX_JOB_ID_CHARS),
        "accepted": accepted,
        "reason": "" if accepted else _str(frame, "reason", MAX_REASON_CHARS, default="unknown"),
    }


def parse_reset_build_env_ack(frame: dict[str, Any]) -> ResetBuildEnvAckFrame:
    """Validate ``reset_build_env_ack``; a refusal without a reason reads as ``unknown``."""
    accepted = _bool(frame, "accepted")
    return {
        "job_id": _str(frame, "job_id", MAX_JOB_ID_CHARS),
        "accepted": accepted,
        "reason": "" if accepted else (_soft_str(frame, "reason", MAX_REASON_CHARS) or "unknown"),
    }


def parse_job_state_changed(frame: dict[str, Any]) -> JobStateChangedFrame:
    """Validate ``job_state_changed``."""
    try:
        status = JobStatus(str(frame.get("status")))
    except ValueError as err:
        raise ProtocolError("unknown job status") from err
    return {
        "job_id": _str(frame, "job_id", MAX_JOB_ID_CHARS),
        "status": status,
        "error_message": _soft_str(frame, "error_message", 4096),
        "failure_reason": _soft_str(frame, "failure_reason", MAX_REASON_CHARS),
    }


def parse_job_output(frame: dict[str, Any]) -> JobOutputFrame:
    """Validate ``job_output``; the line keeps its terminator."""
    stream = frame.get("stream")
    if stream not in ("stdout", "stderr"):
        raise ProtocolError("unknown output stream")
    return {
        "job_id": _str(frame, "job_id", MAX_JOB_ID_CHARS),
        "stream": stream,
        "line": _str(frame, "line", MAX_OUTPUT_LINE_CHARS),
    }


def parse_artifacts_start(frame: dict[str, Any]) -> ArtifactsStartFrame:
    """Validate ``artifacts_start`` (bounds are enforced by the assembler)."""
    return {
        "job_id": _str(frame, "job_id", MAX_JOB_ID_CHARS),
        "total_bytes": _int(frame, "total_bytes", -(2**63), 2**63),
        "num_chunks": _int(frame, "num_chunks", -(2**63), 2**63),
        "artifacts_sha256": _str(frame, "artifacts_sha256", 64),
        "firmware_offset": _str(frame, "firmware_offset", 18),
    }


def parse_artifacts_chunk(frame: dict[str, Any]) -> ArtifactsChunkFrame:
    """Validate ``artifacts_chunk``."""
    return {
        "job_id": _str(frame, "job_id", MAX_JOB_ID_CHARS),
        "chunk_index": _int(frame, "chunk_index", -(2**63), 2**63),
        "data_b64": _str(frame, "data_b64", APP_FRAME_MAX_BYTES),
        "is_last": _bool(frame, "is_last"),
    }


def parse_artifacts_end(frame: dict[str, Any]) -> ArtifactsEndFrame:
    """Validate ``artifacts_end``; reason and detail are cut, not refused."""
    accepted = _bool(frame, "accepted")
    return {
        "job_id": _str(frame, "job_id", MAX_JOB_ID_CHARS),
        "accepted": accepted,
        "reason": "" if accepted else (_soft_str(frame, "reason", MAX_REASON_CHARS) or "unknown"),
        "detail": _soft_str(frame, "detail", MAX_DETAIL_CHARS),
    }
