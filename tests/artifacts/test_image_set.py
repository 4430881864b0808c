"""read_image_set on well-formed tarballs of each platform family (docs/protocol.md §6.2, §6.4)."""

from __future__ import annotations

import hashlib
from pathlib import Path
import stat

import pytest

from custom_components.esphome_remote_build.artifacts import (
    NO_FLASH_OFFSET,
    ArtifactsMismatchError,
    ImageSet,
    async_read_image_set,
    read_image_set,
)
from tests.artifacts.build_info_samples import SAMPLE_INFO, build_info_json
from tests.artifacts.tarballs import (
    files_in,
    idedata,
    payload,
    regular,
    storage,
    write,
)

PIO = ".pioenvs/dev1"


def _check_images(result: ImageSet, dest: Path, expected: list[tuple[str, str, bytes]]) -> None:
    """Images in order, each with offset, size, hash, and a 0600 file holding exactly it."""
    assert [(image.name, image.offset) for image in result.images] == [
        (name, offset) for name, offset, _ in expected
    ]
    for image, (name, _, data) in zip(result.images, expected, strict=True):
        assert image.path == dest / name
        assert image.path.read_bytes() == data
        assert image.size == len(data)
        assert image.sha256 == hashlib.sha256(data).hexdigest()
        assert stat.S_IMODE(image.path.stat().st_mode) == 0o600
    assert files_in(dest) == sorted(name for name, _, _ in expected)


def test_esp32_platformio_set(tmp_path: Path) -> None:
    data = {
        name: payload(name)
        for name in (
            "firmware.bin",
            "bootloader.bin",
            "partitions.bin",
            "ota_data_initial.bin",
            "firmware.factory.bin",
            "firmware.ota.bin",
            "firmware.elf",
        )
    }
    flash_images = [
        # A receiver on Windows records backslash paths; basenames must still match.
        {"path": "C:\\esphome\\build\\dev1\\.pioenvs\\dev1\\bootloader.bin", "offset": "0x0"},
        {"path": "/data/build/dev1/.pioenvs/dev1/partitions.bin", "offset": "0x8000"},
        {"path": "/data/build/dev1/.pioenvs/dev1/ota_data_initial.bin", "offset": "0xE000"},
    ]
    tarball = write(
        tmp_path / "a.tar.gz",
        [
            storage(esp_platform="ESP32S3"),
            idedata(flash_images),
            regular("platformio.ini", b"[env:dev1]\n"),
            regular("build_info.json", build_info_json()),
            regular("validated.json", b"{}"),
            *(regular(f"{PIO}/{name}", body) for name, body in data.items()),
        ],
    )
    dest = tmp_path / "out" / "images"

    result = read_image_set(tarball, "0x10000", dest)

    assert (result.device_name, result.platform, result.target_platform) == (
        "dev1",
        "esp32",
        "esp32s3",
    )
    assert result.firmware_offset == "0x10000"
    assert result.storage["build_path"] == "/data/build/dev1"
    assert result.build_info == SAMPLE_INFO
    assert stat.S_IMODE(dest.stat().st_mode) == 0o700
    _check_images(
        result,
        dest,
        [
            ("firmware.bin", "0x10000", data["firmware.bin"]),
            ("bootloader.bin", "0x0", data["bootloader.bin"]),
            ("partitions.bin", "0x8000", data["partitions.bin"]),
            ("ota_data_initial.bin", "0xe000", data["ota_data_initial.bin"]),
            ("firmware.factory.bin", "0x0", data["firmware.factory.bin"]),
            ("firmware.ota.bin", NO_FLASH_OFFSET, data["firmware.ota.bin"]),
        ],
    )


def test_esp8266_single_image(tmp_path: Path) -> None:
    firmware = payload("esp8266 firmware", 70_000)
    tarball = write(
        tmp_path / "a.tar.gz",
        [
            storage(name="plug-2", esp_platform="ESP8266"),
            idedata([]),
            regular(".pioenvs/plug-2/firmware.bin", firmware),
            regular(".pioenvs/plug-2/firmware.elf", payload("elf")),
        ],
    )

    result = read_image_set(tarball, "0X0", tmp_path / "out")

    assert (result.device_name, result.platform, result.firmware_offset) == (
        "plug-2",
        "esp8266",
        "0x0",
    )
    _check_images(result, tmp_path / "out", [("firmware.bin", "0x0", firmware)])


def test_rp2040_with_uf2(tmp_path: Path) -> None:
    data = {name: payload(name) for name in ("firmware.bin", "firmware.uf2", "firmware.ota.bin")}
    tarball = write(
        tmp_path / "a.tar.gz",
        [
            storage(name="pico", esp_platform="RP2040"),
            idedata([], cc_path="/x/arm-none-eabi-gcc"),
            *(regular(f".pioenvs/pico/{name}", body) for name, body in data.items()),
            regular(".pioenvs/pico/firmware.elf", payload("elf")),
        ],
    )

    result = read_image_set(tarball, "0x0", tmp_path / "out")

    assert result.platform == "rp2040"
    _check_images(
        result,
        tmp_path / "out",
        [
            ("firmware.bin", "0x0", data["firmware.bin"]),
            ("firmware.ota.bin", NO_FLASH_OFFSET, data["firmware.ota.bin"]),
            ("firmware.uf2", NO_FLASH_OFFSET, data["firmware.uf2"]),
        ],
    )


