"""Home Assistant's real ``esphome`` integration against the emulated device.

What the update entity will rely on, proven end to end: the core integration connects to
the emulated device (Noise, with the key an entry stores), registers it with
``sw_version`` built from the device's ``esphome_version`` and ``compilation_time``, and
after our OTA client flashes a new image it reconnects by itself and reports the new
build in its runtime data and the device registry.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
import os

import aioesphomeapi.reconnect_logic
from homeassistant.components.esphome.const import (
    CONF_NOISE_PSK,
)
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.setup import async_setup_component
import pytest

from custom_components.esphome_remote_build.ota import async_flash
from tests.ha.esphome_helpers import esphome_entry, wait_for
from tests.support.device_emulator import DeviceEmulator, build_info, firmware_image

NEW_BUILD = build_info("kitchen", "2026.10.0", build_time=1_790_000_000, config_hash=0xC0FFEE01)


@pytest.fixture(autouse=True)
def _esphome_test_environment(
    enable_bluetooth: None, mock_async_zeroconf: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What HA's own esphome tests patch: no Bluetooth adapter, no real mDNS.

    And the 5 s pause aioesphomeapi takes after an expected disconnect (so it does not
    reconnect to a device that is about to reboot) shrinks to keep the test short.
    """
    monkeypatch.setattr(aioesphomeapi.reconnect_logic, "EXPECTED_DISCONNECT_COOLDOWN", 0.5)


@pytest.fixture
async def device() -> AsyncIterator[DeviceEmulator]:
    async with DeviceEmulator(
        name="kitchen",
        friendly_name="Kitchen",
        mac="AA:BB:CC:00:11:22",
        esphome_version="2026.9.0",
        compilation_time="2026-09-01 10:00:00 +0000",
        encryption_key=os.urandom(32),
        reboot_delay=0.1,
    ) as emulated:
        yield emulated


def uptime_is(hass: HomeAssistant, value: float | None) -> bool:
    """The uptime sensor's state (``None``: any number, i.e. states arrived)."""
    state = hass.states.get("sensor.kitchen_uptime")
    if state is None or state.state in ("unknown", "unavailable"):
        return False
    return value is None or float(state.state) == value


async def test_core_esphome_integration_follows_an_ota_of_the_emulated_device(
    hass: HomeAssistant, device_registry: dr.DeviceRegistry, device: DeviceEmulator
) -> None:
    assert await async_setup_component(hass, "homeassistant", {})
    entry = esphome_entry(device, title="Kitchen")
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED

    runtime = entry.runtime_data
    await wait_for(hass, lambda: runtime.available and uptime_is(hass, None))
    assert runtime.device_info is not None
    assert runtime.device_info.compilation_time == "2026-09-01 10:00:00 +0000"
    registered = device_registry.async_get_device_by_connection(
        (dr.CONNECTION_NETWORK_MAC, "aa:bb:cc:00:11:22"), entry.entry_id
    )
    assert registered is not None
    assert registered.sw_version == "2026.9.0 (2026-09-01 10:00:00 +0000)"
    assert registered.name == "Kitchen"
    (first,) = device.api.clients
    assert first.encrypted
    assert "SubscribeStatesRequest" in first.received
    state = hass.states.get("binary_sensor.kitchen_status")
    assert state is not None
    assert state.state == "on"
    device.set_state("uptime", 42)  # pushed to Home Assistant
    await wait_for(hass, lambda: uptime_is(hass, 42))

    await async_flash(
        device.host,
        device.ota_port,
        firmware_image(NEW_BUILD),
        noise_psk=device.noise_psk,
        retry_delay=0.0,
    )
    await device.wait_for_boot(2)
    await wait_for(
        hass,
        lambda: (
            runtime.available
            and runtime.device_info is not None
            and runtime.device_info.compilation_time == NEW_BUILD.build_time_str
            and uptime_is(hass, None)  # states flow again after the reconnect
        ),
    )
    assert runtime.device_info.esphome_version == "2026.10.0"
    registered = device_registry.async_get(registered.id)
    assert registered is not None
    assert registered.sw_version == f"2026.10.0 ({NEW_BUILD.build_time_str})"
    # The device asked it to leave before rebooting and it answered, as with real firmware
    assert first.sent[-1] == "DisconnectRequest"
    assert first.received[-1] == "DisconnectResponse"
    assert len(device.api.clients) == 1

    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()


async def test_core_esphome_integration_provisions_a_key_on_a_keyless_device(
    hass: HomeAssistant,
) -> None:
    """HA gives a keyless 2026.10 device a key over zero-key Noise and reconnects with it;
    the key then also encrypts the OTA upload, and survives the reboot."""
    assert await async_setup_component(hass, "homeassistant", {})
    async with DeviceEmulator(
        name="kitchen",
        friendly_name="Kitchen",
        mac="AA:BB:CC:00:11:22",
        encryption_key=None,
        reboot_delay=0.1,
    ) as device:
        entry = esphome_entry(device, title="Kitchen")
        entry.add_to_hass(hass)
        assert await hass.config_entries.async_setup(entry.entry_id)
        await wait_for(hass, lambda: device.psk is not None)
        # The new key in the entry's data reloads it: a new runtime_data
        await wait_for(
            hass,
            lambda: (
                entry.runtime_data.available
                and uptime_is(hass, None)
                and any(c.encrypted and not c.provisioning for c in device.api.clients)
            ),
        )
        assert entry.data[CONF_NOISE_PSK] == device.noise_psk
        assert [c.key_set for c in device.api_connections if c.provisioning] == [True]

        await async_flash(
            device.host,
            device.ota_port,
            firmware_image(NEW_BUILD),
            noise_psk=entry.data[CONF_NOISE_PSK],
            retry_delay=0.0,
        )
        boot = await device.wait_for_boot(2)
        assert device.ota_sessions[0].encrypted
        assert device.noise_psk == entry.data[CONF_NOISE_PSK]
        await wait_for(
            hass,
            lambda: (
                entry.runtime_data.available
                and entry.runtime_data.device_info is not None
                and entry.runtime_data.device_info.compilation_time
                == boot.firmware.compilation_time
            ),
        )
        assert await hass.config_entries.async_unload(entry.entry_id)
        await hass.async_block_till_done()
