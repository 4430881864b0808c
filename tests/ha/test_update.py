"""The update entity, end to end on real parts: HA's own ``esphome`` integration talks to an
emulated device, our link talks to the receiver double, and every install is verified by
what the device reports after it rebooted into the image it received.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
import json
from pathlib import Path
from typing import Any

import aioesphomeapi.reconnect_logic
from homeassistant.components.update import DOMAIN as UPDATE_DOMAIN, SERVICE_INSTALL
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import ATTR_ENTITY_ID
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import device_registry as dr, entity_registry as er
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.esphome_remote_build import verify
from custom_components.esphome_remote_build.const import DOMAIN, EVENT_FLASH
from custom_components.esphome_remote_build.fleet import DATA_FLEET
from custom_components.esphome_remote_build.peerlink import Identity
from tests.standin.esphome_standin import BuildInfo
from tests.store.helpers import Member, esp32_members, esp8266_members, write_tarball
from tests.support.device_emulator import DeviceEmulator, build_info, firmware_image
from tests.support.receiver_double import Artifacts, ReceiverDouble

from .conftest import SetUp, assert_translated, call_service, make_entry
from .esphome_helpers import async_setup_esphome, wait_for

NAME = "esp32-demo"
MAC = "AA:BB:CC:00:11:22"
KEY = "Q2ZrJ0c1bVZ0b3dUaW1lc0FyZUdvb2RGb3JUZXN0czE="  # esp32_demo_api_key in secrets.yaml
OTHER_KEY = "b3RoZXJEZXZpY2VLZXlOZXZlckluQUJ1bmRsZSEhISE="
OTA_PASSWORD = "esp32-ota-secret"  # esp32_demo_ota_password
ENTITY = "update.esp32_demo_firmware"


@pytest.fixture(autouse=True)
def _esphome_test_environment(
    enable_bluetooth: None, mock_async_zeroconf: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What HA's own esphome tests patch (no Bluetooth adapter, no real mDNS); and the
    pause aioesphomeapi takes after an expected disconnect shrinks to keep tests short."""
    monkeypatch.setattr(aioesphomeapi.reconnect_logic, "EXPECTED_DISCONNECT_COOLDOWN", 0.3)


def artifacts_for(tmp_path: Path, info: BuildInfo, *, bootable: bool = True) -> bytes:
    """An ESP32 build of the demo device whose images carry ``info`` (as real ones do)."""
    image = firmware_image(info if bootable else None)
    members = [
        Member(member.name, image)
        if member.name.endswith(("firmware.bin", "firmware.ota.bin"))
        else member
        for member in esp32_members(NAME)
    ]
    build_json = {
        "config_hash": info.config_hash,
        "build_time": info.build_time,
        "build_time_str": info.build_time_str,
        "esphome_version": info.esphome_version,
    }
    members.append(Member("build_info.json", json.dumps(build_json).encode()))
    path = tmp_path / f"artifacts-{info.build_time}.tar.gz"
    return write_tarball(path, members, "0x10000").path.read_bytes()


@pytest.fixture
async def device() -> AsyncIterator[DeviceEmulator]:
    async with DeviceEmulator(
        name=NAME,
        friendly_name="ESP32 Demo",
        mac=MAC,
        esphome_version="2026.9.0",
        compilation_time="2026-09-01 10:00:00 +0000",
        encryption_key=KEY,
        ota_password=OTA_PASSWORD,
        reboot_delay=0.1,
    ) as emulated:
        yield emulated


def attributes(hass: HomeAssistant) -> dict[str, Any]:
    state = hass.states.get(ENTITY)
    assert state is not None
    return dict(state.attributes)


@pytest.fixture
async def fleet_ready(
    hass: HomeAssistant,
    esphome_dir: Path,
    device: DeviceEmulator,
    loaded: MockConfigEntry,
) -> MockConfigEntry:
    """The device online in HA's esphome integration, a server connected, the entity there."""
    set_ota_port(esphome_dir, device)
    entry = await async_setup_esphome(hass, device, title="ESP32 Demo")
    await hass.data[DATA_FLEET].async_refresh_configs()
    await wait_for(hass, lambda: (s := hass.states.get(ENTITY)) is not None and s.state == "on")
    return entry


def set_ota_port(esphome_dir: Path, device: DeviceEmulator) -> None:
    """The emulated device listens on a free port; its YAML says which, as a user's would."""
    yaml = esphome_dir / f"{NAME}.yaml"
    text = yaml.read_text().replace(
        "  - platform: esphome\n", f"  - platform: esphome\n    port: {device.ota_port}\n"
    )
    yaml.write_text(text)


