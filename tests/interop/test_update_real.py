"""The update entity against the real ESPHome Device Builder and an emulated device.

Home Assistant pairs with the real Device Builder through the config flow, and its own
``esphome`` integration talks to an emulated device (``tests/support/device_emulator.py``)
named like one of the demo YAMLs in ``<config>/esphome``. ``update.install`` then has the
real server build that YAML (stand-in compiler, which embeds the build's identity from
``build_info.json`` in the image), downloads and stores it, flashes the device, and the
device reboots into exactly that image: what it reports afterwards must be what the
server's compiler wrote. A second build makes the first one a rollback target: the real
server keeps only the newest build per YAML, our store keeps both.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
import hashlib
from pathlib import Path
import shutil
from typing import Any

import aioesphomeapi.reconnect_logic
from homeassistant.components.esphome.const import (
    CONF_ALLOW_SERVICE_CALLS,
    CONF_DEVICE_NAME,
    CONF_NOISE_PSK,
    DOMAIN as ESPHOME_DOMAIN,
)
from homeassistant.components.update import DOMAIN as UPDATE_DOMAIN, SERVICE_INSTALL
from homeassistant.const import ATTR_ENTITY_ID, CONF_HOST, CONF_PASSWORD, CONF_PORT
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
import yaml

from custom_components.esphome_remote_build.const import DATA_STORE, DOMAIN
from custom_components.esphome_remote_build.fleet import DATA_FLEET
from custom_components.esphome_remote_build.link import async_get_identity
from custom_components.esphome_remote_build.stored_build import StoredBuild
from tests.support.device_emulator import DeviceEmulator
from tests.support.real_builder import RealBuilder

from .test_ha_real import FIXTURES, _pair_through_the_flow

SECRETS: dict[str, str] = yaml.safe_load((FIXTURES / "secrets.yaml").read_text())
# What the emulated device ran before: older than any ESPHome a Device Builder here has.
OLD_ESPHOME = "2026.9.0"
OLD_COMPILATION_TIME = "2026-09-01 10:00:00 +0000"


@dataclass(frozen=True)
class Demo:
    """One of the demo YAMLs and the emulated device that runs it."""

    name: str
    friendly_name: str
    platform: str
    board: str
    mac: str

    @property
    def yaml_name(self) -> str:
        return f"{self.name}.yaml"

    @property
    def entity_id(self) -> str:
        return f"update.{self.name.replace('-', '_')}_firmware"

    @property
    def api_key(self) -> str:
        return SECRETS[f"{self.name.replace('-', '_')}_api_key"]

    @property
    def ota_password(self) -> str:
        return SECRETS[f"{self.name.replace('-', '_')}_ota_password"]


ESP32 = Demo("esp32-demo", "ESP32 Demo", "esp32", "esp32dev", "AA:BB:CC:00:11:22")
ESP8266 = Demo("esp8266-demo", "ESP8266 Demo", "esp8266", "d1_mini", "AA:BB:CC:00:11:33")
# The application image an OTA sends, in the order flash.py looks for it.
APPLICATION_IMAGES = ("firmware.ota.bin", "firmware.bin")


@pytest.fixture(autouse=True)
def _custom_integrations(enable_custom_integrations: None) -> None:
    """Let Home Assistant load the integration from custom_components/."""


@pytest.fixture(autouse=True)
def _esphome_test_environment(
    enable_bluetooth: None, mock_async_zeroconf: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What HA's own esphome tests patch (no Bluetooth adapter, no real mDNS); and the
    pause aioesphomeapi takes after an expected disconnect shrinks to keep tests short."""
    monkeypatch.setattr(aioesphomeapi.reconnect_logic, "EXPECTED_DISCONNECT_COOLDOWN", 0.3)


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


@pytest.fixture(params=[ESP32, ESP8266], ids=lambda demo: demo.platform)
def demo(request: pytest.FixtureRequest) -> Demo:
    demo: Demo = request.param
    return demo


