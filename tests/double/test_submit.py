"""Bundle upload (every §5.5 ack reason), the scripted job and cancel."""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any

import pytest

from tests.double.conftest import Connect
from tests.double.initiator import Offloader, RawInitiator, chunk_frame, reassemble
from tests.support.receiver_double import (
    BUNDLE_MAX_TOTAL_BYTES,
    JobScript,
    JobStatus,
    ReceiverDouble,
)

BUNDLE = os.urandom(70_000)  # 3 chunks


def _header(job_id: object = "j1", data: bytes = b"0123456789", **overrides: Any) -> dict[str, Any]:
    header = {
        "type": "submit_job",
        "job_id": job_id,
        "configuration_filename": "dev.yaml",
        "target": "compile",
        "total_bundle_bytes": len(data),
        "num_chunks": 1,
        "bundle_sha256": hashlib.sha256(data).hexdigest(),
    }
    return header | overrides


def _chunk(
    job_id: str = "j1", data: bytes = b"0123456789", index: int = 0, *, is_last: bool = True
) -> dict[str, Any]:
    return chunk_frame("submit_job_chunk", job_id, index, data, is_last)


async def test_upload_job_and_download_round_trip(
    connect: Connect, rd: ReceiverDouble, paired: Offloader
) -> None:
    tarball = os.urandom(100_000)
    rd.set_artifacts(tarball, "0x0")
    link = await connect()
    assert await link.upload("job-1", BUNDLE) == {
        "type": "submit_job_ack",
        "job_id": "job-1",
        "accepted": True,
    }
    states = [(await link.recv_type("job_state_changed"))["status"] for _ in range(3)]
    assert states == ["queued", "running", "completed"]
    lines = [f["line"] for f in link.seen if f["type"] == "job_output"]
    assert lines == JobScript().lines
    job = rd.job("job-1")
    assert job.bundle == BUNDLE
    assert job.header["configuration_filename"] == "dev.yaml"
    assert job.status is JobStatus.COMPLETED

    start, chunks, end = await link.download("job-1")
    assert start == {
        "type": "artifacts_start",
        "job_id": "job-1",
        "total_bytes": 100_000,
        "num_chunks": 4,
        "artifacts_sha256": hashlib.sha256(tarball).hexdigest(),
        "firmware_offset": "0x0",
    }
    assert [(c["chunk_index"], c["is_last"]) for c in chunks] == [
        (0, False),
        (1, False),
        (2, False),
        (3, True),
    ]
    assert [len(base64.b64decode(c["data_b64"])) for c in chunks] == [32768] * 3 + [1696]
    assert reassemble(chunks) == tarball
    assert end == {"type": "artifacts_end", "job_id": "job-1", "accepted": True}


async def test_queue_status_follows_the_queue(
    connect: Connect, rd: ReceiverDouble, paired: Offloader
) -> None:
    rd.job_script = JobScript(lines=[], hold=True)
    link = await connect()
    await link.upload("a", BUNDLE)
    await rd.wait_job_status("a", JobStatus.RUNNING)
    await link.upload("b", BUNDLE)
    await rd.wait_for(lambda: rd.queue_status_frame()["queue_depth"] == 1)
    rd.release_job("a")
    await rd.wait_job_status("a", JobStatus.COMPLETED)
    await rd.wait_job_status("b", JobStatus.RUNNING)
    rd.release_job("b")
    await rd.wait_job_status("b", JobStatus.COMPLETED)
    await link.send({"type": "ping", "nonce": 1})
    await link.recv_type("pong")
    statuses = [
        (f["idle"], f["running"], f["queue_depth"])
        for f in link.seen
        if f["type"] == "queue_status"
    ]
    assert statuses[0] == (True, False, 0)
    assert (False, True, 1) in statuses
    assert statuses[-1] == (True, False, 0)


async def test_failed_outcome_carries_reason(
    connect: Connect, rd: ReceiverDouble, paired: Offloader
) -> None:
    rd.job_script = JobScript(
        lines=["boom\n"], outcome=JobStatus.FAILED, error_message="x", failure_reason="provision"
    )
    link = await connect()
    await link.upload("j", BUNDLE)
    for _ in range(2):
        await link.recv_type("job_state_changed")
    assert await link.recv_type("job_state_changed") == {
        "type": "job_state_changed",
        "job_id": "j",
        "status": "failed",
        "error_message": "x",
        "failure_reason": "provision",
    }