async def install(hass: HomeAssistant, version: str | None = None) -> None:
    data: dict[str, Any] = {ATTR_ENTITY_ID: ENTITY}
    if version is not None:
        data["version"] = version
    await hass.services.async_call(UPDATE_DOMAIN, SERVICE_INSTALL, data, blocking=True)


async def test_one_entity_on_the_device_page_offers_the_newer_esphome(
    hass: HomeAssistant, fleet_ready: MockConfigEntry, loaded: MockConfigEntry
) -> None:
    state = hass.states.get(ENTITY)
    assert state is not None
    assert state.state == "on"
    attrs = attributes(hass)
    assert attrs["installed_version"] == "2026.9.0"
    assert attrs["latest_version"].startswith("2026.10.0 (")
    assert attrs["release_summary"] == "ESPHome 2026.9.0 → 2026.10.0"
    assert attrs["release_url"] == "https://esphome.io/changelog/2026.10.0.html"
    assert attrs["configuration"] == "esp32-demo.yaml"
    assert attrs["in_progress"] is False
    entity = er.async_get(hass).async_get(ENTITY)
    assert entity is not None
    assert entity.config_entry_id == loaded.entry_id
    device = dr.async_get(hass).async_get(entity.device_id)
    assert device is not None
    assert device.config_entry_id == fleet_ready.entry_id  # the ESPHome device's own page
    assert (dr.CONNECTION_NETWORK_MAC, MAC.lower()) in device.connections
    # One entity per device, however many servers: a second server adds none.
    assert [
        e.entity_id
        for e in er.async_entries_for_device(er.async_get(hass), device.id)
        if e.domain == UPDATE_DOMAIN and e.platform == DOMAIN
    ] == [ENTITY]


async def test_install_builds_flashes_and_verifies(
    hass: HomeAssistant,
    fleet_ready: MockConfigEntry,
    paired: ReceiverDouble,
    device: DeviceEmulator,
    tmp_path: Path,
) -> None:
    new = build_info(NAME, "2026.10.0", build_time=1_790_000_000, config_hash=0xC0FFEE01)
    paired.set_artifacts(artifacts_for(tmp_path, new))
    seen: list[tuple[bool, Any]] = []
    flash_events: list[Event] = []
    hass.bus.async_listen(EVENT_FLASH, flash_events.append)

    @callback
    def record(event: Event) -> None:
        if event.data["entity_id"] == ENTITY and (new_state := event.data["new_state"]):
            attrs = new_state.attributes
            seen.append((attrs.get("in_progress"), attrs.get("update_percentage")))

    hass.bus.async_listen("state_changed", record)
    await install(hass)
    await hass.async_block_till_done()

    assert device.firmware.compilation_time == new.build_time_str
    (session,) = device.ota_sessions
    assert session.encrypted  # the key came from the esphome entry
    assert (True, None) in seen  # building: indeterminate
    assert any(progress and 0 < progress <= 100 for busy, progress in seen if busy)
    assert [e.data["status"] for e in flash_events][-2:] == ["verifying", "verified"]
    attrs = attributes(hass)
    assert hass.states.get(ENTITY).state == "off"
    assert attrs["installed_version"] == attrs["latest_version"]
    assert attrs["installed_version"].startswith("2026.10.0 (")
    assert len(attrs["stored_builds"]) == 1


async def test_a_changed_configuration_file_offers_an_update_and_names_it(
    hass: HomeAssistant,
    fleet_ready: MockConfigEntry,
    paired: ReceiverDouble,
    esphome_dir: Path,
    tmp_path: Path,
) -> None:
    paired.set_artifacts(
        artifacts_for(tmp_path, build_info(NAME, "2026.10.0", build_time=1_790_000_100))
    )
    await install(hass)
    assert hass.states.get(ENTITY).state == "off"

    wifi = esphome_dir / "common" / "wifi.yaml"
    wifi.write_text(wifi.read_text() + "\n  power_save_mode: none\n")
    await hass.data[DATA_FLEET].async_refresh_configs()
    await hass.async_block_till_done()
    assert hass.states.get(ENTITY).state == "on"
    assert attributes(hass)["release_summary"] == "Configuration changed: common/wifi.yaml"


