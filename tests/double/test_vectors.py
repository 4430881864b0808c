"""The double reproduces the byte-exact transcripts of docs/protocol.md §10.1 and §10.2."""

from __future__ import annotations

import aiohttp

from tests.double.initiator import Offloader, RawInitiator
from tests.support.receiver_double import ReceiverDouble


def _hex(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


OFFLOADER_STATIC = _hex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
OFFLOADER_EPHEMERAL = _hex("202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f")
RECEIVER_STATIC = _hex("404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f")
RECEIVER_EPHEMERAL = _hex("606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f")
OFFLOADER_PIN = "eedd883da0a9451593dc0a38e583fb770fa27dbbed209c20404e075e68c4f0c9"
RECEIVER_PIN = "67ca2ffd6fe9efab3d76e37c34990a5a33edc52062f0ecbd0938acc91af7a425"
DASHBOARD_ID = "q0Lk7Zb2c9xWm4Rr1Tt8Yy3Uu6Ii5Oo0"
MSG3_PAYLOAD = (
    b'{"dashboard_id":"q0Lk7Zb2c9xWm4Rr1Tt8Yy3Uu6Ii5Oo0",'
    b'"friendly_name":"ha-test","ha_addon":false}'
)

PEER_LINK_MSG1 = _hex("""
    358072d6365880d1aeea329adf9121383851ed21a28e3b75e965d0d2cd166254
    7b22696e74656e74223a22706565725f6c696e6b227d""")
PEER_LINK_MSG2 = _hex("""
    675dd574ed7789310b3d2e7681f3790b466c773b1521fecf36577958371ea52f
    7e1866de56d6c9b805d589b5e65bd14858f21fba6e576ce64993fbf55eb00457
    982a9d43913b169ffad3c9fd51e4e9b85ccf2cbd8680b09b8f395b86106e6a17""")
PEER_LINK_MSG3 = _hex("""
    1dc00df062a51249321a8f8349c312567dc00ed837b5fc3fa4c72162d39a4973
    0da77e533af8ae92f218e274f4b7978cbde641a2052cb739ad83ad9816aaacbf
    dc3af76a5a826406c20b183d2c08ed27d1849239c58374ee05f6fb99542a5abe
    8dd30ddf00ae057fec19921d2ad9c9c2df57c8d63b5bb61435b138fb66c68fd4
    eb0ffbc1c167eaaae052a759fa25cde597c3d05ae5666ecebf61ca9e3016""")
RESPONSE_FRAME = _hex("""
    40b3bb3cd1126047ed55a189cb3613a6c7b26f7f7a53f86e7ac436230708305995147fa3fdcc69299aebefc7b52ef659
    4309b2f2973d1719398da397128b10ec6d3edd731de649e8483cee567578b145bd2541c3408e52fa36008973782d450c
    6329a8d2cb945e20ebfc37dc19e37bef7dbb77d6916aca82c0ee7dbd5d1f166c34932c1c8b91739938504cc9c9e564c6
    55e4711f2228fcc40fcc3af92fb15a6409bd285dd99b7d5d830ef9c6db9e1915fd86e5""")
QUEUE_STATUS_FRAME = _hex("""
    fc07a9e7459ae7f3d12f7ed5b3d1fbf51d382a7507ad5b02c3820e9eb7d4b24b1a0f65731414e36880c11965dccf05c2
    476fdd136e51e3b3ed5871cc181936cda1b987c4d6648576e0888216d6c56da964eb1b""")
PING_FRAME = _hex(
    "e592885b6a5a14675c7f3727519af7d5f56ffde6e918a5b8e43edb1b6244958313cf55e4e85876cba2"
)
PREVIEW_MSG2 = _hex("""
    675dd574ed7789310b3d2e7681f3790b466c773b1521fecf36577958371ea52f7e1866de56d6c9b805d589b5e65bd148
    58f21fba6e576ce64993fbf55eb00457b3d8ebf66262dd2bf52398bc416a6a9a3a489be5668b8ebe136c64dc3cc88b3f""")
PREVIEW_MSG3 = _hex("""
    1dc00df062a51249321a8f8349c312567dc00ed837b5fc3fa4c72162d39a497342de95fca755366650ddaae469e95c4c
    2c9d164b779b84d14d0a2ae08943b335""")


def _vector_double() -> ReceiverDouble:
    return ReceiverDouble(
        static_private=RECEIVER_STATIC,
        ephemeral_private=RECEIVER_EPHEMERAL,
        friendly_name="build-box",
        esphome_version="2026.5.0",
    )


async def test_peer_link_transcript_is_byte_exact(http: aiohttp.ClientSession) -> None:
    offloader = Offloader(static_private=OFFLOADER_STATIC, dashboard_id=DASHBOARD_ID)
    assert offloader.pin == OFFLOADER_PIN
    async with _vector_double() as rd:
        assert rd.pin == RECEIVER_PIN
        rd.add_peer(DASHBOARD_ID, OFFLOADER_PIN)
        link = await RawInitiator.open(
            http,
            rd.ws_url,
            offloader,
            msg3=MSG3_PAYLOAD,
            ephemeral_private=OFFLOADER_EPHEMERAL,
            expected_pin=RECEIVER_PIN,
        )
        assert link.transcript.msg1 == PEER_LINK_MSG1  # our initiator reproduces §10.1 too
        assert link.transcript.msg2 == PEER_LINK_MSG2
        assert link.transcript.msg3 == PEER_LINK_MSG3
        assert link.transcript.response == RESPONSE_FRAME
        queue_status = await link.recv_raw()
        assert queue_status == QUEUE_STATUS_FRAME
        assert link.noise.decrypt(queue_status) == (
            b'{"type":"queue_status","idle":true,"running":false,"queue_depth":0}'
        )
        await link.send({"type": "ping", "nonce": 1})
        session = await rd.wait_session(DASHBOARD_ID)
        assert await session.wait_received("ping") == {"type": "ping", "nonce": 1}
        assert await link.recv() == {"type": "pong", "nonce": 1}
        assert rd.connections[0].offloader_pin == OFFLOADER_PIN
        assert rd.msg3_payloads == [
            {"dashboard_id": DASHBOARD_ID, "friendly_name": "ha-test", "ha_addon": False}
        ]
        await link.close()


async def test_initiator_ping_frame_matches_vector(http: aiohttp.ClientSession) -> None:
    """Cross-check of the §10.1 ping bytes: the double decrypts exactly that frame."""
    offloader = Offloader(static_private=OFFLOADER_STATIC, dashboard_id=DASHBOARD_ID)
    async with _vector_double() as rd:
        rd.add_peer(DASHBOARD_ID, OFFLOADER_PIN)
        link = await RawInitiator.open(
            http, rd.ws_url, offloader, msg3=MSG3_PAYLOAD, ephemeral_private=OFFLOADER_EPHEMERAL
        )
        await link.ws.send_bytes(PING_FRAME)
        assert await link.recv_type("pong") == {"type": "pong", "nonce": 1}
        await link.close()


async def test_preview_transcript_is_byte_exact(http: aiohttp.ClientSession) -> None:
    offloader = Offloader(static_private=OFFLOADER_STATIC, dashboard_id=DASHBOARD_ID)
    async with _vector_double() as rd:
        link = await RawInitiator.open(
            http, rd.ws_url, offloader, intent="preview", ephemeral_private=OFFLOADER_EPHEMERAL
        )
        assert link.transcript.msg2 == PREVIEW_MSG2
        assert link.transcript.msg3 == PREVIEW_MSG3
        assert link.response == {
            "intent_response": "ok",
            "esphome_version": "2026.5.0",
            "auto_provision_supported": True,
            "reset_build_env_supported": True,
            "friendly_name": "build-box",
            "ha_addon": False,
        }
        assert await link.recv_until_closed() == []
