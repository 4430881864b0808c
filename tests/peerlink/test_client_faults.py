"""The link survives a misbehaving server, a failing disk and a bad caller.

Each test drives the receiver double into one fault and checks the client's promise: the
request fails with a typed error, and the link itself stays up (or comes back by itself).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import errno
import logging
import os
from pathlib import Path
import time
from typing import Any

import aiohttp
import pytest

from custom_components.esphome_remote_build.peerlink import (
    Disconnected,
    DownloadTimeoutError,
    DownloadWriteError,
    Identity,
    InvalidJobIdError,
    NotConnectedError,
    ProtocolError,
    QueueStatus,
    SessionLostError,
    client as client_module,
    pair_request,
    pair_status,
    preview,
)
from custom_components.esphome_remote_build.peerlink.frames import MessageType
from tests.peerlink.conftest import Harness
from tests.support.receiver_double import Artifacts, DownloadFaults, ReceiverDouble

TARBALL = os.urandom(100_000)  # 4 chunks
HUGE = b"9" * 5000  # valid JSON, but json.loads refuses integers of more than 4300 digits


def _sessions(h: Harness) -> int:
    return len(h.rd.connections_for("peer_link"))


def _completed_job(h: Harness, identity: Identity, job_id: str = "job1") -> str:
    h.rd.add_job(identity.dashboard_id, job_id, artifacts=Artifacts(TARBALL, "0x10000"))
    return job_id


# --- 1. a frame the JSON parser refuses ends one session, never the link -----------------


@pytest.mark.parametrize(
    "plaintext",
    [
        b'{"type":"queue_status","idle":true,"running":false,"queue_depth":' + HUGE + b"}",
        b'{"type":"ping","nonce":' + HUGE + b"}",
        b'{"type":"ping","nonce":NaN}',
        b'{"type":"ping","nonce":1e400}',
    ],
    ids=["huge-int-in-queue-status", "huge-int-ping-nonce", "nan-nonce", "infinite-nonce"],
)
async def test_a_frame_json_refuses_resets_the_session_and_the_link_recovers(
    session: Harness, plaintext: bytes
) -> None:
    # What the receiver's own parser (orjson) refuses too: a malformed frame (§5.2).
    await session.rd.session().send_plaintext(plaintext)
    await session.until(lambda: bool(session.of(Disconnected)))
    assert session.of(Disconnected)[0] == Disconnected("transport_error", False, None)
    await session.until(lambda: _sessions(session) == 2 and session.client.connected)
    live = session.rd.session()
    await live.send_frame(
        {"type": "queue_status", "idle": False, "running": True, "queue_depth": 4}
    )
    await session.until(lambda: session.client.queue == QueueStatus(False, True, 4))
    await session.client.cancel_job("abc")
    await live.wait_received("cancel_job")


@pytest.mark.parametrize(
    "nonce",
    [b'"\\ud800"', b"[" * 20_000 + b"]" * 20_000, b'"7"', b"true"],
    ids=["lone-surrogate", "deeply-nested", "string", "bool"],
)
async def test_a_ping_without_an_integer_nonce_is_dropped(session: Harness, nonce: bytes) -> None:
    # The nonce is an int (§5.4); echoing anything else could fail to encode.
    live = session.rd.session()
    await live.send_plaintext(b'{"type":"ping","nonce":' + nonce + b"}")
    await live.send_frame({"type": "ping", "nonce": 5})
    pong = await live.wait_received("pong")
    assert pong["nonce"] == 5
    assert len(live.record.received_of("pong")) == 1
    assert session.client.connected
    assert _sessions(session) == 1


async def _pair_request(http: aiohttp.ClientSession, rd: ReceiverDouble, me: Identity) -> Any:
    return await pair_request(http, rd.host, rd.port, me, rd.pin, label="l", friendly_name="f")


async def _pair_status(http: aiohttp.ClientSession, rd: ReceiverDouble, me: Identity) -> Any:
    rd.add_peer(me.dashboard_id, me.pin_sha256)
    return await pair_status(http, rd.host, rd.port, me, rd.pin, timeout=5)


async def _preview(http: aiohttp.ClientSession, rd: ReceiverDouble, me: Identity) -> Any:
    return await preview(http, rd.host, rd.port, me)


@pytest.mark.parametrize("intent", [_preview, _pair_request, _pair_status])
async def test_a_one_shot_answer_json_refuses_is_a_protocol_error(
    http: aiohttp.ClientSession, rd: ReceiverDouble, intent: Callable[..., Any]
) -> None:
    rd.faults.response_plaintext = (
        b'{"intent_response":"ok","esphome_version":"2026.10.0","n":' + HUGE + b"}"
    )
    with pytest.raises(ProtocolError):
        await intent(http, rd, Identity.generate())


async def test_an_unexpected_error_in_a_session_is_logged_once_and_the_link_reconnects(
    session: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    client = session.client
    real = client._handlers[MessageType.QUEUE_STATUS]
    failures = [RuntimeError("bug in a frame handler")]

    async def broken(frame: dict[str, Any]) -> None:
        if failures:
            raise failures.pop()
        await real(frame)

    client._handlers[MessageType.QUEUE_STATUS] = broken
    waiter = asyncio.create_task(client.wait_for_job("job1", 5))
    await asyncio.sleep(0)
    await session.rd.session().send_frame(
        {"type": "queue_status", "idle": True, "running": False, "queue_depth": 0}
    )
    with pytest.raises(SessionLostError):
        await waiter
    await session.until(lambda: _sessions(session) == 2 and client.connected)
    assert session.of(Disconnected)[0].reason == "internal_error"
    assert session.of(Disconnected)[0].terminal is False
    assert client.running
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(logged) == 1
    assert logged[0].exc_info is not None
    assert "bug in a frame handler" in caplog.text


# --- 2. our disk refuses the artifacts ---------------------------------------------------


def _refuse_part_files(monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    """Fail the creation of the download's temporary file (and nothing else) with ``code``."""
    real_open = os.open

    def fake_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if str(path).endswith(".part"):
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_open)


