"""Our OTA client against the emulated device, one test per protocol path."""

from __future__ import annotations

import base64
import itertools
import math
from pathlib import Path

import pytest

from custom_components.esphome_remote_build.ota import (
    OTAAuthenticationError,
    OTAEncryptionError,
    OTAEncryptionKeyError,
    OTAEncryptionRequiredError,
    OTAEncryptionUnavailableError,
    OTAImageError,
    OTAInvalidKeyError,
    OTAPasswordRequiredError,
    OTAProtocolError,
    OTAType,
    OTAUnsupportedError,
)
from tests.support.ota_emulator import MAGIC, AuthScheme

from .helpers import StartDevice, flash

# Feature byte we send: compression | SHA-256 auth | extended, plus Noise with a key
FEATURES_PLAIN = 0x07
FEATURES_NOISE = 0x0F


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("auth", [None, AuthScheme.MD5, AuthScheme.SHA256])
@pytest.mark.parametrize("compression", [False, True])
async def test_flash_succeeds(
    start_device: StartDevice,
    image: bytes,
    version: int,
    auth: AuthScheme | None,
    compression: bool,
) -> None:
    password = "s3cret" if auth else None
    device = await start_device(
        version=version,
        password=password,
        auth=auth or AuthScheme.SHA256,
        compression=compression,
    )
    result = await flash(device, image, password=password)
    (record,) = await device.wait_for_sessions(1)

    assert record.image == image
    assert record.md5_ok
    assert record.final_ack
    assert record.violation is None
    assert record.client_features == FEATURES_PLAIN
    assert record.ota_type == OTAType.APPLICATION
    assert record.auth_ok is (True if auth else None)
    assert record.compressed is compression
    assert not record.encrypted
    assert result.compressed is compression
    assert result.bytes_sent == record.payload_size == len(record.payload)
    assert (result.bytes_sent < len(image)) is compression
    assert result.image_size == len(image)
    assert result.ota_version == version
    assert (result.host, result.port, result.address) == ("127.0.0.1", device.port, "127.0.0.1")
    assert result.attempts == 1
    assert not result.encrypted


@pytest.mark.parametrize("compression", [False, True])
async def test_legacy_device_without_extended_protocol(
    start_device: StartDevice, image: bytes, compression: bool
) -> None:
    device = await start_device(extended=False, compression=compression)
    result = await flash(device, image)
    (record,) = await device.wait_for_sessions(1)
    assert record.server_flags is None  # legacy one-byte feature ack
    assert record.image == image
    assert record.md5_ok
    assert result.compressed is compression


async def test_deflate_offer_is_only_made_to_clients_that_ask(
    start_device: StartDevice, image: bytes
) -> None:
    """We never send the deflate bit, so a deflate-capable device must not bind us to it."""
    device = await start_device(deflate=True)
    await flash(device, image)
    (record,) = await device.wait_for_sessions(1)
    assert not record.deflate
    assert record.image == image


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("compression", [False, True])
async def test_progress_is_monotonic_and_ends_at_total(
    start_device: StartDevice, image: bytes, version: int, compression: bool
) -> None:
    device = await start_device(version=version, compression=compression)
    calls: list[tuple[int, int]] = []
    result = await flash(device, image, progress=lambda sent, total: calls.append((sent, total)))

    total = result.bytes_sent
    assert {t for _, t in calls} == {total}
    sent = [s for s, _ in calls]
    assert sent[0] == 0
    assert sent[-1] == total
    assert sent == sorted(sent)
    assert len(calls) == math.ceil(total / 8192) + 1
    assert all(b - a <= 8192 for a, b in itertools.pairwise(sent))


async def test_image_from_path(start_device: StartDevice, image: bytes, tmp_path: Path) -> None:
    path = tmp_path / "firmware.bin"
    path.write_bytes(image)
    device = await start_device()
    result = await flash(device, path)
    (record,) = await device.wait_for_sessions(1)
    assert record.image == image
    assert result.image_size == len(image)


@pytest.mark.parametrize("image_arg", [b"", Path("does-not-exist.bin")])
async def test_unusable_image_is_refused_before_connecting(
    start_device: StartDevice, image_arg: bytes | Path, tmp_path: Path
) -> None:
    device = await start_device()
    if isinstance(image_arg, Path):
        image_arg = tmp_path / image_arg
    with pytest.raises(OTAImageError):
        await flash(device, image_arg)
    assert device.sessions == []


def _expected_frames(payload_size: int) -> list[int]:
    """Plaintext sizes espota2 sends: type, size, MD5, data in <=1024 pieces, final ack."""
    data: list[int] = []
    for block_start in range(0, payload_size, 8192):
        block = min(8192, payload_size - block_start)
        data += [min(1024, block - offset) for offset in range(0, block, 1024)]
    return [1, 4, 32, *data, 1]


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("compression", [False, True])
@pytest.mark.parametrize("as_text", [True, False])
async def test_noise_encrypted_flash(
    start_device: StartDevice,
    image: bytes,
    psk: bytes,
    version: int,
    compression: bool,
    as_text: bool,
) -> None:
    device = await start_device(version=version, compression=compression, noise_psk=psk)
    key: str | bytes = base64.b64encode(psk).decode() if as_text else psk
    result = await flash(device, image, noise_psk=key)
    (record,) = await device.wait_for_sessions(1)

    assert record.encrypted
    assert result.encrypted
    assert record.client_features == FEATURES_NOISE
    assert record.image == image
    assert record.md5_ok
    assert record.final_ack
    assert record.violation is None
    assert record.frame_sizes == _expected_frames(result.bytes_sent)
    # Nothing of the image is visible on the wire
    assert image[:64] not in bytes(record.received)


