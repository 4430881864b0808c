"""HA-free client of ESPHome's native OTA protocol (``ota: - platform: esphome``).

Speaks protocol versions 1 and 2, password auth (MD5/SHA-256), gzip compression,
partition-table/bootloader uploads and Noise-encrypted sessions, and follows the retry
rules of ESPHome's own ``espota2`` — on asyncio streams, without blocking the loop.
"""

from __future__ import annotations

from .client import FlashResult, async_flash
from .const import OTAType
from .errors import (
    DEVICE_ERRORS,
    OTAAuthenticationError,
    OTADeviceError,
    OTAEncryptionError,
    OTAEncryptionKeyError,
    OTAEncryptionRequiredError,
    OTAEncryptionUnavailableError,
    OTAError,
    OTAImageError,
    OTAInvalidKeyError,
    OTAMaybeCommittedError,
    OTANetworkError,
    OTAPasswordRequiredError,
    OTAProtocolError,
    OTAResolveError,
    OTATimeoutError,
    OTAUnsupportedError,
)
from .noise import decode_noise_psk
from .ports import default_ota_port
from .session import ProgressCallback

__all__ = [
    "DEVICE_ERRORS",
    "FlashResult",
    "OTAAuthenticationError",
    "OTADeviceError",
    "OTAEncryptionError",
    "OTAEncryptionKeyError",
    "OTAEncryptionRequiredError",
    "OTAEncryptionUnavailableError",
    "OTAError",
    "OTAImageError",
    "OTAInvalidKeyError",
    "OTAMaybeCommittedError",
    "OTANetworkError",
    "OTAPasswordRequiredError",
    "OTAProtocolError",
    "OTAResolveError",
    "OTATimeoutError",
    "OTAType",
    "OTAUnsupportedError",
    "ProgressCallback",
    "async_flash",
    "decode_noise_psk",
    "default_ota_port",
]
