"""Fixtures of the Home Assistant layer tests: a real hass, a receiver double on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Mapping
from functools import partial
import json
from pathlib import Path
import re
import shutil
from typing import Any
from unittest.mock import patch

from homeassistant.const import CONF_HOST, CONF_PORT
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowHandler, FlowManager, FlowResultType
from homeassistant.exceptions import HomeAssistantError
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.syrupy import HomeAssistantSnapshotExtension
from syrupy.assertion import SnapshotAssertion

from custom_components.esphome_remote_build import flash, ota
from custom_components.esphome_remote_build.const import CONF_PIN, DATA_STORE, DOMAIN
from custom_components.esphome_remote_build.link import RemoteBuildLink, async_get_identity
from custom_components.esphome_remote_build.peerlink import (
    Identity,
    PeerLinkClient,
    PeerLinkEvent,
    QueueStatus,
)
from custom_components.esphome_remote_build.stored_build import StoredBuild
from tests.store.helpers import Member, commit, esp32_members, write_tarball
from tests.support.ota_emulator import DeviceConfig, OTADeviceEmulator
from tests.support.receiver_double import ReceiverDouble

FIXTURES = Path(__file__).parent.parent / "fixtures" / "esphome"
PACKAGE = Path(flash.__file__).parent
STRINGS: dict[str, Any] = json.loads((PACKAGE / "strings.json").read_text())

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def render(template: str, placeholders: Mapping[str, object]) -> str:
    """Fill a translation the way Home Assistant does; every placeholder must be given.

    Home Assistant formats with ``suppress(KeyError)``: one missing value leaves the whole
    message with its raw ``{name}`` fields, so a missing one is an error here.
    """
    missing = set(_PLACEHOLDER.findall(template)) - set(placeholders)
    assert not missing, f"{template!r} is shown without {sorted(missing)}"
    return template.format(**placeholders)


def assert_translated(err: HomeAssistantError) -> str:
    """The error names one of our exception keys and its message renders in full.

    ``str(err)`` is what a user reads: Home Assistant looks the key up in the loaded
    translations (it shows the bare key when there is none) and fills the placeholders.
    """
    assert err.translation_domain == DOMAIN
    assert err.translation_key in STRINGS["exceptions"], err.translation_key
    template: str = STRINGS["exceptions"][err.translation_key]["message"]
    message = str(err)
    assert message == render(template.rstrip("."), err.translation_placeholders or {})
    assert "{" not in message
    return message


def assert_flow_result_translated(flow: FlowHandler, result: Mapping[str, Any]) -> None:
    """Every step, error, progress text and abort a flow shows has its text, filled in."""
    section = STRINGS["options" if flow.handler != DOMAIN else "config"]
    placeholders = result.get("description_placeholders") or {}
    kind = result["type"]
    if kind is FlowResultType.FORM:
        step = section["step"][result["step_id"]]
        for text in (step.get("title", ""), step.get("description", "")):
            render(text, placeholders)
        for error in (result.get("errors") or {}).values():
            assert error in section["error"], error
    elif kind is FlowResultType.SHOW_PROGRESS:
        render(section["progress"][result["progress_action"]], placeholders)
    elif kind is FlowResultType.ABORT:
        assert result["reason"] in section["abort"], result["reason"]
        render(section["abort"][result["reason"]], placeholders)


@pytest.fixture
def flow_translations_checked() -> Iterator[None]:
    """Check every result of our config and options flows against strings.json."""
    real = FlowManager._async_handle_step

    async def checked(
        manager: FlowManager, flow: FlowHandler, step_id: str, user_input: Any
    ) -> Any:
        result = await real(manager, flow, step_id, user_input)
        if type(flow).__module__.startswith("custom_components.esphome_remote_build"):
            assert_flow_result_translated(flow, result)
        return result

    with patch.object(FlowManager, "_async_handle_step", checked):
        yield


@pytest.fixture(autouse=True)
def _custom_integrations(enable_custom_integrations: None) -> None:
    """Let Home Assistant load the integration from custom_components/."""


@pytest.fixture(autouse=True)
def _loopback(socket_enabled: None) -> None:
    """The tests talk to the receiver double over 127.0.0.1."""


@pytest.fixture
def snapshot(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    """Snapshots the way Home Assistant writes them, in tests/ha/snapshots/.

    The test plugin defines the same override, but whether it or syrupy's own fixture
    wins depends on the order the two plugins load; a conftest always wins.
    """
    return snapshot.use_extension(HomeAssistantSnapshotExtension)


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


def link_of(entry: MockConfigEntry) -> RemoteBuildLink:
    """The loaded entry's link."""
    link: RemoteBuildLink = entry.runtime_data.link
    return link


def client_of(entry: MockConfigEntry) -> PeerLinkClient:
    """The link's private peer-link client, for what only a test needs (events, waits)."""
    return link_of(entry)._client


async def wait_stopped(entry: MockConfigEntry) -> None:
    """Wait until the entry's link gave up for good (a terminal refusal)."""
    link = link_of(entry)
    async with asyncio.timeout(5):
        while link.running:
            await asyncio.sleep(0.01)


def make_entry(rd: ReceiverDouble, **data: Any) -> MockConfigEntry:
    """An entry paired with ``rd``, titled like the config flow would (its friendly name)."""
    return MockConfigEntry(
        domain=DOMAIN,
        title=rd.friendly_name or rd.host,
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
        client = client_of(config_entry)
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


# --- stored builds and devices to flash them to --------------------------------------------

type StoreBuild = Callable[..., Awaitable[StoredBuild]]
type StartDevice = Callable[..., Awaitable[OTADeviceEmulator]]


@pytest.fixture
def store_build(hass: HomeAssistant, tmp_path: Path) -> StoreBuild:
    """Store a build made from receiver-like members, the way a download does."""

    async def _store(
        members: list[Member], job_id: str = "job-1", server_pin: str = "ab" * 32
    ) -> StoredBuild:
        tarball = write_tarball(tmp_path / f"{job_id}.tar.gz", members, "0x10000")
        return await commit(hass.data[DATA_STORE], tarball, job_id, server_pin=server_pin)

    return _store


@pytest.fixture
def fast_ota() -> Iterator[None]:
    """The OTA client with test-sized timeouts and no wait between retries."""
    fast = partial(ota.async_flash, connect_timeout=5.0, data_timeout=5.0, retry_delay=0.0)
    with patch.object(flash, "async_flash", fast):
        yield


@pytest.fixture
async def start_device() -> AsyncIterator[StartDevice]:
    """Emulated ESPHome devices on 127.0.0.1; all are stopped after the test."""
    started: list[OTADeviceEmulator] = []

    async def start(**config: Any) -> OTADeviceEmulator:
        emulator = OTADeviceEmulator(DeviceConfig(**config))
        await emulator.start()
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        await emulator.stop()