async def test_encryption_replaces_password_auth(
    start_device: StartDevice, image: bytes, psk: bytes
) -> None:
    """Like the firmware: an encrypted session skips the password challenge."""
    device = await start_device(noise_psk=psk, password="unused")
    await flash(device, image, noise_psk=psk)
    (record,) = await device.wait_for_sessions(1)
    assert record.encrypted
    assert record.auth_ok is None
    assert record.image == image


async def test_wrong_key_is_rejected_by_the_device(
    start_device: StartDevice, image: bytes, psk: bytes
) -> None:
    device = await start_device(noise_psk=psk)
    other = bytes(b ^ 0xFF for b in psk)
    with pytest.raises(OTAEncryptionKeyError, match="Handshake MAC failure") as err:
        await flash(device, image, noise_psk=other)
    assert err.value.code is None
    records = await device.wait_for_sessions(1)
    assert records[0].handshake_rejected
    assert len(device.sessions) == 1  # a device verdict is never retried


@pytest.mark.parametrize("extended", [True, False])
async def test_key_without_device_noise_fails_closed(
    start_device: StartDevice, image: bytes, psk: bytes, extended: bool
) -> None:
    device = await start_device(extended=extended)
    with pytest.raises(OTAEncryptionUnavailableError):
        await flash(device, image, noise_psk=psk)
    (record,) = await device.wait_for_sessions(1)
    # The magic and our feature byte, then we hung up: no auth, no size, no image
    assert bytes(record.received) == MAGIC + bytes([FEATURES_NOISE])
    assert record.client_closed
    assert len(device.sessions) == 1


async def test_device_requiring_encryption_without_key(
    start_device: StartDevice, image: bytes, psk: bytes
) -> None:
    device = await start_device(noise_psk=psk)
    with pytest.raises(OTAEncryptionRequiredError) as err:
        await flash(device, image)
    assert err.value.code == 0x94
    assert isinstance(err.value, OTAEncryptionError)
    assert len(await device.wait_for_sessions(1)) == 1


async def test_device_offering_optional_encryption_accepts_plaintext(
    start_device: StartDevice, image: bytes, psk: bytes
) -> None:
    device = await start_device(noise_psk=psk, encryption_required=False)
    result = await flash(device, image)
    (record,) = await device.wait_for_sessions(1)
    assert not record.encrypted
    assert not result.encrypted
    assert record.image == image


@pytest.mark.parametrize(
    "key",
    [
        "not base64!",
        base64.b64encode(b"x" * 31).decode(),
        base64.b64encode(b"x" * 33).decode(),
        b"x" * 16,
        "",
    ],
)
async def test_malformed_key_is_refused_before_connecting(
    start_device: StartDevice, image: bytes, key: str | bytes
) -> None:
    device = await start_device()
    with pytest.raises(OTAInvalidKeyError):
        await flash(device, image, noise_psk=key)
    assert device.sessions == []


@pytest.mark.parametrize("auth", [AuthScheme.MD5, AuthScheme.SHA256])
async def test_wrong_password(start_device: StartDevice, image: bytes, auth: AuthScheme) -> None:
    device = await start_device(password="right", auth=auth)
    with pytest.raises(OTAAuthenticationError) as err:
        await flash(device, image, password="wrong")
    assert err.value.code == 0x82
    (record,) = await device.wait_for_sessions(1)
    assert record.auth_ok is False
    assert len(device.sessions) == 1


async def test_password_challenge_without_password(start_device: StartDevice, image: bytes) -> None:
    device = await start_device(password="right")
    with pytest.raises(OTAPasswordRequiredError) as err:
        await flash(device, image)
    assert err.value.code is None
    (record,) = await device.wait_for_sessions(1)
    assert bytes(record.received) == MAGIC + bytes([FEATURES_PLAIN])


@pytest.mark.parametrize("ota_type", [OTAType.PARTITION_TABLE, OTAType.BOOTLOADER])
@pytest.mark.parametrize("extended", [True, False])
async def test_partition_updates_need_partition_access(
    start_device: StartDevice, image: bytes, ota_type: OTAType, extended: bool
) -> None:
    device = await start_device(extended=extended)
    with pytest.raises(OTAUnsupportedError, match="allow_partition_access"):
        await flash(device, image, ota_type=ota_type)
    (record,) = await device.wait_for_sessions(1)
    assert bytes(record.received) == MAGIC + bytes([FEATURES_PLAIN])


@pytest.mark.parametrize("ota_type", [OTAType.PARTITION_TABLE, OTAType.BOOTLOADER])
async def test_partition_updates_with_partition_access(
    start_device: StartDevice, image: bytes, ota_type: OTAType
) -> None:
    device = await start_device(partition_access=True)
    await flash(device, image, ota_type=ota_type)
    (record,) = await device.wait_for_sessions(1)
    assert record.ota_type == ota_type
    assert record.image == image


async def test_unsupported_protocol_version(start_device: StartDevice, image: bytes) -> None:
    device = await start_device(version=3)
    with pytest.raises(OTAProtocolError, match="version 3"):
        await flash(device, image)
