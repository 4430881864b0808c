"""A device flashed by address proves the build through its mDNS announcement alone.

No ``esphome`` entry knows it, so the only evidence is the ``config_hash`` its
``_esphomelib._tcp`` announcement carries after the reboot: the emulated device announces
on loopback exactly the records ESPHome 2026.10 sends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
import json
from pathlib import Path
from unittest.mock import patch

from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.setup import async_setup_component
import pytest
from zeroconf import IPVersion
from zeroconf.asyncio import AsyncZeroconf

from custom_components.esphome_remote_build import verify
from custom_components.esphome_remote_build.const import DOMAIN
from tests.standin.esphome_standin import BuildInfo
from tests.store.helpers import Member, esp32_members
from tests.support.device_emulator import DeviceEmulator, build_info, firmware_image

from .conftest import StoreBuild, call_service

NAME = "porch-light"


@pytest.fixture
async def loopback_zeroconf() -> AsyncIterator[AsyncZeroconf]:
    """What HA's zeroconf instance is on a network of one interface: a real browser."""
    instance = AsyncZeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
    with patch("homeassistant.components.zeroconf.async_get_async_instance", return_value=instance):
        yield instance
    await instance.async_close()


def members_with(image: bytes, info_json: bytes) -> list[Member]:
    members = [
        Member(m.name, image) if m.name.endswith(("firmware.bin", "firmware.ota.bin")) else m
        for m in esp32_members(NAME)
    ]
    return [*members, Member("build_info.json", info_json)]


def build_json(info: BuildInfo) -> bytes:
    return json.dumps(
        {
            "config_hash": info.config_hash,
            "build_time": info.build_time,
            "build_time_str": info.build_time_str,
            "esphome_version": info.esphome_version,
        }
    ).encode()


@pytest.fixture
async def component(hass: HomeAssistant) -> None:
    assert await async_setup_component(hass, DOMAIN, {})


@pytest.mark.parametrize("bootable", [True, False], ids=["boots-the-build", "rolls-back"])
async def test_a_host_target_is_verified_by_its_announcement(
    hass: HomeAssistant,
    component: None,
    store_build: StoreBuild,
    loopback_zeroconf: AsyncZeroconf,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    bootable: bool,
) -> None:
    monkeypatch.setattr(verify, "VERIFY_TIMEOUT", 8.0)
    info = build_info(NAME, "2026.10.0", build_time=1_790_001_000, config_hash=0x00C0FFEE)
    image = firmware_image(info if bootable else None)
    stored = await store_build(members_with(image, build_json(info)), job_id="porch1")
    async with DeviceEmulator(
        name=NAME, mac="AA:BB:CC:00:00:07", mdns=True, reboot_delay=0.2, config_hash=0x12345678
    ) as device:
        call = call_service(
            hass, "flash", job_id=stored.job_id, host=device.host, port=device.ota_port, verify=True
        )
        if bootable:
            response = await call
            assert response["verified"] is True
            assert response["evidence"] == {"config_hash": "00c0ffee"}
        else:
            with pytest.raises(HomeAssistantError) as caught:
                await call
            assert caught.value.translation_key == "not_verified_not_back"
        assert device.ota_sessions  # the image really went over the air


async def test_an_old_announcement_of_the_same_configuration_proves_nothing(
    hass: HomeAssistant,
    component: None,
    store_build: StoreBuild,
    loopback_zeroconf: AsyncZeroconf,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An ESPHome upgrade of an unchanged YAML keeps the config hash: the record the
    device announced before the upload (still cached) must not count as proof."""
    monkeypatch.setattr(verify, "VERIFY_TIMEOUT", 6.0)
    info = build_info(NAME, "2026.10.0", build_time=1_790_002_000, config_hash=0x00C0FFEE)
    stored = await store_build(members_with(firmware_image(info), build_json(info)), "same1")
    async with DeviceEmulator(
        name=NAME,
        mac="AA:BB:CC:00:00:08",
        mdns=True,
        config_hash=0x00C0FFEE,  # the same configuration, older ESPHome
        never_returns=True,
        clean_shutdown=False,  # gone without a goodbye: caches keep its old record
    ) as device:
        with pytest.raises(HomeAssistantError) as caught:
            await call_service(
                hass,
                "flash",
                job_id=stored.job_id,
                host=device.host,
                port=device.ota_port,
                verify=True,
            )
        assert caught.value.translation_key == "not_verified_not_back"
