"""Socket-free pieces: the port table, key decoding, the Noise helper, session edge cases."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
import gzip
import hashlib
import os

from noise.connection import NoiseConnection
import pytest

from custom_components.esphome_remote_build.ota import (
    OTADeviceError,
    OTANetworkError,
    OTATimeoutError,
    OTAType,
    decode_noise_psk,
    default_ota_port,
)
from custom_components.esphome_remote_build.ota.channel import NoiseChannel, StreamChannel
from custom_components.esphome_remote_build.ota.const import ClientFeature
from custom_components.esphome_remote_build.ota.noise import NoiseInitiator, build_prologue
from custom_components.esphome_remote_build.ota.payload import ImageSource
from custom_components.esphome_remote_build.ota.session import SessionOptions, run_session


@pytest.mark.parametrize(
    ("platform", "port"),
    [
        ("esp32", 3232),
        ("ESP32", 3232),
        ("esp32s2", 3232),
        ("esp32s3", 3232),
        ("esp32c3", 3232),
        ("esp32c6", 3232),
        ("esp32h2", 3232),
        ("esp32p4", 3232),
        (" esp8266 ", 8266),
        ("rp2040", 2040),
        ("bk72xx", 8892),
        ("rtl87xx", 8892),
        ("ln882x", 8820),
        ("host", 8082),
    ],
)
def test_default_ota_port(platform: str, port: int) -> None:
    assert default_ota_port(platform) == port


@pytest.mark.parametrize("platform", ["nrf52", "", "esp"])
def test_default_ota_port_unknown_platform(platform: str) -> None:
    with pytest.raises(ValueError, match="no default OTA port"):
        default_ota_port(platform)


def test_decode_noise_psk_accepts_yaml_form_and_raw_bytes() -> None:
    key = os.urandom(32)
    assert decode_noise_psk(f" {base64.b64encode(key).decode()}\n") == key
    assert decode_noise_psk(key) == key


def test_prologue_binds_the_whole_negotiation() -> None:
    features = ClientFeature.COMPRESSION | ClientFeature.EXTENDED_PROTOCOL | ClientFeature.NOISE
    assert build_prologue(2, features, 0x05) == (
        b"NoiseOTAInit" + bytes([0x6C, 0x26, 0xF7, 0x5C, 0x45, 0x00, 0x02, 0x0D, 0x48, 0x05])
    )


def _session_pair() -> tuple[NoiseInitiator, NoiseConnection]:
    psk = os.urandom(32)
    initiator = NoiseInitiator(psk, b"prologue")
    responder = NoiseConnection.from_name(b"Noise_NNpsk0_25519_ChaChaPoly_SHA256")
    responder.set_as_responder()
    responder.set_psks(psk)
    responder.set_prologue(b"prologue")
    responder.start_handshake()
    responder.read_message(initiator.first_message())
    initiator.read_answer(bytes(responder.write_message()))
    return initiator, responder


def test_noise_transport_round_trip_and_corruption() -> None:
    initiator, responder = _session_pair()
    assert responder.decrypt(initiator.encrypt(b"hello")) == b"hello"
    assert initiator.decrypt(responder.encrypt(b"\x41")) == b"\x41"
    tampered = bytearray(responder.encrypt(b"\x42"))
    tampered[0] ^= 1
    with pytest.raises(OTANetworkError, match="corrupted"):
        initiator.decrypt(bytes(tampered))


def test_noise_mac_only_frame_is_refused() -> None:
    initiator, responder = _session_pair()
    with pytest.raises(OTANetworkError, match="empty"):
        initiator.decrypt(responder.encrypt(b""))


async def test_gzip_payload_is_deterministic_and_hashed_as_sent() -> None:
    image = os.urandom(1000) + bytes(5000)
    payload = await ImageSource(image).payload(compress=True)
    assert payload.compressed
    assert gzip.decompress(payload.data) == image
    assert payload.md5_hex == hashlib.md5(payload.data).hexdigest()
    assert (await ImageSource(image).payload(compress=True)).data == payload.data


class FakeChannel:
    """Answers from a fixed byte string; ``send`` fails where ``fails`` says so."""

    def __init__(self, answers: bytes, fails: Callable[[bytes], bool]) -> None:
        self.timeout = 1.0
        self._answers = answers
        self._fails = fails
        self.sent: list[bytes] = []

    async def read_exactly(self, size: int, *, timeout: float | None = None) -> bytes:
        if len(self._answers) < size:
            raise OTANetworkError("the device closed the connection")
        data, self._answers = self._answers[:size], self._answers[size:]
        return data

    async def send(self, data: bytes) -> None:
        self.sent.append(data)
        if self._fails(data):
            raise OTANetworkError("connection reset")


_OPTIONS = SessionOptions(
    password=None, psk=None, ota_type=OTAType.APPLICATION, data_timeout=1.0, progress=None
)
# Version 1, legacy feature ack without compression, no auth, prepare OK, MD5 OK
_V1_UNTIL_DATA = bytes([0x00, 0x01, 0x40, 0x41, 0x42, 0x43])


@pytest.mark.parametrize(
    ("after_failure", "expected"),
    [(b"\x83", OTADeviceError), (b"", OTANetworkError), (b"\x44", OTANetworkError)],
)
async def test_send_failure_surfaces_an_error_byte_the_device_sent(
    after_failure: bytes, expected: type[Exception]
) -> None:
    """espota2 probes for the device's reason after a failed send; so do we."""
    channel = FakeChannel(_V1_UNTIL_DATA + after_failure, lambda data: len(data) == 8192)
    with pytest.raises(expected) as err:
        await run_session(channel, ImageSource(os.urandom(20000)), _OPTIONS)  # type: ignore[arg-type]
    if expected is OTADeviceError:
        assert err.value.code == 0x83  # type: ignore[attr-defined]


