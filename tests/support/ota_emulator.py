"""An ESPHome device's native OTA server on loopback, for tests and the demo.

Written from the device side of ESPHome 2026.10 (``components/esphome/ota/ota_esphome.cpp``,
``ota_esphome_noise.cpp``), independently of our client, and proven against ESPHome's own
``espota2`` by ``tests/ota/test_espota_interop.py``. It is as strict as the firmware where
a client could get the framing wrong: an encrypted control field must be exactly one frame,
data frames carry at most 1024 plaintext bytes, SHA-256 auth needs the client's SHA-256
feature bit. Where the firmware just hangs up, the emulator first waits for the client to
close, so a test sees the error byte deterministically instead of racing a TCP reset.

Usable as a library (``OTADeviceEmulator``) or as a process for the demo::

    python -m tests.support.ota_emulator --port 0 --password secret --version 2

which prints one JSON line ``{"event": "listening", "port": N}`` and then one JSON line
per finished session. No pytest dependency.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
from collections.abc import Awaitable, Callable, Sequence
import contextlib
from dataclasses import dataclass, field
from enum import StrEnum
import gzip
import hashlib
import json
from pathlib import Path
import secrets
import signal
import socket
import struct
import sys
from typing import Any, Self
import zlib

from cryptography.exceptions import InvalidTag
from noise.connection import NoiseConnection

MAGIC = bytes([0x6C, 0x26, 0xF7, 0x5C, 0x45])

RESPONSE_OK = 0x00
REQUEST_MD5_AUTH = 0x01
REQUEST_SHA256_AUTH = 0x02
HEADER_OK = 0x40
AUTH_OK = 0x41
UPDATE_PREPARE_OK = 0x42
BIN_MD5_OK = 0x43
RECEIVE_OK = 0x44
UPDATE_END_OK = 0x45
SUPPORTS_COMPRESSION = 0x46
CHUNK_OK = 0x47
FEATURE_FLAGS = 0x48

ERROR_MAGIC = 0x80
ERROR_AUTH_INVALID = 0x82
ERROR_MD5_MISMATCH = 0x8B
ERROR_UNSUPPORTED_OTA_TYPE = 0x8E
ERROR_ENCRYPTION_REQUIRED = 0x94
ERROR_UNKNOWN = 0xFF

CLIENT_COMPRESSION = 0x01
CLIENT_SHA256_AUTH = 0x02
CLIENT_EXTENDED = 0x04
CLIENT_NOISE = 0x08
CLIENT_DEFLATE = 0x10
SERVER_COMPRESSION = 0x01
SERVER_PARTITION_ACCESS = 0x02
SERVER_NOISE = 0x04
SERVER_DEFLATE = 0x08

OTA_TYPE_APPLICATION = 0x00
BLOCK_SIZE = 8192
SIZE_FIELD = 4
MD5_HEX = 32
MAC_SIZE = 16
#: OTA_BUFFER_SIZE: the device reads and decrypts at most this many bytes at once.
BUFFER_SIZE = 1040
MAX_HANDSHAKE_SIZE = 128
DEFLATE_WINDOW_BITS = 12
NOISE_PROTOCOL_NAME = b"Noise_NNpsk0_25519_ChaChaPoly_SHA256"
NOISE_PROLOGUE_INIT = b"NoiseOTAInit"
NOISE_FRAME_INDICATOR = 0x01
NOISE_STATUS_OK = 0x00
NOISE_STATUS_REJECT = 0x01
NOISE_MAC_FAILURE = b"Handshake MAC failure"
NOISE_HANDSHAKE_ERROR = b"Handshake error"


class Stage(StrEnum):
    """Where an injected error code replaces the device's normal answer."""

    MAGIC = "magic"  # instead of OK + version
    FEATURES = "features"  # instead of the feature ack
    AUTH = "auth"  # instead of the auth request (before any nonce)
    PREPARE = "prepare"  # instead of 0x42
    MD5 = "md5"  # instead of 0x43
    BLOCK = "block"  # once block ``error_block`` (0-based) arrived; instead of its 0x47 on v2
    RECEIVE = "receive"  # instead of 0x44
    END = "end"  # instead of 0x45


