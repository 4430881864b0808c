"""Device-reported errors, broken links, timeouts and the retry rules."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
import socket
from typing import Any

import pytest

from custom_components.esphome_remote_build.ota import (
    DEVICE_ERRORS,
    OTAAuthenticationError,
    OTADeviceError,
    OTAEncryptionError,
    OTAEncryptionKeyError,
    OTAEncryptionRequiredError,
    OTAError,
    OTAMaybeCommittedError,
    OTANetworkError,
    OTAProtocolError,
    OTAResolveError,
    OTATimeoutError,
    async_flash,
)
from tests.support.ota_emulator import Stage, frame

from .helpers import ScriptedDevice, StartDevice, flash

_EXPECTED_CLASS: dict[int, type[OTAError]] = {
    0x82: OTAAuthenticationError,
    0x94: OTAEncryptionRequiredError,
}


@pytest.mark.parametrize("code", [*DEVICE_ERRORS, 0xA0])
async def test_every_result_code_maps_to_a_typed_error(
    start_device: StartDevice, image: bytes, code: int
) -> None:
    device = await start_device(error_stage=Stage.PREPARE, error_code=code)
    with pytest.raises(OTAError) as err:
        await flash(device, image)

    assert type(err.value) is _EXPECTED_CLASS.get(code, OTADeviceError)
    assert err.value.code == code
    assert f"0x{code:02X}" in str(err.value)
    expected_reason = DEVICE_ERRORS[code].reason if code in DEVICE_ERRORS else "unknown_error"
    assert err.value.reason == expected_reason
    assert not isinstance(err.value, OTANetworkError)
    await device.wait_for_sessions(1)
    assert len(device.sessions) == 1  # never retried


_STAGE_CASES = [
    (stage, version, encrypted)
    for stage in Stage
    for version in (1, 2)
    for encrypted in (False, True)
    if not (stage is Stage.AUTH and encrypted)  # an encrypted session has no password step
]


@pytest.mark.parametrize(("stage", "version", "encrypted"), _STAGE_CASES)
async def test_device_error_at_every_stage(
    start_device: StartDevice,
    image: bytes,
    psk: bytes,
    stage: Stage,
    version: int,
    encrypted: bool,
) -> None:
    device = await start_device(
        version=version,
        error_stage=stage,
        error_code=0x83,
        error_block=1,
        password=None if encrypted else "pw",
        noise_psk=psk if encrypted else None,
    )
    with pytest.raises(OTADeviceError) as err:
        await flash(device, image, password="pw", noise_psk=psk if encrypted else None)
    assert err.value.code == 0x83
    assert err.value.reason == "flash_write_failed"
    (record,) = await device.wait_for_sessions(1)
    assert record.error_sent == 0x83
    assert len(device.sessions) == 1


@pytest.mark.parametrize("version", [1, 2])
async def test_error_on_the_last_block_is_the_devices_verdict(
    start_device: StartDevice, image: bytes, version: int
) -> None:
    last_block = (len(image) - 1) // 8192
    device = await start_device(
        version=version, error_stage=Stage.BLOCK, error_block=last_block, error_code=0x8B
    )
    with pytest.raises(OTADeviceError) as err:
        await flash(device, image)
    assert err.value.code == 0x8B


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record every asyncio.sleep (the retry waits) while still sleeping."""
    recorded: list[float] = []
    real_sleep = asyncio.sleep

    def spy(delay: float, *args: Any) -> Coroutine[Any, Any, Any]:
        recorded.append(delay)
        return real_sleep(delay, *args)

    monkeypatch.setattr(asyncio, "sleep", spy)
    return recorded


async def test_connection_lost_before_the_image_was_sent_is_retried(
    start_device: StartDevice, image: bytes, sleeps: list[float]
) -> None:
    """Version 2 only: a version 1 client has usually written the whole (small) image into
    the socket before the reset arrives, and then cannot tell a drop from a commit
    (espota2 behaves the same)."""
    device = await start_device(drop_after_bytes=8192 + 100, faulty_sessions=1)
    result = await flash(device, image, retry_delay=0.01)
    first, second = await device.wait_for_sessions(2)
    assert first.dropped
    assert second.image == image
    assert result.attempts == 2
    assert sleeps == [0.01]  # the attempt had reached the device: wait before the next


async def test_retries_stop_after_one_attempt_per_address_plus_two(
    start_device: StartDevice, image: bytes, sleeps: list[float]
) -> None:
    device = await start_device(drop_after_bytes=100)
    with pytest.raises(OTANetworkError, match="gave up after 3 attempts"):
        await flash(device, image, retry_delay=0.01)
    records = await device.wait_for_sessions(3)
    assert all(record.dropped for record in records)
    assert len(device.sessions) == 3
    assert sleeps == [0.01, 0.01]


@pytest.mark.parametrize("version", [1, 2])
async def test_connection_lost_after_the_whole_image_is_not_retried(
    start_device: StartDevice, image: bytes, version: int
) -> None:
    device = await start_device(version=version, drop_after_bytes=len(image))
    with pytest.raises(OTAMaybeCommittedError, match="may be committing") as err:
        await flash(device, image)
    assert not isinstance(err.value, OTANetworkError)
    assert err.value.code is None
    (record,) = await device.wait_for_sessions(1)
    assert record.dropped
    assert record.payload == image
    assert len(device.sessions) == 1


