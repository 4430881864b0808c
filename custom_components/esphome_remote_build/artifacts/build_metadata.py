"""What a build's metadata says, and which images it adds up to.

Pure functions over the bytes of ``storage.json`` / ``idedata.json`` / ``build_info.json``
and the set of member
basenames, so the rules (which file is the firmware, which offsets are trusted, what order
images come in) are testable without any tarball.  See docs/protocol.md §6.2 to §6.5.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
import json
import re
from typing import Any, Final

from .errors import InvalidArtifactsError
from .models import NO_FLASH_OFFSET, BuildInfo
from .safe_tar import MIB

STORAGE_JSON: Final = "storage.json"
IDEDATA_JSON: Final = "idedata.json"
BUILD_INFO_JSON: Final = "build_info.json"
#: Archive-root members that describe the build rather than being part of it.
METADATA_MEMBERS: Final = frozenset(
    {
        STORAGE_JSON,
        IDEDATA_JSON,
        "platformio.ini",
        BUILD_INFO_JSON,
        "validated.json",
        "validated.yaml",
    }
)
MAX_STORAGE_JSON: Final = 1 * MIB
MAX_IDEDATA_JSON: Final = 8 * MIB
#: ESPHome writes about 150 bytes; anything near this is not ESPHome's file.
MAX_BUILD_INFO_JSON: Final = 64 * 1024

FIRMWARE_BIN: Final = "firmware.bin"
ESP_IDF_TOOLCHAIN: Final = "esp-idf"

_DEVICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")
_PLATFORM = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_OFFSET = re.compile(r"0x[0-9a-f]{1,8}", re.IGNORECASE)
# Names an image may have on disk: no separators, no hidden files, nothing exotic.
_IMAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
# build_info.json's strings: non-empty printable ASCII.  ESPHome's are far shorter (a
# 25-character time, a version like "2026.10.0"); the device copies them byte for byte.
_BUILD_INFO_TEXT = re.compile(r"[\x20-\x7e]{1,64}")
# The config hash is a uint32_t on the device; the build time a 64-bit time_t.
_CONFIG_HASH_LIMIT: Final = 2**32
_BUILD_TIME_LIMIT: Final = 2**63

# Flashable files beside the firmware that idedata does not list, with their fixed address.
# The merged factory image always starts at 0x0; an OTA payload has no flash address.
_EXTRAS: Final = (("firmware.factory.bin", "0x0"), ("firmware.ota.bin", NO_FLASH_OFFSET))
# A native ESP-IDF build has no idedata, so nothing records where these three go: the
# bootloader address depends on the chip and the other two on the partition layout.
_ESP_IDF_PARTIALS: Final = ("bootloader.bin", "partition-table.bin", "ota_data_initial.bin")
_UF2_SUFFIX: Final = ".uf2"


@dataclass(frozen=True, slots=True)
class BuildFacts:
    """The parts of ``storage.json`` the image logic needs, validated."""

    device_name: str
    platform: str
    target_platform: str
    toolchain: str | None
    storage: dict[str, Any]


@dataclass(frozen=True, slots=True)
class FlashImage:
    """One ``idedata.extra.flash_images`` entry, reduced to its basename."""

    name: str
    offset: str


@dataclass(frozen=True, slots=True)
class PlannedImage:
    """An image to write: ``source`` is the member basename, ``name`` the name on disk."""

    name: str
    source: str
    offset: str


def normalise_offset(value: object, what: str) -> str:
    """Return a flash offset as lowercase hex (``"0x10000"``), refusing anything else."""
    if not isinstance(value, str) or _OFFSET.fullmatch(value) is None:
        raise InvalidArtifactsError(f"{what} {value!r} is not a hex offset like '0x10000'")
    return value.lower()


def parse_json_object(data: bytes, what: str) -> dict[str, Any]:
    """Parse a metadata member that must hold one JSON object."""
    try:
        parsed = json.loads(data)
    except (ValueError, RecursionError) as err:
        raise InvalidArtifactsError(f"{what} is not valid JSON: {err}") from err
    if not isinstance(parsed, dict):
        raise InvalidArtifactsError(f"{what} is not a JSON object")
    return parsed


def parse_storage(data: bytes) -> BuildFacts:
    """Validate ``storage.json``: device name, target platform and toolchain."""
    storage = parse_json_object(data, STORAGE_JSON)
    name = storage.get("name")
    if not isinstance(name, str) or _DEVICE_NAME.fullmatch(name) is None:
        raise InvalidArtifactsError(f"{STORAGE_JSON} has an invalid device name {name!r}")
    raw_platform = storage.get("esp_platform") or storage.get("target_platform")
    target = raw_platform.lower() if isinstance(raw_platform, str) else None
    if target is None or _PLATFORM.fullmatch(target) is None:
        raise InvalidArtifactsError(f"{STORAGE_JSON} has an invalid platform {raw_platform!r}")
    toolchain = storage.get("toolchain")
    if toolchain is not None and not isinstance(toolchain, str):
        raise InvalidArtifactsError(f"{STORAGE_JSON} has an invalid toolchain {toolchain!r}")
    return BuildFacts(
        device_name=name,
        platform="esp32" if target.startswith("esp32") else target,
        target_platform=target,
        toolchain=toolchain,
        storage=storage,
    )


def parse_build_info(data: bytes) -> BuildInfo:
    """Validate ``build_info.json``: the identity the build compiled into the firmware."""
    return build_info_from_object(parse_json_object(data, BUILD_INFO_JSON), BUILD_INFO_JSON)


def build_info_from_object(data: Mapping[str, Any], what: str) -> BuildInfo:
    """Check the four ``build_info.json`` fields of ``data``; other keys are ignored.

    ``config_hash`` must be an integer in ``[0, 2**32)``, ``build_time`` one in
    ``[0, 2**63)`` (booleans are not integers), ``build_time_str`` and ``esphome_version``
    1 to 64 printable ASCII characters.  Raises :class:`InvalidArtifactsError` naming
    ``what`` and the field.
    """
    config_hash = _bounded_int(data, "config_hash", _CONFIG_HASH_LIMIT, what)
    build_time = _bounded_int(data, "build_time", _BUILD_TIME_LIMIT, what)
    return BuildInfo(
        config_hash=config_hash,
        build_time=build_time,
        build_time_str=_build_info_text(data, "build_time_str", what),
        esphome_version=_build_info_text(data, "esphome_version", what),
    )


def _bounded_int(data: Mapping[str, Any], key: str, limit: int, what: str) -> int:
    value = _present(data, key, what)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < limit:
        raise InvalidArtifactsError(
            f"{what} {key!r} is {_shown(value)}, not an integer in [0, {limit:#x})"
        )
    return value


def _build_info_text(data: Mapping[str, Any], key: str, what: str) -> str:
    value = _present(data, key, what)
    if not isinstance(value, str) or _BUILD_INFO_TEXT.fullmatch(value) is None:
        raise InvalidArtifactsError(
            f"{what} {key!r} is {_shown(value)}, not 1 to 64 printable ASCII characters"
        )
    return value


def _present(data: Mapping[str, Any], key: str, what: str) -> object:
    if key not in data:
        raise InvalidArtifactsError(f"{what} has no {key!r}")
    return data[key]


def _shown(value: object) -> str:
    """Show a value in an error message, cut short: it may be a 64 KiB string."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def parse_flash_images(idedata: dict[str, Any]) -> list[FlashImage]:
    """Read ``extra.flash_images`` in declared order; paths may be Windows paths."""
    extra = idedata.get("extra", {})
    if not isinstance(extra, dict):
        raise InvalidArtifactsError(f"{IDEDATA_JSON} 'extra' is not an object")
    entries = extra.get("flash_images", [])
    if not isinstance(entries, list):
        raise InvalidArtifactsError(f"{IDEDATA_JSON} 'extra.flash_images' is not a list")
    images: list[FlashImage] = []
    for index, entry in enumerate(entries):
        what = f"{IDEDATA_JSON} flash image #{index}"
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise InvalidArtifactsError(f"{what} is not an object with a string 'path'")
        name = re.split(r"[\\/]", entry["path"])[-1]
        images.append(FlashImage(name=name, offset=normalise_offset(entry.get("offset"), what)))
    return images


