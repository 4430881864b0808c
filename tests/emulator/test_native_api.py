"""aioesphomeapi's own client against the emulated device's native API.

Every answer the emulator gives is read by the client Home Assistant uses, so a framing,
handshake or message mistake fails here, not in the update entity's tests.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
import time
from typing import Any

from aioesphomeapi import (
    ZERO_NOISE_PSK,
    APIClient,
    BadNameAPIError,
    BinarySensorInfo,
    BinarySensorState,
    EntityState,
    InvalidEncryptionKeyAPIError,
    RequiresEncryptionAPIError,
    SensorInfo,
    SensorState,
)
from aioesphomeapi.core import APIConnectionError
import pytest

from tests.support.device_emulator import DeviceEmulator
from tests.support.native_api import (
    REJECT_BAD_INDICATOR,
    REJECT_MAC_FAILURE,
    encode_varuint,
)

from .conftest import StartDevice


def client_for(device: DeviceEmulator, **kwargs: Any) -> APIClient:
    kwargs.setdefault("noise_psk", device.noise_psk)
    return APIClient(device.host, device.api_port, None, client_info="emulator-test", **kwargs)


async def wait_until(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("encrypted", [False, True], ids=["plaintext", "noise"])
async def test_client_reads_device_info_entities_and_states(
    start_device: StartDevice, psk: bytes, encrypted: bool
) -> None:
    device = await start_device(
        name="kitchen",
        friendly_name="Kitchen",
        mac="AA:BB:CC:00:11:22",
        esphome_version="2026.9.1",
        compilation_time="2026-09-21 08:30:00 +0200",
        project_name="acme.kitchen",
        project_version="1.2.3",
        board="esp32-c3-devkitm-1",
        encryption_key=psk if encrypted else None,
    )
    client = client_for(device)
    await client.connect(login=True)
    try:
        info = await client.device_info()
        assert info.name == "kitchen"
        assert info.friendly_name == "Kitchen"
        assert info.mac_address == "AA:BB:CC:00:11:22"
        assert info.esphome_version == "2026.9.1"
        assert info.compilation_time == "2026-09-21 08:30:00 +0200"
        assert info.project_name == "acme.kitchen"
        assert info.project_version == "1.2.3"
        assert info.model == "esp32-c3-devkitm-1"
        assert info.manufacturer == "Espressif"
        assert info.api_encryption_supported
        assert info.api_encryption_provisionable is not encrypted
        assert not info.has_deep_sleep
        assert client.api_version is not None
        assert (client.api_version.major, client.api_version.minor) == (1, 19)

        entities, services = await client.list_entities_services()
        assert services == []
        sensor, binary = entities
        assert isinstance(sensor, SensorInfo)
        assert (sensor.object_id, sensor.name, sensor.unit_of_measurement) == (
            "uptime",
            "Uptime",
            "s",
        )
        assert isinstance(binary, BinarySensorInfo)
        assert binary.device_class == "connectivity"

        states: list[EntityState] = []
        client.subscribe_states(states.append)
        await wait_until(lambda: len(states) >= 2)
        assert {type(s) for s in states} == {SensorState, BinarySensorState}
        device.set_state("status", False)
        await wait_until(lambda: len(states) >= 3)
        assert isinstance(states[-1], BinarySensorState)
        assert states[-1].key == binary.key
        assert states[-1].state is False
    finally:
        await client.disconnect()

    await wait_until(lambda: device.api_connections[0].closed_by is not None)
    (record,) = device.api_connections
    assert record.encrypted is encrypted
    assert record.client_info == "emulator-test"
    assert record.received[0] == "HelloRequest"
    assert record.received[-1] == "DisconnectRequest"
    assert record.sent[-1] == "DisconnectResponse"
    assert record.closed_by == "client"
    assert record.violation is None


async def test_keepalive_pings_are_answered(start_device: StartDevice) -> None:
    device = await start_device()
    client = client_for(device, keepalive=0.1)
    disconnects: list[bool] = []

    async def on_stop(expected: bool) -> None:
        disconnects.append(expected)

    await client.connect(on_stop=on_stop)
    try:
        await wait_until(lambda: device.api_connections[0].received.count("PingRequest") >= 3)
    finally:
        await client.disconnect()
    assert device.api_connections[0].sent.count("PingResponse") >= 3
    assert disconnects == [True]  # only our own disconnect: no missed pong


async def test_device_asks_the_client_for_the_time(start_device: StartDevice) -> None:
    device = await start_device(request_time=True)
    client = client_for(device)
    await client.connect()
    try:
        await wait_until(lambda: device.api_connections[0].time_response is not None)
    finally:
        await client.disconnect()
    response = device.api_connections[0].time_response
    assert response is not None
    assert abs(response.epoch_seconds - time.time()) < 60


async def test_wrong_key_fails_like_a_device(start_device: StartDevice, psk: bytes) -> None:
    device = await start_device(encryption_key=psk)
    wrong = base64.b64encode(bytes(b ^ 0xFF for b in psk)).decode()
    with pytest.raises(InvalidEncryptionKeyAPIError):
        await client_for(device, noise_psk=wrong).connect()
    await wait_until(lambda: device.api_connections[0].closed_by is not None)
    (record,) = device.api_connections
    assert record.rejected == REJECT_MAC_FAILURE
    assert not record.encrypted


async def test_plaintext_client_to_an_encrypted_device(
    start_device: StartDevice, psk: bytes
) -> None:
    device = await start_device(encryption_key=psk)
    with pytest.raises(RequiresEncryptionAPIError):
        await client_for(device, noise_psk=None).connect()
    await wait_until(lambda: device.api_connections[0].closed_by is not None)
    assert device.api_connections[0].rejected == REJECT_BAD_INDICATOR


async def test_a_key_for_a_device_without_one(start_device: StartDevice, psk: bytes) -> None:
    """2026.10 hands a Noise hello to a zero-key session (provisioning): a real key fails."""
    device = await start_device(encryption_key=None)
    with pytest.raises(InvalidEncryptionKeyAPIError):
        await client_for(device, noise_psk=base64.b64encode(psk).decode()).connect()
    await wait_until(lambda: device.api_connections[0].closed_by is not None)
    record = device.api_connections[0]
    assert record.provisioning
    assert record.rejected == REJECT_MAC_FAILURE

    client = client_for(device, noise_psk=ZERO_NOISE_PSK)
    await client.connect()
    try:
        assert (await client.device_info()).api_encryption_provisionable
    finally:
        await client.disconnect()
    assert device.api_connections[1].provisioning
    assert device.api_connections[1].encrypted


async def test_plaintext_only_device_refuses_noise(start_device: StartDevice, psk: bytes) -> None:
    device = await start_device(api_encryption_supported=False)
    with pytest.raises(APIConnectionError):
        await client_for(device, noise_psk=base64.b64encode(psk).decode()).connect()
    await wait_until(lambda: device.api_connections[0].closed_by is not None)
    assert device.api_connections[0].closed_by == "device"
    assert "api_encryption_supported" not in device.mdns_txt


@pytest.mark.parametrize("encrypted", [False, True], ids=["plaintext", "noise"])
async def test_expected_name_is_checked(
    start_device: StartDevice, psk: bytes, encrypted: bool
) -> None:
    device = await start_device(name="living-room", encryption_key=psk if encrypted else None)
    with pytest.raises(BadNameAPIError):
        await client_for(device, expected_name="kitchen").connect()
    client = client_for(device, expected_name="living-room")
    await client.connect()
    await client.disconnect()


async def test_messages_before_hello_close_the_connection(start_device: StartDevice) -> None:
    device = await start_device()
    reader, writer = await asyncio.open_connection(device.host, device.api_port)
    writer.write(b"\x00" + encode_varuint(0) + encode_varuint(9))  # DeviceInfoRequest
    await writer.drain()
    async with asyncio.timeout(5):
        assert await reader.read() == b""
    writer.close()
    (record,) = device.api_connections
    assert record.closed_by == "device"
    assert record.violation == "DeviceInfoRequest before HelloRequest"


async def test_ping_before_hello_is_answered(start_device: StartDevice) -> None:
    device = await start_device()
    reader, writer = await asyncio.open_connection(device.host, device.api_port)
    writer.write(b"\x00" + encode_varuint(0) + encode_varuint(7))  # PingRequest
    await writer.drain()
    async with asyncio.timeout(5):
        assert await reader.readexactly(3) == b"\x00\x00\x08"  # PingResponse
    writer.close()
    await writer.wait_closed()


async def test_key_provisioning_over_zero_key_noise(start_device: StartDevice, psk: bytes) -> None:
    """How Home Assistant gives a keyless device a key (2026.10's provisioning path)."""
    device = await start_device(encryption_key=None)
    new_key = base64.b64encode(psk)
    client = client_for(device, noise_psk=ZERO_NOISE_PSK)
    stops: list[bool] = []

    async def on_stop(expected: bool) -> None:
        stops.append(expected)

    await client.connect(on_stop=on_stop)
    assert await client.noise_encryption_set_key(new_key)
    await wait_until(lambda: stops)  # the key went live: every session is told to leave
    assert stops == [True]
    assert device.psk == psk
    assert device.api_connections[0].key_set is True

    with pytest.raises(RequiresEncryptionAPIError):
        await client_for(device, noise_psk=None).connect()
    client = client_for(device, noise_psk=new_key.decode())
    await client.connect()
    try:
        assert not (await client.device_info()).api_encryption_provisionable
    finally:
        await client.disconnect()


async def test_a_yaml_key_cannot_be_replaced(start_device: StartDevice, psk: bytes) -> None:
    device = await start_device(encryption_key=psk)
    client = client_for(device)
    await client.connect()
    try:
        assert not await client.noise_encryption_set_key(base64.b64encode(bytes(range(32))))
    finally:
        await client.disconnect()
    assert device.psk == psk
