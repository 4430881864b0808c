"""The device side of ESPHome's native API (port 6053), for the device emulator.

Written from ESPHome 2026.10's firmware (``components/api/api_connection.cpp``,
``api_frame_helper_noise.cpp``, ``api_frame_helper_plaintext.cpp``, ``api_server.cpp``)
and reusing aioesphomeapi's generated protobuf classes and its frame builders, so the
bytes on the wire are exactly what aioesphomeapi and Home Assistant expect. Behaviour
that a client can observe follows the firmware:

* A device with an encryption key speaks Noise only (``Noise_NNpsk0_25519_ChaChaPoly_SHA256``,
  prologue ``"NoiseAPIInit" + len(client hello) + client hello``). A plaintext client gets
  the explicit reject frame ``"Bad indicator byte"``; a wrong key gets
  ``"Handshake MAC failure"``; both then lose the connection.
* A device without a key (but with encryption support compiled in) speaks plaintext, and
  hands a Noise hello over to a Noise session keyed with 32 zero bytes (key provisioning),
  so a client with a real key fails with the MAC failure there too.
* Before ``HelloRequest`` only hello, ping and disconnect are answered; anything else
  closes the connection ("no connection setup"). Password authentication is gone
  (2026.1): ``AuthenticationRequest`` is ignored.
* On shutdown (OTA reboot, deep sleep) the listener closes first, then every client gets a
  ``DisconnectRequest`` and up to a second to hang up, as ``APIServer::on_shutdown`` and
  ``teardown`` do.
* A device without a YAML key accepts ``NoiseEncryptionSetKeyRequest`` (how Home
  Assistant provisions one, over the zero-key Noise session); 100 ms later the new key is
  active and every open session is told to leave and closed.

No pytest and no Home Assistant here.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Callable, Iterable
import contextlib
from dataclasses import dataclass, field
import socket
import struct
import time
from typing import Any, Protocol, Self

from aioesphomeapi import api_pb2 as _api_pb2
from aioesphomeapi._frame_helper.noise import make_noise_packets
from aioesphomeapi._frame_helper.noise_encryption import (
    ESPHOME_NOISE_BACKEND,
    NOISE_PROTOCOL_NAME,
    DecryptCipher,
    EncryptCipher,
)
from aioesphomeapi._frame_helper.packets import make_plain_text_packets
from aioesphomeapi.core import MESSAGE_TYPE_TO_PROTO
from cryptography.exceptions import InvalidTag
from noise.connection import NoiseConnection

#: The generated classes are created at import time; mypy cannot see them.
pb: Any = _api_pb2

API_VERSION_MAJOR = 1
API_VERSION_MINOR = 19
NOISE_PROLOGUE_INIT = b"NoiseAPIInit"
NOISE_INDICATOR = 0x01
PLAINTEXT_INDICATOR = 0x00
NOISE_CHOSEN_PROTO = 0x01
HANDSHAKE_STATUS_OK = 0x00
HANDSHAKE_STATUS_REJECT = 0x01
MAX_HANDSHAKE_SIZE = 128
MAX_MESSAGE_SIZE = 32768
ZERO_PSK = bytes(32)
REJECT_BAD_INDICATOR = "Bad indicator byte"
REJECT_BAD_HANDSHAKE_LEN = "Bad handshake packet len"
REJECT_EMPTY = "Empty handshake message"
REJECT_BAD_ERROR_BYTE = "Bad handshake error byte"
REJECT_MAC_FAILURE = "Handshake MAC failure"
REJECT_HANDSHAKE_ERROR = "Handshake error"
#: ``TEARDOWN_TIMEOUT_REBOOT_MS``: how long a rebooting device waits for clients to leave.
TEARDOWN_TIMEOUT = 1.0

#: Message ids by class (the inverse of aioesphomeapi's table).
MESSAGE_ID: dict[type[Any], int] = {cls: msg_id for msg_id, cls in MESSAGE_TYPE_TO_PROTO.items()}

HELLO_REQUEST = 1
DISCONNECT_REQUEST = 5
DISCONNECT_RESPONSE = 6
PING_REQUEST = 7
PING_RESPONSE = 8
DEVICE_INFO_REQUEST = 9
LIST_ENTITIES_REQUEST = 11
SUBSCRIBE_STATES_REQUEST = 20
GET_TIME_REQUEST = 36
GET_TIME_RESPONSE = 37
NOISE_ENCRYPTION_SET_KEY_REQUEST = 124
DEVICE_CAPABILITIES_REQUEST = 149
#: ``update_noise_psk_``: the new key becomes active this long after it was saved.
KEY_ACTIVATION_DELAY = 0.1
_NO_SETUP_NEEDED = {HELLO_REQUEST, DISCONNECT_REQUEST, PING_REQUEST}


class ProtoMessage(Protocol):
    """What we use of a generated protobuf message."""

    def SerializeToString(self) -> bytes: ...  # noqa: N802 - protobuf's name


def message_id(message: ProtoMessage) -> int:
    """The native-API message id of *message*."""
    return MESSAGE_ID[type(message)]


def message_name(msg_type: int) -> str:
    """The protobuf class name of a message id (``"unknown_<id>"`` if none)."""
    cls = MESSAGE_TYPE_TO_PROTO.get(msg_type)
    return f"unknown_{msg_type}" if cls is None else str(cls.__name__)


def fnv1_hash(text: str) -> int:
    """ESPHome's 32-bit FNV-1 (multiply, then XOR): the entity key of an object id."""
    value = 2166136261
    for char in text:
        value = (value * 16777619) & 0xFFFFFFFF
        value ^= ord(char)
    return value


