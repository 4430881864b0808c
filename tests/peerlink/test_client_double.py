"""The long-lived session against the receiver double, with fault injection."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from custom_components.esphome_remote_build.peerlink import (
    BuildGoneError,
    Connected,
    Disconnected,
    DownloadError,
    DownloadIntegrityError,
    DownloadRejectedError,
    DownloadTimeoutError,
    Identity,
    JobNotCompletedError,
    JobOutput,
    JobStateChanged,
    JobStatus,
    NotConnectedError,
    NotPairedError,
    PeerLinkError,
    PinMismatchError,
    QueueStatus,
    SessionLostError,
    SubmitRejectedError,
    SubmitTimeoutError,
    UnknownJobError,
    client as client_module,
    submit as submit_module,
)
from tests.peerlink.conftest import Harness
from tests.support.receiver_double import (
    Artifacts,
    DownloadFaults,
    JobScript,
    JobStatus as ServerJobStatus,
    ReceiverDouble,
)

TARBALL = os.urandom(100_000)  # 4 chunks


def _sessions(h: Harness) -> int:
    return len(h.rd.connections_for("peer_link"))


async def test_connect_sends_identity_and_gets_queue(session: Harness, identity: Identity) -> None:
    assert session.client.connected
    assert isinstance(session.events[0], Connected)
    assert session.events[0].server_info.pin_sha256 == session.rd.pin
    await session.until(lambda: bool(session.of(QueueStatus)))
    assert session.client.queue == QueueStatus(idle=True, running=False, queue_depth=0)
    payload = session.rd.connections_for("peer_link")[0].msg3_payload
    assert payload == {
        "dashboard_id": identity.dashboard_id,
        "friendly_name": "Home Assistant",
        "ha_addon": False,
    }


async def test_answers_pings_and_sends_its_own(session: Harness) -> None:
    live = session.rd.session()
    await live.send_frame({"type": "ping", "nonce": 42})
    pong = await live.wait_received("pong")
    assert pong["nonce"] == 42
    await live.wait_received("ping", count=2)
    assert [p["nonce"] for p in live.record.received_of("ping")[:2]] == [1, 2]


@pytest.mark.parametrize(
    "inject",
    [
        lambda s: s.send_text(),
        lambda s: s.send_raw(b"\x00" * 40),
        lambda s: s.send_plaintext(b"not json"),
        lambda s: s.send_plaintext(b"[1,2,3]"),
        lambda s: s.send_oversized(),
    ],
    ids=["text", "undecryptable", "garbage", "non-object", "oversized"],
)
async def test_malformed_frames_end_the_session_and_it_recovers(
    session: Harness, inject: Callable[[Any], Any]
) -> None:
    await inject(session.rd.session())
    await session.until(lambda: bool(session.of(Disconnected)))
    assert session.of(Disconnected)[0].terminal is False
    await session.until(lambda: _sessions(session) == 2 and session.client.connected)


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "queue_status", "idle": True, "running": False, "queue_depth": "3"},
        {"type": "queue_status", "idle": 1, "running": False, "queue_depth": 0},
        {"type": "job_state_changed", "job_id": "j", "status": "exploded"},
        {"type": "job_output", "job_id": "j", "stream": "stdin", "line": "x"},
        {"type": "brand_new_type", "anything": [1, 2]},
    ],
)
async def test_malformed_known_and_unknown_frames_are_dropped(
    session: Harness, frame: dict[str, Any]
) -> None:
    live = session.rd.session()
    await live.send_frame(frame)
    await live.send_frame(
        {"type": "queue_status", "idle": False, "running": True, "queue_depth": 2}
    )
    await session.until(lambda: session.client.queue == QueueStatus(False, True, 2))
    assert session.client.connected
    assert _sessions(session) == 1


async def test_heartbeat_timeout_reconnects(
    rd: ReceiverDouble, identity: Identity, make_client: Callable[..., Harness]
) -> None:
    rd.add_peer(identity.dashboard_id, identity.pin_sha256)
    rd.faults.ignore_pings = True
    h = make_client(dead_after=0.3)
    await h.client.start()
    await h.until(lambda: any(d.reason == "heartbeat_timeout" for d in h.of(Disconnected)))
    rd.faults.ignore_pings = False
    await h.until(lambda: h.client.connected and _sessions(h) >= 2)


@pytest.mark.parametrize(("stop_on_superseded", "terminal"), [(True, True), (False, False)])
async def test_superseded(
    rd: ReceiverDouble,
    identity: Identity,
    make_client: Callable[..., Harness],
    stop_on_superseded: bool,
    terminal: bool,
) -> None:
    rd.add_peer(identity.dashboard_id, identity.pin_sha256)
    h = make_client(stop_on_superseded=stop_on_superseded)
    await h.client.start()
    await h.client.wait_connected(5)
    await rd.session().terminate("superseded")
    await h.until(lambda: bool(h.of(Disconnected)))
    assert h.of(Disconnected)[0] == Disconnected("superseded", terminal, None)
    if terminal:
        await h.until(lambda: not h.client.running)
        assert h.client.stopped_reason == "superseded"
    else:
        await h.until(lambda: h.client.connected and _sessions(h) == 2)


async def test_server_key_change_is_terminal_and_sends_nothing(
    rd: ReceiverDouble, identity: Identity, make_client: Callable[..., Harness]
) -> None:
    rd.add_peer(identity.dashboard_id, identity.pin_sha256)
    h = make_client()
    await h.client.start()
    await h.client.wait_connected(5)
    new_pin = rd.set_static_key()
    await rd.session().drop()
    await h.until(lambda: not h.client.running)
    last = h.of(Disconnected)[-1]
    assert last.terminal
    assert isinstance(last.error, PinMismatchError)
    assert last.error.seen == new_pin
    assert rd.connections[-1].msg3_received is False
    assert h.client.stopped_reason == "pin_mismatch"


@pytest.mark.parametrize("reason", ["no_approved_peer", "pin_mismatch"])
async def test_revoked_pairing_is_terminal(
    rd: ReceiverDouble, identity: Identity, make_client: Callable[..., Harness], reason: str
) -> None:
    rd.faults.refuse_intent["peer_link"] = ("rejected", reason)
    h = make_client()
    await h.client.start()
    await h.until(lambda: not h.client.running)
    error = h.of(Disconnected)[-1].error
    assert isinstance(error, NotPairedError)
    assert error.reason == reason
    assert error.terminal
    assert _sessions(h) == 1  # no retries after a terminal refusal


@pytest.mark.parametrize(
    "response",
    [("pending", "pending_not_approved"), ("rejected", None), ("rejected", "bad_intent")],
)
async def test_transient_refusals_are_retried(
    rd: ReceiverDouble,
    identity: Identity,
    make_client: Callable[..., Harness],
    response: tuple[str, str | None],
) -> None:
    rd.add_peer(identity.dashboard_id, identity.pin_sha256)
    rd.faults.refuse_intent["peer_link"] = response
    h = make_client()
    await h.client.start()
    await h.until(lambda: _sessions(h) >= 3)
    assert h.client.running
    del rd.faults.refuse_intent["peer_link"]
    await h.client.wait_connected(5)


async def test_backoff_grows_and_reconnect_now_cuts_it(
    rd: ReceiverDouble, identity: Identity, make_client: Callable[..., Harness]
) -> None:
    rd.faults.refuse_intent["peer_link"] = ("pending", "pending_not_approved")
    h = make_client(backoff_initial=0.05, backoff_max=60)
    await h.client.start()
    await h.until(lambda: _sessions(h) >= 4, timeout=5)  # 0.05 + 0.1 + 0.2
    count = _sessions(h)
    await asyncio.sleep(0.3)  # the next delay is 0.4 s: nothing new yet
    assert _sessions(h) == count
    rd.add_peer(identity.dashboard_id, identity.pin_sha256)
    del rd.faults.refuse_intent["peer_link"]
    h.client.reconnect_now()
    await h.client.wait_connected(1)


async def test_requests_need_a_session(make_client: Callable[..., Harness], tmp_path: Path) -> None:
    h = make_client()
    with pytest.raises(NotConnectedError):
        await h.client.cancel_job("j")
    with pytest.raises(NotConnectedError):
        await h.client.download_artifacts("j", tmp_path / "x")
    with pytest.raises(NotConnectedError):
        await h.client.wait_connected(0.05)
    bundle = tmp_path / "b.tar.gz"
    bundle.write_bytes(b"x")
    with pytest.raises(NotConnectedError):
        await h.client.submit_job(bundle, "a.yaml")
    with pytest.raises(NotConnectedError):
        await h.client.wait_for_job("j", 1)


# --- submit / job events ----------------------------------------------------------------


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    path = tmp_path / "bundle.tar.gz"
    path.write_bytes(os.urandom(70_000))  # 3 chunks
    return path


async def test_submit_and_follow_a_job(session: Harness, bundle: Path) -> None:
    session.rd.set_artifacts(TARBALL, "0x10000")
    job_id = await session.client.submit_job(bundle, "dev.yaml", device_name="dev")
    record = session.rd.job(job_id)
    assert record.bundle == bundle.read_bytes()
    assert record.header["configuration_filename"] == "dev.yaml"
    assert record.header["device_name"] == "dev"
    assert record.header["bundle_sha256"] == hashlib.sha256(bundle.read_bytes()).hexdigest()
    final = await session.client.wait_for_job(job_id, 5)
    assert final.status is JobStatus.COMPLETED
    states = [e.status for e in session.of(JobStateChanged) if e.job_id == job_id]
    assert states == [JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.COMPLETED]
    lines = [e.line for e in session.of(JobOutput) if e.job_id == job_id]
    assert lines[1].endswith("\r")  # terminators survive
    # a finished job answers wait_for_job at once
    assert await session.client.wait_for_job(job_id, 0.01) == final


async def test_cancel_a_running_job(session: Harness, bundle: Path) -> None:
    session.rd.job_script = JobScript(hold=True)
    job_id = await session.client.submit_job(bundle, "dev.yaml")
    await session.rd.wait_job_status(job_id, ServerJobStatus.RUNNING)
    await session.client.cancel_job(job_id)
    final = await session.client.wait_for_job(job_id, 5)
    assert final.status is JobStatus.CANCELLED


async def test_job_wait_fails_when_the_session_drops(session: Harness, bundle: Path) -> None:
    session.rd.job_script = JobScript(hold=True)
    job_id = await session.client.submit_job(bundle, "dev.yaml")
    waiter = asyncio.create_task(session.client.wait_for_job(job_id, 5))
    await asyncio.sleep(0.05)
    await session.rd.session().drop()
    with pytest.raises(SessionLostError):
        await waiter


async def test_duplicate_submit_is_refused_early(session: Harness, bundle: Path) -> None:
    session.rd.job_script = JobScript(hold=True)
    live = session.rd.session()
    job_id = await session.client.submit_job(bundle, "dev.yaml")
    with pytest.raises(SubmitRejectedError) as info:
        await session.client.submit_job(bundle, "dev.yaml", job_id=job_id)
    assert info.value.reason == "duplicate_submit"
    chunks = [c for c in live.record.received_of("submit_job_chunk") if c["job_id"] == job_id]
    assert len(chunks) <= 2 * 3  # the refused upload stopped before sending all its chunks
    session.rd.release_job(job_id)


@pytest.mark.parametrize(
    ("claim", "reason"),
    [
        (lambda size, digest: (size, "0" * 64), "hash_mismatch"),
        (lambda size, digest: (size - 1, digest), "oversized"),
        (lambda size, digest: (size + 1, digest), "undersized"),
    ],
)
async def test_server_verdicts_on_a_bad_upload(
    session: Harness,
    bundle: Path,
    monkeypatch: pytest.MonkeyPatch,
    claim: Callable[[int, str], tuple[int, str]],
    reason: str,
) -> None:
    # The header lies about the bundle (as a file changed during upload would); the
    # server's verdict must surface as a typed refusal.
    real = submit_module._hash_file
    monkeypatch.setattr(submit_module, "_hash_file", lambda path: claim(*real(path)))
    with pytest.raises(SubmitRejectedError) as info:
        await session.client.submit_job(bundle, "dev.yaml")
    assert info.value.reason == reason


async def test_submit_without_an_ack_times_out(
    rd: ReceiverDouble,
    identity: Identity,
    make_client: Callable[..., Harness],
    bundle: Path,
) -> None:
    rd.add_peer(identity.dashboard_id, identity.pin_sha256)
    h = make_client(ack_timeout=0.3)
    await h.client.start()
    await h.client.wait_connected(5)
    rd.faults.withhold_submit_ack = True
    with pytest.raises(SubmitTimeoutError) as info:
        await h.client.submit_job(bundle, "dev.yaml")
    assert info.value.reason == "submit_timeout"
    live = rd.session()
    assert len(live.record.received_of("submit_job_chunk")) == 3  # everything was sent
    assert h.client.connected  # a missing ack does not end the session


@pytest.mark.parametrize("name", ["../x.yaml", "a/b.yaml", "x.txt", "..yaml", "", "a\\b.yml"])
async def test_submit_refuses_bad_file_names(session: Harness, bundle: Path, name: str) -> None:
    with pytest.raises(ValueError):
        await session.client.submit_job(bundle, name)


async def test_submit_refuses_empty_bundle(session: Harness, tmp_path: Path) -> None:
    empty = tmp_path / "e.tar.gz"
    empty.write_bytes(b"")
    with pytest.raises(SubmitRejectedError) as info:
        await session.client.submit_job(empty, "dev.yaml")
    assert info.value.reason == "empty_bundle"


async def test_submit_fails_when_session_drops(session: Harness, tmp_path: Path) -> None:
    big = tmp_path / "big.tar.gz"
    big.write_bytes(os.urandom(3_000_000))  # ~92 chunks: the drop lands mid-upload
    live = session.rd.session()

    async def drop() -> None:
        await live.wait_received("submit_job_chunk")
        await live.drop()

    dropper = asyncio.create_task(drop())
    with pytest.raises(PeerLinkError) as info:
        await session.client.submit_job(big, "dev.yaml")
    await dropper
    assert info.value.reason in ("session_lost", "connection_closed")


# --- downloads ---------------------------------------------------------------------------


async def _completed_job(h: Harness, identity: Identity, job_id: str = "job1") -> str:
    h.rd.add_job(identity.dashboard_id, job_id, artifacts=Artifacts(TARBALL, "0x10000"))
    return job_id


async def test_download_ok(session: Harness, identity: Identity, tmp_path: Path) -> None:
    job_id = await _completed_job(session, identity)
    dest = tmp_path / "out.tar.gz"
    result = await session.client.download_artifacts(job_id, dest)
    assert dest.read_bytes() == TARBALL
    assert result.sha256 == hashlib.sha256(TARBALL).hexdigest()
    assert (result.firmware_offset, result.total_bytes) == ("0x10000", len(TARBALL))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tar.gz"]


@pytest.mark.parametrize(
    ("faults", "reason"),
    [
        (DownloadFaults(wrong_sha256=True), "hash_mismatch"),
        (DownloadFaults(total_bytes_delta=10), "undersized"),
        (DownloadFaults(total_bytes_delta=-10), "oversized"),
        (DownloadFaults(num_chunks_delta=1), "chunk_count_mismatch"),
        (DownloadFaults(chunk_index_override={1: 2}), "out_of_order"),
        (DownloadFaults(duplicate_chunk=1), "out_of_order"),
        (DownloadFaults(is_last_early_at=1), "chunk_count_mismatch"),
        (DownloadFaults(omit_is_last=True), "chunk_count_mismatch"),
        (DownloadFaults(omit_start=True), "missing_start"),
        (DownloadFaults(extra_chunk_after_last=True), "post_completion"),
    ],
)
async def test_download_integrity_failures(
    session: Harness,
    identity: Identity,
    tmp_path: Path,
    faults: DownloadFaults,
    reason: str,
) -> None:
    job_id = await _completed_job(session, identity)
    session.rd.faults.download = faults
    with pytest.raises(DownloadIntegrityError) as info:
        await session.client.download_artifacts(job_id, tmp_path / "out.tar.gz")
    assert info.value.reason == reason
    assert list(tmp_path.iterdir()) == []
    # the session survives a bad stream and the next download works
    session.rd.faults.download = DownloadFaults()
    await session.rd.wait_for(lambda: not session.rd.session().download_active)
    await session.client.download_artifacts(job_id, tmp_path / "out.tar.gz")
    assert (tmp_path / "out.tar.gz").read_bytes() == TARBALL


async def test_chunk_before_start_is_ignored(
    session: Harness, identity: Identity, tmp_path: Path
) -> None:
    job_id = await _completed_job(session, identity)
    session.rd.faults.download = DownloadFaults(chunk_before_start=True)
    await session.client.download_artifacts(job_id, tmp_path / "out.tar.gz")
    assert (tmp_path / "out.tar.gz").read_bytes() == TARBALL


@pytest.mark.parametrize(
    ("reason", "exc"),
    [
        ("pack_failed", DownloadRejectedError),
        ("build_dir_missing", BuildGoneError),
        ("stream_failed", DownloadRejectedError),
    ],
)
async def test_download_refusals(
    session: Harness, identity: Identity, tmp_path: Path, reason: str, exc: type[Exception]
) -> None:
    job_id = await _completed_job(session, identity)
    session.rd.faults.download = DownloadFaults(refusal=(reason, "detail text"))
    with pytest.raises(exc) as info:
        await session.client.download_artifacts(job_id, tmp_path / "o")
    assert info.value.reason == reason  # type: ignore[attr-defined]
    assert info.value.detail == "detail text"  # type: ignore[attr-defined]


async def test_download_unknown_and_unfinished(
    session: Harness, identity: Identity, tmp_path: Path
) -> None:
    with pytest.raises(UnknownJobError):
        await session.client.download_artifacts("nope", tmp_path / "o")
    session.rd.add_job(identity.dashboard_id, "running", status=ServerJobStatus.RUNNING)
    with pytest.raises(JobNotCompletedError):
        await session.client.download_artifacts("running", tmp_path / "o")
    session.rd.shutting_down = True
    job_id = await _completed_job(session, identity)
    with pytest.raises(DownloadRejectedError) as info:
        await session.client.download_artifacts(job_id, tmp_path / "o")
    assert info.value.reason == "shutting_down"
    assert list(tmp_path.iterdir()) == []


async def test_drop_mid_download_then_recover(
    session: Harness, identity: Identity, tmp_path: Path
) -> None:
    job_id = await _completed_job(session, identity)
    session.rd.faults.download = DownloadFaults(drop_after_chunk=1)
    with pytest.raises(DownloadError) as info:
        await session.client.download_artifacts(job_id, tmp_path / "out.tar.gz")
    assert info.value.reason == "session_lost"
    assert list(tmp_path.iterdir()) == []
    session.rd.faults.download = DownloadFaults()
    await session.client.wait_connected(5)
    await session.client.download_artifacts(job_id, tmp_path / "out.tar.gz")
    assert (tmp_path / "out.tar.gz").read_bytes() == TARBALL


async def test_stalled_download_times_out(
    session: Harness, identity: Identity, tmp_path: Path
) -> None:
    job_id = await _completed_job(session, identity)
    session.rd.faults.download = DownloadFaults(stall_after_chunk=1)
    with pytest.raises(DownloadTimeoutError) as info:
        await session.client.download_artifacts(job_id, tmp_path / "o", chunk_timeout=0.3)
    assert info.value.reason == "chunk_timeout"
    assert list(tmp_path.iterdir()) == []
    # Pings kept flowing: the session is fine until the abandoned stream, too, has been
    # still for a whole gap (test_client_faults covers what happens then).
    assert session.client.connected


async def test_slow_download_hits_the_overall_timeout(
    session: Harness, identity: Identity, tmp_path: Path
) -> None:
    job_id = await _completed_job(session, identity)
    session.rd.faults.download = DownloadFaults(chunk_delay=0.2)
    with pytest.raises(DownloadTimeoutError) as info:
        await session.client.download_artifacts(job_id, tmp_path / "o", timeout=0.3)
    assert info.value.reason == "timeout"
    assert list(tmp_path.iterdir()) == []


async def test_one_download_at_a_time(session: Harness, identity: Identity, tmp_path: Path) -> None:
    """A second download waits for the first stream to end; the server never sees two."""
    job_id = await _completed_job(session, identity)
    session.rd.faults.download = DownloadFaults(chunk_delay=0.05)
    first = asyncio.create_task(session.client.download_artifacts(job_id, tmp_path / "a"))
    await asyncio.sleep(0.01)
    second = await session.client.download_artifacts(job_id, tmp_path / "b")
    assert first.done()  # the second only started once the first had ended
    await first
    assert (tmp_path / "a").read_bytes() == TARBALL
    assert second.path.read_bytes() == TARBALL
    requests = [f for f in session.rd.session().received if f.get("type") == "download_artifacts"]
    assert len(requests) == 2


async def test_cancelled_download_leaves_nothing(
    session: Harness, identity: Identity, tmp_path: Path
) -> None:
    job_id = await _completed_job(session, identity)
    session.rd.faults.download = DownloadFaults(chunk_delay=0.05)
    task = asyncio.create_task(session.client.download_artifacts(job_id, tmp_path / "a"))
    await asyncio.sleep(0.08)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert list(tmp_path.iterdir()) == []


async def test_job_states_stay_bounded(session: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "KEEP_JOB_STATES", 3)
    live = session.rd.session()
    for n in range(5):
        await live.send_frame(
            {
                "type": "job_state_changed",
                "job_id": f"j{n}",
                "status": "queued",
                "error_message": "",
            }
        )
    await live.send_frame(
        {"type": "job_state_changed", "job_id": "j2", "status": "running", "error_message": ""}
    )
    await session.until(
        lambda: (
            session.client.jobs.get("j2", None) is not None
            and session.client.jobs["j2"].status is JobStatus.RUNNING
        )
    )
    assert list(session.client.jobs) == ["j3", "j4", "j2"]  # newest last, oldest dropped


async def test_retry_waits_for_an_abandoned_stream_to_end(
    session: Harness, identity: Identity, tmp_path: Path
) -> None:
    job_id = await _completed_job(session, identity)
    session.rd.faults.download = DownloadFaults(chunk_delay=0.1)  # 4 chunks: ~0.4 s
    with pytest.raises(DownloadTimeoutError):
        await session.client.download_artifacts(job_id, tmp_path / "a", timeout=0.15)
    # The server keeps streaming the abandoned download; the retry lets its tail pass
    # (instead of taking it for its own) and then gets a fresh, complete stream.
    session.rd.faults.download = DownloadFaults()
    await session.client.download_artifacts(job_id, tmp_path / "b", chunk_timeout=5)
    assert (tmp_path / "b").read_bytes() == TARBALL
    assert not (tmp_path / "a").exists()
    starts = session.rd.session().record.sent_of("artifacts_start")
    assert len(starts) == 2


async def test_session_loss_fails_a_waiting_submit(session: Harness, bundle: Path) -> None:
    session.rd.faults.withhold_submit_ack = True
    live = session.rd.session()

    async def drop_when_uploaded() -> None:
        await live.wait_received("submit_job_chunk", count=3)
        await live.drop()

    dropper = asyncio.create_task(drop_when_uploaded())
    with pytest.raises(SessionLostError):
        await session.client.submit_job(bundle, "dev.yaml")
    await dropper


async def test_a_failing_subscriber_does_not_break_the_session(
    session: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(_event: object) -> None:
        raise RuntimeError("subscriber bug")

    session.client.subscribe(broken)
    live = session.rd.session()
    await live.send_frame(
        {"type": "queue_status", "idle": False, "running": True, "queue_depth": 1}
    )
    await session.until(lambda: session.client.queue == QueueStatus(False, True, 1))
    assert session.client.connected
    assert "subscriber failed" in caplog.text
