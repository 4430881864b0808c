"""Fixtures that run the real ESPHome Device Builder as the peer of interop tests.

The Device Builder always starts an mDNS responder on every interface, so these
fixtures refuse to start it unless the test process lives in a network namespace that
has nothing but loopback (how ``scripts/test`` runs the suite). They fail instead of
skipping: a suite that silently skips its interop tests proves nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
import fcntl
import os
from pathlib import Path
import shutil
import socket
import struct
from typing import Any

import pytest

from tests.support.real_builder import BUILDER_VENVS, RealBuilder, RealBuilderError

FIXTURE_CONFIGS = Path(__file__).resolve().parents[1] / "fixtures" / "esphome"
ALLOW_HOST_NETWORK_ENV = "ERB_ALLOW_HOST_NETWORK"
_SIOCGIFFLAGS = 0x8913
_IFF_UP = 0x1

RealBuilderFactory = Callable[..., Awaitable[RealBuilder]]

_HOW_TO_RUN = (
    "The real Device Builder multicasts mDNS on every interface, so it only runs in a "
    "network namespace that has nothing but loopback. Run the tests as `scripts/test`, "
    "or: unshare --net sh -c 'ip link set lo up; .venv/bin/pytest …' (unprivileged: "
    f"unshare -rn). To run on the host network anyway, set {ALLOW_HOST_NETWORK_ENV}=1."
)


def network_interfaces() -> set[str]:
    """Interfaces of *this process's* network namespace.

    ``/sys/class/net`` would be wrong here: sysfs shows the namespace it was mounted in,
    so inside ``unshare --net`` it still lists the host's interfaces.
    """
    lines = Path("/proc/self/net/dev").read_text(encoding="ascii").splitlines()[2:]
    return {line.split(":", 1)[0].strip() for line in lines}


def loopback_is_up() -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sh", b"lo", 0)
        flags: int = struct.unpack("16sh", fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
    return bool(flags & _IFF_UP)


def pytest_report_header() -> list[str]:
    """Say which Device Builder release the interop tests run against."""
    try:
        versions = BUILDER_VENVS.versions()
    except RealBuilderError as err:
        return [f"Device Builder venv {BUILDER_VENVS.builder}: {err}"]
    release, esphome = versions["esphome-device-builder"], versions["esphome"]
    return [f"Device Builder {release} (ESPHome {esphome}) in {BUILDER_VENVS.builder}"]


@pytest.fixture(scope="session", autouse=True)
def builder_venvs() -> None:
    """The chosen Device Builder venv exists and its stand-in venv runs on it."""
    BUILDER_VENVS.ensure()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that starts a Device Builder, so `-m "not real_builder"` works."""
    for item in items:
        if "loopback_only_network" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.real_builder)


@pytest.fixture
def loopback_only_network(socket_enabled: None) -> None:
    """Fail unless only loopback is reachable (and up), so nothing leaves the machine."""
    if os.environ.get(ALLOW_HOST_NETWORK_ENV) == "1":
        return
    interfaces = network_interfaces()
    if interfaces != {"lo"}:
        pytest.fail(f"network interfaces {sorted(interfaces)} besides lo. {_HOW_TO_RUN}")
    if not loopback_is_up():
        pytest.fail(f"lo is down: run `ip link set lo up` first. {_HOW_TO_RUN}")


@pytest.fixture
def esphome_config_dir(tmp_path: Path) -> Path:
    """A private copy of the sample ESPHome config folder (device YAMLs, secrets)."""
    destination = tmp_path / "esphome"
    shutil.copytree(FIXTURE_CONFIGS, destination)
    return destination


@pytest.fixture
async def real_builder_factory(
    loopback_only_network: None, tmp_path: Path
) -> AsyncIterator[RealBuilderFactory]:
    """Start Device Builders with any options; all are stopped after the test.

    ``await factory(dashboard=True, env={...})``; ``config_dir`` defaults to a fresh one.
    Their logs are printed at teardown, which pytest shows when the test failed.
    """
    builders: list[RealBuilder] = []

    async def start(config_dir: Path | None = None, **options: Any) -> RealBuilder:
        directory = config_dir or tmp_path / f"device-builder-{len(builders)}"
        builder = RealBuilder(directory, **options)
        builders.append(builder)
        await builder.start()
        return builder

    try:
        yield start
    finally:
        for builder in builders:
            await builder.stop()
            print(f"----- Device Builder log ({builder.config_dir}) -----\n{builder.log_text}")


@pytest.fixture
async def real_builder(real_builder_factory: RealBuilderFactory) -> RealBuilder:
    """A headless Device Builder (``--remote-build-only``) with a fresh config dir.

    It serves with its first-pair window open: ``pin`` and ``pairing_key`` are set.
    """
    return await real_builder_factory()


@pytest.fixture
async def real_builder_dashboard(real_builder_factory: RealBuilderFactory) -> RealBuilder:
    """A Device Builder with its dashboard: pairing is approved through ``/ws``."""
    return await real_builder_factory(dashboard=True)
