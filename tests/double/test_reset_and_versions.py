"""The double's `reset_build_env` (§5.6) and `target_esphome_version` (§5.5)."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pytest

from tests.double.conftest import Connect
from tests.double.initiator import Offloader, RawInitiator, chunk_frame
from tests.support.receiver_double import Artifacts, JobScript, JobStatus, ReceiverDouble

BUNDLE = os.urandom(1000)


async def _upload(link: RawInitiator, job_id: str, **extra: Any) -> dict[str, Any]:
    """One-chunk upload whose header carries `extra` fields."""
    await link.send(
        {
            "type": "submit_job",
            "job_id": job_id,
            "configuration_filename": "dev.yaml",
            "target": "compile",
            "total_bundle_bytes": len(BUNDLE),
            "num_chunks": 1,
            "bundle_sha256": hashlib.sha256(BUNDLE).hexdigest(),
            **extra,
        }
    )
    await link.send(chunk_frame("submit_job_chunk", job_id, 0, BUNDLE, True))
    return await link.recv_type("submit_job_ack")


async def _states(link: RawInitiator, job_id: str) -> list[dict[str, Any]]:
    """Every state change of `job_id` up to its terminal one."""
    states: list[dict[str, Any]] = []
    while not states or states[-1]["status"] not in {"completed", "failed", "cancelled"}:
        frame = await link.recv_type("job_state_changed")
        if frame["job_id"] == job_id:
            states.append(frame)
    return states


def _lines(link: RawInitiator, job_id: str) -> list[str]:
    return [f["line"] for f in link.seen if f["type"] == "job_output" and f["job_id"] == job_id]


# --- reset_build_env ------------------------------------------------------------------------


async def test_reset_is_a_job_queued_before_its_ack(
    connect: Connect, rd: ReceiverDouble, paired: Offloader
) -> None:
    link = await connect()
    await link.send({"type": "reset_build_env", "job_id": "r1"})
    first = await link.recv_type("job_state_changed")
    assert first == {
        "type": "job_state_changed",
        "job_id": "r1",
        "status": "queued",
        "error_message": "",
    }
    assert await link.recv_type("reset_build_env_ack") == {
        "type": "reset_build_env_ack",
        "job_id": "r1",
        "accepted": True,
    }
    states = [first, *await _states(link, "r1")]
    assert [s["status"] for s in states] == ["queued", "running", "completed"]
    assert _lines(link, "r1") == rd.reset_script.lines
    assert rd.job("r1").is_reset
    assert not rd.build_env_reset_active


async def test_downloads_are_busy_while_a_reset_runs(
    connect: Connect, rd: ReceiverDouble, paired: Offloader
) -> None:
    rd.reset_script = JobScript(lines=[], hold=True)
    link = await connect()
    await link.send({"type": "reset_build_env", "job_id": "r1"})
    await rd.wait_job_status("r1", JobStatus.RUNNING)
    assert rd.build_env_reset_active
    rd.add_job(paired.dashboard_id, "done")
    _, _, end = await link.download("done")
    assert end["reason"] == "busy"
    rd.release_job("r1")
    await rd.wait_job_status("r1", JobStatus.COMPLETED)
    assert not rd.build_env_reset_active
    assert rd.job("r1").artifacts is None  # a reset builds nothing to download


async def test_a_failing_reset(connect: Connect, rd: ReceiverDouble, paired: Offloader) -> None:
    rd.reset_script = JobScript(lines=["rm: denied\n"], outcome=JobStatus.FAILED, error_message="x")
    link = await connect()
    await link.send({"type": "reset_build_env", "job_id": "r1"})
    states = await _states(link, "r1")
    assert states[-1] == {
        "type": "job_state_changed",
        "job_id": "r1",
        "status": "failed",
        "error_message": "x",
    }


@pytest.mark.parametrize("busy", ["job", "queued", "upload", "download"])
async def test_reset_is_refused_while_anything_runs(
    connect: Connect, rd: ReceiverDouble, paired: Offloader, busy: str
) -> None:
    rd.job_script = JobScript(lines=[], hold=True)
    link = await connect()
    other = Offloader(dashboard_id="other-offloader")
    rd.add_peer(other.dashboard_id, other.pin)
    match busy:
        case "job":  # another offloader's job counts too
            await _upload(await connect(other), "theirs")
            await rd.wait_job_status("theirs", JobStatus.RUNNING)
        case "queued":
            rd.add_job(other.dashboard_id, "waiting", status=JobStatus.QUEUED)
        case "upload":
            await link.send(
                {
                    "type": "submit_job",
                    "job_id": "half",
                    "configuration_filename": "dev.yaml",
                    "target": "compile",
                    "total_bundle_bytes": 100_000,
                    "num_chunks": 4,
                    "bundle_sha256": "0" * 64,
                }
            )
        case "download":
            rd.add_job(paired.dashboard_id, "done", artifacts=Artifacts(os.urandom(100_000)))
            rd.faults.download.stall_after_chunk = 0
            await link.send({"type": "download_artifacts", "job_id": "done"})
            await link.recv_type("artifacts_chunk")
    await link.send({"type": "reset_build_env", "job_id": "r1"})
    assert await link.recv_type("reset_build_env_ack") == {
        "type": "reset_build_env_ack",
        "job_id": "r1",
        "accepted": False,
        "reason": "busy",
    }
    assert not any(job.is_reset for job in rd.jobs.values())


async def test_reset_refusal_fault(connect: Connect, rd: ReceiverDouble, paired: Offloader) -> None:
    rd.faults.reset_refusal = "not_ready"
    link = await connect()
    await link.send({"type": "reset_build_env", "job_id": "r1"})
    ack = await link.recv_type("reset_build_env_ack")
    assert ack == {
        "type": "reset_build_env_ack",
        "job_id": "r1",
        "accepted": False,
        "reason": "not_ready",
    }
    assert not rd.jobs


async def test_reset_without_job_id_ends_the_session(
    connect: Connect, rd: ReceiverDouble, paired: Offloader
) -> None:
    link = await connect()
    await link.send({"type": "reset_build_env", "job_id": 7})
    frames = await link.recv_until_closed()
    assert frames[-2:] == [
        {"type": "reset_build_env_ack", "job_id": "", "accepted": False, "reason": "invalid_frame"},
        {"type": "terminate", "reason": "malformed_frame"},
    ]


# --- target_esphome_version -----------------------------------------------------------------


@pytest.mark.parametrize("version", [None, "", "2026.10.0"], ids=["absent", "empty", "own"])
async def test_own_or_no_version_builds_as_is(
    connect: Connect, rd: ReceiverDouble, paired: Offloader, version: str | None
) -> None:
    link = await connect()
    extra = {} if version is None else {"target_esphome_version": version}
    assert (await _upload(link, "j", **extra))["accepted"]
    states = await _states(link, "j")
    assert states[-1]["status"] == "completed"
    assert _lines(link, "j") == rd.job_script.lines
    assert rd.job("j").target_esphome_version == (version or "")


async def test_an_unavailable_version_fails_with_provision(
    connect: Connect, rd: ReceiverDouble, paired: Offloader
) -> None:
    link = await connect()
    assert (await _upload(link, "j", target_esphome_version="2099.1.0"))["accepted"]
    states = await _states(link, "j")
    assert [s["status"] for s in states] == ["queued", "running", "failed"]
    assert states[-1]["failure_reason"] == "provision"
    assert "2099.1.0" in states[-1]["error_message"]
    assert any("2099.1.0" in line for line in _lines(link, "j"))


async def test_an_installable_version_is_installed_then_built(
    connect: Connect, rd: ReceiverDouble, paired: Offloader
) -> None:
    rd.provisionable_versions.add("2026.9.1")
    link = await connect()
    assert (await _upload(link, "j", target_esphome_version="2026.9.1"))["accepted"]
    states = await _states(link, "j")
    assert states[-1]["status"] == "completed"
    lines = _lines(link, "j")
    assert "2026.9.1" in lines[0]
    assert lines[1:] == rd.job_script.lines
