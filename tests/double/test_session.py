"""The long-lived session: heartbeat, terminate reasons, malformed frames, injections."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from tests.double.conftest import Connect
from tests.double.initiator import Offloader, RawInitiator
from tests.support.receiver_double import (
    APP_FRAME_MAX_BYTES,
    ReceiverDouble,
    encode_json,
)


@pytest.fixture
async def fast_rd() -> AsyncIterator[ReceiverDouble]:
    async with ReceiverDouble(ping_interval=0.05, liveness_timeout=0.3) as double:
        yield double


async def _open(http: aiohttp.ClientSession, rd: ReceiverDouble, who: Offloader) -> RawInitiator:
    rd.add_peer(who.dashboard_id, who.pin)
    link = await RawInitiator.open(http, rd.ws_url, who)
    assert link.response["intent_response"] == "ok"
    return link


async def test_initial_queue_status_then_pong_echoes_nonce_verbatim(
    connect: Connect, rd: ReceiverDouble, paired: Offloader
) -> None:
    link = await connect()
    assert await link.recv() == {
        "type": "queue_status",
        "idle": True,
        "running": False,
        "queue_depth": 0,
    }
    for nonce in (42, "abc", 1.5):
        await link.send({"type": "ping", "nonce": nonce})
        assert await link.recv() == {"type": "pong", "nonce": nonce}
    session = rd.session()
    assert [f["nonce"] for f in session.record.received_of("ping")] == [42, "abc", 1.5]


async def test_double_pings_and_survives_while_client_answers(
    http: aiohttp.ClientSession, fast_rd: ReceiverDouble, offloader: Offloader
) -> None:
    link = await _open(http, fast_rd, offloader)
    nonces = []
    for _ in range(8):  # 8 x 50 ms > the 300 ms liveness window
        ping = await link.recv_type("ping")
        nonces.append(ping["nonce"])
        await link.send({"type": "pong", "nonce": ping["nonce"]})
    assert nonces == list(range(1, 9))
    assert fast_rd.session().record.terminate_sent is None
    await link.close()


async def test_silent_client_gets_heartbeat_timeout(
    http: aiohttp.ClientSession, fast_rd: ReceiverDouble, offloader: Offloader
) -> None:
    link = await _open(http, fast_rd, offloader)
    frames = await link.recv_until_closed()
    assert frames[-1] == {"type": "terminate", "reason": "heartbeat_timeout"}
    assert {f["type"] for f in frames[:-1]} <= {"queue_status", "ping"}


async def test_ignore_pings_fault(
    http: aiohttp.ClientSession, fast_rd: ReceiverDouble, offloader: Offloader
) -> None:
    fast_rd.faults.ignore_pings = True
    link = await _open(http, fast_rd, offloader)
    await link.send({"type": "ping", "nonce": 7})
    await fast_rd.session().wait_received("ping")
    await link.recv_type("ping")
    second = await link.recv_type("ping")  # sent >= one interval after our ping arrived
    assert second["nonce"] == 2
    assert all(f["type"] != "pong" for f in link.seen)
    await link.close()


async def test_second_session_supersedes_the_first(
    connect: Connect, rd: ReceiverDouble, paired: Offloader
) -> None:
    first = await connect()
    first_session = await rd.wait_session()
    second = await connect()
    assert await first.recv_until_closed() == [
        {"type": "queue_status", "idle": True, "running": False, "queue_depth": 0},
        {"type": "terminate", "reason": "superseded"},
    ]
    assert (await second.recv())["type"] == "queue_status"
    await first_session.wait_closed()
    assert rd.session() is not first_session
    assert first_session.record.terminate_sent == "superseded"


async def test_client_terminate_is_recorded(
    connect: Connect, rd: ReceiverDouble, paired: Offloader
) -> None:
    link = await connect()
    session = await rd.wait_session()
    await link.send({"type": "terminate", "reason": "client_stopped"})
    await link.close()  # the terminating side closes; no echo comes back
    await session.wait_closed()
    assert session.record.terminate_received == "client_stopped"
    assert session.record.terminate_sent is None
    assert rd.sessions == {}


async def test_unknown_types_are_ignored(
    connect: Connect, rd: ReceiverDouble, paired: Offloader
) -> None:
    link = await connect()
    await link.send({"type": "from_the_future", "x": 1})
    await link.send({"no_type": True})
    await link.send({"type": "ping", "nonce": 3})
    assert await link.recv_type("pong") == {"type": "pong", "nonce": 3}


async def test_frame_of_exactly_the_cap_is_accepted(
    connect: Connect, rd: ReceiverDouble, paired: Offloader
) -> None:
    link = await connect()
    empty = len(encode_json({"type": "padding", "pad": ""}))
    pad = "x" * (APP_FRAME_MAX_BYTES - 16 - empty)
    await link.send({"type": "padding", "pad": pad})
    await link.send({"type": "ping", "nonce": 1})
    assert await link.recv_type("pong") == {"type": "pong", "nonce": 1}


async def _text(link: RawInitiator) -> None:
    await link.ws.send_str('{"type":"ping","nonce":1}')


async def _undecryptable(link: RawInitiator) -> None:
    await link.ws.send_bytes(b"\x00" * 40)


async def _oversized(link: RawInitiator) -> None:
    empty = len(encode_json({"type": "padding", "pad": ""}))
    await link.send({"type": "padding", "pad": "x" * (APP_FRAME_MAX_BYTES + 1 - 16 - empty)})


async def _not_json(link: RawInitiator) -> None:
    await link.send_plaintext(b"\xffgarbage")


async def _json_array(link: RawInitiator) -> None:
    await link.send_plaintext(b'[{"type":"ping","nonce":1}]')


async def _json_string(link: RawInitiator) -> None:
    await link.send_plaintext(b'"ping"')


@pytest.mark.parametrize(
    "send_bad", [_text, _undecryptable, _oversized, _not_json, _json_array, _json_string]
)
async def test_malformed_frames_terminate_the_session(
    connect: Connect,
    rd: ReceiverDouble,
    paired: Offloader,
    send_bad: Callable[[RawInitiator], Awaitable[None]],
) -> None:
    link = await connect()
    await send_bad(link)
    frames = await link.recv_until_closed()
    assert frames[-1] == {"type": "terminate", "reason": "malformed_frame"}
    await rd.wait_for(lambda: rd.sessions == {})


async def test_stop_terminates_with_server_shutting_down(
    http: aiohttp.ClientSession, offloader: Offloader
) -> None:
    async with ReceiverDouble() as rd:
        link = await _open(http, rd, offloader)
        await link.recv()
        stopping = asyncio.create_task(rd.stop())
        assert await link.recv_until_closed() == [
            {"type": "terminate", "reason": "server_shutting_down"}
        ]
        await stopping
        assert link.ws.close_code == aiohttp.WSCloseCode.GOING_AWAY
        assert rd.shutting_down


async def test_injected_text_frame(connect: Connect, rd: ReceiverDouble, paired: Offloader) -> None:
    link = await connect()
    await link.recv()
    await rd.session().send_text("hello")
    msg = await link.ws.receive(timeout=5)
    assert (msg.type, msg.data) == (aiohttp.WSMsgType.TEXT, "hello")


async def test_injected_plaintexts_and_wrong_types(
    connect: Connect, rd: ReceiverDouble, paired: Offloader
) -> None:
    link = await connect()
    await link.recv()
    session = rd.session()
    await session.send_plaintext(b"not json")
    await session.send_plaintext(b"[1,2]")
    await session.send_frame(
        {"type": "queue_status", "idle": 1, "running": False, "queue_depth": "3"}
    )
    assert link.noise.decrypt(await link.recv_raw()) == b"not json"
    assert link.noise.decrypt(await link.recv_raw()) == b"[1,2]"
    assert (await link.recv())["queue_depth"] == "3"
    assert session.sent[-1]["idle"] == 1


async def test_injected_raw_and_oversized(
    connect: Connect, rd: ReceiverDouble, paired: Offloader
) -> None:
    link = await connect()
    await link.recv()
    session = rd.session()
    await session.send_raw(b"\x01" * 50)
    assert await link.recv_raw() == b"\x01" * 50
    await session.send_oversized()
    frame = await link.recv_raw()
    assert len(frame) == APP_FRAME_MAX_BYTES + 1
    assert link.noise.decrypt(frame).startswith(b'{"type":"padding"')


@pytest.mark.parametrize("reason", ["heartbeat_timeout", "whatever_reason"])
async def test_injected_terminate_and_drop(
    connect: Connect, rd: ReceiverDouble, paired: Offloader, reason: str
) -> None:
    link = await connect()
    await rd.session().terminate(reason)
    frames = await link.recv_until_closed()
    assert frames[-1] == {"type": "terminate", "reason": reason}
    second = await connect()
    session = await rd.wait_session()
    await session.drop()
    frames = await second.recv_until_closed()
    assert all(f["type"] != "terminate" for f in frames)
    assert session.record.terminate_sent is None


async def test_a_frozen_session_keeps_the_connection_and_says_nothing(
    http: aiohttp.ClientSession, fast_rd: ReceiverDouble, offloader: Offloader
) -> None:
    link = await _open(http, fast_rd, offloader)
    await link.recv_type("queue_status")
    session = fast_rd.session()
    session.freeze()
    await link.send({"type": "ping", "nonce": 1})
    # No pong, no ping of its own and no heartbeat_timeout, although the 0.3 s liveness
    # window passes: a hung process runs nothing.
    with pytest.raises(TimeoutError):
        await link.recv_type("pong", timeout=0.6)  # skips a ping already under way
    assert {f["type"] for f in link.seen} <= {"queue_status", "ping"}
    assert session.frozen
    assert not session.closed
    assert session.record.received_of("ping") == []
    assert session.record.terminate_sent is None
    await session.terminate("superseded")  # a frozen process cannot say goodbye: dropped
    await session.wait_closed()
    assert session.record.terminate_sent is None
