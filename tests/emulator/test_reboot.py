"""Upload, reboot, come back running the uploaded build — seen through the real clients.

ESPHome's own ``espota2`` (2026.10.0, Device Builder venv) and our OTA client flash the
emulated device; aioesphomeapi then reads what the device reports. A client connected
during the upload is told to leave (``DisconnectRequest``) as ``App.safe_reboot()`` does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from aioesphomeapi import APIClient, DeviceInfo, ReconnectLogic
import aioesphomeapi.reconnect_logic
import pytest
from zeroconf import IPVersion
from zeroconf.asyncio import AsyncZeroconf

from custom_components.esphome_remote_build.ota import async_flash
from tests.ota.test_espota_interop import run_espota
from tests.standin.esphome_standin import BUILD_INFO_MAGIC
from tests.support.device_emulator import (
    DeepSleep,
    DeviceEmulator,
    DeviceState,
    Firmware,
    build_info,
    firmware_image,
)
from tests.support.ota_emulator import DeviceConfig as OTAConfig

from .conftest import StartDevice

NEW_BUILD = build_info("kitchen", "2026.10.0", build_time=1_790_000_000, config_hash=0xC0FFEE01)


async def wait_until(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def read_device_info(device: DeviceEmulator, **kwargs: Any) -> DeviceInfo:
    client = APIClient(device.host, device.api_port, None, noise_psk=device.noise_psk, **kwargs)
    await client.connect()
    try:
        return await client.device_info()
    finally:
        await client.disconnect()


class Watcher:
    """An API client that stays connected and records how its connection ends."""

    def __init__(self, device: DeviceEmulator) -> None:
        self.client = APIClient(device.host, device.api_port, None, noise_psk=device.noise_psk)
        self.stops: list[bool] = []

    async def __aenter__(self) -> Self:
        async def on_stop(expected: bool) -> None:
            self.stops.append(expected)

        await self.client.connect(on_stop=on_stop)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.client.disconnect(force=True)


@pytest.fixture
def new_image(tmp_path: Path) -> Path:
    path = tmp_path / "firmware.bin"
    path.write_bytes(firmware_image(NEW_BUILD, 3 * 8192 + 517))
    return path


@pytest.mark.espota
@pytest.mark.parametrize(
    "spec",
    [
        pytest.param({}, id="plain"),
        pytest.param({"ota_password": "pw"}, id="password"),
        pytest.param({"noise": True}, id="noise"),
    ],
)
async def test_espota2_upload_then_the_device_runs_the_new_build(
    builder_python: Path,
    start_device: StartDevice,
    new_image: Path,
    psk: bytes,
    spec: dict[str, Any],
) -> None:
    noise = bool(spec.pop("noise", False))
    device = await start_device(
        name="kitchen",
        esphome_version="2026.9.0",
        compilation_time="2026-09-01 10:00:00 +0000",
        encryption_key=psk if noise else None,
        **spec,
    )
    before = await read_device_info(device)
    assert (before.esphome_version, before.compilation_time) == (
        "2026.9.0",
        "2026-09-01 10:00:00 +0000",
    )
    api_port, ota_port = device.api_port, device.ota_port

    async with Watcher(device) as watcher:
        assert device.ota is not None
        run = await run_espota(
            builder_python,
            device.ota,
            new_image,
            password=spec.get("ota_password", ""),
            psk=psk if noise else None,
        )
        assert run.returncode == 0, run.log
        boot = await device.wait_for_boot(2)
        assert watcher.stops == [True]  # the device said goodbye (DisconnectRequest)

    assert boot.reason == "ota"
    assert not boot.rolled_back
    assert boot.firmware.compilation_time == NEW_BUILD.build_time_str
    assert (device.api_port, device.ota_port) == (api_port, ota_port)
    after = await read_device_info(device)
    assert after.esphome_version == "2026.10.0"
    assert after.compilation_time == NEW_BUILD.build_time_str
    assert after.name == "kitchen"
    assert device.mdns_txt["config_hash"] == "c0ffee01"
    assert device.mdns_txt["version"] == "2026.10.0"
    (session,) = device.ota_sessions
    assert session.image == new_image.read_bytes()


async def test_our_client_flashes_and_the_device_comes_back(
    start_device: StartDevice, new_image: Path, psk: bytes
) -> None:
    device = await start_device(name="kitchen", encryption_key=psk, ota_password="pw")
    result = await async_flash(
        device.host,
        device.ota_port,
        new_image,
        password="pw",
        noise_psk=device.noise_psk,
        connect_timeout=5.0,
        data_timeout=5.0,
        retry_delay=0.0,
    )
    assert result.bytes_sent > 0
    boot = await device.wait_for_boot(2)
    assert boot.firmware.esphome_version == "2026.10.0"
    info = await read_device_info(device)
    assert info.compilation_time == NEW_BUILD.build_time_str


def corrupt_marker(image: bytes) -> bytes:
    at = image.index(BUILD_INFO_MAGIC) + len(BUILD_INFO_MAGIC) + 10
    return image[:at] + bytes([image[at] ^ 0x20]) + image[at + 1 :]


@pytest.mark.parametrize(
    "make_image",
    [
        pytest.param(lambda: firmware_image(None), id="no-build-info"),
        pytest.param(lambda: corrupt_marker(firmware_image(NEW_BUILD)), id="garbled"),
        pytest.param(lambda: b"\x00" + firmware_image(NEW_BUILD)[1:], id="no-image-magic"),
    ],
)
async def test_an_image_that_does_not_boot_rolls_back(
    start_device: StartDevice, make_image: Callable[[], bytes]
) -> None:
    device = await start_device(name="kitchen", esphome_version="2026.9.0")
    old = device.firmware
    await async_flash(device.host, device.ota_port, make_image(), retry_delay=0.0)
    boot = await device.wait_for_boot(2)
    assert boot.rolled_back
    assert boot.firmware == old
    info = await read_device_info(device)
    assert (info.esphome_version, info.compilation_time) == (
        old.esphome_version,
        old.compilation_time,
    )


async def test_a_device_that_never_returns(start_device: StartDevice, new_image: Path) -> None:
    device = await start_device(never_returns=True)
    await async_flash(device.host, device.ota_port, new_image, retry_delay=0.0)
    await device.wait_for_state(DeviceState.GONE)
    with pytest.raises(OSError):
        await asyncio.open_connection(device.host, device.api_port)
    await asyncio.sleep(0.5)
    assert len(device.boots) == 1
    boot = await device.power_on()  # someone power-cycles it after all
    assert boot.firmware.compilation_time == NEW_BUILD.build_time_str


async def test_away_for_the_reboot_delay(start_device: StartDevice, new_image: Path) -> None:
    device = await start_device(reboot_delay=0.6)
    await async_flash(device.host, device.ota_port, new_image, retry_delay=0.0)
    await device.wait_for_state(DeviceState.REBOOTING)
    with pytest.raises(OSError):
        await asyncio.open_connection(device.host, device.api_port)
    boot = await device.wait_for_boot(2)
    assert boot.at - device.boots[0].at >= 0.6


async def test_power_cut_style_reboot_says_no_goodbye(
    start_device: StartDevice, new_image: Path
) -> None:
    device = await start_device(clean_shutdown=False)
    async with Watcher(device) as watcher:
        await async_flash(device.host, device.ota_port, new_image, retry_delay=0.0)
        await device.wait_for_boot(2)
        await wait_until(lambda: watcher.stops)
        assert watcher.stops == [False]


async def test_partition_table_upload_reboots_into_the_same_firmware(
    start_device: StartDevice, new_image: Path
) -> None:
    device = await start_device(ota=OTAConfig(partition_access=True))
    old = device.firmware
    async with Watcher(device) as watcher:
        await async_flash(device.host, device.ota_port, new_image, ota_type=1, retry_delay=0.0)
        boot = await device.wait_for_boot(2)
        await wait_until(lambda: watcher.stops)
        assert watcher.stops == [False]  # App.reboot(): no DisconnectRequest
    assert boot.firmware == old
    assert not boot.rolled_back
    assert boot.image_sha256 is None


async def test_deep_sleep_cycle(start_device: StartDevice) -> None:
    device = await start_device(deep_sleep=DeepSleep(awake=0.4, asleep=0.3))
    info = await read_device_info(device)
    assert info.has_deep_sleep
    async with Watcher(device) as watcher:
        await device.wait_for_state(DeviceState.ASLEEP)
        await wait_until(lambda: watcher.stops)
        assert watcher.stops == [True]  # safe shutdown hooks before sleeping
    boot = await device.wait_for_boot(2)
    assert boot.reason == "wake"
    await device.wait_for_boot(3)


async def test_reconnect_logic_follows_the_reboot(
    start_device: StartDevice, new_image: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aioesphomeapi's ReconnectLogic (what Home Assistant runs) finds the new build."""
    monkeypatch.setattr(aioesphomeapi.reconnect_logic, "EXPECTED_DISCONNECT_COOLDOWN", 0.1)
    device = await start_device(name="kitchen")
    # Its own mDNS listener would bind every interface; keep it on loopback and close it.
    zeroconf = AsyncZeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
    client = APIClient(
        device.host,
        device.api_port,
        None,
        noise_psk=device.noise_psk,
        zeroconf_instance=zeroconf.zeroconf,
    )
    seen: list[DeviceInfo] = []

    async def on_connect() -> None:
        seen.append(await client.device_info())

    async def on_disconnect(expected: bool) -> None:
        pass

    logic = ReconnectLogic(
        client=client, on_connect=on_connect, on_disconnect=on_disconnect, name="kitchen"
    )
    await logic.start()
    try:
        await wait_until(lambda: len(seen) == 1)
        await async_flash(device.host, device.ota_port, new_image, retry_delay=0.0)
        await wait_until(lambda: len(seen) == 2)
    finally:
        await logic.stop()
        await client.disconnect()
        await zeroconf.async_close()
    assert seen[0].esphome_version == device.boots[0].firmware.esphome_version
    assert seen[1].compilation_time == NEW_BUILD.build_time_str


def test_the_image_carries_the_build() -> None:
    image = firmware_image(NEW_BUILD)
    assert image[0] == 0xE9
    assert Firmware.from_image(image) == Firmware.from_build_info(NEW_BUILD)
    assert Firmware.from_image(corrupt_marker(image)) is None


async def test_manual_reboot_and_power_cycle(start_device: StartDevice) -> None:
    device = await start_device()
    async with Watcher(device) as watcher:
        boot = await device.reboot()
        await wait_until(lambda: watcher.stops)
        assert watcher.stops == [True]
    assert (boot.index, boot.reason, boot.firmware) == (1, "reboot", device.boots[0].firmware)

    async with Watcher(device) as watcher:
        await device.power_off()
        await wait_until(lambda: watcher.stops)
        assert watcher.stops == [False]  # no goodbye from a device that lost its power
    assert device.state is DeviceState.OFF
    with pytest.raises(OSError):
        await asyncio.open_connection(device.host, device.ota_port)
    boot = await device.power_on()
    assert boot.reason == "power_on"
    assert (await read_device_info(device)).name == "emulated-device"
