"""Boundary validation of every frame the server can send us."""

from __future__ import annotations

import json
from typing import Any

import pytest

from custom_components.esphome_remote_build.peerlink import JobStatus, ProtocolError, frames


@pytest.mark.parametrize(
    "data",
    [b"not json", b"\xff\xfe", b"[1,2]", b'"text"', b"42", b"null", b"{"],
)
def test_decode_object_refuses_non_objects(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        frames.decode_object(data)


def test_encode_is_compact_and_strict() -> None:
    assert frames.encode({"type": "ping", "nonce": 1}) == b'{"type":"ping","nonce":1}'
    with pytest.raises(ValueError):
        frames.encode({"x": float("nan")})


GOOD: dict[str, dict[str, Any]] = {
    "queue_status": {"idle": True, "running": False, "queue_depth": 0},
    "submit_job_ack": {"job_id": "j1", "accepted": True},
    "job_state_changed": {"job_id": "j1", "status": "running", "error_message": ""},
    "job_output": {"job_id": "j1", "stream": "stdout", "line": "Compiling\r"},
    "artifacts_start": {
        "job_id": "j1",
        "total_bytes": 10,
        "num_chunks": 1,
        "artifacts_sha256": "0" * 64,
        "firmware_offset": "0x10000",
    },
    "artifacts_chunk": {"job_id": "j1", "chunk_index": 0, "data_b64": "", "is_last": True},
    "artifacts_end": {"job_id": "j1", "accepted": True},
    "reset_build_env_ack": {"job_id": "j1", "accepted": True},
}
PARSERS = {
    "queue_status": frames.parse_queue_status,
    "submit_job_ack": frames.parse_submit_job_ack,
    "job_state_changed": frames.parse_job_state_changed,
    "job_output": frames.parse_job_output,
    "artifacts_start": frames.parse_artifacts_start,
    "artifacts_chunk": frames.parse_artifacts_chunk,
    "artifacts_end": frames.parse_artifacts_end,
    "reset_build_env_ack": frames.parse_reset_build_env_ack,
}


@pytest.mark.parametrize("kind", list(GOOD))
def test_good_frames_parse(kind: str) -> None:
    PARSERS[kind](GOOD[kind])


BAD = [
    ("queue_status", "idle", 1),
    ("queue_status", "running", "false"),
    ("queue_status", "queue_depth", True),
    ("queue_status", "queue_depth", 1.0),
    ("queue_status", "queue_depth", "3"),
    ("queue_status", "queue_depth", -1),
    ("submit_job_ack", "accepted", 0),
    ("submit_job_ack", "job_id", 7),
    ("job_state_changed", "status", "exploded"),
    ("job_state_changed", "job_id", None),
    ("job_state_changed", "job_id", "x" * 65),
    ("job_output", "stream", "stdin"),
    ("job_output", "line", ["a"]),
    ("artifacts_start", "total_bytes", "10"),
    ("artifacts_start", "num_chunks", False),
    ("artifacts_start", "artifacts_sha256", 5),
    ("artifacts_start", "firmware_offset", None),
    ("artifacts_chunk", "chunk_index", 0.0),
    ("artifacts_chunk", "is_last", "yes"),
    ("artifacts_chunk", "data_b64", 12),
    ("artifacts_end", "accepted", None),
    ("reset_build_env_ack", "accepted", "true"),
    ("reset_build_env_ack", "job_id", 7),
]


@pytest.mark.parametrize(("kind", "field", "value"), BAD)
def test_bad_field_types_are_refused(kind: str, field: str, value: object) -> None:
    frame = dict(GOOD[kind], **{field: value})
    with pytest.raises(ProtocolError):
        PARSERS[kind](frame)


@pytest.mark.parametrize(("kind", "field"), [(k, f) for k, v in GOOD.items() for f in v])
def test_missing_required_fields_are_refused(kind: str, field: str) -> None:
    optional = {("job_state_changed", "error_message"), ("artifacts_end", "accepted")}
    frame = {k: v for k, v in GOOD[kind].items() if k != field}
    if (kind, field) in optional and kind == "job_state_changed":
        PARSERS[kind](frame)  # error_message is optional and reads as ""
        return
    with pytest.raises(ProtocolError):
        PARSERS[kind](frame)


def test_soft_fields_read_as_empty_and_are_bounded() -> None:
    ack = frames.parse_submit_job_ack({"job_id": "j", "accepted": False})
    assert ack["reason"] == "unknown"
    end = frames.parse_artifacts_end(
        {"job_id": "j", "accepted": False, "reason": 5, "detail": "d" * 1000}
    )
    assert end["reason"] == "unknown"
    assert len(end["detail"]) == frames.MAX_DETAIL_CHARS
    state = frames.parse_job_state_changed({"job_id": "j", "status": "failed"})
    assert state["status"] is JobStatus.FAILED
    assert state["error_message"] == ""
    assert JobStatus.FAILED.is_terminal
    assert not JobStatus.RUNNING.is_terminal


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ({"intent_response": "ok"}, {"esphome_version": "", "ha_addon": False, "reason": ""}),
        (
            {"intent_response": "ok", "esphome_version": "v" * 65, "ha_addon": 1},
            {"esphome_version": "", "ha_addon": False},
        ),
        (
            {"intent_response": "ok", "requires_pairing_key": True, "friendly_name": " box "},
            {"requires_pairing_key": True, "friendly_name": "box"},
        ),
        (
            {"intent_response": "rejected", "reason": "pin_mismatch", "friendly_name": 3},
            {"reason": "pin_mismatch", "friendly_name": ""},
        ),
    ],
)
def test_intent_response_defaults(frame: dict[str, Any], expected: dict[str, Any]) -> None:
    parsed = frames.parse_intent_response(frame)
    for key, value in expected.items():
        assert parsed[key] == value  # type: ignore[literal-required]


