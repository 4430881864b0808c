"""Fixtures: emulated devices on loopback, a Noise key, the Device Builder venv's Python."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
import os
from pathlib import Path
from typing import Any

import pytest

from tests.interop.conftest import loopback_is_up, network_interfaces
from tests.support.device_emulator import DeviceEmulator

type StartDevice = Callable[..., Awaitable[DeviceEmulator]]

BUILDER_PYTHON = Path(__file__).resolve().parents[2] / ".venv-builder" / "bin" / "python"


@pytest.fixture
def psk() -> bytes:
    return os.urandom(32)


@pytest.fixture
async def start_device(socket_enabled: None) -> AsyncIterator[StartDevice]:
    """Start emulated devices (``DeviceSpec`` keywords); all are powered off after the test."""
    started: list[DeviceEmulator] = []

    async def start(**spec: Any) -> DeviceEmulator:
        device = DeviceEmulator(**spec)
        started.append(device)
        await device.start()
        return device

    yield start
    for device in started:
        await device.stop()


@pytest.fixture
def builder_python() -> Path:
    assert BUILDER_PYTHON.exists(), (
        f"{BUILDER_PYTHON} is missing: run scripts/setup (espota2 and the stand-in need it)"
    )
    return BUILDER_PYTHON


@pytest.fixture
def loopback_only(socket_enabled: None) -> None:
    """mDNS multicasts: fail unless this process sees nothing but an up ``lo``."""
    if network_interfaces() != {"lo"} or not loopback_is_up():
        pytest.fail(
            "mDNS tests run in a network namespace with only loopback: scripts/test, or "
            "unshare --net sh -c 'ip link set lo up && .venv/bin/pytest …'"
        )