@pytest.fixture
async def device(demo: Demo) -> AsyncIterator[DeviceEmulator]:
    """The demo device, running an older ESPHome, with its YAML's API key and password."""
    async with DeviceEmulator(
        name=demo.name,
        friendly_name=demo.friendly_name,
        mac=demo.mac,
        platform=demo.platform,
        board=demo.board,
        esphome_version=OLD_ESPHOME,
        compilation_time=OLD_COMPILATION_TIME,
        encryption_key=demo.api_key,
        ota_password=demo.ota_password,
        reboot_delay=0.1,
    ) as emulated:
        yield emulated


def set_ota_port(esphome_dir: Path, demo: Demo, device: DeviceEmulator) -> None:
    """The emulated device listens on a free port; its YAML says which, as a user's would."""
    path = esphome_dir / demo.yaml_name
    text = path.read_text()
    assert "  - platform: esphome\n" in text
    path.write_text(
        text.replace(
            "  - platform: esphome\n", f"  - platform: esphome\n    port: {device.ota_port}\n"
        )
    )


def esphome_entry(demo: Demo, device: DeviceEmulator) -> MockConfigEntry:
    """An entry as HA's esphome config flow stores it."""
    return MockConfigEntry(
        domain=ESPHOME_DOMAIN,
        title=demo.friendly_name,
        unique_id=device.mac_address.lower(),
        data={
            CONF_HOST: device.host,
            CONF_PORT: device.api_port,
            CONF_PASSWORD: "",
            CONF_NOISE_PSK: demo.api_key,
            CONF_DEVICE_NAME: demo.name,
        },
        options={CONF_ALLOW_SERVICE_CALLS: False},
    )


async def wait_for(
    hass: HomeAssistant, predicate: Callable[[], object], timeout: float = 30
) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)
    await hass.async_block_till_done()


def state_of(hass: HomeAssistant, entity_id: str) -> tuple[str, dict[str, Any]]:
    state = hass.states.get(entity_id)
    assert state is not None
    return state.state, dict(state.attributes)


async def install(hass: HomeAssistant, entity_id: str, version: str | None = None) -> None:
    data: dict[str, Any] = {ATTR_ENTITY_ID: entity_id}
    if version is not None:
        data["version"] = version
    await hass.services.async_call(UPDATE_DOMAIN, SERVICE_INSTALL, data, blocking=True)
    await hass.async_block_till_done()


async def stored_build(hass: HomeAssistant, job_id: str) -> StoredBuild:
    for build in await hass.data[DATA_STORE].async_list():
        if build.job_id == job_id:
            return build
    raise AssertionError(f"build {job_id} is not in the store")


async def download_response(hass: HomeAssistant, entry_id: str, job_id: str) -> dict[str, Any]:
    """``download_artifacts`` of a stored build: answered from the store."""
    response = await hass.services.async_call(
        DOMAIN,
        "download_artifacts",
        {"config_entry_id": entry_id, "job_id": job_id},
        blocking=True,
        return_response=True,
    )
    assert response is not None
    return dict(response)


