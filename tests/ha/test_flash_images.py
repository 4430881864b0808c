"""Which stored image goes over the air for each ``image`` choice of the flash action."""

from __future__ import annotations

from pathlib import Path

from homeassistant.exceptions import ServiceValidationError
import pytest

from custom_components.esphome_remote_build.artifacts import Image
from custom_components.esphome_remote_build.flash import ImageKind, select_image
from custom_components.esphome_remote_build.ota import OTAType
from custom_components.esphome_remote_build.stored_build import StoredBuild


def _build(*names: str) -> StoredBuild:
    return StoredBuild(
        job_id="job",
        device_name="kitchen",
        platform="esp32",
        target_platform="esp32",
        firmware_offset="0x10000",
        artifacts_sha256="0" * 64,
        directory=Path("/nowhere"),
        images=tuple(Image(name, "", 1, "0" * 64, Path("/nowhere") / name) for name in names),
        created_at="2026-12-02T00:00:00+00:00",
        server_pin="1" * 64,
        configuration="kitchen.yaml",
    )


@pytest.mark.parametrize(
    ("names", "kind", "expected", "ota_type"),
    [
        (
            ("firmware.bin", "firmware.ota.bin"),
            ImageKind.APPLICATION,
            "firmware.ota.bin",
            OTAType.APPLICATION,
        ),
        (("firmware.bin",), ImageKind.APPLICATION, "firmware.bin", OTAType.APPLICATION),
        (
            ("firmware.bin", "partitions.bin"),
            ImageKind.PARTITION_TABLE,
            "partitions.bin",
            OTAType.PARTITION_TABLE,
        ),
        # Native ESP-IDF builds (ESPHome's default for ESP32 since 2026.10) name it so.
        (
            ("firmware.bin", "partition-table.bin"),
            ImageKind.PARTITION_TABLE,
            "partition-table.bin",
            OTAType.PARTITION_TABLE,
        ),
        (
            ("firmware.bin", "bootloader.bin"),
            ImageKind.BOOTLOADER,
            "bootloader.bin",
            OTAType.BOOTLOADER,
        ),
    ],
)
def test_select_image(
    names: tuple[str, ...], kind: ImageKind, expected: str, ota_type: OTAType
) -> None:
    image, chosen_type = select_image(_build(*names), kind)
    assert (image.name, chosen_type) == (expected, ota_type)


def test_missing_image_is_the_callers_error() -> None:
    with pytest.raises(ServiceValidationError) as caught:
        select_image(_build("firmware.bin"), ImageKind.BOOTLOADER)
    assert caught.value.translation_key == "image_not_in_build"
