"""Fixtures: an emulated device per test, a test image, and a client call with short timeouts."""

from __future__ import annotations

from collections.abc import AsyncIterator
import os
from typing import Any

import pytest

from tests.support.ota_emulator import DeviceConfig, OTADeviceEmulator

from .helpers import StartDevice


@pytest.fixture
def image() -> bytes:
    """Several blocks, partly incompressible so the gzip payload spans blocks too."""
    return os.urandom(3 * 8192 + 517) + bytes(20_000) + os.urandom(1000)


@pytest.fixture
def psk() -> bytes:
    return os.urandom(32)


@pytest.fixture
async def start_device(socket_enabled: None) -> AsyncIterator[StartDevice]:
    """Start emulated devices on 127.0.0.1 (port 0); all are stopped after the test."""
    started: list[OTADeviceEmulator] = []

    async def start(**config: Any) -> OTADeviceEmulator:
        emulator = OTADeviceEmulator(DeviceConfig(**config))
        await emulator.start()
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        await emulator.stop()
