"""Plain results handed to the Home Assistant layer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: ``Image.offset`` of an image that has no fixed flash address: ``firmware.ota.bin`` (an
#: OTA payload), ``*.uf2`` (copied to a UF2 boot drive) and the native ESP-IDF bootloader /
#: partition table / OTA data, whose addresses such a build does not record.
NO_FLASH_OFFSET = ""


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
class ImageSet:
    """The flashable result of one build.

    ``platform`` is folded for port/flash logic (every ``ESP32*`` variant is ``"esp32"``);
    ``target_platform`` keeps the build's own value lower-cased (``"esp32s3"``), which
    matters for chip-specific flashing.  ``images`` starts with ``firmware.bin`` at
    ``firmware_offset``, then the build's flash images in declared order, then the other
    flashable extras.  ``storage`` is the build's parsed ``storage.json``.
    """

    device_name: str
    platform: str
    target_platform: str
    firmware_offset: str
    images: list[Image]
    storage: dict[str, Any]


@dataclass(frozen=True, slots=True)
class BundleInfo:
    """A config bundle written to disk; ``files`` lists its members except the manifest."""

    path: Path
    size: int
    sha256: str
    files: list[str]
