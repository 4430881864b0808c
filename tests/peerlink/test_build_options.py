"""Build options against the receiver double: the ESPHome version of a build (§5.5) and
the build-environment reset (§5.6)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import os
from pathlib import Path
from typing import Any

import pytest

from custom_components.esphome_remote_build.peerlink import (
    BuildEnvResetBusyError,
    BuildEnvResetRejectedError,
    BuildEnvResetUnsupportedError,
    FailureReason,
    Identity,
    JobOutput,
    JobStateChanged,
    JobStatus,
    NotConnectedError,
    SessionLostError,
    SubmitTimeoutError,
    is_valid_esphome_version,
)
from tests.peerlink.conftest import Harness
from tests.support.receiver_double import (
    JobScript,
    JobStatus as ServerJobStatus,
    ReceiverDouble,
    Session,
)


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    path = tmp_path / "bundle.tar.gz"
    path.write_bytes(os.urandom(5000))
    return path


# --- the ESPHome version of a build -------------------------------------------------------


@pytest.mark.parametrize(
    "version",
    [
        "2026.10.0",
        "2026.10.0b1",
        "2026.10.0rc2",
        "2026.10.0a1",
        "2026.10.0-dev",
        "2026.10.0-dev20261015",
        "2026.10.0.dev3",
        "1.15.3",
    ],
)
def test_esphome_versions(version: str) -> None:
    assert is_valid_esphome_version(version)


@pytest.mark.parametrize(
    "version",
    [
        "",
        "latest",
        "2026.10",
        "2026.10.0 ",
        " 2026.10.0",
        "v2026.10.0",
        "2026.10.0b",
        "2026.10.0-beta1",
        "2026.10.0+local",
        "2026.10.0; rm -rf /",
        "2026.10.0\n",
        "==2026.10.0",
        "2026.10.0-dev123456789",
        "1" * 40,
        "\u0662\u0660\u0662\u0666.1.0",  # digits, but not ASCII ones
    ],
)
def test_not_esphome_versions(version: str) -> None:
    assert not is_valid_esphome_version(version)


async def test_a_build_with_another_version(session: Harness, bundle: Path) -> None:
    session.rd.provisionable_versions.add("2026.9.1")
    job_id = await session.client.submit_job(bundle, "dev.yaml", esphome_version="2026.9.1")
    assert session.rd.job(job_id).header["target_esphome_version"] == "2026.9.1"
    final = await session.client.wait_for_job(job_id, 5)
    assert final.status is JobStatus.COMPLETED
    assert final.failure_reason == ""


@pytest.mark.parametrize("version", [None, "2026.10.0"], ids=["none", "the-servers-own"])
async def test_as_is_leaves_the_field_out(
    session: Harness, bundle: Path, version: str | None
) -> None:
    assert session.client.server_info is not None
    assert session.client.server_info.esphome_version == "2026.10.0"
    job_id = await session.client.submit_job(bundle, "dev.yaml", esphome_version=version)
    assert "target_esphome_version" not in session.rd.job(job_id).header
    assert (await session.client.wait_for_job(job_id, 5)).status is JobStatus.COMPLETED


async def test_a_version_the_server_cannot_install(session: Harness, bundle: Path) -> None:
    job_id = await session.client.submit_job(bundle, "dev.yaml", esphome_version="2099.1.0")
    final = await session.client.wait_for_job(job_id, 5)
    assert final.status is JobStatus.FAILED
    assert final.failure_reason == FailureReason.PROVISION
    lines = [e.line for e in session.of(JobOutput) if e.job_id == job_id]
    assert any("2099.1.0" in line for line in lines)  # the installer's words arrive as output


@pytest.mark.parametrize("version", ["latest", "2026.10", ""])
async def test_a_malformed_version_is_never_sent(
    session: Harness, bundle: Path, version: str
) -> None:
    with pytest.raises(ValueError):
        await session.client.submit_job(bundle, "dev.yaml", esphome_version=version)
    assert not session.rd.session().record.received_of("submit_job")


# --- resetting the build environment --------------------------------------------------------


async def test_reset_runs_as_a_job(session: Harness) -> None:
    job_id = await session.client.reset_build_env()
    assert session.rd.job(job_id).is_reset
    final = await session.client.wait_for_job(job_id, 5)
    assert final.status is JobStatus.COMPLETED
    states = [e.status for e in session.of(JobStateChanged) if e.job_id == job_id]
    assert states == [JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.COMPLETED]
    lines = [e.line for e in session.of(JobOutput) if e.job_id == job_id]
    assert lines == session.rd.reset_script.lines
    sent = session.rd.session().record.received_of("reset_build_env")
    assert sent == [{"type": "reset_build_env", "job_id": job_id}]


async def test_reset_with_our_job_id(session: Harness) -> None:
    assert await session.client.reset_build_env(job_id="clean-1") == "clean-1"
    assert (await session.client.wait_for_job("clean-1", 5)).status is JobStatus.COMPLETED


async def test_reset_on_a_server_without_it_sends_nothing(
    rd: ReceiverDouble, identity: Identity, make_client: Callable[..., Harness]
) -> None:
    rd.reset_build_env_supported = False
    rd.add_peer(identity.dashboard_id, identity.pin_sha256)
    h = make_client()
    await h.client.start()
    await h.client.wait_connected(5)
    with pytest.raises(BuildEnvResetUnsupportedError) as info:
        await h.client.reset_build_env()
    assert info.value.key == "clean_not_supported"
    assert not rd.session().record.received_of("reset_build_env")


async def test_reset_needs_a_session(make_client: Callable[..., Harness]) -> None:
    with pytest.raises(NotConnectedError):
        await make_client().client.reset_build_env()


async def test_reset_while_building_is_busy(session: Harness, bundle: Path) -> None:
    session.rd.job_script = JobScript(hold=True)
    job_id = await session.client.submit_job(bundle, "dev.yaml")
    await session.rd.wait_job_status(job_id, ServerJobStatus.RUNNING)
    with pytest.raises(BuildEnvResetBusyError) as info:
        await session.client.reset_build_env()
    assert (info.value.key, info.value.reason) == ("clean_busy", "busy")
    session.rd.release_job(job_id)


@pytest.mark.parametrize("reason", ["not_ready", "queue_rejected"])
async def test_reset_refused(session: Harness, reason: str) -> None:
    session.rd.faults.reset_refusal = reason
    with pytest.raises(BuildEnvResetRejectedError) as info:
        await session.client.reset_build_env()
    assert type(info.value) is BuildEnvResetRejectedError
    assert (info.value.key, info.value.reason) == ("clean_rejected", reason)
    assert session.client.connected


@pytest.fixture
def silent_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    """The double takes reset requests without ever answering them."""

    async def ignore(_session: Session, _frame: dict[str, Any]) -> bool:
        return True

    monkeypatch.setattr(Session, "_on_reset_build_env", ignore)


@pytest.mark.usefixtures("silent_reset")
async def test_reset_without_an_ack_times_out(
    rd: ReceiverDouble, identity: Identity, make_client: Callable[..., Harness]
) -> None:
    rd.add_peer(identity.dashboard_id, identity.pin_sha256)
    h = make_client(ack_timeout=0.2)
    await h.client.start()
    await h.client.wait_connected(5)
    with pytest.raises(SubmitTimeoutError):
        await h.client.reset_build_env()
    assert h.client.connected
    assert h.client._reset_acks == {}


@pytest.mark.usefixtures("silent_reset")
async def test_reset_fails_when_the_session_drops(session: Harness) -> None:
    live = session.rd.session()
    request = asyncio.create_task(session.client.reset_build_env())
    await live.wait_received("reset_build_env")
    await live.drop()
    with pytest.raises(SessionLostError):
        await request
    assert session.client._reset_acks == {}