async def test_lost_final_ack_is_success(start_device: StartDevice, image: bytes) -> None:
    device = await start_device(drop_before_final_ack=True)
    result = await flash(device, image)
    (record,) = await device.wait_for_sessions(1)
    assert record.completed
    assert not record.final_ack
    assert record.image == image
    assert result.attempts == 1


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_refused_connection_is_retried_then_given_up(
    socket_enabled: None, image: bytes, sleeps: list[float]
) -> None:
    with pytest.raises(OTANetworkError, match="gave up after 3 attempts") as err:
        await async_flash("127.0.0.1", _closed_port(), image, retry_delay=0.01)
    assert "cannot connect" in str(err.value)
    # The first address is tried at once; the two extra attempts wait
    assert sleeps == [0.01, 0.01]


async def test_each_resolved_address_is_tried_once_without_waiting(
    start_device: StartDevice, image: bytes, sleeps: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    device = await start_device()
    closed = _closed_port()

    async def getaddrinfo(host: str, port: int, **kwargs: Any) -> list[tuple[Any, ...]]:
        assert (host, port) == ("device.local", device.port)
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", closed)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", closed)),  # duplicate
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", device.port)),
        ]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", getaddrinfo)
    result = await async_flash("device.local", device.port, image, retry_delay=0.01)
    assert result.attempts == 2
    assert result.host == "device.local"
    assert sleeps == []


async def test_unresolvable_host(
    socket_enabled: None, image: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def getaddrinfo(host: str, port: int, **kwargs: Any) -> list[tuple[Any, ...]]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", getaddrinfo)
    with pytest.raises(OTAResolveError, match=r"cannot resolve nowhere\.local"):
        await async_flash("nowhere.local", 3232, image)


async def test_silent_device_times_out_in_the_handshake(socket_enabled: None, image: bytes) -> None:
    async with ScriptedDevice([]) as device:
        with pytest.raises(OTATimeoutError, match=r"0\.1 s \(gave up after 3 attempts\)"):
            await async_flash("127.0.0.1", device.port, image, connect_timeout=0.1, retry_delay=0)
    assert device.connections == 3


async def test_stalled_data_phase_uses_the_data_timeout(socket_enabled: None, image: bytes) -> None:
    handshake = [(5, b"\x00\x02"), (1, b"\x48\x00\x41"), (1 + 4, b"")]
    async with ScriptedDevice(handshake) as device:
        with pytest.raises(OTATimeoutError, match=r"within 0\.2 s"):
            await async_flash(
                "127.0.0.1",
                device.port,
                image,
                connect_timeout=5,
                data_timeout=0.2,
                retry_delay=0,
            )
    assert device.connections == 3


async def test_connect_timeout(
    socket_enabled: None, image: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A device that never accepts (no loopback address can stay silent, so fake it)."""
    attempts: list[str] = []

    async def never_connects(host: str, port: int, **kwargs: Any) -> Any:
        attempts.append(host)
        await asyncio.Event().wait()

    monkeypatch.setattr(asyncio, "open_connection", never_connects)
    with pytest.raises(OTATimeoutError, match=r"no connection within 0\.05 s"):
        await async_flash("127.0.0.1", 3232, image, connect_timeout=0.05, retry_delay=0)
    assert attempts == ["127.0.0.1"] * 3


async def test_error_instead_of_the_nonce(socket_enabled: None, image: bytes) -> None:
    async with ScriptedDevice([(5, b"\x00\x02"), (1, b"\x48\x00\x02\x8d")]) as device:
        with pytest.raises(OTADeviceError) as err:
            await async_flash("127.0.0.1", device.port, image, password="pw", retry_delay=0)
    assert err.value.code == 0x8D
    assert device.connections == 1


async def test_unexpected_answer_is_a_protocol_error(socket_enabled: None, image: bytes) -> None:
    async with ScriptedDevice([(5, b"\x00\x02"), (1, b"\x50")]) as device:
        with pytest.raises(OTAProtocolError, match="0x50"):
            await async_flash("127.0.0.1", device.port, image, retry_delay=0)
    assert device.connections == 1


# Our first handshake frame: header (3) + status (1) + NNpsk0 message one (32 + 16)
_NOISE_PREAMBLE = [(5, b"\x00\x02"), (1, b"\x48\x04"), (3 + 1 + 48, b"")]


@pytest.mark.parametrize(
    ("answer", "error", "match", "connections"),
    [
        (frame(b"\x01Handshake error"), OTAEncryptionError, "Handshake error", 1),
        (frame(b"\x00" + bytes(48)), OTAEncryptionKeyError, "key correct", 1),
        (b"\x02\x00\x01\x00", OTANetworkError, "indicator 0x02", 3),
        (b"\x01\x00\x00", OTANetworkError, "empty encrypted frame", 3),
        (None, OTANetworkError, "closed the connection", 3),
    ],
)
async def test_broken_noise_handshake_answers(
    socket_enabled: None,
    image: bytes,
    psk: bytes,
    answer: bytes | None,
    error: type[OTAError],
    match: str,
    connections: int,
) -> None:
    """``None``: the device hangs up instead of answering."""
    steps = [*_NOISE_PREAMBLE[:-1], (_NOISE_PREAMBLE[-1][0], answer or b"")]
    async with ScriptedDevice(steps, hang_up=answer is None) as device:
        with pytest.raises(error, match=match) as err:
            await async_flash(
                "127.0.0.1", device.port, image, noise_psk=psk, connect_timeout=2, retry_delay=0
            )
    assert type(err.value) is error
    assert device.connections == connections
