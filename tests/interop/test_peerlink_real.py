"""The peer-link client against the real ESPHome Device Builder (stand-in compiler).

Everything here crosses a real socket to the real receiver code: pairing, the session,
uploads of bundles written by our own writer, job events, downloads and their contents.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from custom_components.esphome_remote_build.artifacts import read_image_set, write_config_bundle
from custom_components.esphome_remote_build.peerlink import (
    Connected,
    Disconnected,
    Identity,
    JobNotCompletedError,
    JobStateChanged,
    JobStatus,
    NoPairingWindowError,
    PairOutcome,
    PeerLinkClient,
    PeerLinkEvent,
    PinMismatchError,
    UnknownJobError,
    pair_request,
    pair_status,
    preview,
)
from tests.support.real_builder import BUILDER_VENVS, RealBuilder


@dataclass
class Paired:
    """A paired identity with a running client and everything it heard."""

    builder: RealBuilder
    identity: Identity
    client: PeerLinkClient
    events: list[PeerLinkEvent] = field(default_factory=list)

    def job_states(self, job_id: str) -> list[JobStatus]:
        return [
            e.status for e in self.events if isinstance(e, JobStateChanged) and e.job_id == job_id
        ]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _pair(builder: RealBuilder, http: aiohttp.ClientSession, **client_kw: float) -> Paired:
    identity = Identity.generate()
    assert builder.pairing_key is not None
    outcome = await pair_request(
        http,
        builder.host,
        builder.port,
        identity,
        builder.pin,
        label="interop",
        friendly_name="interop-ha",
        pairing_key=builder.pairing_key,
    )
    assert outcome is PairOutcome.APPROVED
    client = PeerLinkClient(http, builder.host, builder.port, identity, builder.pin, **client_kw)
    paired = Paired(builder, identity, client)
    client.subscribe(paired.events.append)
    await client.start()
    await client.wait_connected(10)
    return paired


@pytest.fixture
async def paired(real_builder: RealBuilder, http: aiohttp.ClientSession) -> AsyncIterator[Paired]:
    result = await _pair(real_builder, http)
    try:
        yield result
    finally:
        await result.client.stop()


async def test_preview(real_builder: RealBuilder, http: aiohttp.ClientSession) -> None:
    info = await preview(http, real_builder.host, real_builder.port, Identity.generate())
    assert info.pin_sha256 == real_builder.pin
    assert info.requires_pairing_key is True
    # the ESPHome of the Device Builder venv in use (scripts/interop varies it)
    assert info.esphome_version == BUILDER_VENVS.versions()["esphome"]
    assert info.friendly_name


async def test_wrong_pairing_key_is_refused_then_right_key_approves(
    real_builder: RealBuilder, http: aiohttp.ClientSession
) -> None:
    identity = Identity.generate()
    with pytest.raises(NoPairingWindowError):
        await pair_request(
            http,
            real_builder.host,
            real_builder.port,
            identity,
            real_builder.pin,
            label="x",
            friendly_name="x",
            pairing_key="AAAA-BBBB-CCCC-DDDD",
        )
    # a wrong key does not disarm the window; the printed key (normalised) still works
    key = (real_builder.pairing_key or "").lower().replace("-", " ")
    outcome = await pair_request(
        http,
        real_builder.host,
        real_builder.port,
        identity,
        real_builder.pin,
        label="x",
        friendly_name="x",
        pairing_key=key,
    )
    assert outcome is PairOutcome.APPROVED
    # pair_status of an approved peer answers at once
    await pair_status(http, real_builder.host, real_builder.port, identity, real_builder.pin)


async def test_pin_mismatch_stops_before_msg3(
    real_builder: RealBuilder, http: aiohttp.ClientSession
) -> None:
    with pytest.raises(PinMismatchError) as info:
        await pair_request(
            http,
            real_builder.host,
            real_builder.port,
            Identity.generate(),
            "0" * 64,
            label="x",
            friendly_name="x",
            pairing_key=real_builder.pairing_key,
        )
    assert info.value.seen == real_builder.pin


async def test_session_stays_alive_on_pongs(
    real_builder: RealBuilder, http: aiohttp.ClientSession
) -> None:
    # The idle server sends nothing for 30 s; with a 1.2 s dead timer only its pongs to
    # our 0.2 s pings can keep the session open.
    paired = await _pair(real_builder, http, heartbeat_interval=0.2, dead_after=1.2)
    try:
        await asyncio.sleep(3)
        assert paired.client.connected
        assert [type(e) for e in paired.events[:2]] == [Connected, type(paired.client.queue)]
        assert not any(isinstance(e, Disconnected) for e in paired.events)
    finally:
        await paired.client.stop()


async def _build(paired: Paired, config_dir: Path, yaml: str, tmp_path: Path) -> str:
    bundle = tmp_path / f"{yaml}.bundle.tar.gz"
    await asyncio.to_thread(write_config_bundle, config_dir, yaml, bundle)
    job_id = await paired.client.submit_job(bundle, yaml, device_name=yaml.removesuffix(".yaml"))
    final = await paired.client.wait_for_job(job_id, timeout=120)
    assert final.status in (JobStatus.COMPLETED, JobStatus.FAILED)
    return job_id


@pytest.mark.parametrize(
    ("yaml", "device", "offset", "names"),
    [
        ("esp8266-demo.yaml", "esp8266-demo", "0x0", ["firmware.bin"]),
        (
            "esp32-demo.yaml",
            "esp32-demo",
            "0x10000",
            ["firmware.bin", "bootloader.bin", "partitions.bin", "ota_data_initial.bin"],
        ),
    ],
)
async def test_submit_build_download_verify(
    paired: Paired,
    esphome_config_dir: Path,
    tmp_path: Path,
    yaml: str,
    device: str,
    offset: str,
    names: list[str],
) -> None:
    job_id = await _build(paired, esphome_config_dir, yaml, tmp_path)
    assert paired.job_states(job_id)[-1] is JobStatus.COMPLETED
    assert JobStatus.RUNNING in paired.job_states(job_id)
    tarball = tmp_path / "artifacts.tar.gz"
    result = await paired.client.download_artifacts(job_id, tarball)
    assert result.firmware_offset == offset
    assert tarball.stat().st_size == result.total_bytes
    images = await asyncio.to_thread(
        read_image_set, tarball, result.firmware_offset, tmp_path / "img"
    )
    receipt = paired.builder.build_files(device, dashboard_id=paired.identity.dashboard_id)
    assert images.device_name == device
    assert [i.name for i in images.images][: len(names)] == names
    for image in images.images:
        if image.name in names:
            built = receipt.file(image.name)
            assert image.sha256 == built.sha256 == built.read_sha256()
            assert image.size == built.size
            if image.name != "firmware.bin":
                assert image.offset == built.offset
    assert images.images[0].offset == offset
    assert images.images[0].path.read_bytes()[:1] == b"\xe9"


async def test_unknown_job_and_failed_build(
    paired: Paired, esphome_config_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(UnknownJobError):
        await paired.client.download_artifacts("nosuchjob", tmp_path / "x.tar.gz")
    job_id = await _build(paired, esphome_config_dir, "failing-device.yaml", tmp_path)
    failed = paired.client.jobs[job_id]
    assert failed.status is JobStatus.FAILED
    with pytest.raises(JobNotCompletedError):
        await paired.client.download_artifacts(job_id, tmp_path / "y.tar.gz")
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".gz") == [
        "failing-device.yaml.bundle.tar.gz"
    ]


async def test_dashboard_approval_then_revocation(
    real_builder_dashboard: RealBuilder, http: aiohttp.ClientSession
) -> None:
    builder = real_builder_dashboard
    identity = Identity.generate()
    async with builder.dashboard_client() as operator:
        await operator.set_pairing_window(True)
        outcome = await pair_request(
            http,
            builder.host,
            builder.port,
            identity,
            builder.pin,
            label="interop",
            friendly_name="interop-ha",
        )
        assert outcome is PairOutcome.PENDING
        poll = asyncio.create_task(
            pair_status(http, builder.host, builder.port, identity, builder.pin)
        )
        await asyncio.sleep(0.2)
        assert not poll.done()  # the long-poll waits for the operator
        await operator.approve_peer(identity.dashboard_id)
        await asyncio.wait_for(poll, 10)

        client = PeerLinkClient(
            http, builder.host, builder.port, identity, builder.pin, backoff_initial=0.05
        )
        events: list[PeerLinkEvent] = []
        client.subscribe(events.append)
        await client.start()
        try:
            await client.wait_connected(10)
            await operator.remove_peer(identity.dashboard_id)
            # the open session survives a removal; the next handshake is refused for good
            await client.stop()
            await client.start()
            async with asyncio.timeout(10):
                while client.running:
                    await asyncio.sleep(0.02)
            last = events[-1]
            assert isinstance(last, Disconnected)
            assert last.terminal
            assert last.reason == "no_approved_peer"
        finally:
            await client.stop()


async def test_cancel_a_running_build(
    paired: Paired, esphome_config_dir: Path, tmp_path: Path
) -> None:
    bundle = tmp_path / "slow.tar.gz"
    await asyncio.to_thread(write_config_bundle, esphome_config_dir, "slow-device.yaml", bundle)
    job_id = await paired.client.submit_job(bundle, "slow-device.yaml")
    async with asyncio.timeout(60):
        while JobStatus.RUNNING not in paired.job_states(job_id):
            await asyncio.sleep(0.05)
    await paired.client.cancel_job(job_id)
    final = await paired.client.wait_for_job(job_id, timeout=30)
    assert final.status is JobStatus.CANCELLED
    with pytest.raises(JobNotCompletedError):
        await paired.client.download_artifacts(job_id, tmp_path / "none.tar.gz")
