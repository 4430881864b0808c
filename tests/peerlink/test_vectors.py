"""docs/protocol.md §10 test vectors, byte for byte."""

from __future__ import annotations

import hashlib

from noise.connection import Keypair, NoiseConnection
import pytest

from custom_components.esphome_remote_build.peerlink import (
    Identity,
    PinMismatchError,
    ProtocolError,
    SelfLoopbackError,
    format_pin_hex,
    pin_emoji,
    pin_emoji_names,
    pin_sha256_for_pubkey,
)
from custom_components.esphome_remote_build.peerlink.identity import pin_emoji_indices
from custom_components.esphome_remote_build.peerlink.noise import NoiseInitiator
from custom_components.esphome_remote_build.peerlink.submit import num_chunks

H = bytes.fromhex
OFFLOADER_PRIV = H("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
OFFLOADER_EPHEM = H("202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f")
RECEIVER_PIN = "67ca2ffd6fe9efab3d76e37c34990a5a33edc52062f0ecbd0938acc91af7a425"
OFFLOADER_PIN = "eedd883da0a9451593dc0a38e583fb770fa27dbbed209c20404e075e68c4f0c9"
MSG1 = H(
    "358072d6365880d1aeea329adf9121383851ed21a28e3b75e965d0d2cd166254"
    "7b22696e74656e74223a22706565725f6c696e6b227d"
)
MSG2 = H(
    "675dd574ed7789310b3d2e7681f3790b466c773b1521fecf36577958371ea52f"
    "7e1866de56d6c9b805d589b5e65bd14858f21fba6e576ce64993fbf55eb00457"
    "982a9d43913b169ffad3c9fd51e4e9b85ccf2cbd8680b09b8f395b86106e6a17"
)
MSG3_PAYLOAD = (
    b'{"dashboard_id":"q0Lk7Zb2c9xWm4Rr1Tt8Yy3Uu6Ii5Oo0",'
    b'"friendly_name":"ha-test","ha_addon":false}'
)
MSG3 = H(
    "1dc00df062a51249321a8f8349c312567dc00ed837b5fc3fa4c72162d39a4973"
    "0da77e533af8ae92f218e274f4b7978cbde641a2052cb739ad83ad9816aaacbf"
    "dc3af76a5a826406c20b183d2c08ed27d1849239c58374ee05f6fb99542a5abe"
    "8dd30ddf00ae057fec19921d2ad9c9c2df57c8d63b5bb61435b138fb66c68fd4"
    "eb0ffbc1c167eaaae052a759fa25cde597c3d05ae5666ecebf61ca9e3016"
)
RESPONSE = H(
    "40b3bb3cd1126047ed55a189cb3613a6c7b26f7f7a53f86e7ac436230708305995147fa3fdcc69299aebefc7b52ef659"
    "4309b2f2973d1719398da397128b10ec6d3edd731de649e8483cee567578b145bd2541c3408e52fa36008973782d450c"
    "6329a8d2cb945e20ebfc37dc19e37bef7dbb77d6916aca82c0ee7dbd5d1f166c34932c1c8b91739938504cc9c9e564c6"
    "55e4711f2228fcc40fcc3af92fb15a6409bd285dd99b7d5d830ef9c6db9e1915fd86e5"
)
QUEUE_STATUS = H(
    "fc07a9e7459ae7f3d12f7ed5b3d1fbf51d382a7507ad5b02c3820e9eb7d4b24b1a0f65731414e36880c11965dccf05c2"
    "476fdd136e51e3b3ed5871cc181936cda1b987c4d6648576e0888216d6c56da964eb1b"
)
PING = H("e592885b6a5a14675c7f3727519af7d5f56ffde6e918a5b8e43edb1b6244958313cf55e4e85876cba2")

pytestmark = pytest.mark.filterwarnings("ignore:One of ephemeral keypairs")


def _initiator() -> NoiseInitiator:
    return NoiseInitiator(OFFLOADER_PRIV, ephemeral_private_key=OFFLOADER_EPHEM)


def test_peer_link_transcript() -> None:
    noise = _initiator()
    assert noise.message1(b'{"intent":"peer_link"}') == MSG1
    assert noise.read_message2(MSG2, RECEIVER_PIN) == RECEIVER_PIN
    assert noise.message3(MSG3_PAYLOAD) == MSG3
    assert noise.decrypt(RESPONSE) == (
        b'{"intent_response":"ok","esphome_version":"2026.5.0","auto_provision_supported":true,'
        b'"reset_build_env_supported":true,"friendly_name":"build-box","ha_addon":false}'
    )
    assert noise.decrypt(QUEUE_STATUS) == (
        b'{"type":"queue_status","idle":true,"running":false,"queue_depth":0}'
    )
    assert noise.encrypt(b'{"type":"ping","nonce":1}') == PING


def test_preview_transcript() -> None:
    noise = _initiator()
    msg1 = noise.message1(b'{"intent":"preview"}')
    assert msg1.hex() == (
        "358072d6365880d1aeea329adf9121383851ed21a28e3b75e965d0d2cd1662547b22696e74656e74223a22"
        "70726576696577227d"
    )
    msg2 = H(
        "675dd574ed7789310b3d2e7681f3790b466c773b1521fecf36577958371ea52f7e1866de56d6c9b805d589b5"
        "e65bd14858f21fba6e576ce64993fbf55eb00457b3d8ebf66262dd2bf52398bc416a6a9a3a489be5668b8ebe"
        "136c64dc3cc88b3f"
    )
    assert noise.read_message2(msg2, None) == RECEIVER_PIN
    assert noise.message3(b"").hex() == (
        "1dc00df062a51249321a8f8349c312567dc00ed837b5fc3fa4c72162d39a497342de95fca755366650ddaae4"
        "69e95c4c2c9d164b779b84d14d0a2ae08943b335"
    )


def test_pin_mismatch_is_raised_before_msg3() -> None:
    noise = _initiator()
    noise.message1(b'{"intent":"peer_link"}')
    with pytest.raises(PinMismatchError) as info:
        noise.read_message2(MSG2, OFFLOADER_PIN)
    assert info.value.seen == RECEIVER_PIN
    assert info.value.expected == OFFLOADER_PIN
    with pytest.raises(RuntimeError):
        noise.message3(MSG3_PAYLOAD)  # nothing can be produced after a failed check


def test_tampered_msg2_and_frames_are_protocol_errors() -> None:
    noise = _initiator()
    noise.message1(b'{"intent":"peer_link"}')
    with pytest.raises(ProtocolError):
        noise.read_message2(MSG2[:-1] + bytes([MSG2[-1] ^ 1]), RECEIVER_PIN)
    noise = _initiator()
    noise.message1(b'{"intent":"peer_link"}')
    noise.read_message2(MSG2, RECEIVER_PIN)
    noise.message3(MSG3_PAYLOAD)
    with pytest.raises(ProtocolError):
        noise.decrypt(RESPONSE[:-1] + bytes([RESPONSE[-1] ^ 1]))


def test_self_loopback_is_refused() -> None:
    responder = NoiseConnection.from_name(b"Noise_XX_25519_ChaChaPoly_SHA256")
    responder.set_as_responder()
    responder.set_keypair_from_private_bytes(Keypair.STATIC, OFFLOADER_PRIV)
    responder.start_handshake()
    noise = NoiseInitiator(OFFLOADER_PRIV)
    responder.read_message(noise.message1(b"{}"))
    with pytest.raises(SelfLoopbackError):
        noise.read_message2(responder.write_message(b""), None)


@pytest.mark.parametrize(
    ("pin", "indices", "names"),
    [
        (
            RECEIVER_PIN,
            (25, 60, 40, 47, 63, 22, 63),
            "Strawberry, Anchor, Gift, Key, Pin, Fire, Pin",
        ),
        (
            OFFLOADER_PIN,
            (59, 45, 54, 8, 15, 26, 2),
            "Bell, Scissors, Rocket, Panda, Flower, Corn, Lion",
        ),
        (
            pin_sha256_for_pubkey(bytes(32)),
            (25, 38, 33, 58, 43, 31, 33),
            "Strawberry, Hourglass, Glasses, Trumpet, Pencil, Robot, Glasses",
        ),
    ],
)
def test_pin_emoji(pin: str, indices: tuple[int, ...], names: str) -> None:
    assert pin_emoji_indices(pin) == indices
    assert pin_emoji_names(pin) == names


def test_pin_renderings() -> None:
    assert pin_sha256_for_pubkey(bytes(32)) == (
        "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"
    )
    assert format_pin_hex(RECEIVER_PIN) == (
        "67 ca 2f fd 6f e9 ef ab 3d 76 e3 7c 34 99 0a 5a 33 ed c5 20 62 f0 ec bd 09 38 ac c9 1a f7"
        " a4 25"
    )
    assert pin_emoji(RECEIVER_PIN) == (
        "\U0001f353 \u2693\ufe0f \U0001f381 \U0001f511 \U0001f4cc \U0001f525 \U0001f4cc"
    )
    with pytest.raises(ValueError, match="32 bytes"):
        pin_sha256_for_pubkey(b"short")


def test_identity() -> None:
    ident = Identity(OFFLOADER_PRIV, "q0Lk7Zb2c9xWm4Rr1Tt8Yy3Uu6Ii5Oo0")
    assert ident.pin_sha256 == OFFLOADER_PIN
    assert ident.public_key.hex() == (
        "8f40c5adb68f25624ae5b214ea767a6ec94d829d3d7b5e1ad1ba6f3e2138285f"
    )
    assert Identity.from_dict(ident.to_dict()) == ident
    assert OFFLOADER_PRIV.hex() not in repr(ident)  # the private key never shows in logs
    fresh = [Identity.generate() for _ in range(3)]
    assert len({i.dashboard_id for i in fresh}) == 3
    assert len({i.dashboard_id[:8] for i in fresh}) == 3
    assert all(len(i.dashboard_id) == 32 for i in fresh)


@pytest.mark.parametrize(
    ("private_key", "dashboard_id"),
    [
        (b"short", "abc"),
        (OFFLOADER_PRIV, ""),
        (OFFLOADER_PRIV, "bad id!"),
        (OFFLOADER_PRIV, "x" * 65),
    ],
)
def test_identity_validation(private_key: bytes, dashboard_id: str) -> None:
    with pytest.raises(ValueError):
        Identity(private_key, dashboard_id)


@pytest.mark.parametrize(
    ("total", "chunks"), [(1, 1), (32768, 1), (32769, 2), (100000, 4), (1048576, 32)]
)
def test_num_chunks(total: int, chunks: int) -> None:
    assert num_chunks(total) == chunks


def test_sha256_vector() -> None:
    assert hashlib.sha256(bytes(range(256)) * 128).hexdigest() == (
        "e11360251d1173650cdcd20f111d8f1ca2e412f572e8b36a4dc067121c1799b8"
    )
