"""Capabilities the compatibility table (scripts/interop) needs to see on their own.

``test_peerlink_real`` proves dashboard approval and revocation in one test; here
approval is proved alone (so a revocation change cannot hide it), and a paired client
must find its way back after the Device Builder restarts, which every user's server does
on an update.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from custom_components.esphome_remote_build.peerlink import (
    Connected,
    Disconnected,
    Identity,
    PairOutcome,
    PeerLinkClient,
    PeerLinkEvent,
    pair_request,
    pair_status,
)
from tests.support.real_builder import RealBuilder


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _wait_for(events: list[PeerLinkEvent], kind: type, count: int) -> None:
    async with asyncio.timeout(20):
        while sum(isinstance(event, kind) for event in events) < count:
            await asyncio.sleep(0.02)


async def test_pairing_via_dashboard_approval(
    real_builder_dashboard: RealBuilder, http: aiohttp.ClientSession
) -> None:
    builder = real_builder_dashboard
    identity = Identity.generate()
    async with builder.dashboard_client() as operator:
        await operator.set_pairing_window(True)
        outcome = await pair_request(
            http,
            builder.host,
            builder.port,
            identity,
            builder.pin,
            label="interop",
            friendly_name="interop-ha",
        )
        assert outcome is PairOutcome.PENDING
        peers = (await operator.get_settings())["peers"]
        assert [(p["dashboard_id"], p["status"]) for p in peers] == [
            (identity.dashboard_id, "pending")
        ]
        await operator.approve_peer(identity.dashboard_id)
        await asyncio.wait_for(
            pair_status(http, builder.host, builder.port, identity, builder.pin), 10
        )

        client = PeerLinkClient(http, builder.host, builder.port, identity, builder.pin)
        try:
            await client.start()
            await client.wait_connected(10)
            peers = (await operator.get_settings())["peers"]
        finally:
            await client.stop()
    assert [(p["status"], p["connected"]) for p in peers] == [("approved", True)]


async def test_paired_client_reconnects_after_builder_restart(
    real_builder: RealBuilder, http: aiohttp.ClientSession
) -> None:
    builder = real_builder
    identity = Identity.generate()
    outcome = await pair_request(
        http,
        builder.host,
        builder.port,
        identity,
        builder.pin,
        label="interop",
        friendly_name="interop-ha",
        pairing_key=builder.pairing_key,
    )
    assert outcome is PairOutcome.APPROVED
    client = PeerLinkClient(
        http, builder.host, builder.port, identity, builder.pin, backoff_initial=0.1
    )
    events: list[PeerLinkEvent] = []
    client.subscribe(events.append)
    await client.start()
    try:
        await client.wait_connected(10)
        assert await builder.stop() == 0
        await _wait_for(events, Disconnected, 1)
        await builder.start()
        # paired before the restart: no new pairing window, same identity and port
        assert builder.pairing_key is None
        await _wait_for(events, Connected, 2)
        assert client.connected
        assert not any(isinstance(e, Disconnected) and e.terminal for e in events)
    finally:
        await client.stop()