async def test_undelivered_final_ack_still_succeeds() -> None:
    image = os.urandom(20000)
    answers = bytes([0x00, 0x02, 0x40, 0x41, 0x42, 0x43, 0x47, 0x47, 0x47, 0x44, 0x45])
    channel = FakeChannel(answers, lambda data: data == b"\x00")
    result = await run_session(channel, ImageSource(image), _OPTIONS)  # type: ignore[arg-type]
    assert channel.sent[-1] == b"\x00"
    assert result.bytes_sent == len(image)
    assert result.version == 2


class _Writer:
    """A StreamWriter stand-in whose drain fails or never finishes."""

    def __init__(self, drain_error: OSError | None) -> None:
        self._drain_error = drain_error

    def write(self, data: bytes) -> None:
        """Accept the bytes."""

    async def drain(self) -> None:
        if self._drain_error is not None:
            raise self._drain_error
        await asyncio.Event().wait()


def _channel(reader: asyncio.StreamReader, drain_error: OSError | None = None) -> StreamChannel:
    return StreamChannel(reader, _Writer(drain_error), 0.05)  # type: ignore[arg-type]


async def test_stream_channel_maps_socket_failures() -> None:
    reader = asyncio.StreamReader()
    reader.set_exception(ConnectionResetError(104, "Connection reset by peer"))
    with pytest.raises(OTANetworkError, match=r"while receiving: .*reset by peer"):
        await _channel(reader).read_exactly(1)
    with pytest.raises(OTANetworkError, match=r"while sending: .*reset by peer"):
        await _channel(asyncio.StreamReader(), BrokenPipeError(32, "reset by peer")).send(b"x")
    with pytest.raises(OTATimeoutError, match=r"did not take data within 0\.05 s"):
        await _channel(asyncio.StreamReader()).send(b"x")


def test_noise_channel_shares_the_connection_timeout() -> None:
    raw = _channel(asyncio.StreamReader())
    channel = NoiseChannel(raw, _session_pair()[0])
    channel.timeout = 7.0
    assert (raw.timeout, channel.timeout) == (7.0, 7.0)
