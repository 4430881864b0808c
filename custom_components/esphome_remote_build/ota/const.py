"""Wire constants of ESPHome's native OTA protocol.

The values are fixed by the device firmware (``ota_esphome.cpp``) and ESPHome's own client
(``espota2.py``); they live in one place so the session code reads like the protocol
description in docs/ota.md.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag
from typing import Final

MAGIC: Final = bytes([0x6C, 0x26, 0xF7, 0x5C, 0x45])

SUPPORTED_VERSIONS: Final = frozenset({1, 2})
#: Version 2 devices acknowledge every upload block; version 1 devices do not.
VERSION_WITH_BLOCK_ACKS: Final = 2

UPLOAD_BLOCK_SIZE: Final = 8192
# Blocks in flight before waiting for an ack (v2); 1 would be lock-step like espota2.
ACK_WINDOW: Final = 2
SIZE_FIELD_BYTES: Final = 4
GZIP_LEVEL: Final = 9

#: Noise framing: indicator, 16-bit big-endian length, payload.
NOISE_FRAME_INDICATOR: Final = 0x01
NOISE_FRAME_HEADER_SIZE: Final = 3
NOISE_HANDSHAKE_OK: Final = 0x00
#: The device decrypts into a 1040-byte buffer: 1024 plaintext bytes plus the 16-byte MAC.
NOISE_MAX_PLAINTEXT: Final = 1024
NOISE_PROTOCOL_NAME: Final = b"Noise_NNpsk0_25519_ChaChaPoly_SHA256"
NOISE_PROLOGUE_INIT: Final = b"NoiseOTAInit"
#: The exact reject reason a device sends when the client used another key.
NOISE_MAC_FAILURE_REASON: Final = "Handshake MAC failure"
NOISE_PSK_SIZE: Final = 32

DEFAULT_CONNECT_TIMEOUT: Final = 20.0
DEFAULT_DATA_TIMEOUT: Final = 90.0
DEFAULT_RETRY_DELAY: Final = 5.0
#: Attempts on top of one per resolved address (esphome PR #18332).
EXTRA_ATTEMPTS: Final = 2
#: How long to look for an error byte the device sent just before a send failed.
ERROR_PROBE_TIMEOUT: Final = 1.0


class Response(IntEnum):
    """Non-error bytes a device answers with."""

    OK = 0x00
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


#: Every answer byte at or above this value is an error code.
FIRST_ERROR_CODE: Final = 0x80


class ClientFeature(IntFlag):
    """The feature byte we send after the magic."""

    COMPRESSION = 0x01
    SHA256_AUTH = 0x02
    EXTENDED_PROTOCOL = 0x04
    NOISE = 0x08


class ServerFeature(IntFlag):
    """Server flags that follow ``Response.FEATURE_FLAGS`` on the extended protocol."""

    COMPRESSION = 0x01
    PARTITION_ACCESS = 0x02
    NOISE = 0x04


class OTAType(IntEnum):
    """What the uploaded bytes are; anything but the application needs partition access."""

    APPLICATION = 0x00
    PARTITION_TABLE = 0x01
    BOOTLOADER = 0x02
