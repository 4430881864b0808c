"""Pairing intents against the receiver double: every outcome, and the pin rule."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web
import pytest

from custom_components.esphome_remote_build.peerlink import (
    CannotConnectError,
    Identity,
    InvalidPairingKeyError,
    NoPairingWindowError,
    NoPeerLinkError,
    PairingRejectedError,
    PairOutcome,
    PinMismatchError,
    ProtocolError,
    pair_request,
    pair_status,
    preview,
)
from tests.support.real_builder import free_port
from tests.support.receiver_double import HandshakeFault, PeerState, ReceiverDouble


async def test_preview_reports_the_server(http: aiohttp.ClientSession) -> None:
    async with ReceiverDouble(
        friendly_name="box", requires_pairing_key=True, esphome_version="2026.10.0"
    ) as rd:
        info = await preview(http, rd.host, rd.port, Identity.generate())
        assert (info.pin_sha256, info.friendly_name, info.esphome_version) == (
            rd.pin,
            "box",
            "2026.10.0",
        )
        assert info.requires_pairing_key
        assert rd.connections[0].msg3_payload in (None, {})


async def test_preview_of_a_refusing_server(
    http: aiohttp.ClientSession, rd: ReceiverDouble
) -> None:
    rd.faults.refuse_intent["preview"] = ("rejected", "bad_intent")
    with pytest.raises(PairingRejectedError) as info:
        await preview(http, rd.host, rd.port, Identity.generate())
    assert info.value.reason == "bad_intent"


async def test_cannot_connect(http: aiohttp.ClientSession, socket_enabled: None) -> None:
    with pytest.raises(CannotConnectError):
        await preview(http, "127.0.0.1", free_port(), Identity.generate())


@pytest.mark.parametrize(
    "fault",
    [
        HandshakeFault.CLOSE_AFTER_MSG1,
        HandshakeFault.GARBAGE_MSG2,
        HandshakeFault.CLOSE_AFTER_MSG3,
        HandshakeFault.GARBAGE_RESPONSE,
    ],
)
async def test_broken_handshakes(
    http: aiohttp.ClientSession, rd: ReceiverDouble, fault: HandshakeFault
) -> None:
    rd.faults.handshake = fault
    with pytest.raises((CannotConnectError, ProtocolError)):
        await preview(http, rd.host, rd.port, Identity.generate())


async def test_stalled_handshake_times_out(http: aiohttp.ClientSession, rd: ReceiverDouble) -> None:
    rd.faults.handshake = HandshakeFault.STALL_AFTER_MSG3
    with pytest.raises(TimeoutError):
        await preview(http, rd.host, rd.port, Identity.generate(), timeout=0.3)


async def test_headless_pairing_with_the_key(http: aiohttp.ClientSession) -> None:
    async with ReceiverDouble(requires_pairing_key=True, pairing_key="ABCD-EFGH-JKMN-PQRS") as rd:
        me = Identity.generate()
        with pytest.raises(NoPairingWindowError):
            await pair_request(
                http,
                rd.host,
                rd.port,
                me,
                rd.pin,
                label="l",
                friendly_name="f",
                pairing_key="WRNG-WRNG-WRNG-WRNG",
            )
        outcome = await pair_request(
            http,
            rd.host,
            rd.port,
            me,
            rd.pin,
            label="HA",
            friendly_name="home",
            pairing_key="abcd efgh-jkmn.pqrs",
        )
        assert outcome is PairOutcome.APPROVED
        assert rd.peers[me.dashboard_id].pin_sha256 == me.pin_sha256
        sent = rd.connections[-1].msg3_payload
        assert sent is not None
        assert sent["dashboard_id"] == me.dashboard_id
        assert sent["label"] == "HA"


async def test_pin_mismatch_sends_nothing_secret(http: aiohttp.ClientSession) -> None:
    async with ReceiverDouble(requires_pairing_key=True, pairing_key="ABCD-EFGH-JKMN-PQRS") as rd:
        with pytest.raises(PinMismatchError) as info:
            await pair_request(
                http,
                rd.host,
                rd.port,
                Identity.generate(),
                "0" * 64,
                label="l",
                friendly_name="f",
                pairing_key="ABCD-EFGH-JKMN-PQRS",
            )
        assert info.value.seen == rd.pin
        await rd.connections[-1].closed.wait()
        assert rd.connections[-1].msg3_received is False
        assert rd.peers == {}


async def test_pending_then_approved(http: aiohttp.ClientSession, rd: ReceiverDouble) -> None:
    rd.open_pairing_window()
    me = Identity.generate()
    outcome = await pair_request(http, rd.host, rd.port, me, rd.pin, label="l", friendly_name="f")
    assert outcome is PairOutcome.PENDING
    assert rd.peers[me.dashboard_id].state is PeerState.PENDING
    poll = asyncio.create_task(pair_status(http, rd.host, rd.port, me, rd.pin, retry_delay=0.01))
    await rd.wait_for(lambda: len(rd.connections_for("pair_status")) == 1)
    assert not poll.done()
    rd.approve(me.dashboard_id)
    await asyncio.wait_for(poll, 5)


async def test_pending_then_declined(http: aiohttp.ClientSession, rd: ReceiverDouble) -> None:
    rd.open_pairing_window()
    me = Identity.generate()
    await pair_request(http, rd.host, rd.port, me, rd.pin, label="l", friendly_name="f")
    poll = asyncio.create_task(pair_status(http, rd.host, rd.port, me, rd.pin, retry_delay=0.01))
    await rd.wait_for(lambda: len(rd.connections_for("pair_status")) == 1)
    rd.remove(me.dashboard_id)
    with pytest.raises(PairingRejectedError) as info:
        await asyncio.wait_for(poll, 5)
    assert info.value.reason == "no_approved_peer"
    assert info.value.terminal


async def test_pair_status_survives_a_dropped_connection(
    http: aiohttp.ClientSession, rd: ReceiverDouble
) -> None:
    rd.open_pairing_window()
    me = Identity.generate()
    await pair_request(http, rd.host, rd.port, me, rd.pin, label="l", friendly_name="f")
    rd.faults.handshake = HandshakeFault.CLOSE_AFTER_MSG1
    poll = asyncio.create_task(pair_status(http, rd.host, rd.port, me, rd.pin, retry_delay=0.01))
    await rd.wait_for(lambda: len(rd.connections) >= 4)
    rd.faults.handshake = None
    await rd.wait_for(lambda: any(c.msg3_received for c in rd.connections_for("pair_status")))
    rd.approve(me.dashboard_id)
    await asyncio.wait_for(poll, 5)


async def test_pair_status_gives_up_after_its_budget(
    http: aiohttp.ClientSession, rd: ReceiverDouble
) -> None:
    rd.open_pairing_window()
    me = Identity.generate()
    await pair_request(http, rd.host, rd.port, me, rd.pin, label="l", friendly_name="f")
    with pytest.raises(TimeoutError):
        await pair_status(http, rd.host, rd.port, me, rd.pin, timeout=0.3)


@pytest.mark.parametrize(
    ("response", "reason", "exc"),
    [
        (("rejected", "pin_mismatch"), "pin_mismatch", PairingRejectedError),
        (("rejected", None), "rejected", PairingRejectedError),
        (("no_pairing_window", None), "no_pairing_window", NoPairingWindowError),
        (("ok", None), "protocol_error", ProtocolError),
    ],
)
async def test_pair_request_refusals(
    http: aiohttp.ClientSession,
    rd: ReceiverDouble,
    response: tuple[str, str | None],
    reason: str,
    exc: type[Exception],
) -> None:
    rd.faults.refuse_intent["pair_request"] = response
    with pytest.raises(exc) as info:
        await pair_request(
            http, rd.host, rd.port, Identity.generate(), rd.pin, label="l", friendly_name="f"
        )
    assert getattr(info.value, "reason", None) == reason


async def test_pair_status_unexpected_answer_is_retried(
    http: aiohttp.ClientSession, rd: ReceiverDouble
) -> None:
    me = Identity.generate()
    rd.add_peer(me.dashboard_id, me.pin_sha256)
    rd.faults.refuse_intent["pair_status"] = ("pending", None)
    poll = asyncio.create_task(pair_status(http, rd.host, rd.port, me, rd.pin, retry_delay=0.01))
    await rd.wait_for(lambda: len(rd.connections_for("pair_status")) >= 3)
    del rd.faults.refuse_intent["pair_status"]
    await asyncio.wait_for(poll, 5)


@pytest.mark.parametrize("key", ["x" * 65, "bad\nkey"])
async def test_invalid_pairing_key_is_refused_locally(
    http: aiohttp.ClientSession, rd: ReceiverDouble, key: str
) -> None:
    with pytest.raises(InvalidPairingKeyError):
        await pair_request(
            http,
            rd.host,
            rd.port,
            Identity.generate(),
            rd.pin,
            label="l",
            friendly_name="f",
            pairing_key=key,
        )
    assert rd.connection_count == 0


def _answer(status: int, body: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(_request: web.Request) -> web.Response:
        return web.Response(status=status, text=body)

    return handler


@pytest.mark.parametrize(
    ("status", "body"),
    [
        pytest.param(404, "Not Found", id="old-dashboard"),  # ESPHome's old Tornado dashboard
        pytest.param(200, "<html>Device Builder</html>", id="a-dashboard-web-port"),
    ],
)
async def test_an_http_server_without_the_peer_link_is_told_apart(
    http: aiohttp.ClientSession, status: int, body: str
) -> None:
    """Something answers HTTP, but not the peer link: not "down", a server to replace."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", _answer(status, body))
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        with pytest.raises(NoPeerLinkError) as info:
            await preview(http, "127.0.0.1", port, Identity.generate())
        assert info.value.key == "server_too_old"
        assert isinstance(info.value, CannotConnectError)  # still "cannot reach a server"
    finally:
        await runner.cleanup()


async def test_nothing_listening_is_not_mistaken_for_an_old_server(
    http: aiohttp.ClientSession,
) -> None:
    with pytest.raises(CannotConnectError) as info:
        await preview(http, "127.0.0.1", free_port(), Identity.generate())
    assert not isinstance(info.value, NoPeerLinkError)
