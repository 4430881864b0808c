"""Handshake, intents and the §4.4 outcome matrices as the double implements them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
from cryptography.exceptions import InvalidTag
from noise.exceptions import NoiseInvalidMessage
import pytest

from tests.double.conftest import Connect
from tests.double.initiator import ClosedError, Offloader, PinMismatchError, RawInitiator
from tests.support.receiver_double import (
    HandshakeFault,
    PeerState,
    ReceiverDouble,
    normalize_pairing_key,
)

OTHER = Offloader()  # a second installation key, for pin mismatches


def _msg3(offloader: Offloader, **extra: Any) -> dict[str, Any]:
    return {"dashboard_id": offloader.dashboard_id, **extra}


async def test_preview_reports_identity_and_closes(connect: Connect, rd: ReceiverDouble) -> None:
    link = await connect(intent="preview", expected_pin=rd.pin)
    assert link.response["intent_response"] == "ok"
    assert "requires_pairing_key" not in link.response
    assert await link.recv_until_closed() == []
    assert rd.connections_for("preview")[0].msg3_payload == {}


async def test_headless_preview_asks_for_pairing_key(
    http: aiohttp.ClientSession, offloader: Offloader
) -> None:
    async with ReceiverDouble(requires_pairing_key=True, ha_addon=True) as rd:
        link = await RawInitiator.open(http, rd.ws_url, offloader, intent="preview")
        assert link.response["requires_pairing_key"] is True
        assert link.response["ha_addon"] is True
        assert rd.pairing_window_open
        await link.close()


@pytest.mark.parametrize(
    "msg1_payload",
    [b'{"intent":"bogus"}', b'{"intent":5}', b"{}", b"not json", b'["peer_link"]'],
)
async def test_unusable_intent_is_rejected_after_full_handshake(
    connect: Connect, rd: ReceiverDouble, msg1_payload: bytes
) -> None:
    link = await connect(msg1_payload=msg1_payload, msg3={"dashboard_id": "x"})
    assert (link.response["intent_response"], link.response["reason"]) == ("rejected", "bad_intent")
    assert rd.connections[0].msg3_received
    assert await link.recv_until_closed() == []


@pytest.mark.parametrize("intent", ["pair_request", "pair_status", "peer_link"])
@pytest.mark.parametrize("dashboard_id", [None, "", "bad id!", "x" * 65, 123, "ü"])
async def test_bad_dashboard_id(connect: Connect, intent: str, dashboard_id: object) -> None:
    msg3 = {} if dashboard_id is None else {"dashboard_id": dashboard_id}
    link = await connect(intent=intent, msg3=msg3)
    assert link.response["reason"] == "bad_dashboard_id"
    assert link.response["intent_response"] == "rejected"


def _approved_same(rd: ReceiverDouble, me: Offloader) -> None:
    rd.add_peer(me.dashboard_id, me.pin)


def _approved_other(rd: ReceiverDouble, me: Offloader) -> None:
    rd.add_peer(me.dashboard_id, OTHER.pin)


def _pending_same(rd: ReceiverDouble, me: Offloader) -> None:
    rd.add_peer(me.dashboard_id, me.pin, approved=False)


def _pending_other(rd: ReceiverDouble, me: Offloader) -> None:
    rd.add_peer(me.dashboard_id, OTHER.pin, approved=False)


def _no_row(rd: ReceiverDouble, me: Offloader) -> None:
    pass


Setup = Callable[[ReceiverDouble, Offloader], None]


@pytest.mark.parametrize(
    ("setup", "window", "expected"),
    [
        (_approved_same, False, ("approved", None)),
        (_approved_other, True, ("rejected", "pin_mismatch")),
        (_approved_other, False, ("rejected", "pin_mismatch")),
        (_no_row, False, ("no_pairing_window", None)),
        (_pending_other, True, ("rejected", "pin_mismatch")),
        (_pending_same, True, ("pending", None)),
        (_no_row, True, ("pending", None)),
    ],
)
async def test_pair_request_matrix(
    connect: Connect,
    rd: ReceiverDouble,
    offloader: Offloader,
    setup: Setup,
    window: bool,
    expected: tuple[str, str | None],
) -> None:
    setup(rd, offloader)
    rd.pairing_window_open = window
    link = await connect(intent="pair_request", msg3=_msg3(offloader, label=" Kitchen HA "))
    assert (link.response["intent_response"], link.response.get("reason")) == expected
    if expected[0] == "pending":
        row = rd.peers[offloader.dashboard_id]
        assert (row.state, row.pin_sha256, row.label) == (
            PeerState.PENDING,
            offloader.pin,
            "Kitchen HA",
        )


@pytest.mark.parametrize(
    ("presented", "expected"),
    [
        ("abcd efgh-jkmn.pqrs", "approved"),
        ("ABCD-EFGH-JKMN-PQRS", "approved"),
        ("ABCD-EFGH-JKMN-PQRT", "no_pairing_window"),
        ("", "no_pairing_window"),
        (None, "no_pairing_window"),
        (42, "no_pairing_window"),
        ("A" * 257, "no_pairing_window"),
    ],
)
async def test_headless_bootstrap_pairing_key(
    http: aiohttp.ClientSession, offloader: Offloader, presented: object, expected: str
) -> None:
    async with ReceiverDouble(requires_pairing_key=True, pairing_key="ABCD-EFGH-JKMN-PQRS") as rd:
        msg3 = _msg3(offloader) if presented is None else _msg3(offloader, pairing_key=presented)
        link = await RawInitiator.open(http, rd.ws_url, offloader, intent="pair_request", msg3=msg3)
        assert link.response["intent_response"] == expected
        approved = expected == "approved"
        assert (offloader.dashboard_id in rd.peers) is approved
        assert rd.pairing_window_open is not approved  # the bootstrap window admits one pairing
        await link.close()


def test_pairing_key_normalisation_vector() -> None:
    assert normalize_pairing_key("abcd-efgh jkmn.pqrs") == "ABCDEFGHJKMNPQRS"


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (_approved_same, ("approved", None)),
        (_approved_other, ("rejected", "pin_mismatch")),
        (_pending_other, ("rejected", "pin_mismatch")),
        (_no_row, ("rejected", "no_approved_peer")),
    ],
)
async def test_pair_status_immediate_answers(
    connect: Connect,
    rd: ReceiverDouble,
    offloader: Offloader,
    setup: Setup,
    expected: tuple[str, str | None],
) -> None:
    setup(rd, offloader)
    link = await connect(intent="pair_status")
    assert (link.response["intent_response"], link.response.get("reason")) == expected


@pytest.mark.parametrize(
    ("admin_action", "expected"),
    [
        (lambda rd, dash: rd.approve(dash), ("approved", None)),
        (lambda rd, dash: rd.remove(dash), ("rejected", "no_approved_peer")),
        (lambda rd, dash: rd.close_pairing_window(), ("rejected", "no_approved_peer")),
    ],
    ids=["approve", "remove", "window-closes"],
)
async def test_pair_status_long_poll(
    http: aiohttp.ClientSession,
    rd: ReceiverDouble,
    offloader: Offloader,
    admin_action: Callable[[ReceiverDouble, str], None],
    expected: tuple[str, str | None],
) -> None:
    rd.open_pairing_window()
    first = await RawInitiator.open(http, rd.ws_url, offloader, intent="pair_request")
    assert first.response["intent_response"] == "pending"
    await first.close()

    # The long-poll answers only once the admin acts: drive the handshake by hand.
    poll = asyncio.create_task(RawInitiator.open(http, rd.ws_url, offloader, intent="pair_status"))
    await rd.wait_for(
        lambda: len(rd.connections_for("pair_status")) == 1 and rd.connections[-1].msg3_received
    )
    assert not poll.done()
    assert rd.connections[-1].response is None
    admin_action(rd, offloader.dashboard_id)
    link = await poll
    assert (link.response["intent_response"], link.response.get("reason")) == expected
    await link.close()


async def test_pair_status_long_poll_ends_when_client_leaves(
    http: aiohttp.ClientSession, rd: ReceiverDouble, offloader: Offloader
) -> None:
    rd.add_peer(offloader.dashboard_id, offloader.pin, approved=False)
    poll = asyncio.create_task(RawInitiator.open(http, rd.ws_url, offloader, intent="pair_status"))
    await rd.wait_for(lambda: rd.connection_count == 1 and rd.connections[0].msg3_received)
    poll.cancel()
    with pytest.raises(asyncio.CancelledError):
        await poll
    await rd.wait_for(rd.connections[0].closed.is_set)
    assert rd.connections[0].response is None


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (_approved_same, ("ok", None)),
        (_pending_same, ("pending", "pending_not_approved")),
        (_pending_other, ("rejected", "pin_mismatch")),
        (_approved_other, ("rejected", "pin_mismatch")),
        (_no_row, ("rejected", "no_approved_peer")),
    ],
)
async def test_peer_link_matrix(
    connect: Connect,
    rd: ReceiverDouble,
    offloader: Offloader,
    setup: Setup,
    expected: tuple[str, str | None],
) -> None:
    setup(rd, offloader)
    link = await connect(
        msg3=_msg3(offloader, friendly_name="HA", ha_addon=True, connect_back_port=7000)
    )
    assert (link.response["intent_response"], link.response.get("reason")) == expected
    if expected[0] == "ok":
        assert (await link.recv())["type"] == "queue_status"
        row = rd.peers[offloader.dashboard_id]
        assert (row.friendly_name, row.ha_addon, row.connect_back_port) == ("HA", True, 7000)
        assert offloader.dashboard_id in rd.sessions
    else:
        assert await link.recv_until_closed() == []
        assert rd.sessions == {}


async def test_pin_mismatch_abort_is_observable_as_no_msg3(
    connect: Connect, rd: ReceiverDouble, paired: Offloader
) -> None:
    with pytest.raises(PinMismatchError):
        await connect(expected_pin="0" * 64, msg3=_msg3(paired, secret="do-not-send"))
    await rd.wait_for(rd.connections[0].closed.is_set)
    assert rd.connections[0].intent == "peer_link"
    assert not rd.connections[0].msg3_received
    assert rd.msg3_payloads == []


async def test_server_key_change_between_connections(
    connect: Connect, rd: ReceiverDouble, paired: Offloader
) -> None:
    old_pin = rd.pin
    first = await connect(expected_pin=old_pin)
    new_pin = rd.set_static_key()
    assert new_pin != old_pin
    assert rd.pin == new_pin
    with pytest.raises(PinMismatchError) as err:
        await connect(expected_pin=old_pin)
    assert str(err.value) == new_pin
    assert (await first.recv())["type"] == "queue_status"  # the open session is unaffected


async def test_refuse_intent_and_response_extra(
    connect: Connect, rd: ReceiverDouble, paired: Offloader
) -> None:
    rd.faults.refuse_intent["peer_link"] = ("rejected", "bad_intent")
    rd.faults.response_extra = {"esphome_version": 5, "ha_addon": "yes"}
    link = await connect()
    assert link.response["intent_response"] == "rejected"
    assert link.response["reason"] == "bad_intent"
    assert (link.response["esphome_version"], link.response["ha_addon"]) == (5, "yes")


async def test_text_frame_as_msg1_drops_the_connection(
    http: aiohttp.ClientSession, rd: ReceiverDouble
) -> None:
    async with http.ws_connect(rd.ws_url) as ws:
        await ws.send_str('{"intent":"preview"}')
        msg = await ws.receive(timeout=5)
        assert msg.type is aiohttp.WSMsgType.CLOSE
    assert rd.connections[0].msg1 is None


@pytest.mark.parametrize(
    ("fault", "client_error", "msg3_received"),
    [
        (HandshakeFault.CLOSE_AFTER_MSG1, ClosedError, False),
        (HandshakeFault.STALL_AFTER_MSG1, TimeoutError, False),
        (HandshakeFault.GARBAGE_MSG2, InvalidTag, False),
        (HandshakeFault.CLOSE_AFTER_MSG3, ClosedError, True),
        (HandshakeFault.STALL_AFTER_MSG3, TimeoutError, True),
        (HandshakeFault.GARBAGE_RESPONSE, NoiseInvalidMessage, True),
    ],
)
async def test_handshake_faults(
    connect: Connect,
    rd: ReceiverDouble,
    paired: Offloader,
    fault: HandshakeFault,
    client_error: type[Exception],
    msg3_received: bool,
) -> None:
    rd.faults.handshake = fault
    with pytest.raises(client_error):
        await connect(timeout=0.2)
    assert rd.connections[0].msg3_received is msg3_received
    await rd.wait_for(rd.connections[0].closed.is_set)


async def test_stop_ends_a_pending_long_poll(
    http: aiohttp.ClientSession, offloader: Offloader
) -> None:
    async with ReceiverDouble() as rd:
        rd.add_peer(offloader.dashboard_id, offloader.pin, approved=False)
        poll = asyncio.create_task(
            RawInitiator.open(http, rd.ws_url, offloader, intent="pair_status")
        )
        await rd.wait_for(lambda: rd.connection_count == 1 and rd.connections[0].msg3_received)
        await rd.stop()
        with pytest.raises(ClosedError):
            await poll
        assert rd.connections[0].response is None


async def test_pending_then_approved_then_session(
    connect: Connect, rd: ReceiverDouble, offloader: Offloader
) -> None:
    rd.open_pairing_window()
    first = await connect(intent="pair_request", msg3=_msg3(offloader, label_auto=True))
    assert first.response["intent_response"] == "pending"
    assert rd.peers[offloader.dashboard_id].label_auto is True
    link = await connect()
    assert (link.response["intent_response"], link.response["reason"]) == (
        "pending",
        "pending_not_approved",
    )
    rd.approve(offloader.dashboard_id)
    rd.close_pairing_window()  # an APPROVED row survives the window and re-pairs at once
    again = await connect(intent="pair_request")
    assert again.response["intent_response"] == "approved"
    session_link = await connect()
    assert session_link.response["intent_response"] == "ok"


async def test_response_plaintext_replaces_the_intent_response(
    connect: Connect, rd: ReceiverDouble, paired: Offloader
) -> None:
    rd.faults.response_plaintext = b'{"intent_response" : "ok", "n": 1}'
    link = await connect()
    assert link.response == {"intent_response": "ok", "n": 1}
    assert await link.recv_until_closed() == []  # no session behind it
    assert rd.sessions == {}
