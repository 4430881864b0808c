"""Proof that the emulator is a faithful device: ESPHome's own client flashes it.

``esphome.espota2.run_ota`` (ESPHome 2026.10.0, from the Device Builder venv) runs in a
subprocess against the in-process emulator. These tests fail, never skip, when that venv
is missing: without them the emulator, and so every client test, proves nothing.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass
import os
from pathlib import Path
import sys

import pytest

from tests.support.ota_emulator import MAGIC, AuthScheme, OTADeviceEmulator, Stage

from .helpers import StartDevice

pytestmark = pytest.mark.espota

BUILDER_PYTHON = Path(__file__).resolve().parents[2] / ".venv-builder" / "bin" / "python"

# Runs inside the builder venv. Retries wait 0 s instead of 5 s; nothing else is changed.
_ESPOTA = """
import logging, sys
from pathlib import Path
from esphome import espota2
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
espota2.UPLOAD_RETRY_DELAY = 0
port, path, password, psk, ota_type = sys.argv[1:]
rc, _ = espota2.run_ota(
    "127.0.0.1", int(port), password or None, Path(path),
    ota_type=int(ota_type), noise_psk=psk or None,
)
sys.exit(rc)
"""

# espota2's feature byte: compression | SHA-256 | extended | deflate (+ Noise with a key)
ESPOTA_FEATURES = 0x17
ESPOTA_FEATURES_NOISE = 0x1F


@dataclass
class EspotaRun:
    returncode: int
    log: str


@pytest.fixture
def builder_python() -> Path:
    assert BUILDER_PYTHON.exists(), (
        f"{BUILDER_PYTHON} is missing: run scripts/setup (the espota2 interop proof needs it)"
    )
    return BUILDER_PYTHON


@pytest.fixture
def firmware(tmp_path: Path, image: bytes) -> Path:
    path = tmp_path / "firmware.bin"
    path.write_bytes(image)
    return path


async def run_espota(
    python: Path,
    device: OTADeviceEmulator,
    firmware: Path,
    *,
    password: str = "",
    psk: bytes | None = None,
    ota_type: int = 0,
) -> EspotaRun:
    key = "" if psk is None else base64.b64encode(psk).decode()
    process = await asyncio.create_subprocess_exec(
        str(python),
        "-c",
        _ESPOTA,
        str(device.port),
        str(firmware),
        password,
        key,
        str(ota_type),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": ""},
    )
    async with asyncio.timeout(120):
        _, log = await process.communicate()
    assert process.returncode is not None
    text = log.decode(errors="replace")
    sys.stderr.write(text)  # shown by pytest when the test fails
    return EspotaRun(process.returncode, text)


@pytest.mark.parametrize(
    "config",
    [
        pytest.param({}, id="v2-plain"),
        pytest.param({"version": 1}, id="v1-plain"),
        pytest.param({"compression": True}, id="v2-gzip"),
        pytest.param({"version": 1, "compression": True}, id="v1-gzip"),
        pytest.param({"deflate": True}, id="v2-deflate"),
        pytest.param({"extended": False, "compression": True}, id="legacy-gzip"),
        pytest.param({"password": "pw", "auth": AuthScheme.SHA256}, id="sha256-auth"),
        pytest.param({"password": "pw", "auth": AuthScheme.MD5}, id="md5-auth"),
        pytest.param({"noise": True}, id="noise"),
        pytest.param({"noise": True, "version": 1, "deflate": True}, id="noise-v1-deflate"),
    ],
)
async def test_espota2_flashes_the_emulator(
    builder_python: Path,
    start_device: StartDevice,
    firmware: Path,
    image: bytes,
    psk: bytes,
    config: dict[str, object],
) -> None:
    noise = bool(config.pop("noise", False))
    device = await start_device(noise_psk=psk if noise else None, **config)
    run = await run_espota(
        builder_python,
        device,
        firmware,
        password=str(config.get("password", "")),
        psk=psk if noise else None,
    )
    assert run.returncode == 0, run.log
    (record,) = await device.wait_for_sessions(1)
    assert record.image == image
    assert record.md5_ok
    assert record.final_ack
    assert record.violation is None
    assert record.encrypted is noise
    assert record.client_features == (ESPOTA_FEATURES_NOISE if noise else ESPOTA_FEATURES)
    assert record.deflate is bool(config.get("deflate"))
    assert record.compressed is bool(config.get("compression"))
    if noise:
        assert max(record.frame_sizes) == 1024
    if "password" in config:
        assert record.auth_ok


async def test_espota2_partition_table_upload(
    builder_python: Path, start_device: StartDevice, firmware: Path, image: bytes
) -> None:
    device = await start_device(partition_access=True)
    run = await run_espota(builder_python, device, firmware, ota_type=1)
    assert run.returncode == 0, run.log
    (record,) = await device.wait_for_sessions(1)
    assert record.ota_type == 1
    assert record.image == image


async def test_espota2_wrong_password(
    builder_python: Path, start_device: StartDevice, firmware: Path
) -> None:
    device = await start_device(password="right")
    run = await run_espota(builder_python, device, firmware, password="wrong")
    assert run.returncode == 1
    assert "Authentication invalid" in run.log
    (record,) = await device.wait_for_sessions(1)
    assert record.auth_ok is False
    assert len(device.sessions) == 1


async def test_espota2_injected_device_error(
    builder_python: Path, start_device: StartDevice, firmware: Path
) -> None:
    device = await start_device(error_stage=Stage.PREPARE, error_code=0x81)
    run = await run_espota(builder_python, device, firmware)
    assert run.returncode == 1
    assert "Couldn't prepare flash memory" in run.log
    await device.wait_for_sessions(1)
    assert len(device.sessions) == 1


async def test_espota2_wrong_key(
    builder_python: Path, start_device: StartDevice, firmware: Path, psk: bytes
) -> None:
    device = await start_device(noise_psk=psk)
    run = await run_espota(builder_python, device, firmware, psk=bytes(b ^ 1 for b in psk))
    assert run.returncode == 1
    assert "is the OTA encryption key correct" in run.log
    (record,) = await device.wait_for_sessions(1)
    assert record.handshake_rejected


async def test_espota2_fails_closed_like_us(
    builder_python: Path, start_device: StartDevice, firmware: Path, psk: bytes
) -> None:
    device = await start_device()
    run = await run_espota(builder_python, device, firmware, psk=psk)
    assert run.returncode == 1
    assert "refusing to send the image in plaintext" in run.log
    (record,) = await device.wait_for_sessions(1)
    assert bytes(record.received) == MAGIC + bytes([ESPOTA_FEATURES_NOISE])


async def test_espota2_encryption_required(
    builder_python: Path, start_device: StartDevice, firmware: Path, psk: bytes
) -> None:
    device = await start_device(noise_psk=psk)
    run = await run_espota(builder_python, device, firmware)
    assert run.returncode == 1
    assert "requires an encrypted OTA connection" in run.log
    (record,) = await device.wait_for_sessions(1)
    assert record.error_sent == 0x94


async def test_espota2_retries_a_dropped_transfer(
    builder_python: Path, start_device: StartDevice, firmware: Path, image: bytes
) -> None:
    device = await start_device(drop_after_bytes=8192 + 100, faulty_sessions=1)
    run = await run_espota(builder_python, device, firmware)
    assert run.returncode == 0, run.log
    first, second = await device.wait_for_sessions(2)
    assert first.dropped
    assert second.image == image


async def test_espota2_treats_a_drop_after_the_image_as_committing(
    builder_python: Path, start_device: StartDevice, firmware: Path, image: bytes
) -> None:
    device = await start_device(drop_after_bytes=len(image))
    run = await run_espota(builder_python, device, firmware)
    assert run.returncode == 1
    assert "may have already committed" in run.log
    await device.wait_for_sessions(1)
    assert len(device.sessions) == 1


async def test_espota2_survives_a_lost_final_ack(
    builder_python: Path, start_device: StartDevice, firmware: Path
) -> None:
    device = await start_device(drop_before_final_ack=True)
    run = await run_espota(builder_python, device, firmware)
    assert run.returncode == 0, run.log
    (record,) = await device.wait_for_sessions(1)
    assert record.completed