def encode_varuint(value: int) -> bytes:
    """Protobuf varint (the plaintext frame's size and type fields)."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


# --------------------------------------------------------------------------- what it serves


@dataclass
class DeviceInfo:
    """The fields of ``DeviceInfoResponse`` the emulator fills in (and the hello's name)."""

    name: str
    friendly_name: str
    #: Upper case with colons, as the firmware's ``format_mac_addr_upper``.
    mac_address: str
    esphome_version: str
    #: ``ESPHOME_BUILD_TIME_STR``: ``%Y-%m-%d %H:%M:%S %z`` of the build.
    compilation_time: str
    model: str = "esp32dev"
    manufacturer: str = "Espressif"
    project_name: str = ""
    project_version: str = ""
    has_deep_sleep: bool = False
    #: ``USE_API_NOISE`` compiled in (true unless the YAML turned encryption support off).
    api_encryption_supported: bool = True
    #: No key from YAML and none provisioned: a key can be set over zero-PSK Noise.
    api_encryption_provisionable: bool = False
    webserver_port: int = 0
    suggested_area: str = ""

    @property
    def mac_hex(self) -> str:
        """Lower case without separators (Noise server hello, mDNS ``mac``)."""
        return self.mac_address.replace(":", "").lower()

    def response(self) -> ProtoMessage:
        """The ``DeviceInfoResponse`` message."""
        msg: ProtoMessage = pb.DeviceInfoResponse(
            name=self.name,
            friendly_name=self.friendly_name,
            mac_address=self.mac_address,
            esphome_version=self.esphome_version,
            compilation_time=self.compilation_time,
            model=self.model,
            manufacturer=self.manufacturer,
            project_name=self.project_name,
            project_version=self.project_version,
            has_deep_sleep=self.has_deep_sleep,
            api_encryption_supported=self.api_encryption_supported,
            api_encryption_provisionable=self.api_encryption_provisionable,
            webserver_port=self.webserver_port,
            suggested_area=self.suggested_area,
        )
        return msg


@dataclass
class Sensor:
    """A numeric sensor entity."""

    object_id: str
    name: str
    state: float | None = None
    unit_of_measurement: str = ""
    device_class: str = ""
    state_class: int = 0
    accuracy_decimals: int = 0
    entity_category: int = 0
    icon: str = ""

    @property
    def key(self) -> int:
        return fnv1_hash(self.object_id)

    def info(self) -> ProtoMessage:
        msg: ProtoMessage = pb.ListEntitiesSensorResponse(
            object_id=self.object_id,
            key=self.key,
            name=self.name,
            unit_of_measurement=self.unit_of_measurement,
            device_class=self.device_class,
            state_class=self.state_class,
            accuracy_decimals=self.accuracy_decimals,
            entity_category=self.entity_category,
            icon=self.icon,
        )
        return msg

    def state_message(self) -> ProtoMessage:
        missing = self.state is None
        msg: ProtoMessage = pb.SensorStateResponse(
            key=self.key, state=0.0 if self.state is None else self.state, missing_state=missing
        )
        return msg


@dataclass
class BinarySensor:
    """An on/off sensor entity."""

    object_id: str
    name: str
    state: bool | None = None
    device_class: str = ""
    entity_category: int = 0
    is_status_binary_sensor: bool = False

    @property
    def key(self) -> int:
        return fnv1_hash(self.object_id)

    def info(self) -> ProtoMessage:
        msg: ProtoMessage = pb.ListEntitiesBinarySensorResponse(
            object_id=self.object_id,
            key=self.key,
            name=self.name,
            device_class=self.device_class,
            entity_category=self.entity_category,
            is_status_binary_sensor=self.is_status_binary_sensor,
        )
        return msg

    def state_message(self) -> ProtoMessage:
        msg: ProtoMessage = pb.BinarySensorStateResponse(
            key=self.key, state=bool(self.state), missing_state=self.state is None
        )
        return msg


type Entity = Sensor | BinarySensor


@dataclass
class APIConfig:
    """What the API server needs to know of the device, read at every connection."""

    info: DeviceInfo
    entities: list[Entity] = field(default_factory=list)
    #: The 32-byte API encryption key; ``None``: plaintext (and zero-PSK provisioning).
    psk: bytes | None = None
    #: Send a ``GetTimeRequest`` after the hello (``time: - platform: homeassistant``).
    request_time: bool = False
    #: Store a key set over the API (``None`` clears it) and return whether it was taken;
    #: ``None`` here: the key comes from YAML and cannot be changed.
    set_key: Callable[[bytes | None], bool] | None = None


# --------------------------------------------------------------------------- records


@dataclass
class APIConnectionRecord:
    """What the emulated device saw on one API connection."""

    index: int
    encrypted: bool = False
    #: Noise with the all-zero key, after a Noise hello to a device without a key.
    provisioning: bool = False
    client_hello: bytes | None = None
    #: The reason sent in an explicit handshake reject frame.
    rejected: str | None = None
    client_info: str | None = None
    client_api_version: tuple[int, int] | None = None
    #: Names of every message received after the handshake, in order.
    received: list[str] = field(default_factory=list)
    #: Names of every message sent after the handshake, in order.
    sent: list[str] = field(default_factory=list)
    time_response: ProtoMessage | None = None
    #: The answer to a ``NoiseEncryptionSetKeyRequest`` on this connection.
    key_set: bool | None = None
    #: Who ended it: "client" (disconnect request or hang-up), "device", "error".
    closed_by: str | None = None
    violation: str | None = None


class _SessionEndError(Exception):
    """The connection ends here."""


# --------------------------------------------------------------------------- framing


class _Framing(Protocol):
    async def read_message(self) -> tuple[int, bytes]: ...

    def write_messages(self, messages: Iterable[tuple[int, bytes]]) -> None: ...


class _Stream:
    """Socket reads that end the session on EOF, plus the raw writer."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, prefix: bytes = b""
    ) -> None:
        self.reader = reader
        self.writer = writer
        self._prefix = prefix

    async def read(self, size: int) -> bytes:
        head, self._prefix = self._prefix[:size], self._prefix[size:]
        if len(head) == size:
            return head
        try:
            return head + await self.reader.readexactly(size - len(head))
        except (asyncio.IncompleteReadError, OSError):
            raise _SessionEndError from None

    def write(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)


class _PlaintextFraming:
    """``0x00``, varint size, varint type, payload."""

    def __init__(self, stream: _Stream) -> None:
        self._stream = stream

    async def _varuint(self) -> int:
        value = shift = 0
        for _ in range(4):
            byte = (await self._stream.read(1))[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
        raise _SessionEndError("varint too long")

    async def read_message(self) -> tuple[int, bytes]:
        indicator = (await self._stream.read(1))[0]
        if indicator != PLAINTEXT_INDICATOR:
            raise _SessionEndError(f"bad indicator byte {indicator}")
        size = await self._varuint()
        if size > MAX_MESSAGE_SIZE:
            raise _SessionEndError(f"message of {size} bytes")
        msg_type = await self._varuint()
        return msg_type, await self._stream.read(size) if size else b""

    def write_messages(self, messages: Iterable[tuple[int, bytes]]) -> None:
        self._stream.write(b"".join(make_plain_text_packets(list(messages))))


class _NoiseFraming:
    """``0x01``, 16-bit size, ChaCha20-Poly1305(type16 + len16 + payload)."""

    def __init__(self, stream: _Stream, encrypt: EncryptCipher, decrypt: DecryptCipher) -> None:
        self._stream = stream
        self._encrypt = encrypt
        self._decrypt = decrypt

    async def read_message(self) -> tuple[int, bytes]:
        frame = await read_noise_frame(self._stream, MAX_MESSAGE_SIZE)
        try:
            message = self._decrypt.decrypt(frame)
        except InvalidTag:
            raise _SessionEndError("decrypt failed") from None
        if len(message) < 4:
            raise _SessionEndError("data packet too short")
        msg_type, size = struct.unpack(">HH", message[:4])
        if size > len(message) - 4:
            raise _SessionEndError("data length beyond the frame")
        return msg_type, message[4 : 4 + size]

    def write_messages(self, messages: Iterable[tuple[int, bytes]]) -> None:
        self._stream.write(b"".join(make_noise_packets(list(messages), self._encrypt)))


async def read_noise_frame(stream: _Stream, limit: int) -> bytes:
    """One Noise frame's body (``try_read_frame_``)."""
    header = await stream.read(3)
    if header[0] != NOISE_INDICATOR:
        raise _BadIndicatorError
    size = int.from_bytes(header[1:], "big")
    if size > limit:
        raise _BadLengthError
    return await stream.read(size) if size else b""


class _BadIndicatorError(_SessionEndError):
    pass


class _BadLengthError(_SessionEndError):
    pass


def noise_frame(payload: bytes) -> bytes:
    """Indicator, 16-bit big-endian size, payload."""
    return bytes([NOISE_INDICATOR]) + len(payload).to_bytes(2, "big") + payload


async def _noise_handshake(
    stream: _Stream, psk: bytes, info: DeviceInfo, record: APIConnectionRecord
) -> _NoiseFraming:
    """The responder's side: client hello, server hello, NNpsk0 exchange."""

    def reject(reason: str) -> _SessionEndError:
        record.rejected = reason
        stream.write(noise_frame(bytes([HANDSHAKE_STATUS_REJECT]) + reason.encode()))
        return _SessionEndError(reason)

    try:
        hello = await read_noise_frame(stream, MAX_HANDSHAKE_SIZE)
    except _BadIndicatorError:
        raise reject(REJECT_BAD_INDICATOR) from None
    except _BadLengthError:
        raise reject(REJECT_BAD_HANDSHAKE_LEN) from None
    record.client_hello = hello
    prologue = NOISE_PROLOGUE_INIT + len(hello).to_bytes(2, "big") + hello
    server_hello = (
        bytes([NOISE_CHOSEN_PROTO]) + info.name.encode() + b"\x00" + info.mac_hex.encode() + b"\x00"
    )
    stream.write(noise_frame(server_hello))
    proto = NoiseConnection.from_name(NOISE_PROTOCOL_NAME, backend=ESPHOME_NOISE_BACKEND)
    proto.set_as_responder()
    proto.set_psks(psk)
    proto.set_prologue(prologue)
    proto.start_handshake()
    try:
        message = await read_noise_frame(stream, MAX_HANDSHAKE_SIZE)
    except _BadIndicatorError:
        raise reject(REJECT_BAD_INDICATOR) from None
    except _BadLengthError:
        raise reject(REJECT_BAD_HANDSHAKE_LEN) from None
    if not message:
        raise reject(REJECT_EMPTY)
    if message[0] != HANDSHAKE_STATUS_OK:
        raise reject(REJECT_BAD_ERROR_BYTE)
    try:
        proto.read_message(message[1:])
    except InvalidTag:
        raise reject(REJECT_MAC_FAILURE) from None
    except Exception:  # noise-c reports every other failure the same way
        raise reject(REJECT_HANDSHAKE_ERROR) from None
    stream.write(noise_frame(bytes([HANDSHAKE_STATUS_OK]) + bytes(proto.write_message())))
    state = proto.noise_protocol
    record.encrypted = True
    return _NoiseFraming(
        stream, EncryptCipher(state.cipher_state_encrypt), DecryptCipher(state.cipher_state_decrypt)
    )


# --------------------------------------------------------------------------- connections


class _Connection:
    """One client after the transport is set up: the message loop."""

    def __init__(
        self,
        server: NativeAPIServer,
        framing: _Framing,
        writer: asyncio.StreamWriter,
        record: APIConnectionRecord,
    ) -> None:
        self.server = server
        self.framing = framing
        self.writer = writer
        self.record = record
        self.setup_done = False
        self.subscribed = False
        self.removing = False

    def send(self, *messages: ProtoMessage) -> None:
        if self.writer.is_closing():
            return
        self.record.sent.extend(type(m).__name__ for m in messages)
        self.framing.write_messages((message_id(m), m.SerializeToString()) for m in messages)

    async def run(self) -> None:
        while not self.removing:
            msg_type, payload = await self.framing.read_message()
            self.record.received.append(message_name(msg_type))
            if msg_type not in _NO_SETUP_NEEDED and not self.setup_done:
                self.record.violation = f"{message_name(msg_type)} before HelloRequest"
                raise _SessionEndError("no connection setup")
            await self.handle(msg_type, payload)
            await self.writer.drain()

    async def handle(self, msg_type: int, payload: bytes) -> None:  # noqa: PLR0911
        config = self.server.config()
        if msg_type == HELLO_REQUEST:
            hello = pb.HelloRequest()
            hello.ParseFromString(payload)
            self.record.client_info = hello.client_info
            self.record.client_api_version = (hello.api_version_major, hello.api_version_minor)
            self.setup_done = True
            self.send(
                pb.HelloResponse(
                    api_version_major=API_VERSION_MAJOR,
                    api_version_minor=API_VERSION_MINOR,
                    server_info=config.info.esphome_version,
                    name=config.info.name,
                )
            )
            if config.request_time:
                self.send(pb.GetTimeRequest())
            await self.server.notify()
            return
        if msg_type == DISCONNECT_REQUEST:
            self.send(pb.DisconnectResponse())
            self.record.closed_by = "client"
            self.removing = True
            return
        if msg_type == DISCONNECT_RESPONSE:
            self.record.closed_by = self.record.closed_by or "device"
            self.removing = True
            return
        if msg_type == PING_REQUEST:
            self.send(pb.PingResponse())
            return
        if msg_type == DEVICE_INFO_REQUEST:
            self.send(config.info.response())
            return
        if msg_type == LIST_ENTITIES_REQUEST:
            self.send(*(entity.info() for entity in config.entities), pb.ListEntitiesDoneResponse())
            return
        if msg_type == SUBSCRIBE_STATES_REQUEST:
            self.subscribed = True
            states = [e.state_message() for e in config.entities if e.state is not None]
            if states:
                self.send(*states)
            return
        if msg_type == GET_TIME_REQUEST:
            self.send(pb.GetTimeResponse(epoch_seconds=int(time.time())))
            return
        if msg_type == GET_TIME_RESPONSE:
            response = pb.GetTimeResponse()
            response.ParseFromString(payload)
            self.record.time_response = response
            return
        if msg_type == DEVICE_CAPABILITIES_REQUEST:
            self.send(pb.DeviceCapabilitiesResponse())
            return
        if msg_type == NOISE_ENCRYPTION_SET_KEY_REQUEST and config.info.api_encryption_supported:
            request = pb.NoiseEncryptionSetKeyRequest()
            request.ParseFromString(payload)
            success = _set_key(config, bytes(request.key))
            self.record.key_set = success
            self.send(pb.NoiseEncryptionSetKeyResponse(success=success))
            if success:
                self.server.schedule_key_activation()
            return
        # Everything else (AuthenticationRequest, log/service/state subscriptions...) is
        # accepted and ignored by a device without the matching components.


class NativeAPIServer:
    """An asyncio native-API server answering like an ESPHome 2026.10 device."""

    def __init__(
        self,
        config: Callable[[], APIConfig],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.config = config
        self.host = host
        self._requested_port = port
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.records: list[APIConnectionRecord] = []
        self._changed = asyncio.Condition()

    @property
    def port(self) -> int:
        """The bound port (the OS picks one for port 0); kept for restarts."""
        if self._server is None:
            assert self._requested_port, "start() first"
            return self._requested_port
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def serving(self) -> bool:
        return self._server is not None

    @property
    def clients(self) -> list[APIConnectionRecord]:
        """Records of the connections that finished the hello and are still open."""
        return [c.record for c in self._connections if c.setup_done and not c.removing]

    async def start(self) -> None:
        """Listen (on the same port as before after a restart)."""
        self._server = await start_server_retrying(self._handle, self.host, self._requested_port)
        self._requested_port = self.port

    async def stop(self, *, clean: bool = True, grace: float = TEARDOWN_TIMEOUT) -> None:
        """Shut down like the firmware: stop listening, ask clients to leave, then drop them.

        ``clean=False`` drops everything at once, like a power cut or a crash.
        """
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()
        if clean:
            for connection in list(self._connections):
                if connection.setup_done:
                    connection.send(pb.DisconnectRequest())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace), self._changed:
                    await self._changed.wait_for(lambda: not self._connections)
        for connection in list(self._connections):
            connection.record.closed_by = connection.record.closed_by or "device"
            _abort(connection.writer)
        server.abort_clients()
        for task in [*self._handlers, *self._tasks]:
            task.cancel()
        await asyncio.gather(*self._handlers, *self._tasks, return_exceptions=True)
        await server.wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop(clean=False)

    def schedule_key_activation(self) -> None:
        """After ``KEY_ACTIVATION_DELAY``: tell every client to leave, then close them."""
        task = asyncio.get_running_loop().create_task(self._activate_key())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _activate_key(self) -> None:
        await asyncio.sleep(KEY_ACTIVATION_DELAY)
        for connection in list(self._connections):
            connection.send(pb.DisconnectRequest())
            connection.record.closed_by = connection.record.closed_by or "device"
            connection.removing = True
            connection.writer.close()  # next_close: the socket goes right after the request

    def publish(self, entity: Entity) -> None:
        """Send *entity*'s state to every client that subscribed to states."""
        for connection in self._connections:
            if connection.subscribed and entity.state is not None:
                connection.send(entity.state_message())

    async def wait_for_clients(self, count: int = 1, timeout: float = 10.0) -> None:
        """Wait until at least *count* clients finished their hello."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(self.clients) >= count)

    async def notify(self) -> None:
        """Wake everything waiting on this server's connections."""
        async with self._changed:
            self._changed.notify_all()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        record = APIConnectionRecord(index=len(self.records))
        self.records.append(record)
        connection: _Connection | None = None
        try:
            config = self.config()
            framing = await self._open(_Stream(reader, writer), config, record)
            connection = _Connection(self, framing, writer, record)
            self._connections.add(connection)
            await connection.run()
        except _SessionEndError as err:
            if str(err):  # the device ends it: a reject or a protocol violation
                record.closed_by = record.closed_by or "device"
                record.violation = record.violation or (None if record.rejected else str(err))
                if record.rejected:
                    await _linger(reader, writer)
            else:
                record.closed_by = record.closed_by or "client"
        except OSError:
            record.closed_by = record.closed_by or "client"
        finally:
            if connection is not None:
                self._connections.discard(connection)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            self._handlers.discard(task)
            await self.notify()

    async def _open(
        self, stream: _Stream, config: APIConfig, record: APIConnectionRecord
    ) -> _Framing:
        """Pick the frame helper the way ``APIConnection``'s constructor does."""
        if config.psk is not None:
            return await _noise_handshake(stream, config.psk, config.info, record)
        first = await stream.read(1)
        if first[0] == PLAINTEXT_INDICATOR:
            return _PlaintextFraming(_Stream(stream.reader, stream.writer, first))
        if first[0] == NOISE_INDICATOR and config.info.api_encryption_supported:
            record.provisioning = True
            return await _noise_handshake(
                _Stream(stream.reader, stream.writer, first), ZERO_PSK, config.info, record
            )
        raise _SessionEndError(f"bad indicator byte {first[0]}")


async def _linger(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float = 2.0
) -> None:
    """After a reject: let the client read it and hang up first (no reset races)."""
    with contextlib.suppress(OSError):
        await writer.drain()
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(timeout):
            while await reader.read(65536):
                pass


def _set_key(config: APIConfig, key: bytes) -> bool:
    """``send_noise_encryption_set_key_response_``: the checks, then the save."""
    if config.set_key is None:  # USE_API_NOISE_PSK_FROM_YAML
        return False
    if not key:
        return config.set_key(None)
    try:
        psk = base64.b64decode(key, validate=True)
    except binascii.Error:
        return False
    if len(psk) != len(ZERO_PSK) or psk == ZERO_PSK:
        return False
    return config.set_key(psk)


def _abort(writer: asyncio.StreamWriter) -> None:
    """Drop a connection like a vanished device: a reset, no goodbye."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def start_server_retrying(
    handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any],
    host: str,
    port: int,
    attempts: int = 50,
) -> asyncio.Server:
    """``asyncio.start_server`` that retries a port still held for a moment after a restart."""
    for attempt in range(attempts):
        try:
            return await asyncio.start_server(handler, host, port)
        except OSError:
            if port == 0 or attempt == attempts - 1:
                raise
            await asyncio.sleep(0.02)
    raise AssertionError("unreachable")