class AuthScheme(StrEnum):
    """Challenge a password-protected device sends; 2026.10 firmware only sends SHA-256."""

    MD5 = "md5"
    SHA256 = "sha256"


@dataclass
class DeviceConfig:
    """How the emulated device is built (its YAML) and which faults it injects."""

    version: int = 2
    password: str | None = None
    auth: AuthScheme = AuthScheme.SHA256
    #: Device stores gzip images (ESP8266 backend); offered when the client supports it.
    compression: bool = False
    #: False emulates firmware older than the extended protocol (legacy feature ack).
    extended: bool = True
    partition_access: bool = False
    noise_psk: bytes | None = None
    #: With a key: ``ota: encryption:`` (required) vs the api-key offer (plaintext accepted).
    encryption_required: bool = True
    #: Offer raw deflate to clients that ask (0x10), as devices without gzip support do.
    deflate: bool = False
    error_stage: Stage | None = None
    error_code: int = ERROR_UNKNOWN
    error_block: int = 0
    #: Reset the connection once this many (>= 1) payload bytes arrived.
    drop_after_bytes: int | None = None
    #: Close the connection right after sending 0x45, without reading the final ack.
    drop_before_final_ack: bool = False
    #: How many sessions the faults above apply to (``None``: all of them).
    faulty_sessions: int | None = None
    #: Read timeout per operation (the firmware uses 20 s / 105 s).
    timeout: float = 30.0


@dataclass
class SessionRecord:
    """What the emulated device saw during one connection."""

    index: int
    #: Every raw byte the client sent, encrypted or not.
    received: bytearray = field(default_factory=bytearray)
    client_features: int | None = None
    server_flags: int | None = None
    encrypted: bool = False
    handshake_rejected: bool = False
    auth_ok: bool | None = None
    ota_type: int | None = None
    payload_size: int | None = None
    payload: bytes = b""
    #: The image as the device would flash it (gzip/deflate undone).
    image: bytes | None = None
    compressed: bool = False
    deflate: bool = False
    md5_ok: bool | None = None
    #: Plaintext size of every encrypted frame the client sent after the handshake.
    frame_sizes: list[int] = field(default_factory=list)
    completed: bool = False
    final_ack: bool = False
    error_sent: int | None = None
    dropped: bool = False
    client_closed: bool = False
    violation: str | None = None

    def summary(self) -> dict[str, Any]:
        """JSON-friendly summary (the image itself as size and SHA-256)."""
        return {
            "event": "session",
            "index": self.index,
            "client_features": self.client_features,
            "encrypted": self.encrypted,
            "auth_ok": self.auth_ok,
            "ota_type": self.ota_type,
            "payload_size": self.payload_size,
            "image_size": None if self.image is None else len(self.image),
            "image_sha256": None if self.image is None else hashlib.sha256(self.image).hexdigest(),
            "compressed": self.compressed,
            "md5_ok": self.md5_ok,
            "completed": self.completed,
            "final_ack": self.final_ack,
            "error_sent": self.error_sent,
            "dropped": self.dropped,
            "violation": self.violation,
        }


class _SessionEndError(Exception):
    """The session ends here (client gone, error sent, connection dropped)."""


