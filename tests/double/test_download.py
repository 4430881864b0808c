"""download_artifacts: the §5.7 checks in order, and every download fault hook."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
import hashlib
import os
from typing import Any

import aiohttp
import pytest

from tests.double.conftest import Connect
from tests.double.initiator import Offloader, RawInitiator, reassemble
from tests.support.receiver_double import (
    Artifacts,
    DownloadFaults,
    JobStatus,
    ReceiverDouble,
)

TARBALL = os.urandom(3 * 32768 + 100)  # 4 chunks
SHA = hashlib.sha256(TARBALL).hexdigest()


@pytest.fixture
def done_job(rd: ReceiverDouble, paired: Offloader) -> str:
    rd.add_job(paired.dashboard_id, "done", artifacts=Artifacts(TARBALL, "0x10000"))
    return "done"


def _refusal(end: dict[str, Any]) -> tuple[bool, str, str | None]:
    return end["accepted"], end["reason"], end.get("detail")


async def test_download_without_string_job_id_terminates(
    connect: Connect, paired: Offloader
) -> None:
    link = await connect()
    await link.send({"type": "download_artifacts", "job_id": 3})
    frames = await link.recv_until_closed()
    assert frames[-1] == {"type": "terminate", "reason": "malformed_frame"}
    assert all(f["type"] != "artifacts_end" for f in frames)


def _unknown(rd: ReceiverDouble, me: Offloader) -> None:
    pass


def _someone_elses(rd: ReceiverDouble, me: Offloader) -> None:
    rd.add_job("another-offloader", "j", artifacts=Artifacts(TARBALL))


def _running(rd: ReceiverDouble, me: Offloader) -> None:
    rd.add_job(me.dashboard_id, "j", status=JobStatus.RUNNING, artifacts=Artifacts(TARBALL))


def _busy(rd: ReceiverDouble, me: Offloader) -> None:
    rd.add_job(me.dashboard_id, "j", artifacts=Artifacts(TARBALL))
    rd.build_env_reset_active = True


def _shutting_down(rd: ReceiverDouble, me: Offloader) -> None:
    rd.add_job(me.dashboard_id, "j", artifacts=Artifacts(TARBALL))
    rd.shutting_down = True


def _no_build_dir(rd: ReceiverDouble, me: Offloader) -> None:
    rd.add_job(me.dashboard_id, "j")


def _pack_failed(rd: ReceiverDouble, me: Offloader) -> None:
    rd.add_job(me.dashboard_id, "j", artifacts=Artifacts(TARBALL))
    rd.faults.download.refusal = ("pack_failed", "OSError: disk full")


def _refused_without_detail(rd: ReceiverDouble, me: Offloader) -> None:
    rd.add_job(me.dashboard_id, "j", artifacts=Artifacts(TARBALL))
    rd.faults.download.refusal = ("stream_failed", None)


@pytest.mark.parametrize(
    ("setup", "reason", "has_detail"),
    [
        (_unknown, "unknown_job", False),
        (_someone_elses, "unknown_job", False),
        (_running, "job_not_completed", False),
        (_busy, "busy", False),
        (_shutting_down, "shutting_down", False),
        (_no_build_dir, "build_dir_missing", True),
        (_pack_failed, "pack_failed", True),
        (_refused_without_detail, "stream_failed", False),
    ],
)
async def test_download_refusals(
    connect: Connect,
    rd: ReceiverDouble,
    paired: Offloader,
    setup: Callable[[ReceiverDouble, Offloader], None],
    reason: str,
    has_detail: bool,
) -> None:
    setup(rd, paired)
    link = await connect()
    start, chunks, end = await link.download("j")
    assert (start, chunks) == ({}, [])
    accepted, got_reason, detail = _refusal(end)
    assert (accepted, got_reason, detail is not None) == (False, reason, has_detail)
    # A refusal leaves the session usable.
    await link.send({"type": "ping", "nonce": 1})
    await link.recv_type("pong")


async def test_duplicate_download_while_streaming(
    connect: Connect, rd: ReceiverDouble, done_job: str
) -> None:
    rd.faults.download.stall_after_chunk = 0
    link = await connect()
    await link.send({"type": "download_artifacts", "job_id": done_job})
    await link.recv_type("artifacts_chunk")
    assert rd.session().download_active
    start, chunks, end = await link.download("done")
    assert (start, chunks) == ({}, [])
    assert _refusal(end) == (False, "duplicate_download", None)


async def test_pings_flow_during_a_slow_stream(
    http: aiohttp.ClientSession, offloader: Offloader
) -> None:
    async with ReceiverDouble(ping_interval=0.02) as rd:
        rd.add_peer(offloader.dashboard_id, offloader.pin)
        rd.add_job(offloader.dashboard_id, "j", artifacts=Artifacts(TARBALL))
        rd.faults.download.chunk_delay = 0.05
        link = await RawInitiator.open(http, rd.ws_url, offloader)
        _, chunks, end = await link.download("j")
        assert end["accepted"] is True
        assert reassemble(chunks) == TARBALL
        assert any(f["type"] == "ping" for f in link.seen)
        await link.close()


async def test_stall_keeps_session_alive(http: aiohttp.ClientSession, offloader: Offloader) -> None:
    async with ReceiverDouble(ping_interval=0.02) as rd:
        rd.add_peer(offloader.dashboard_id, offloader.pin)
        rd.add_job(offloader.dashboard_id, "j", artifacts=Artifacts(TARBALL))
        rd.faults.download.stall_after_chunk = 1
        link = await RawInitiator.open(http, rd.ws_url, offloader)
        await link.send({"type": "download_artifacts", "job_id": "j"})
        for _ in range(5):
            ping = await link.recv_type("ping")
            await link.send({"type": "pong", "nonce": ping["nonce"]})
        indexes = [f["chunk_index"] for f in link.seen if f["type"] == "artifacts_chunk"]
        assert indexes == [0, 1]
        assert not any(f["type"] == "artifacts_end" for f in link.seen)
        assert rd.session().download_active
        await link.close()


async def test_drop_after_chunk(connect: Connect, rd: ReceiverDouble, done_job: str) -> None:
    rd.faults.download.drop_after_chunk = 2
    link = await connect()
    await link.send({"type": "download_artifacts", "job_id": done_job})
    frames = await link.recv_until_closed()
    assert [f["chunk_index"] for f in frames if f["type"] == "artifacts_chunk"] == [0, 1, 2]
    assert all(f["type"] not in {"terminate", "artifacts_end"} for f in frames)
    await rd.wait_for(lambda: rd.sessions == {})


@dataclass
class Observed:
    """What the raw initiator saw of one download stream."""

    order: list[str]
    start: dict[str, Any]
    chunks: list[tuple[int, bool]]
    end: dict[str, Any]
    data: bytes


type Stream = Callable[..., Awaitable[Observed]]


@pytest.fixture
def stream(connect: Connect, rd: ReceiverDouble, done_job: str) -> Stream:
    """Apply download faults, run one download and describe what arrived."""

    async def _run(**faults: Any) -> Observed:
        rd.faults.download = DownloadFaults(**faults)
        link = await connect()
        await link.send({"type": "download_artifacts", "job_id": done_job})
        await link.recv_type("artifacts_end")
        frames = [f for f in link.seen if f["type"].startswith("artifacts_")]
        chunks = [f for f in frames if f["type"] == "artifacts_chunk"]
        return Observed(
            order=[f["type"] for f in frames],
            start=next((f for f in frames if f["type"] == "artifacts_start"), {}),
            chunks=[(c["chunk_index"], c["is_last"]) for c in chunks],
            end=frames[-1],
            data=reassemble(chunks),
        )

    return _run


NORMAL = [(0, False), (1, False), (2, False), (3, True)]


async def test_fault_wrong_sha(stream: Stream) -> None:
    seen = await stream(wrong_sha256=True)
    assert seen.start["artifacts_sha256"] != SHA
    assert (seen.chunks, seen.data, seen.end["accepted"]) == (NORMAL, TARBALL, True)


@pytest.mark.parametrize("delta", [-1, 1, 40000])
async def test_fault_declared_sizes(stream: Stream, delta: int) -> None:
    seen = await stream(total_bytes_delta=delta, num_chunks_delta=1)
    assert (seen.start["total_bytes"], seen.start["num_chunks"]) == (len(TARBALL) + delta, 5)
    assert (seen.chunks, seen.data) == (NORMAL, TARBALL)


async def test_fault_index_override_and_duplicate(stream: Stream) -> None:
    seen = await stream(chunk_index_override={1: 2, 2: 1}, duplicate_chunk=3)
    assert seen.chunks == [(0, False), (2, False), (1, False), (3, True), (3, True)]


@pytest.mark.parametrize(
    ("faults", "expected"),
    [
        ({"is_last_early_at": 1}, [(0, False), (1, True), (2, False), (3, False)]),
        ({"omit_is_last": True}, [(0, False), (1, False), (2, False), (3, False)]),
        ({"extra_chunk_after_last": True}, [*NORMAL, (4, True)]),
    ],
)
async def test_fault_is_last_and_extra(
    stream: Stream, faults: dict[str, Any], expected: list[tuple[int, bool]]
) -> None:
    seen = await stream(**faults)
    assert seen.chunks == expected
    assert seen.end["accepted"] is True


async def test_fault_chunk_before_start(stream: Stream) -> None:
    seen = await stream(chunk_before_start=True)
    assert seen.order[:2] == ["artifacts_chunk", "artifacts_start"]
    assert seen.start["num_chunks"] == 4
    assert seen.chunks == [(0, False), *NORMAL]


async def test_fault_omit_start(stream: Stream) -> None:
    seen = await stream(omit_start=True)
    assert seen.order == ["artifacts_chunk"] * 4 + ["artifacts_end"]
    assert seen.chunks == NORMAL