async def test_rollback_reflashes_a_stored_build(
    hass: HomeAssistant,
    fleet_ready: MockConfigEntry,
    paired: ReceiverDouble,
    device: DeviceEmulator,
    esphome_dir: Path,
    tmp_path: Path,
) -> None:
    first = build_info(NAME, "2026.10.0", build_time=1_790_000_200)
    paired.set_artifacts(artifacts_for(tmp_path, first))
    await install(hass)
    first_job = attributes(hass)["stored_builds"][0]
    # A configuration change makes the next build an update (HA offers no reinstall).
    wifi = esphome_dir / "common" / "wifi.yaml"
    wifi.write_text(wifi.read_text() + "\n  power_save_mode: none\n")
    await hass.data[DATA_FLEET].async_refresh_configs()
    second = build_info(NAME, "2026.10.0", build_time=1_790_000_300)
    paired.set_artifacts(artifacts_for(tmp_path, second))
    await install(hass)
    assert device.firmware.compilation_time == second.build_time_str
    submitted = len(paired.jobs)

    await install(hass, version=first_job)
    assert device.firmware.compilation_time == first.build_time_str
    assert len(paired.jobs) == submitted  # nothing was built for a rollback
    assert len(device.ota_sessions) == 3


async def test_a_device_that_boots_its_old_firmware_fails_verification(
    hass: HomeAssistant,
    fleet_ready: MockConfigEntry,
    paired: ReceiverDouble,
    device: DeviceEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(verify, "OTHER_FIRMWARE_GRACE", 1.0)
    broken = build_info(NAME, "2026.10.0", build_time=1_790_000_400)
    paired.set_artifacts(artifacts_for(tmp_path, broken, bootable=False))
    with pytest.raises(HomeAssistantError) as caught:
        await install(hass)
    assert caught.value.translation_key == "not_verified_other_firmware"
    assert_translated(caught.value)
    assert "2026.9.0" in str(caught.value)
    assert device.firmware.compilation_time == "2026-09-01 10:00:00 +0000"
    assert hass.states.get(ENTITY).state == "on"
    assert attributes(hass)["in_progress"] is False


async def test_a_device_that_never_returns_fails_verification(
    hass: HomeAssistant,
    fleet_ready: MockConfigEntry,
    paired: ReceiverDouble,
    device: DeviceEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(verify, "VERIFY_TIMEOUT", 2.0)
    device.spec.never_returns = True
    paired.set_artifacts(artifacts_for(tmp_path, build_info(NAME, build_time=1_790_000_500)))
    with pytest.raises(HomeAssistantError) as caught:
        await install(hass)
    assert caught.value.translation_key == "not_verified_not_back"
    assert_translated(caught.value)


async def test_a_yaml_with_another_api_key_is_refused_before_building(
    hass: HomeAssistant,
    esphome_dir: Path,
    device: DeviceEmulator,
    loaded: MockConfigEntry,
    paired: ReceiverDouble,
) -> None:
    set_ota_port(esphome_dir, device)
    await async_setup_esphome(hass, device, title="ESP32 Demo")
    secrets = esphome_dir / "secrets.yaml"
    secrets.write_text(secrets.read_text().replace(KEY, OTHER_KEY))
    await hass.data[DATA_FLEET].async_refresh_configs()
    await wait_for(hass, lambda: hass.states.get(ENTITY) is not None)
    with pytest.raises(ServiceValidationError) as caught:
        await install(hass)
    assert caught.value.translation_key == "encryption_key_differs"
    assert_translated(caught.value)
    assert paired.jobs == {}  # refused before anything was built
    assert device.ota_sessions == []


async def test_flash_action_verifies_a_device_of_the_esphome_integration(
    hass: HomeAssistant,
    fleet_ready: MockConfigEntry,
    loaded: MockConfigEntry,
    paired: ReceiverDouble,
    identity: Identity,
    device: DeviceEmulator,
    tmp_path: Path,
) -> None:
    new = build_info(NAME, "2026.10.0", build_time=1_790_000_600, config_hash=0xABCDEF12)

    paired.add_job(
        identity.dashboard_id, "flashme", artifacts=Artifacts(artifacts_for(tmp_path, new))
    )
    await call_service(
        hass, "download_artifacts", config_entry_id=loaded.entry_id, job_id="flashme"
    )
    registered = dr.async_get(hass).async_get_device_by_connection(
        (dr.CONNECTION_NETWORK_MAC, MAC.lower()), fleet_ready.entry_id
    )
    assert registered is not None
    response = await call_service(hass, "flash", job_id="flashme", device_id=registered.id)
    assert response["verified"] is True
    assert response["verification"] == "verified"
    assert response["evidence"] == {
        "esphome_version": "2026.10.0",
        "compilation_time": new.build_time_str,
    }
    assert device.ota_sessions[-1].encrypted
    assert fleet_ready.state is ConfigEntryState.LOADED


async def test_the_entity_stays_when_its_server_entry_goes_and_another_remains(
    hass: HomeAssistant,
    fleet_ready: MockConfigEntry,
    loaded: MockConfigEntry,
    identity: Identity,
    setup_entry: SetUp,
) -> None:
    """Paired with two servers, the device has one entity; unloading its host keeps it."""
    async with ReceiverDouble(friendly_name="other-box", esphome_version="2026.10.0") as other:
        other.add_peer(identity.dashboard_id, identity.pin_sha256)
        second = make_entry(other)
        second.add_to_hass(hass)
        await setup_entry(second)
        registry = er.async_get(hass)
        ours = [
            e for e in registry.entities.values() if e.platform == DOMAIN and e.domain == "update"
        ]
        assert [e.entity_id for e in ours] == [ENTITY]  # one, however many servers

        assert await hass.config_entries.async_unload(loaded.entry_id)
        await hass.async_block_till_done()
        state = hass.states.get(ENTITY)
        assert state is not None
        assert state.state == "on"  # hosted by the other server now, and it is connected
        moved = registry.async_get(ENTITY)
        assert moved is not None
        assert moved.config_entry_id == second.entry_id
        assert await hass.config_entries.async_unload(second.entry_id)


async def test_rollback_refuses_another_devices_build(
    hass: HomeAssistant,
    fleet_ready: MockConfigEntry,
    loaded: MockConfigEntry,
    paired: ReceiverDouble,
    identity: Identity,
    device: DeviceEmulator,
    tmp_path: Path,
) -> None:
    porch = write_tarball(tmp_path / "porch.tar.gz", esp8266_members("porch"), "0x0")
    paired.add_job(identity.dashboard_id, "porchjob", artifacts=Artifacts(porch.path.read_bytes()))
    await call_service(
        hass, "download_artifacts", config_entry_id=loaded.entry_id, job_id="porchjob"
    )
    with pytest.raises(ServiceValidationError) as caught:
        await install(hass, version="porchjob")
    assert caught.value.translation_key == "build_of_other_device"
    assert "porch" in assert_translated(caught.value)
    assert device.ota_sessions == []  # nothing was sent to the device


async def test_release_notes_explain_and_list_rollback_targets(
    hass: HomeAssistant,
    fleet_ready: MockConfigEntry,
    paired: ReceiverDouble,
    tmp_path: Path,
    hass_ws_client: Any,
) -> None:
    client = await hass_ws_client(hass)
    await client.send_json({"id": 1, "type": "update/release_notes", "entity_id": ENTITY})
    notes = (await client.receive_json())["result"]
    assert "- ESPHome 2026.9.0 → 2026.10.0" in notes
    assert "[ESPHome changelog](https://esphome.io/changelog/2026.10.0.html)" in notes
    assert "Stored builds" not in notes

    paired.set_artifacts(artifacts_for(tmp_path, build_info(NAME, build_time=1_790_000_700)))
    await install(hass)
    job_id = attributes(hass)["stored_builds"][0]
    await client.send_json({"id": 2, "type": "update/release_notes", "entity_id": ENTITY})
    notes = (await client.receive_json())["result"]
    assert "- Up to date." in notes
    assert f"- `{job_id}`" in notes


async def test_the_entity_goes_when_its_yaml_goes(
    hass: HomeAssistant, fleet_ready: MockConfigEntry, esphome_dir: Path
) -> None:
    (esphome_dir / f"{NAME}.yaml").unlink()
    await hass.data[DATA_FLEET].async_refresh_configs()
    await hass.async_block_till_done()
    assert hass.states.get(ENTITY) is None
    assert er.async_get(hass).async_get(ENTITY) is None


async def test_update_entity_service_reads_the_yaml_again_at_once(
    hass: HomeAssistant,
    fleet_ready: MockConfigEntry,
    esphome_dir: Path,
    paired: ReceiverDouble,
    tmp_path: Path,
) -> None:
    paired.set_artifacts(artifacts_for(tmp_path, build_info(NAME, build_time=1_790_000_800)))
    await install(hass)
    assert hass.states.get(ENTITY).state == "off"
    wifi = esphome_dir / "common" / "wifi.yaml"
    wifi.write_text(wifi.read_text() + "\n  power_save_mode: light\n")
    await async_setup_component(hass, "homeassistant", {})
    await hass.services.async_call(
        "homeassistant", "update_entity", {ATTR_ENTITY_ID: ENTITY}, blocking=True
    )
    await hass.async_block_till_done()
    assert hass.states.get(ENTITY).state == "on"
    assert attributes(hass)["release_summary"] == "Configuration changed: common/wifi.yaml"