def test_native_esp_idf_build(tmp_path: Path) -> None:
    """No idedata: the app image is <name>.bin, the partial images have no known address."""
    data = {
        "build/firmware.factory.bin": payload("factory"),
        "build/dev1.bin": payload("app"),
        "build/firmware.elf": payload("elf"),
        "build/bootloader/bootloader.bin": payload("bootloader"),
        "build/partition_table/partition-table.bin": payload("partitions"),
        "build/ota_data_initial.bin": payload("otadata"),
    }
    tarball = write(
        tmp_path / "a.tar.gz",
        [
            storage(esp_platform="ESP32C6", toolchain="esp-idf"),
            *(regular(path, body) for path, body in data.items()),
        ],
    )

    result = read_image_set(tarball, "0x10000", tmp_path / "out")

    assert (result.platform, result.target_platform) == ("esp32", "esp32c6")
    _check_images(
        result,
        tmp_path / "out",
        [
            ("firmware.bin", "0x10000", data["build/dev1.bin"]),
            ("firmware.factory.bin", "0x0", data["build/firmware.factory.bin"]),
            ("bootloader.bin", NO_FLASH_OFFSET, data["build/bootloader/bootloader.bin"]),
            (
                "partition-table.bin",
                NO_FLASH_OFFSET,
                data["build/partition_table/partition-table.bin"],
            ),
            ("ota_data_initial.bin", NO_FLASH_OFFSET, data["build/ota_data_initial.bin"]),
        ],
    )


def test_libretiny_uf2_and_target_platform_key(tmp_path: Path) -> None:
    """Older sidecars name the platform ``target_platform``; several .uf2 ship sorted."""
    data = {name: payload(name) for name in ("firmware.bin", "z.uf2", "firmware.uf2")}
    body = storage(name="bk", esp_platform=None, target_platform="BK72XX")
    tarball = write(
        tmp_path / "a.tar.gz",
        [
            body,
            idedata([]),
            *(regular(f".pioenvs/bk/{n}", d) for n, d in data.items()),
        ],
    )

    result = read_image_set(tarball, "0x0", tmp_path / "out")

    assert (result.platform, result.target_platform) == ("bk72xx", "bk72xx")
    assert [image.name for image in result.images] == ["firmware.bin", "firmware.uf2", "z.uf2"]


def test_idedata_without_extra_means_no_flash_images(tmp_path: Path) -> None:
    tarball = write(
        tmp_path / "a.tar.gz",
        [
            storage(esp_platform="ESP8266"),
            regular("idedata.json", b'{"prog_path": "/x/firmware.elf"}'),
            regular(f"{PIO}/firmware.bin", b"fw"),
            regular(f"{PIO}/stray.bin", b"not referenced by anything"),
        ],
    )

    result = read_image_set(tarball, "0x0", tmp_path / "out")

    assert [image.name for image in result.images] == ["firmware.bin"]
    assert files_in(tmp_path / "out") == ["firmware.bin"]


def test_existing_dest_dir_is_used_and_other_files_kept(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    dest.mkdir(mode=0o755)
    (dest / "notes.txt").write_text("mine")
    tarball = write(
        tmp_path / "a.tar.gz",
        [
            storage(esp_platform="ESP8266"),
            idedata([]),
            regular(f"{PIO}/firmware.bin", b"fw"),
        ],
    )

    read_image_set(tarball, "0x0", dest)

    assert files_in(dest) == ["firmware.bin", "notes.txt"]
    assert (dest / "notes.txt").read_text() == "mine"


async def test_async_variant_runs_the_same_reader(tmp_path: Path) -> None:
    firmware = payload("async")
    tarball = write(
        tmp_path / "a.tar.gz",
        [
            storage(esp_platform="ESP8266"),
            idedata([]),
            regular(f"{PIO}/firmware.bin", firmware),
        ],
    )

    result = await async_read_image_set(tarball, "0x0", tmp_path / "out")

    assert result.images[0].path.read_bytes() == firmware


@pytest.mark.parametrize("size", [0, 1, 65_536, 65_537, 3 * 65_536 + 5])
def test_image_sizes_around_the_copy_block(tmp_path: Path, size: int) -> None:
    firmware = payload("block", size) if size else b""
    tarball = write(
        tmp_path / "a.tar.gz",
        [
            storage(esp_platform="ESP8266"),
            idedata([]),
            regular(f"{PIO}/firmware.bin", firmware),
        ],
    )

    image = read_image_set(tarball, "0x0", tmp_path / "out").images[0]

    assert (image.size, image.path.read_bytes()) == (size, firmware)
    assert image.sha256 == hashlib.sha256(firmware).hexdigest()


def test_expected_sha256_is_checked_before_any_image_is_written(tmp_path: Path) -> None:
    tarball = write(
        tmp_path / "a.tar.gz",
        [
            storage(name="plug-2", esp_platform="ESP8266"),
            idedata([]),
            regular(".pioenvs/plug-2/firmware.bin", payload("esp8266 firmware", 70_000)),
        ],
    )
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    dest = tmp_path / "images"
    with pytest.raises(ArtifactsMismatchError) as info:
        read_image_set(tarball, "0x0", dest, expected_sha256="0" * 64)
    assert info.value.reason == "artifacts_mismatch"
    assert not dest.exists() or list(dest.iterdir()) == []
    image_set = read_image_set(tarball, "0x0", dest, expected_sha256=digest.upper())
    assert [image.name for image in image_set.images] == ["firmware.bin"]
