"""Plain results handed to the Home Assistant layer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: ``Image.offset`` of an image that has no fixed flash address: ``firmware.ota.bin`` (an
#: OTA payload), ``*.uf2`` (copied to a UF2 boot drive) and the native ESP-IDF bootloader /
#: partition table / OTA data, whose addresses such a build does not record.
NO_FLASH_OFFSET = ""

#: How many characters of ``build_time_str`` a device reports as
#: ``DeviceInfoResponse.compilation_time``: ESPHome copies the string into a 26-byte buffer
#: (``Application::BUILD_TIME_STR_SIZE``) and terminates it, keeping at most 25.
COMPILATION_TIME_MAX_LEN = 25


@dataclass(frozen=True, slots=True)
class Image:
    """One image file written to disk, with what is needed to flash and verify it.

    ``offset`` is a lowercase hex flash address (``"0x10000"``) or :data:`NO_FLASH_OFFSET`.
    """

    name: str
    offset: str
    size: int
    sha256: str
    path: Path


@dataclass(frozen=True, slots=True)
class BuildInfo:
    """What ESPHome's ``build_info.json`` says about one build: the identity it compiles in.

    A device running the build reports the same facts: ``esphome_version`` and
    :attr:`compilation_time` in its native-API ``DeviceInfoResponse``, and
    :attr:`config_hash_hex` in the ``config_hash`` TXT record of its mDNS announcement.
    ``config_hash`` is ESPHome's 32-bit FNV-1a hash of the final configuration,
    ``build_time`` the build's Unix time and ``build_time_str`` that time as
    ``"%Y-%m-%d %H:%M:%S %z"`` in the build server's time zone.
    """

    config_hash: int
    build_time: int
    build_time_str: str
    esphome_version: str

    @property
    def config_hash_hex(self) -> str:
        """``config_hash`` as the mDNS TXT record carries it: 8 lowercase hex digits."""
        return f"{self.config_hash:08x}"

    @property
    def compilation_time(self) -> str:
        """``build_time_str`` as the device reports it (``DeviceInfoResponse``)."""
        return self.build_time_str[:COMPILATION_TIME_MAX_LEN]


@dataclass(frozen=True, slots=True)
class ImageSet:
    """The flashable result of one build.

    ``platform`` is folded for port/flash logic (every ``ESP32*`` variant is ``"esp32"``);
    ``target_platform`` keeps the build's own value lower-cased (``"esp32s3"``), which
    matters for chip-specific flashing.  ``images`` starts with ``firmware.bin`` at
    ``firmware_offset``, then the build's flash images in declared order, then the other
    flashable extras.  ``storage`` is the build's parsed ``storage.json``; ``build_info``
    its ``build_info.json``, ``None`` when the tarball has none.
    """

    device_name: str
    platform: str
    target_platform: str
    firmware_offset: str
    images: list[Image]
    storage: dict[str, Any]
    build_info: BuildInfo | None = None


@dataclass(frozen=True, slots=True)
class BundleInfo:
    """A config bundle written to disk; ``files`` lists its members except the manifest."""

    path: Path
    size: int
    sha256: str
    files: list[str]