async def test_install_and_rollback_with_the_real_builder(
    hass: HomeAssistant,
    real_builder: RealBuilder,
    esphome_dir: Path,
    demo: Demo,
    device: DeviceEmulator,
) -> None:
    set_ota_port(esphome_dir, demo, device)
    entry_id = await _pair_through_the_flow(hass, real_builder)
    entry = hass.config_entries.async_get_entry(entry_id)
    assert entry is not None
    await asyncio.wait_for(entry.runtime_data.link.async_wait_connected(), 10)
    server_info = entry.runtime_data.link.server_info
    assert server_info is not None
    server_esphome = server_info.esphome_version

    assert await async_setup_component(hass, "homeassistant", {})
    esphome = esphome_entry(demo, device)
    esphome.add_to_hass(hass)
    assert await hass.config_entries.async_setup(esphome.entry_id)
    await wait_for(hass, lambda: esphome.runtime_data.available)
    await hass.data[DATA_FLEET].async_refresh_configs()
    await wait_for(
        hass,
        lambda: (s := hass.states.get(demo.entity_id)) is not None and s.state == "on",
    )
    state, attrs = state_of(hass, demo.entity_id)
    assert attrs["installed_version"] == OLD_ESPHOME
    assert attrs["latest_version"].startswith(f"{server_esphome} (")
    assert attrs["configuration"] == demo.yaml_name
    assert attrs["stored_builds"] == []

    # --- install: the real server builds, we store, flash and verify -------------------
    await install(hass, demo.entity_id)
    state, attrs = state_of(hass, demo.entity_id)
    assert state == "off"
    assert attrs["installed_version"] == attrs["latest_version"]
    assert attrs["installed_version"].startswith(f"{server_esphome} (")
    (first_job,) = attrs["stored_builds"]
    first = await stored_build(hass, first_job)
    assert first.configuration == demo.yaml_name
    assert first.build_info is not None
    # The device rebooted into the build the real server compiled.
    assert device.boots[-1].reason == "ota"
    assert not device.boots[-1].rolled_back
    assert device.firmware.compilation_time == first.build_info.compilation_time
    assert device.firmware.compilation_time != OLD_COMPILATION_TIME
    assert device.firmware.esphome_version == first.build_info.esphome_version == server_esphome
    assert device.firmware.config_hash == first.build_info.config_hash
    assert device.firmware.name == demo.name
    response = await download_response(hass, entry_id, first_job)
    assert response["build_info"]["build_time_str"] == device.firmware.compilation_time
    assert response["build_info"]["esphome_version"] == server_esphome
    # ... byte for byte what the stand-in compiler wrote into the server's build tree
    (session,) = device.ota_sessions
    assert session.encrypted  # the key came from the esphome entry
    assert session.image is not None
    sent = hashlib.sha256(session.image).hexdigest()
    identity = await async_get_identity(hass)
    receipt = real_builder.build_files(demo.name, dashboard_id=identity.dashboard_id)
    names = {image["name"]: image["sha256"] for image in response["images"]}
    image_name = next(name for name in APPLICATION_IMAGES if name in names)
    assert sent == names[image_name] == receipt.file(image_name).read_sha256()

    # --- a second build (the configuration changed), then a rollback to the first ------
    # (a value that is no platform's default: ESP8266 defaults to ``none``, and a change
    # that leaves the validated configuration as it was gives the same build identity)
    wifi = esphome_dir / "common" / "wifi.yaml"
    wifi.write_text(wifi.read_text() + "\n  power_save_mode: high\n")
    await hass.data[DATA_FLEET].async_refresh_configs()
    await wait_for(hass, lambda: state_of(hass, demo.entity_id)[0] == "on")
    assert state_of(hass, demo.entity_id)[1]["release_summary"] == (
        "Configuration changed: common/wifi.yaml"
    )
    await install(hass, demo.entity_id)
    state, attrs = state_of(hass, demo.entity_id)
    assert state == "off"
    assert attrs["installed_version"] == attrs["latest_version"]
    second_job = next(job for job in attrs["stored_builds"] if job != first_job)
    assert sorted(attrs["stored_builds"]) == sorted([first_job, second_job])
    second = await stored_build(hass, second_job)
    assert second.build_info is not None
    assert device.firmware.compilation_time == second.build_info.compilation_time
    assert second.build_info.config_hash != first.build_info.config_hash
    assert second.build_info.compilation_time != first.build_info.compilation_time
    jobs_before = len(entry.runtime_data.link.recent_jobs())

    await install(hass, demo.entity_id, version=first_job)
    assert device.firmware.compilation_time == first.build_info.compilation_time
    assert device.firmware.config_hash == first.build_info.config_hash
    assert len(device.ota_sessions) == 3
    assert len(entry.runtime_data.link.recent_jobs()) == jobs_before  # nothing was built
    state, attrs = state_of(hass, demo.entity_id)
    # the first build is from before the configuration change: an update again
    assert state == "on"
    assert attrs["release_summary"] == "Configuration changed: common/wifi.yaml"
    assert sorted(attrs["stored_builds"]) == sorted([first_job, second_job])
    assert await hass.config_entries.async_unload(entry_id)
