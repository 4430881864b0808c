"""Fixtures of the Home Assistant layer tests: a real hass, a receiver double on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
import shutil
from typing import Any

from homeassistant.const import CONF_HOST, CONF_PORT
from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.esphome_remote_build.const import CONF_PIN, DOMAIN
from custom_components.esphome_remote_build.link import async_get_identity
from custom_components.esphome_remote_build.peerlink import (
    Identity,
    PeerLinkEvent,
    QueueStatus,
)
from tests.store.helpers import esp32_members, write_tarball
from tests.support.receiver_double import ReceiverDouble

FIXTURES = Path(__file__).parent.parent / "fixtures" / "esphome"


@pytest.fixture(autouse=True)
def _custom_integrations(enable_custom_integrations: None) -> None:
    """Let Home Assistant load the integration from custom_components/."""


@pytest.fixture(autouse=True)
def _loopback(socket_enabled: None) -> None:
    """The tests talk to the receiver double over 127.0.0.1."""


@pytest.fixture
def hass_config_dir(hass_tmp_config_dir: str) -> str:
    """A private config folder per test: builds and the esphome folder land there."""
    return hass_tmp_config_dir


@pytest.fixture
def esphome_dir(hass_tmp_config_dir: str) -> Path:
    """Home Assistant's esphome folder with the demo configurations."""
    target = Path(hass_tmp_config_dir) / "esphome"
    shutil.copytree(FIXTURES, target)
    return target


@pytest.fixture
async def rd() -> AsyncIterator[ReceiverDouble]:
    async with ReceiverDouble(friendly_name="build-box", handshake_timeout=2.0) as double:
        yield double


@pytest.fixture
async def identity(hass: HomeAssistant) -> Identity:
    return await async_get_identity(hass)


@pytest.fixture
def paired(rd: ReceiverDouble, identity: Identity) -> ReceiverDouble:
    """The double already approved this Home Assistant."""
    rd.add_peer(identity.dashboard_id, identity.pin_sha256)
    return rd


@pytest.fixture
def artifacts(tmp_path: Path) -> bytes:
    """An ESP32 artifacts tarball as the build server would stream it."""
    tarball = write_tarball(tmp_path / "artifacts.tar.gz", esp32_members("kitchen"), "0x10000")
    return tarball.path.read_bytes()


class Recorder:
    """Collects a client's events and lets a test await a condition on them."""

    def __init__(self) -> None:
        self.events: list[PeerLinkEvent] = []
        self._changed = asyncio.Event()

    def __call__(self, event: PeerLinkEvent) -> None:
        self.events.append(event)
        self._changed.set()

    def count(self, kind: type) -> int:
        return sum(isinstance(event, kind) for event in self.events)

    async def wait_count(self, kind: type, count: int) -> None:
        async with asyncio.timeout(5):
            while self.count(kind) < count:
                self._changed.clear()
                await self._changed.wait()


async def call_service(hass: HomeAssistant, service: str, **data: Any) -> dict[str, Any]:
    """Call one of our actions the way automations do, and return its response."""
    response = await hass.services.async_call(
        DOMAIN, service, data, blocking=True, return_response=True
    )
    assert response is not None
    return dict(response)


async def wait_stopped(entry: MockConfigEntry) -> None:
    """Wait until the entry's link gave up for good (a terminal refusal)."""
    client = entry.runtime_data.link.client
    async with asyncio.timeout(5):
        while client.running:
            await asyncio.sleep(0.01)


def make_entry(rd: ReceiverDouble, **data: Any) -> MockConfigEntry:
    return MockConfigEntry(
        domain=DOMAIN,
        title="build-box",
        unique_id=rd.pin,
        data={CONF_HOST: rd.host, CONF_PORT: rd.port, CONF_PIN: rd.pin, **data},
    )


@pytest.fixture
def entry(hass: HomeAssistant, rd: ReceiverDouble) -> MockConfigEntry:
    config_entry = make_entry(rd)
    config_entry.add_to_hass(hass)
    return config_entry


type SetUp = Callable[[MockConfigEntry], Coroutine[Any, Any, None]]


@pytest.fixture
def setup_entry(hass: HomeAssistant) -> SetUp:
    """Set an entry up and wait until its session is open."""

    async def _setup(config_entry: MockConfigEntry) -> None:
        assert await hass.config_entries.async_setup(config_entry.entry_id)
        client = config_entry.runtime_data.link.client
        recorder = Recorder()
        client.subscribe(recorder)
        await client.wait_connected(5)
        if client.queue is None:  # the server's first frame after the handshake
            await recorder.wait_count(QueueStatus, 1)
        await hass.async_block_till_done()

    return _setup


@pytest.fixture
async def loaded(
    hass: HomeAssistant, paired: ReceiverDouble, entry: MockConfigEntry, setup_entry: SetUp
) -> MockConfigEntry:
    """An entry connected to the double."""
    await setup_entry(entry)
    return entry
