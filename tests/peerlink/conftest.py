"""Fixtures: the receiver double on loopback and a client paired with it (fast timers)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from custom_components.esphome_remote_build.peerlink import (
    Identity,
    PeerLinkClient,
    PeerLinkEvent,
)
from tests.support.receiver_double import ReceiverDouble


@pytest.fixture
async def http(socket_enabled: None) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def rd(socket_enabled: None) -> AsyncIterator[ReceiverDouble]:
    async with ReceiverDouble(handshake_timeout=2.0) as double:
        yield double


@pytest.fixture
def identity() -> Identity:
    return Identity.generate()


@dataclass
class Harness:
    """A client, the double it talks to, and every event the client emitted."""

    rd: ReceiverDouble
    client: PeerLinkClient
    events: list[PeerLinkEvent] = field(default_factory=list)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    async def until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Poll client-side state (the double's own wait only wakes on its changes)."""
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.01)


FAST = {
    "heartbeat_interval": 0.05,
    "dead_after": 0.5,
    "backoff_initial": 0.01,
    "backoff_max": 0.05,
    "ack_timeout": 10.0,
}


@pytest.fixture
async def make_client(
    http: aiohttp.ClientSession, rd: ReceiverDouble, identity: Identity
) -> AsyncIterator[Callable[..., Harness]]:
    """Build clients against the double; every one is stopped after the test."""
    clients: list[PeerLinkClient] = []

    def _make(**overrides: Any) -> Harness:
        client = PeerLinkClient(http, rd.host, rd.port, identity, rd.pin, **(FAST | overrides))
        harness = Harness(rd, client)
        client.subscribe(harness.events.append)
        clients.append(client)
        return harness

    yield _make
    for client in clients:
        await client.stop()


@pytest.fixture
async def session(
    rd: ReceiverDouble, identity: Identity, make_client: Callable[..., Harness]
) -> Harness:
    """A paired, connected client."""
    rd.add_peer(identity.dashboard_id, identity.pin_sha256)
    harness = make_client()
    await harness.client.start()
    await harness.client.wait_connected(5)
    return harness
