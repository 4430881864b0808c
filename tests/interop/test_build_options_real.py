"""Build options against the real Device Builder: another ESPHome version (§5.5) and the
build-environment reset (§5.6), through our peer-link client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from custom_components.esphome_remote_build.artifacts import write_config_bundle
from custom_components.esphome_remote_build.peerlink import (
    FailureReason,
    Identity,
    JobOutput,
    JobStateChanged,
    JobStatus,
    PairOutcome,
    PeerLinkClient,
    PeerLinkEvent,
    pair_request,
)
from tests.support.real_builder import RealBuilder

from .conftest import RealBuilderFactory


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def isolated_builder(
    real_builder_factory: RealBuilderFactory, tmp_path: Path
) -> RealBuilderFactory:
    """Start Device Builders whose caches live in the test's folder.

    A reset runs ``esphome clean-all``, which wipes the machine-wide ESPHome and
    PlatformIO caches of the user running it: here those of a throw-away home.
    """

    async def start() -> RealBuilder:
        home = tmp_path / "home"
        env = {
            "HOME": str(home),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "PLATFORMIO_CORE_DIR": str(home / ".platformio"),
            "ESPHOME_DATA_DIR": str(tmp_path / "esphome-data"),
        }
        return await real_builder_factory(env=env)

    return start


async def _client(
    builder: RealBuilder, http: aiohttp.ClientSession, events: list[PeerLinkEvent]
) -> PeerLinkClient:
    identity = Identity.generate()
    host, port, pin, key = builder.host, builder.port, builder.pin, builder.pairing_key
    outcome = await pair_request(
        http,
        host,
        port,
        identity,
        pin,
        label="interop",
        friendly_name="interop-ha",
        pairing_key=key,
    )
    assert outcome is PairOutcome.APPROVED
    client = PeerLinkClient(http, host, port, identity, pin)
    client.subscribe(events.append)
    await client.start()
    await client.wait_connected(10)
    return client


async def test_a_version_the_server_cannot_provision(
    real_builder_factory: RealBuilderFactory,
    http: aiohttp.ClientSession,
    esphome_config_dir: Path,
    tmp_path: Path,
) -> None:
    """A development version is no PyPI release: the server refuses to install it at once."""
    events: list[PeerLinkEvent] = []
    client = await _client(await real_builder_factory(), http, events)
    try:
        assert client.server_info is not None
        assert client.server_info.auto_provision_supported
        bundle = tmp_path / "bundle.tar.gz"
        write_config_bundle(esphome_config_dir, "esp8266-demo.yaml", bundle)
        job_id = await client.submit_job(
            bundle, "esp8266-demo.yaml", esphome_version="2099.1.0-dev"
        )
        final = await client.wait_for_job(job_id, 60)
        assert final.status is JobStatus.FAILED
        assert final.failure_reason == FailureReason.PROVISION
        assert "2099.1.0-dev" in final.error_message
    finally:
        await client.stop()


async def test_reset_build_env_runs_as_our_job(
    isolated_builder: RealBuilderFactory, http: aiohttp.ClientSession
) -> None:
    events: list[PeerLinkEvent] = []
    builder = await isolated_builder()
    client = await _client(builder, http, events)
    try:
        assert client.server_info is not None
        assert client.server_info.reset_build_env_supported
        job_id = await client.reset_build_env()
        final = await client.wait_for_job(job_id, 120)
        assert final.status is JobStatus.COMPLETED, final
        states = [e.status for e in events if isinstance(e, JobStateChanged) and e.job_id == job_id]
        assert states[0] is JobStatus.QUEUED
        assert JobStatus.RUNNING in states
        lines = [e.line for e in events if isinstance(e, JobOutput) and e.job_id == job_id]
        assert lines, "the clean's output arrives as job_output under our id"
    finally:
        await client.stop()
