"""Exceptions of the OTA client.

One hierarchy so the Home Assistant layer can map families to user-facing errors: the
network failed (``OTANetworkError``, the only family the client retries), the device
refused (``OTADeviceError`` and the auth/encryption families, ``.code`` set to the byte the
device sent), or we refused locally before risking the image (``code`` is ``None``).
``key``, a property of the class (of the result code for :class:`OTADeviceError`), is the
translation key a user-facing layer looks up; ``reason`` is the short code of the failure.
"""

from __future__ import annotations

from typing import Final, NamedTuple


class OTAError(Exception):
    """Base class of every OTA failure."""

    key: str = "ota_failed"

    reason: str = "error"

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        #: The result code the device sent, or ``None`` when the failure is not the device's word.
        self.code = code


class OTANetworkError(OTAError):
    """The connection failed, timed out or was closed; a new attempt may succeed."""

    key = "ota_network_error"

    reason = "network_error"


class OTATimeoutError(OTANetworkError):
    """The device did not answer within the phase's timeout."""

    key = "ota_timeout"

    reason = "timeout"


class OTAResolveError(OTANetworkError):
    """The host name did not resolve to any address."""

    key = "ota_cannot_resolve"

    reason = "cannot_resolve"


class OTAMaybeCommittedError(OTAError):
    """The link broke after the whole image was sent.

    Never retried: the device may be committing the update and rebooting, and a second
    upload could flash a device that already updated. Wait for it to come back instead.
    """

    key = "ota_may_be_committing"

    reason = "may_be_committing"


class OTAProtocolError(OTAError):
    """The device answered with a byte the protocol does not allow at that point."""

    key = "ota_protocol_error"

    reason = "protocol_error"


class OTAUnsupportedError(OTAError):
    """The device cannot take this kind of upload (partition table / bootloader)."""

    key = "ota_unsupported_type"

    reason = "unsupported_ota_type"


class OTAImageError(OTAError):
    """The image to upload could not be read or is empty."""

    key = "ota_image_error"

    reason = "invalid_image"


class OTAAuthenticationError(OTAError):
    """The device rejected the password."""

    key = "ota_invalid_auth"

    reason = "invalid_auth"


class OTAPasswordRequiredError(OTAAuthenticationError):
    """The device asks for a password and none was given."""

    key = "ota_password_required"

    reason = "password_required"


class OTAEncryptionError(OTAError):
    """Base class of the Noise encryption failures."""

    key = "ota_encryption_failed"

    reason = "encryption_error"


class OTAEncryptionRequiredError(OTAEncryptionError):
    """The device only accepts encrypted uploads and no key was given."""

    key = "ota_encryption_required"

    reason = "encryption_required"


class OTAEncryptionUnavailableError(OTAEncryptionError):
    """A key is configured but the device does not offer encryption.

    We fail closed: the image carries Wi-Fi credentials and the API key, so it never goes
    out in plaintext when the caller expected encryption.
    """

    key = "ota_encryption_unavailable"

    reason = "encryption_unavailable"


class OTAEncryptionKeyError(OTAEncryptionError):
    """The Noise handshake failed: the device and we hold different keys."""

    key = "ota_encryption_key_rejected"

    reason = "encryption_key_rejected"


class OTAInvalidKeyError(OTAEncryptionError):
    """The configured key is not a base64-encoded 32-byte value."""

    key = "invalid_encryption_key"

    reason = "invalid_encryption_key"


class OTADeviceError(OTAError):
    """The device reported an error code (``.code``) while updating."""

    reason = "device_error"

    def __init__(self, message: str, *, code: int, reason: str) -> None:
        super().__init__(message, code=code)
        self.reason = reason
        # Each result code has its own message: it tells the user what to do about it.
        self.key = f"ota_device_{reason}"


class _CodeInfo(NamedTuple):
    reason: str
    message: str


#: Result codes a device sends (docs/ota.md, ``ota_backend.h``), with a message a user can act on.
DEVICE_ERRORS: Final[dict[int, _CodeInfo]] = {
    0x80: _CodeInfo("bad_magic", "the device did not recognise the OTA request (bad magic)"),
    0x81: _CodeInfo(
        "prepare_failed",
        "the device could not prepare its flash for the update; is the image too big? "
        "Try restarting the device",
    ),
    0x82: _CodeInfo("invalid_auth", "the device rejected the OTA password"),
    0x83: _CodeInfo("flash_write_failed", "writing the image to flash failed"),
    0x84: _CodeInfo("update_end_failed", "the device could not finish the update"),
    0x85: _CodeInfo(
        "invalid_bootstrapping",
        "the device needs one manual reset after a serial flash before OTA works",
    ),
    0x86: _CodeInfo(
        "wrong_current_flash_config",
        "the device was flashed with the wrong flash size; choose the correct board and "
        "flash it over USB",
    ),
    0x87: _CodeInfo(
        "wrong_new_flash_config",
        "the device does not have the flash size this image was built for (wrong board)",
    ),
    0x88: _CodeInfo(
        "esp8266_not_enough_space",
        "the ESP8266 has not enough free space for the image; flash a minimal firmware first",
    ),
    0x89: _CodeInfo(
        "esp32_partition_too_small",
        "the ESP32's OTA partition is too small for the image",
    ),
    0x8A: _CodeInfo(
        "no_update_partition",
        "the device has no OTA update partition; flash it over USB",
    ),
    0x8B: _CodeInfo("md5_mismatch", "the image arrived corrupted (MD5 mismatch); try again"),
    0x8C: _CodeInfo(
        "rp2040_not_enough_space", "the RP2040 has not enough free space for the image"
    ),
    0x8D: _CodeInfo(
        "signature_invalid",
        "the device rejected the image signature; it was not signed with the device's key",
    ),
    0x8E: _CodeInfo("unsupported_ota_type", "the device does not support this OTA type"),
    0x8F: _CodeInfo(
        "partition_table_verify_failed",
        "the new partition table could not be verified; nothing was changed",
    ),
    0x90: _CodeInfo(
        "partition_table_update_failed",
        "updating the partition table failed; the device may not boot until it is fixed",
    ),
    0x91: _CodeInfo(
        "bootloader_verify_failed",
        "the new bootloader could not be verified; nothing was changed",
    ),
    0x92: _CodeInfo(
        "bootloader_update_failed",
        "updating the bootloader failed; the device may not boot until it is fixed",
    ),
    0x93: _CodeInfo(
        "version_downgrade",
        "the device refuses to downgrade; the image must be newer than the running firmware",
    ),
    0x94: _CodeInfo(
        "encryption_required",
        "the device only accepts encrypted OTA uploads; give its API encryption key",
    ),
    0xFF: _CodeInfo("unknown_error", "the device reported an unknown error"),
}


def device_error(code: int) -> OTAError:
    """Build the exception for a result code, typed by family so callers can branch on it."""
    info = DEVICE_ERRORS.get(code, _CodeInfo("unknown_error", "the device reported an error"))
    message = f"{info.message} (device code 0x{code:02X})"
    if code == 0x82:
        return OTAAuthenticationError(message, code=code)
    if code == 0x94:
        return OTAEncryptionRequiredError(message, code=code)
    return OTADeviceError(message, code=code, reason=info.reason)