@pytest.mark.parametrize("queued", [False, True], ids=["running", "queued"])
async def test_cancel_job(
    connect: Connect, rd: ReceiverDouble, paired: Offloader, queued: bool
) -> None:
    rd.job_script = JobScript(lines=[], hold=True)
    link = await connect()
    await link.upload("first", BUNDLE)
    await rd.wait_job_status("first", JobStatus.RUNNING)
    target = "first"
    if queued:
        await link.upload("second", BUNDLE)
        target = "second"
    await link.send({"type": "cancel_job", "job_id": target})
    await link.send({"type": "cancel_job", "job_id": "unknown"})
    await link.send({"type": "cancel_job"})  # malformed: silently dropped
    await rd.wait_job_status(target, JobStatus.CANCELLED)
    frame = await link.recv_type("job_state_changed")
    while frame["status"] != "cancelled":
        frame = await link.recv_type("job_state_changed")
    assert frame == {
        "type": "job_state_changed",
        "job_id": target,
        "status": "cancelled",
        "error_message": "Job cancelled",
    }
    assert rd.session().record.terminate_sent is None


# ----- every ack reason: (frames to send, expected reason, fatal) -------------------------

BAD_UPLOADS: dict[str, tuple[list[dict[str, Any]], str, bool]] = {
    "header-wrong-type": ([_header(total_bundle_bytes="10")], "invalid_header", True),
    "header-bool-int": ([_header(num_chunks=True)], "invalid_header", True),
    "header-float-int": ([_header(num_chunks=1.0)], "invalid_header", True),
    "header-missing-field": (
        [{k: v for k, v in _header().items() if k != "bundle_sha256"}],
        "invalid_header",
        True,
    ),
    "header-bad-filename": (
        [_header(configuration_filename="../dev.yaml")],
        "invalid_header",
        False,
    ),
    "header-not-yaml": ([_header(configuration_filename="dev.txt")], "invalid_header", False),
    "header-bad-target": ([_header(target="flash")], "invalid_header", False),
    "upload-target": ([_header(target="upload")], "upload_unsupported", False),
    "empty": ([_header(total_bundle_bytes=0)], "empty_bundle", False),
    "zero-chunks": ([_header(num_chunks=0)], "chunk_count_mismatch", False),
    "too-big": ([_header(total_bundle_bytes=BUNDLE_MAX_TOTAL_BYTES + 1)], "oversized", False),
    "duplicate": ([_header(), _header()], "duplicate_submit", False),
    "no-inflight": ([_chunk()], "no_inflight_submit", False),
    "job-id-mismatch": ([_header(), _chunk(job_id="other")], "job_id_mismatch", False),
    "chunk-wrong-type": (
        [_header(), _chunk() | {"chunk_index": "0"}],
        "invalid_chunk",
        True,
    ),
    "chunk-bad-base64": ([_header(), _chunk() | {"data_b64": "!!!"}], "chunk_decode_failed", True),
    "out-of-order": ([_header(num_chunks=2), _chunk(index=1, is_last=False)], "out_of_order", True),
    "chunk-oversized": ([_header(total_bundle_bytes=5), _chunk()], "oversized", False),
    "is-last-early": (
        [_header(num_chunks=2), _chunk(is_last=True)],
        "chunk_count_mismatch",
        True,
    ),
    "undersized": ([_header(total_bundle_bytes=20), _chunk()], "undersized", False),
    "hash-mismatch": ([_header(bundle_sha256="0" * 64), _chunk()], "hash_mismatch", False),
}


@pytest.mark.parametrize(("frames", "reason", "fatal"), BAD_UPLOADS.values(), ids=BAD_UPLOADS)
async def test_ack_reasons(
    connect: Connect,
    rd: ReceiverDouble,
    paired: Offloader,
    frames: list[dict[str, Any]],
    reason: str,
    fatal: bool,
) -> None:
    link = await connect()
    for frame in frames:
        await link.send(frame)
    ack = await link.recv_type("submit_job_ack")
    assert (ack["accepted"], ack["reason"]) == (False, reason)
    await _assert_session_fate(link, fatal=fatal)
    assert rd.jobs == {}


async def test_post_completion_chunk_is_fatal(
    connect: Connect, rd: ReceiverDouble, paired: Offloader
) -> None:
    link = await connect()
    await link.send(_header())
    await link.send(_chunk())
    assert (await link.recv_type("submit_job_ack"))["accepted"] is True
    await link.send(_chunk())
    ack = await link.recv_type("submit_job_ack")
    assert (ack["accepted"], ack["reason"]) == (False, "post_completion")
    await _assert_session_fate(link, fatal=True)


async def test_invalid_header_acks_with_empty_job_id_when_it_is_not_a_string(
    connect: Connect, paired: Offloader
) -> None:
    link = await connect()
    await link.send(_header(job_id=5))
    assert (await link.recv_type("submit_job_ack"))["job_id"] == ""


async def _assert_session_fate(link: RawInitiator, *, fatal: bool) -> None:
    if fatal:
        frames = await link.recv_until_closed()
        assert frames[-1] == {"type": "terminate", "reason": "malformed_frame"}
        return
    await link.send({"type": "ping", "nonce": 9})
    assert await link.recv_type("pong") == {"type": "pong", "nonce": 9}
