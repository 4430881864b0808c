"""Home Assistant's real ``esphome`` integration in tests, with an emulated device.

Shared by the tests that need a device the core integration talks to: an entry as its
config flow stores one, setting it up, and waiting for what follows asynchronously.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from homeassistant.components.esphome.const import (
    CONF_ALLOW_SERVICE_CALLS,
    CONF_DEVICE_NAME,
    CONF_NOISE_PSK,
    DOMAIN as ESPHOME_DOMAIN,
)
from homeassistant.const import CONF_HOST, CONF_PASSWORD, CONF_PORT
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import MockConfigEntry

from tests.support.device_emulator import DeviceEmulator


def esphome_entry(device: DeviceEmulator, *, title: str, key: str | None = None) -> MockConfigEntry:
    """An entry as HA's esphome config flow stores it (``_async_make_config_data``)."""
    psk = key if key is not None else device.noise_psk
    return MockConfigEntry(
        domain=ESPHOME_DOMAIN,
        title=title,
        unique_id=device.mac_address.lower(),
        data={
            CONF_HOST: device.host,
            CONF_PORT: device.api_port,
            CONF_PASSWORD: "",
            CONF_NOISE_PSK: psk or "",  # the API uses "" for no key
            CONF_DEVICE_NAME: device.spec.name,
        },
        options={CONF_ALLOW_SERVICE_CALLS: False},
    )


async def wait_for(
    hass: HomeAssistant, predicate: Callable[[], object], timeout: float = 20
) -> None:
    """Wait until ``predicate`` holds, then let Home Assistant settle."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)
    await hass.async_block_till_done()


async def async_setup_esphome(
    hass: HomeAssistant, device: DeviceEmulator, *, title: str, key: str | None = None
) -> MockConfigEntry:
    """Set the core integration up for ``device`` and wait until it is connected."""
    assert await async_setup_component(hass, "homeassistant", {})
    entry = esphome_entry(device, title=title, key=key)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await wait_for(hass, lambda: entry.runtime_data.available)
    return entry