class _Link:
    """The device's socket I/O: raw in the handshake, through Noise in the data phase."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        record: SessionRecord,
        timeout: float,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._record = record
        self._timeout = timeout
        self.cipher: Any = None  # NoiseConnection once the handshake is done

    async def _guard(self, read: Awaitable[bytes]) -> bytes:
        try:
            async with asyncio.timeout(self._timeout):
                data = await read
        except asyncio.IncompleteReadError as err:
            self._record.received += err.partial
            self._record.client_closed = True
            raise _SessionEndError from None
        except TimeoutError:
            self._record.violation = "timeout waiting for the client"
            raise _SessionEndError from None
        except OSError:
            self._record.client_closed = True
            raise _SessionEndError from None
        if not data:
            self._record.client_closed = True
            raise _SessionEndError
        self._record.received += data
        return data

    async def raw_read(self, size: int) -> bytes:
        return await self._guard(self._reader.readexactly(size))

    async def raw_write(self, data: bytes) -> None:
        try:
            self._writer.write(data)
            await self._writer.drain()
        except OSError:
            self._record.client_closed = True
            raise _SessionEndError from None

    def violate(self, what: str) -> _SessionEndError:
        self._record.violation = what
        return _SessionEndError()

    async def read_frame(self, min_len: int, max_len: int) -> bytes:
        header = await self.raw_read(3)
        length = int.from_bytes(header[1:], "big")
        if header[0] != NOISE_FRAME_INDICATOR or not min_len <= length <= max_len:
            raise self.violate(f"bad frame 0x{header[0]:02X} of {length} bytes")
        return await self.raw_read(length)

    def _decrypt(self, ciphertext: bytes) -> bytes:
        plaintext = bytes(self.cipher.decrypt(ciphertext))
        self._record.frame_sizes.append(len(plaintext))
        return plaintext

    async def read_field(self, size: int) -> bytes:
        """``data_readall_``: one field; encrypted, exactly one frame of exactly that size."""
        if self.cipher is None:
            return await self.raw_read(size)
        return self._decrypt(await self.read_frame(size + MAC_SIZE, size + MAC_SIZE))

    async def read_data(self, capacity: int) -> bytes:
        """``receive_data_``: whatever arrives, at most one buffer, never past the image."""
        if self.cipher is None:
            return await self._guard(self._reader.read(min(capacity, BUFFER_SIZE)))
        max_len = min(capacity + MAC_SIZE, BUFFER_SIZE)
        return self._decrypt(await self.read_frame(MAC_SIZE + 1, max_len))

    async def write_byte(self, value: int) -> None:
        """``data_write_byte_``: one response byte, its own frame when encrypted."""
        if self.cipher is None:
            await self.raw_write(bytes([value]))
            return
        await self.raw_write(frame(bytes(self.cipher.encrypt(bytes([value])))))

    async def wait_client_gone(self) -> None:
        """Let the client read our last byte and hang up first (no reset races)."""
        with contextlib.suppress(_SessionEndError):
            while True:
                await self._guard(self._reader.read(65536))

    def reset(self) -> None:
        """Drop the link like a lost Wi-Fi connection: a TCP reset, not a clean close."""
        sock = self._writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._writer.transport.abort()


def frame(payload: bytes) -> bytes:
    """Noise frame: indicator, 16-bit big-endian length, payload."""
    return bytes([NOISE_FRAME_INDICATOR]) + len(payload).to_bytes(2, "big") + payload


class _DeviceSession:
    """One connection, in the order of ``ESPHomeOTAComponent::handle_handshake_``."""

    def __init__(self, config: DeviceConfig, link: _Link, record: SessionRecord) -> None:
        self.config = config
        self.link = link
        self.record = record
        self.faulty = config.faulty_sessions is None or record.index < config.faulty_sessions
        self.deflate = False

    def injects(self, stage: Stage) -> bool:
        return self.faulty and self.config.error_stage == stage

    async def fail(self, code: int, *, data_phase: bool) -> _SessionEndError:
        """Send an error byte (encrypted in the data phase, like the firmware) and end."""
        self.record.error_sent = code
        if data_phase:
            await self.link.write_byte(code)
        else:
            await self.link.raw_write(bytes([code]))
        await self.link.wait_client_gone()
        return _SessionEndError()

    async def run(self) -> None:
        cfg = self.config
        if await self.link.raw_read(len(MAGIC)) != MAGIC:
            raise await self.fail(ERROR_MAGIC, data_phase=False)
        if self.injects(Stage.MAGIC):
            raise await self.fail(cfg.error_code, data_phase=False)
        await self.link.raw_write(bytes([RESPONSE_OK, cfg.version]))
        features = (await self.link.raw_read(1))[0]
        self.record.client_features = features
        client_noise = features & (CLIENT_NOISE | CLIENT_EXTENDED) == CLIENT_NOISE | CLIENT_EXTENDED
        if cfg.noise_psk is not None and cfg.encryption_required and not client_noise:
            raise await self.fail(ERROR_ENCRYPTION_REQUIRED, data_phase=False)
        if self.injects(Stage.FEATURES):
            raise await self.fail(cfg.error_code, data_phase=False)
        extended = cfg.extended and bool(features & CLIENT_EXTENDED)
        flags = await self._feature_ack(features, extended)
        if flags & SERVER_NOISE and client_noise:
            assert cfg.noise_psk is not None
            await self._noise_handshake(cfg.noise_psk, features, flags)
        elif cfg.password:
            await self._authenticate(cfg.password, features)
        await self._data_phase(extended)

    async def _feature_ack(self, features: int, extended: bool) -> int:
        cfg = self.config
        compression = cfg.compression and bool(features & CLIENT_COMPRESSION)
        if not extended:
            await self.link.raw_write(bytes([SUPPORTS_COMPRESSION if compression else HEADER_OK]))
            return SERVER_COMPRESSION if compression else 0
        flags = SERVER_COMPRESSION if compression else 0
        if cfg.partition_access:
            flags |= SERVER_PARTITION_ACCESS
        if cfg.noise_psk is not None:
            flags |= SERVER_NOISE
        if cfg.deflate and features & CLIENT_DEFLATE:
            flags |= SERVER_DEFLATE
            self.deflate = True
        self.record.server_flags = flags
        await self.link.raw_write(bytes([FEATURE_FLAGS, flags]))
        return flags

    async def _noise_handshake(self, psk: bytes, features: int, flags: int) -> None:
        prologue = (
            NOISE_PROLOGUE_INIT
            + MAGIC
            + bytes([RESPONSE_OK, self.config.version, features, FEATURE_FLAGS, flags])
        )
        payload = await self.link.read_frame(1, 1 + MAX_HANDSHAKE_SIZE)
        if payload[0] != NOISE_STATUS_OK:
            raise self.link.violate("client rejected the handshake")
        proto = NoiseConnection.from_name(NOISE_PROTOCOL_NAME)
        proto.set_as_responder()
        proto.set_psks(psk)
        proto.set_prologue(prologue)
        proto.start_handshake()
        try:
            proto.read_message(payload[1:])
        except Exception as err:  # any failure is a reject, like noise-c's
            reason = NOISE_MAC_FAILURE if isinstance(err, InvalidTag) else NOISE_HANDSHAKE_ERROR
            self.record.handshake_rejected = True
            await self.link.raw_write(frame(bytes([NOISE_STATUS_REJECT]) + reason))
            await self.link.wait_client_gone()
            raise _SessionEndError from None
        await self.link.raw_write(frame(bytes([NOISE_STATUS_OK]) + bytes(proto.write_message())))
        self.link.cipher = proto
        self.record.encrypted = True

    async def _authenticate(self, password: str, features: int) -> None:
        if self.injects(Stage.AUTH):
            raise await self.fail(self.config.error_code, data_phase=False)
        if self.config.auth is AuthScheme.SHA256:
            if not features & CLIENT_SHA256_AUTH:
                raise await self.fail(ERROR_AUTH_INVALID, data_phase=False)
            challenge, algorithm, hex_size = REQUEST_SHA256_AUTH, "sha256", 64
        else:
            challenge, algorithm, hex_size = REQUEST_MD5_AUTH, "md5", 32
        nonce = secrets.token_hex(hex_size // 2).encode()
        await self.link.raw_write(bytes([challenge]) + nonce)
        answer = await self.link.raw_read(2 * hex_size)
        cnonce, response = answer[:hex_size], answer[hex_size:]
        digest = hashlib.new(algorithm, password.encode() + nonce + cnonce, usedforsecurity=False)
        self.record.auth_ok = digest.hexdigest().encode() == response
        if not self.record.auth_ok:
            raise await self.fail(ERROR_AUTH_INVALID, data_phase=False)

    async def _data_phase(self, extended: bool) -> None:
        cfg, link, record = self.config, self.link, self.record
        await link.write_byte(AUTH_OK)
        record.ota_type = (await link.read_field(1))[0] if extended else OTA_TYPE_APPLICATION
        size = int.from_bytes(await link.read_field(SIZE_FIELD), "big")
        record.payload_size = size
        image_size = (
            int.from_bytes(await link.read_field(SIZE_FIELD), "big") if self.deflate else size
        )
        if record.ota_type != OTA_TYPE_APPLICATION and not cfg.partition_access:
            raise await self.fail(ERROR_UNSUPPORTED_OTA_TYPE, data_phase=True)
        if self.injects(Stage.PREPARE):
            raise await self.fail(cfg.error_code, data_phase=True)
        await link.write_byte(UPDATE_PREPARE_OK)
        expected_md5 = await link.read_field(MD5_HEX)
        if self.injects(Stage.MD5):
            raise await self.fail(cfg.error_code, data_phase=True)
        await link.write_byte(BIN_MD5_OK)
        record.payload = await self._receive(size)
        if self.injects(Stage.RECEIVE):
            raise await self.fail(cfg.error_code, data_phase=True)
        await link.write_byte(RECEIVE_OK)
        image = self._decode(record.payload, image_size)
        if image is None:
            raise await self.fail(ERROR_UNKNOWN, data_phase=True)
        record.image = image
        # The backend hashes what it writes: the inflated image, else the received bytes
        hashed = image if self.deflate else record.payload
        record.md5_ok = (
            hashlib.md5(hashed, usedforsecurity=False).hexdigest().encode() == expected_md5
        )
        if not record.md5_ok:
            raise await self.fail(ERROR_MD5_MISMATCH, data_phase=True)
        if self.injects(Stage.END):
            raise await self.fail(cfg.error_code, data_phase=True)
        await link.write_byte(UPDATE_END_OK)
        record.completed = True
        if self.faulty and cfg.drop_before_final_ack:
            record.dropped = True  # the firmware closes without the ack and reboots
            raise _SessionEndError
        record.final_ack = await link.read_field(1) == bytes([RESPONSE_OK])

    async def _receive(self, size: int) -> bytes:
        """The data loop with the firmware's count-based block acks (``send_chunk_acks_``)."""
        cfg = self.config
        chunks: list[bytes] = []
        total = acked = 0
        drop_at = cfg.drop_after_bytes if self.faulty else None
        while total < size:
            capacity = size - total if drop_at is None else min(size, drop_at) - total
            data = await self.link.read_data(capacity)
            chunks.append(data)
            total += len(data)
            if drop_at is not None and total >= drop_at:
                self.record.payload = b"".join(chunks)
                self.record.dropped = True
                self.link.reset()
                raise _SessionEndError
            done_blocks = -(-total // BLOCK_SIZE) if total == size else total // BLOCK_SIZE
            if self.injects(Stage.BLOCK) and done_blocks > cfg.error_block:
                self.record.payload = b"".join(chunks)
                raise await self.fail(cfg.error_code, data_phase=True)
            while cfg.version >= 2 and acked < done_blocks:
                await self.link.write_byte(CHUNK_OK)
                acked += 1
        return b"".join(chunks)

    def _decode(self, payload: bytes, image_size: int) -> bytes | None:
        """Undo the transfer encoding; ``None`` where the firmware would fail the update."""
        if self.deflate:
            inflater = zlib.decompressobj(-DEFLATE_WINDOW_BITS)
            try:
                image = inflater.decompress(payload) + inflater.flush()
            except zlib.error as err:
                self.record.violation = f"deflate stream: {err}"
                return None
            self.record.deflate = True
            return image if inflater.eof and len(image) == image_size else None
        if self.config.compression and payload[:2] == b"\x1f\x8b":
            self.record.compressed = True
            try:
                return gzip.decompress(payload)
            except (OSError, EOFError, zlib.error) as err:
                self.record.violation = f"gzip stream: {err}"
                return None
        return payload


class OTADeviceEmulator:
    """An asyncio server that answers like an ESPHome device, one client at a time."""

    def __init__(
        self,
        config: DeviceConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        on_session: Callable[[SessionRecord], None] | None = None,
    ) -> None:
        self.config = config or DeviceConfig()
        self.host = host
        self._requested_port = port
        self._on_session = on_session
        self.sessions: list[SessionRecord] = []
        self._finished = 0
        self._changed = asyncio.Condition()
        self._one_client = asyncio.Lock()
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        """The bound port (the OS picks one for port 0)."""
        assert self._server is not None, "start() first"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        """Listen on the loopback address."""
        self._server = await asyncio.start_server(
            self._handle, self.host, self._requested_port, backlog=1
        )

    async def stop(self) -> None:
        """Stop listening and end every connection and handler."""
        if self._server is None:
            return
        self._server.close()
        self._server.abort_clients()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def wait_for_sessions(self, count: int, timeout: float = 10.0) -> list[SessionRecord]:
        """Return the records once ``count`` sessions have finished."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: self._finished >= count)
        return self.sessions[:count]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            async with self._one_client:
                record = SessionRecord(index=len(self.sessions))
                self.sessions.append(record)
                link = _Link(reader, writer, record, self.config.timeout)
                with contextlib.suppress(_SessionEndError):
                    await _DeviceSession(self.config, link, record).run()
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
                if self._on_session is not None:
                    self._on_session(record)
                async with self._changed:
                    self._finished += 1
                    self._changed.notify_all()
        finally:
            self._handlers.discard(task)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Emulated ESPHome OTA device (loopback)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--version", type=int, choices=(1, 2), default=2)
    parser.add_argument("--password")
    parser.add_argument("--auth", choices=[s.value for s in AuthScheme], default="sha256")
    parser.add_argument("--compression", action="store_true")
    parser.add_argument("--legacy", action="store_true", help="no extended protocol")
    parser.add_argument("--partition-access", action="store_true")
    parser.add_argument("--noise-psk", help="API encryption key, base64")
    parser.add_argument("--encryption-optional", action="store_true")
    parser.add_argument("--deflate", action="store_true")
    parser.add_argument("--error-stage", choices=[s.value for s in Stage])
    parser.add_argument("--error-code", type=lambda v: int(v, 0), default=ERROR_UNKNOWN)
    parser.add_argument("--error-block", type=int, default=0)
    parser.add_argument("--drop-after-bytes", type=int)
    parser.add_argument("--drop-before-final-ack", action="store_true")
    parser.add_argument("--faulty-sessions", type=int)
    parser.add_argument("--save-dir", type=Path, help="write each received image here")
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> DeviceConfig:
    """Map the command line onto a ``DeviceConfig``."""
    return DeviceConfig(
        version=args.version,
        password=args.password,
        auth=AuthScheme(args.auth),
        compression=args.compression,
        extended=not args.legacy,
        partition_access=args.partition_access,
        noise_psk=None if args.noise_psk is None else base64.b64decode(args.noise_psk),
        encryption_required=not args.encryption_optional,
        deflate=args.deflate,
        error_stage=None if args.error_stage is None else Stage(args.error_stage),
        error_code=args.error_code,
        error_block=args.error_block,
        drop_after_bytes=args.drop_after_bytes,
        drop_before_final_ack=args.drop_before_final_ack,
        faulty_sessions=args.faulty_sessions,
    )


def _emit(line: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


async def _serve(args: argparse.Namespace) -> None:
    save_dir: Path | None = args.save_dir

    def report(record: SessionRecord) -> None:
        if save_dir is not None and record.image is not None:
            save_dir.mkdir(parents=True, exist_ok=True)
            (save_dir / f"session-{record.index}.bin").write_bytes(record.image)
        _emit(record.summary())

    emulator = OTADeviceEmulator(
        config_from_args(args), host=args.host, port=args.port, on_session=report
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with emulator:
        _emit({"event": "listening", "host": args.host, "port": emulator.port})
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> None:
    """Run the emulator until SIGINT/SIGTERM."""
    asyncio.run(_serve(_parse_args(argv)))


if __name__ == "__main__":
    main()