@pytest.mark.parametrize("verdict", [None, "maybe", 1])
def test_unknown_intent_response_is_a_protocol_error(verdict: object) -> None:
    with pytest.raises(ProtocolError):
        frames.parse_intent_response({"intent_response": verdict})


_B64 = "QUJD" * 2000  # 8000 chars: large enough for the bulk path


@pytest.mark.parametrize(
    "text",
    [
        '{"type":"artifacts_chunk","job_id":"j","chunk_index":0,"data_b64":"%s","is_last":false}',
        '{"data_b64":"%s","type":"artifacts_chunk"}',
        '{"type":"x","note":"a \\"data_b64\\":\\"trap","data_b64":"%s"}',
        '{"type":"x","data_b64":"%s","data_b64":""}',
        '{"type":"x","data_b64":"%s\\u0041"}',
        '{"type":"x","data_b64":"%s","other":"\u00e9"}',
        '{"type":"x","data_b64":"%s\u00e9"}',
        '{"type":"x","nested":{"data_b64":"%s"}}',
        '{"data_b64":1,"data_b64":"%s"}',
        '{"data_b64":"%s","data_b64":1}',
        '{"n":{"data_b64":1},"data_b64":"%s"}',
        '{"n":{"data_b64":"AAAA"},"data_b64":"%s"}',
        '{"data_b64":"%s","x":{"data_b64":1}}',
        '[{"data_b64":"%s"}]',
        '{"type":"x","data_b64":"%s',
        '{"type":"x","data_b64":"%s"',
    ],
)
def test_bulk_path_agrees_with_json(text: str) -> None:
    data = (text % _B64).encode()
    try:
        expected = json.loads(data)
    except json.JSONDecodeError:
        expected = None
    if not isinstance(expected, dict):
        with pytest.raises(ProtocolError):
            frames.decode_object(data)
        return
    assert frames.decode_object(data) == expected


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ({"job_id": "j1", "accepted": True, "reason": "ignored"}, ""),
        ({"job_id": "j1", "accepted": False}, "unknown"),
        ({"job_id": "j1", "accepted": False, "reason": 5}, "unknown"),
        ({"job_id": "j1", "accepted": False, "reason": "busy"}, "busy"),
        ({"job_id": "j1", "accepted": False, "reason": "x" * 100}, "x" * 64),
    ],
)
def test_reset_ack_reason(frame: dict[str, Any], reason: str) -> None:
    assert frames.parse_reset_build_env_ack(frame)["reason"] == reason