def plan_images(
    facts: BuildFacts,
    flash_images: list[FlashImage] | None,
    available: Collection[str],
    firmware_offset: str,
) -> list[PlannedImage]:
    """Choose the images and their order: firmware, idedata's flash images, then extras.

    ``flash_images`` is ``None`` when the tarball has no ``idedata.json``, which only a
    native ESP-IDF build may lack.  ``available`` holds the non-metadata member basenames.
    """
    esp_idf = facts.toolchain == ESP_IDF_TOOLCHAIN
    if flash_images is None and not esp_idf:
        raise InvalidArtifactsError(f"the build has no {IDEDATA_JSON}")
    firmware_source = f"{facts.device_name}.bin" if esp_idf else FIRMWARE_BIN
    plan = [_planned(FIRMWARE_BIN, firmware_source, firmware_offset, available)]
    for image in flash_images or ():
        if any(image.name == planned.source for planned in plan):
            raise InvalidArtifactsError(f"{IDEDATA_JSON} lists {image.name!r} twice")
        plan.append(_planned(image.name, image.name, image.offset, available))
    extras = list(_EXTRAS)
    if esp_idf:
        extras.extend((name, NO_FLASH_OFFSET) for name in _ESP_IDF_PARTIALS)
    extras.extend(
        (name, NO_FLASH_OFFSET) for name in sorted(available) if name.endswith(_UF2_SUFFIX)
    )
    taken = {planned.source for planned in plan}
    plan.extend(
        _planned(name, name, offset, available)
        for name, offset in extras
        if name in available and name not in taken
    )
    return plan


def _planned(name: str, source: str, offset: str, available: Collection[str]) -> PlannedImage:
    if source not in available:
        raise InvalidArtifactsError(f"the build has no {source}")
    if _IMAGE_NAME.fullmatch(name) is None:
        raise InvalidArtifactsError(f"image name {name!r} is not a plain file name")
    return PlannedImage(name=name, source=source, offset=offset)