@pytest.mark.parametrize("cause", ["parent-is-a-file", "ENOSPC", "EROFS", "EACCES"])
async def test_a_local_write_error_fails_fast_and_keeps_the_session(
    session: Harness,
    identity: Identity,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cause: str,
) -> None:
    job_id = _completed_job(session, identity)
    if cause == "parent-is-a-file":
        blocker = tmp_path / "blocker"
        blocker.write_bytes(b"")
        dest = blocker / "out.tar.gz"
    else:
        _refuse_part_files(monkeypatch, getattr(errno, cause))
        dest = tmp_path / "out.tar.gz"
    started = time.monotonic()
    with pytest.raises(DownloadWriteError) as info:
        async with asyncio.timeout(5):  # far sooner than the 60 s chunk gap
            await session.client.download_artifacts(job_id, dest, chunk_timeout=60)
    assert time.monotonic() - started < 5
    assert info.value.reason == "write_failed"
    assert session.client.connected
    monkeypatch.undo()
    # The server streams the abandoned download to its end; the next one works on the
    # same session.
    await session.client.download_artifacts(job_id, tmp_path / "ok.tar.gz", chunk_timeout=5)
    assert (tmp_path / "ok.tar.gz").read_bytes() == TARBALL
    assert _sessions(session) == 1
    assert not session.of(Disconnected)
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".part")]


# --- 3. a stream that stalls for good must not block every later download ----------------


