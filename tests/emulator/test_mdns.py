"""The emulated device's ``_esphomelib._tcp`` announcement, resolved by python-zeroconf.

Multicast: these tests insist on the loopback-only network namespace ``scripts/test``
runs the suite in (``lo`` needs no multicast flag or route there: zeroconf sends with
``IP_MULTICAST_IF`` 127.0.0.1 and loops its own packets back). Parallel workers share
that namespace, so each device has a name of its own and waits look at that name only.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import secrets

import pytest
from zeroconf import IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from custom_components.esphome_remote_build.ota import async_flash
from tests.support.device_emulator import (
    ESPHOMELIB_SERVICE,
    NOISE_ENCRYPTION,
    DeepSleep,
    DeviceState,
    build_info,
    firmware_image,
)

from .conftest import StartDevice

pytestmark = pytest.mark.usefixtures("loopback_only")


def unique(name: str) -> str:
    """Parallel workers share the namespace: one name per device."""
    return f"{name}-{secrets.token_hex(3)}"


class Browser:
    """A zeroconf browser on loopback that records every change of the service type."""

    def __init__(self, zeroconf: AsyncZeroconf) -> None:
        self.zeroconf = zeroconf
        self.changes: list[tuple[str, ServiceStateChange]] = []
        self._changed = asyncio.Event()
        self._browser = AsyncServiceBrowser(
            zeroconf.zeroconf, ESPHOMELIB_SERVICE, handlers=[self._on_change]
        )

    def _on_change(
        self,
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        self.changes.append((name, state_change))
        self._changed.set()

    async def wait_for(self, name: str, change: ServiceStateChange, count: int = 1) -> None:
        """Wait for *count* changes of this kind to device *name*'s service."""
        full = f"{name}.{ESPHOMELIB_SERVICE}"
        async with asyncio.timeout(10):
            while self.changes.count((full, change)) < count:
                self._changed.clear()
                await self._changed.wait()

    async def resolve(self, name: str) -> AsyncServiceInfo:
        info = AsyncServiceInfo(ESPHOMELIB_SERVICE, f"{name}.{ESPHOMELIB_SERVICE}")
        assert await info.async_request(self.zeroconf.zeroconf, 3000)
        return info

    async def close(self) -> None:
        await self._browser.async_cancel()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    zeroconf = AsyncZeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
    browser = Browser(zeroconf)
    yield browser
    await browser.close()
    await zeroconf.async_close()


def txt(info: AsyncServiceInfo) -> list[tuple[str, str]]:
    """TXT records in wire order, decoded."""
    return [
        (key.decode(), (value or b"").decode()) for key, value in (info.properties or {}).items()
    ]


async def test_announcement_resolves_with_the_firmware_txt(
    start_device: StartDevice, browser: Browser, psk: bytes
) -> None:
    name = unique("kitchen")
    device = await start_device(
        name=name,
        friendly_name="Kitchen",
        mac="AA:BB:CC:00:11:22",
        esphome_version="2026.9.1",
        config_hash=0x00ABCDEF,
        board="esp32dev",
        project_name="acme.kitchen",
        project_version="1.2.3",
        encryption_key=psk,
        mdns=True,
    )
    await browser.wait_for(name, ServiceStateChange.Added)
    info = await browser.resolve(name)
    assert info.port == device.api_port
    assert info.parsed_addresses() == ["127.0.0.1"]
    assert info.server == f"{name}.local."
    # ESPHome 2026.10's order and values (mdns_component.cpp, compile_records_)
    assert txt(info) == [
        ("friendly_name", "Kitchen"),
        ("version", "2026.9.1"),
        ("config_hash", "00abcdef"),
        ("mac", "aabbcc001122"),
        ("platform", "ESP32"),
        ("board", "esp32dev"),
        ("network", "wifi"),
        ("api_encryption", NOISE_ENCRYPTION),
        ("project_name", "acme.kitchen"),
        ("project_version", "1.2.3"),
    ]
    assert dict(txt(info)) == device.mdns_txt


async def test_keyless_device_offers_provisioning(
    start_device: StartDevice, browser: Browser
) -> None:
    name = unique("porch")
    await start_device(name=name, friendly_name="", platform="esp8266", board="d1_mini", mdns=True)
    await browser.wait_for(name, ServiceStateChange.Added)
    records = dict(txt(await browser.resolve(name)))
    assert "friendly_name" not in records
    assert records["platform"] == "ESP8266"
    assert records["api_encryption_supported"] == NOISE_ENCRYPTION
    assert records["api_provisioning"] == "zero-psk"
    assert "api_encryption" not in records


async def test_after_an_upload_the_announcement_carries_the_new_build(
    start_device: StartDevice, browser: Browser
) -> None:
    name = unique("kitchen")
    device = await start_device(name=name, esphome_version="2026.9.0", mdns=True)
    await browser.wait_for(name, ServiceStateChange.Added)
    assert dict(txt(await browser.resolve(name)))["config_hash"] == "1234abcd"

    new_build = build_info(name, "2026.10.0", config_hash=0xC0FFEE01)
    await async_flash(device.host, device.ota_port, firmware_image(new_build), retry_delay=0.0)
    await browser.wait_for(name, ServiceStateChange.Removed)  # the goodbye before the reboot
    await device.wait_for_boot(2)
    await browser.wait_for(name, ServiceStateChange.Added, 2)
    records = dict(txt(await browser.resolve(name)))
    assert records["config_hash"] == "c0ffee01"
    assert records["version"] == "2026.10.0"


async def test_deep_sleep_leaves_and_comes_back(
    start_device: StartDevice, browser: Browser
) -> None:
    name = unique("sleepy")
    device = await start_device(name=name, deep_sleep=DeepSleep(awake=0.5, asleep=0.5), mdns=True)
    await browser.wait_for(name, ServiceStateChange.Added)
    await device.wait_for_state(DeviceState.ASLEEP)
    await browser.wait_for(name, ServiceStateChange.Removed)
    await browser.wait_for(name, ServiceStateChange.Added, 2)
