"""Fixtures for the receiver double's own tests (loopback sockets, fast timers)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from tests.double.initiator import Offloader, RawInitiator
from tests.support.receiver_double import ReceiverDouble


@pytest.fixture(autouse=True)
def _loopback(socket_enabled: None) -> None:
    """Every test here talks to the double over 127.0.0.1."""


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def rd() -> AsyncIterator[ReceiverDouble]:
    async with ReceiverDouble(handshake_timeout=2.0) as double:
        yield double


@pytest.fixture
def offloader() -> Offloader:
    return Offloader()


@pytest.fixture
def paired(rd: ReceiverDouble, offloader: Offloader) -> Offloader:
    rd.add_peer(offloader.dashboard_id, offloader.pin)
    return offloader


type Connect = Callable[..., Awaitable[RawInitiator]]


@pytest.fixture
async def connect(
    http: aiohttp.ClientSession, rd: ReceiverDouble, offloader: Offloader
) -> AsyncIterator[Connect]:
    """Open raw initiators against `rd` (default: `offloader`, intent peer_link); closes them."""
    opened: list[RawInitiator] = []

    async def _connect(who: Offloader | None = None, **kwargs: Any) -> RawInitiator:
        initiator = await RawInitiator.open(http, rd.ws_url, who or offloader, **kwargs)
        opened.append(initiator)
        return initiator

    yield _connect
    for initiator in opened:
        await initiator.close()