@pytest.mark.parametrize("retry_at_once", [False, True], ids=["retry-later", "retry-at-once"])
async def test_a_stalled_abandoned_stream_drops_the_session_and_the_next_download_works(
    session: Harness, identity: Identity, tmp_path: Path, retry_at_once: bool
) -> None:
    job_id = _completed_job(session, identity)
    session.rd.faults.download = DownloadFaults(stall_after_chunk=1)  # pings keep flowing
    with pytest.raises(DownloadTimeoutError) as info:
        await session.client.download_artifacts(job_id, tmp_path / "a", chunk_timeout=0.3)
    assert info.value.reason == "chunk_timeout"
    session.rd.faults.download = DownloadFaults()
    if not retry_at_once:
        # No one asks for anything: the client notices the stream never ends by itself.
        await session.until(lambda: _sessions(session) == 2 and session.client.connected)
    result = await session.client.download_artifacts(job_id, tmp_path / "b", chunk_timeout=0.3)
    assert result.total_bytes == len(TARBALL)
    assert (tmp_path / "b").read_bytes() == TARBALL
    assert _sessions(session) == 2
    first = session.rd.connections_for("peer_link")[0]
    assert first.terminate_received == "stalled_download"
    assert session.of(Disconnected) == [Disconnected("stalled_download", False, None)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


async def test_a_stalled_stream_reconnects_without_back_off(
    rd: ReceiverDouble, identity: Identity, make_client: Callable[..., Harness], tmp_path: Path
) -> None:
    rd.add_peer(identity.dashboard_id, identity.pin_sha256)
    h = make_client(backoff_initial=30.0, backoff_max=30.0)
    await h.client.start()
    await h.client.wait_connected(5)
    job_id = _completed_job(h, identity)
    rd.faults.download = DownloadFaults(stall_after_chunk=0)
    with pytest.raises(DownloadTimeoutError):
        await h.client.download_artifacts(job_id, tmp_path / "a", chunk_timeout=0.2)
    started = time.monotonic()
    await h.until(lambda: bool(h.of(Disconnected)))
    await h.until(lambda: _sessions(h) == 2 and h.client.connected, timeout=3)
    assert time.monotonic() - started < 3  # not the 30 s back-off


# --- 4. liveness: a frozen server, a waiting caller ---------------------------------------


async def test_a_frozen_server_is_noticed_within_one_ping_and_its_answer_window(
    rd: ReceiverDouble, identity: Identity, make_client: Callable[..., Harness]
) -> None:
    # Production values scaled by 1/100: ping every 30 s, answer within 15 s, the old
    # 90 s silence rule.  A frozen server must be noticed within 30 + 15 s, not 90 + 30 s.
    rd.add_peer(identity.dashboard_id, identity.pin_sha256)
    h = make_client(heartbeat_interval=0.3, pong_timeout=0.15, dead_after=0.9)
    await h.client.start()
    await h.client.wait_connected(5)
    await asyncio.sleep(0.4)  # a few pings and pongs went by: the session is healthy
    assert not h.of(Disconnected)
    frozen_at = time.monotonic()
    rd.session().freeze()
    await h.until(lambda: bool(h.of(Disconnected)), timeout=5)
    noticed = time.monotonic() - frozen_at
    assert h.of(Disconnected)[0] == Disconnected("heartbeat_timeout", False, None)
    assert noticed < 0.3 + 0.15 + 0.2, f"noticed after {noticed:.2f} s"
    await h.until(lambda: h.client.connected and _sessions(h) == 2)


async def test_a_slow_but_alive_server_is_not_declared_dead(
    rd: ReceiverDouble, identity: Identity, make_client: Callable[..., Harness]
) -> None:
    # Pongs never come, but other frames keep arriving: any inbound frame is liveness
    # (§5.3; nobody checks pong nonces).
    rd.add_peer(identity.dashboard_id, identity.pin_sha256)
    rd.faults.ignore_pings = True
    h = make_client(heartbeat_interval=0.05, pong_timeout=0.2, dead_after=10.0)
    await h.client.start()
    await h.client.wait_connected(5)
    live = rd.session()
    for _ in range(20):
        await live.send_frame({"type": "brand_new_type"})
        await asyncio.sleep(0.05)
    assert h.client.connected
    assert not h.of(Disconnected)
    assert len(live.record.received_of("ping")) >= 5


async def test_wait_connected_cuts_a_pending_back_off_short(
    rd: ReceiverDouble, identity: Identity, make_client: Callable[..., Harness]
) -> None:
    rd.faults.refuse_intent["peer_link"] = ("pending", "pending_not_approved")
    h = make_client(backoff_initial=30.0, backoff_max=30.0)
    await h.client.start()
    await h.until(lambda: bool(h.of(Disconnected)))  # refused once: now sleeping 30 s
    await asyncio.sleep(0.05)
    rd.add_peer(identity.dashboard_id, identity.pin_sha256)
    del rd.faults.refuse_intent["peer_link"]
    started = time.monotonic()
    await h.client.wait_connected(3)
    assert time.monotonic() - started < 3
    assert _sessions(h) == 2


async def test_wait_connected_on_a_stopped_client_does_not_wait_for_nothing(
    make_client: Callable[..., Harness],
) -> None:
    h = make_client()
    with pytest.raises(NotConnectedError):
        await h.client.wait_connected(0.05)


def test_the_default_back_off_is_capped_low() -> None:
    assert client_module.BACKOFF_INITIAL == 1.0
    assert client_module.BACKOFF_MAX == 10.0
    assert client_module.HEARTBEAT_INTERVAL + client_module.PONG_TIMEOUT <= 45.0


# --- 5. job ids no job can have ----------------------------------------------------------


async def _cancel(h: Harness, job_id: str, tmp_path: Path) -> None:
    await h.client.cancel_job(job_id)


async def _download(h: Harness, job_id: str, tmp_path: Path) -> None:
    await h.client.download_artifacts(job_id, tmp_path / "out")


async def _wait(h: Harness, job_id: str, tmp_path: Path) -> None:
    await h.client.wait_for_job(job_id, 1)


async def _submit(h: Harness, job_id: str, tmp_path: Path) -> None:
    bundle = tmp_path / "b.tar.gz"
    bundle.write_bytes(b"x" * 100)
    await h.client.submit_job(bundle, "dev.yaml", job_id=job_id)


@pytest.mark.parametrize("request_", [_cancel, _download, _wait, _submit])
@pytest.mark.parametrize(
    "job_id",
    ["x" * 70_000, "", "a/b", "../x", "é", "a\n", "x" * 65],
    ids=["70000-chars", "empty", "slash", "dotdot", "non-ascii", "newline", "65-chars"],
)
async def test_a_job_id_no_job_can_have_is_refused_before_anything_is_sent(
    session: Harness,
    tmp_path: Path,
    request_: Callable[[Harness, str, Path], Any],
    job_id: str,
) -> None:
    with pytest.raises(InvalidJobIdError) as info:
        await request_(session, job_id, tmp_path)
    assert info.value.reason == "invalid_job_id"
    assert not isinstance(info.value, ValueError)
    live = session.rd.session()
    await live.send_frame({"type": "ping", "nonce": 77})
    await live.wait_received("pong")  # everything we sent before has arrived
    sent = [f["type"] for f in live.record.received if f["type"] not in ("ping", "pong")]
    assert sent == []
    assert session.client.connected
    assert _sessions(session) == 1
    assert list(tmp_path.iterdir()) in ([], [tmp_path / "b.tar.gz"])
