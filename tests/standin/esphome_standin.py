"""A stand-in for ESPHome's ``esphome`` CLI that "compiles" without a toolchain.

A real compile downloads toolchains from the internet, which tests cannot do. The
Device Builder runs whatever ``esphome`` sits next to its interpreter, so tests start
it on ``.venv-standin`` where that file is ours (see ``tests/standin/esphome``).

Every sub-command except ``compile`` goes to the real ESPHome unchanged (the Device
Builder's start-up ``--version`` probe included). ``compile`` runs the real
``esphome compile --only-generate`` first, so the configuration is validated and the
StorageJSON, ``build_info.json``, validated-config cache and ``platformio.ini`` are
ESPHome's own; then it writes the images a toolchain would have produced, the idedata
cache the receiver's packer reads, and a receipt (outside everything that is packed)
that tests read to know what the receiver ships.

Image bytes are pseudo-random, seeded from the device name and configuration hash:
incompressible, reproducible, different per device and per file, so a test cannot
pass by comparing two empty or identical files. Knobs, read in the compile's
environment (the Device Builder passes its own on):

* ``ERB_STANDIN_FIRMWARE_BYTES`` — firmware image size (default 100-300 kB, per device);
  a ``standin_firmware_bytes`` substitution in the YAML wins over it;
* ``ERB_STANDIN_FAIL=1`` — fail every compile; a device name containing ``fail``
  always fails;
* ``ERB_STANDIN_COMPILE_SECONDS`` — spend this long "compiling" (progress lines every
  0.1 s), so a test can act on a running job; a device name containing ``slow`` takes 30 s.

Real firmware carries its build's identity as strings and constants (``ESPHOME_VERSION``,
``ESPHOME_BUILD_TIME_STR``, ``ESPHOME_CONFIG_HASH``, the node name...), which is what a
device reports after it boots. The stand-in's application image (``firmware.bin``, and so
``firmware.ota.bin`` and ``firmware.factory.bin``) carries the same facts in one
recognisable block right after the image header: ``BuildInfo.marker()``, found again with
``BuildInfo.from_image()`` (the device emulator boots what it finds there). The values are
those of ``build_info.json``, which ESPHome's own code generation writes (the stand-in
writes it in ESPHome's format only if it is missing), plus the node name, friendly name,
platform, board and ``esphome: project:`` from the configuration.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
import hashlib
import json
import os
from pathlib import Path
import random
import struct
import subprocess
import sys
import time
from typing import Any, Self
import zlib

FIRMWARE_BYTES_ENV = "ERB_STANDIN_FIRMWARE_BYTES"
FIRMWARE_BYTES_SUBSTITUTION = "standin_firmware_bytes"
FAIL_ENV = "ERB_STANDIN_FAIL"
COMPILE_SECONDS_ENV = "ERB_STANDIN_COMPILE_SECONDS"
SLOW_DEVICE_SECONDS = 30.0
RECEIPT_NAME = "standin-receipt.json"

# Top-level ``esphome`` options that take values, so the sub-command can be found.
_GLOBAL_OPTION_VALUES = {
    "-l": 1,
    "--log-level": 1,
    "-s": 2,
    "--substitution": 2,
    "--mdns-address-cache": 1,
    "--dns-address-cache": 1,
    "--toolchain": 1,
}
_CHUNK = 1 << 20
_ESP_IMAGE_MAGIC = b"\xe9"
_ELF_MAGIC = b"\x7fELF"
_PARTITION_MAGIC = b"\xaa\x50"
_PARTITION_TABLE_OFFSET = 0x8000
_APP_OFFSET = 0x10000
_BOOTLOADER_BYTES = 0x6540
_PARTITION_TABLE_BYTES = 0xC00
_OTA_DATA_BYTES = 0x2000
# Second-stage bootloader offset per ESP32 variant; 0x0 for the others (S3, C3, C6, H2).
_BOOTLOADER_OFFSETS = {"esp32": 0x1000, "esp32s2": 0x1000, "esp32p4": 0x2000, "esp32c5": 0x2000}
# PlatformIO's offset for ota_data_initial.bin when no partitions.csv says otherwise.
_DEFAULT_OTA_DATA_OFFSET = 0xE000
# The build-info block: magic, 16-bit big-endian length, JSON, CRC-32 of the JSON. It sits
# after the 24-byte image header and the first 8-byte segment header, where the first
# segment's data (flash-mapped constants, strings among them) begins.
BUILD_INFO_MAGIC = b"\x00ESPHOME-STANDIN-BUILD-INFO\x00"
BUILD_INFO_OFFSET = 32
BUILD_INFO_JSON = "build_info.json"


@dataclass(frozen=True)
class Written:
    """One file the stand-in produced, as the receipt records it."""

    name: str
    path: Path
    offset: int | None
    size: int
    sha256: str


@dataclass(frozen=True)
class Storage:
    """The StorageJSON fields the receiver's packer keys on."""

    name: str
    platform: str
    toolchain: str | None
    build_path: Path
    firmware: Path
    friendly_name: str = ""
    esphome_version: str = ""

    @classmethod
    def load(cls, path: Path) -> Storage:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            name=raw["name"],
            platform=str(raw.get("esp_platform") or "").lower(),
            toolchain=raw.get("toolchain"),
            build_path=Path(raw["build_path"]),
            firmware=Path(raw["firmware_bin_path"]),
            friendly_name=str(raw.get("friendly_name") or ""),
            esphome_version=str(raw.get("esphome_version") or ""),
        )


@dataclass(frozen=True)
class BuildInfo:
    """What a build's firmware knows about itself (and reports once it runs)."""

    name: str
    friendly_name: str
    esphome_version: str
    #: ESPHome's ``CORE.config_hash`` (FNV-1a 32-bit), an int as in ``build_info.json``.
    config_hash: int
    build_time: int
    #: ``%Y-%m-%d %H:%M:%S %z``: the device's ``compilation_time``.
    build_time_str: str
    platform: str = ""
    board: str = ""
    project_name: str = ""
    project_version: str = ""

    def marker(self) -> bytes:
        """The block embedded in the image."""
        body = json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()
        return (
            BUILD_INFO_MAGIC
            + len(body).to_bytes(2, "big")
            + body
            + struct.pack(">I", zlib.crc32(body))
        )

    @classmethod
    def from_image(cls, image: bytes) -> Self | None:
        """The block in *image*, or ``None`` if it has none or it does not check out."""
        start = image.find(BUILD_INFO_MAGIC)
        if start < 0:
            return None
        start += len(BUILD_INFO_MAGIC)
        size = int.from_bytes(image[start : start + 2], "big")
        body = image[start + 2 : start + 2 + size]
        crc = image[start + 2 + size : start + 6 + size]
        if len(body) != size or len(crc) != 4 or struct.unpack(">I", crc)[0] != zlib.crc32(body):
            return None
        try:
            raw = json.loads(body)
            return cls(**raw)
        except (ValueError, TypeError):
            return None


def split_command(argv: list[str]) -> tuple[list[str], str | None, list[str]]:
    """Split argv into (top-level options, sub-command, the sub-command's arguments)."""
    index = 0
    while index < len(argv):
        token = argv[index]
        if token in _GLOBAL_OPTION_VALUES:
            index += 1 + _GLOBAL_OPTION_VALUES[token]
        elif token.startswith("-"):
            index += 1
        else:
            return argv[:index], token, argv[index + 1 :]
    return argv, None, []


def say(line: str) -> None:
    """Print one progress line at once: the receiver streams output line by line."""
    print(line, flush=True)


def random_stream(
    seed: str, size: int, magic: bytes, embedded: bytes = b"", offset: int = 0
) -> Iterator[bytes]:
    """Yield *size* reproducible pseudo-random bytes starting with *magic*, in chunks.

    *embedded* replaces the random bytes at *offset* (the file grows if it must).
    """
    rng = random.Random(seed)
    if embedded:
        head = rng.randbytes(max(0, offset - len(magic)))
        yield magic + head + embedded
        remaining = size - len(magic) - len(head) - len(embedded)
    else:
        yield magic
        remaining = size - len(magic)
    while remaining > 0:
        block = rng.randbytes(min(_CHUNK, remaining))
        remaining -= len(block)
        yield block


def write_chunks(path: Path, chunks: Iterator[bytes]) -> tuple[int, str]:
    """Write *chunks* to *path*; return (size, sha256) without re-reading the file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    with path.open("wb") as out:
        for chunk in chunks:
            out.write(chunk)
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def file_chunks(path: Path) -> Iterator[bytes]:
    """Yield *path*'s bytes in chunks (copying large images without holding them)."""
    with path.open("rb") as src:
        while block := src.read(_CHUNK):
            yield block


def factory_chunks(parts: list[Written], total: int) -> Iterator[bytes]:
    """Yield a merged flash image: *parts* at their offsets, 0xFF in the gaps."""
    position = 0
    for part in sorted(parts, key=lambda p: p.offset or 0):
        start = part.offset or 0
        yield b"\xff" * (start - position)
        yield from file_chunks(part.path)
        position = start + part.size
    yield b"\xff" * (total - position)


def parse_size(text: str) -> int:
    """Parse a partitions.csv number (``0x9000``, ``24K``, ``1M``)."""
    text = text.strip().upper()
    for suffix, factor in (("K", 1 << 10), ("M", 1 << 20)):
        if text.endswith(suffix):
            return int(text[:-1], 0) * factor
    return int(text, 0)


def ota_data_offset(partitions_csv: Path) -> int:
    """Return the otadata partition's offset the way the partition-table tool lays it out.

    ESPHome's generated table puts otadata first, so its offset differs from the classic
    Arduino layout; PlatformIO reads it from the table, and so do we.
    """
    if not partitions_csv.is_file():
        return _DEFAULT_OTA_DATA_OFFSET
    position = _PARTITION_TABLE_OFFSET + 0x1000
    for raw in partitions_csv.read_text(encoding="utf-8").splitlines():
        fields = [field.strip() for field in raw.split("#", 1)[0].split(",")]
        if len(fields) < 5 or not fields[0]:
            continue
        align = 0x10000 if fields[1] == "app" else 0x1000
        offset = parse_size(fields[3]) if fields[3] else -(-position // align) * align
        if fields[1] == "data" and fields[2] == "ota":
            return offset
        position = offset + parse_size(fields[4])
    return _DEFAULT_OTA_DATA_OFFSET


def firmware_size(validated_cache: Path, seed: str) -> int:
    """Pick the firmware size: YAML substitution, else environment, else per-device default."""
    if validated_cache.is_file():
        config = json.loads(validated_cache.read_text(encoding="utf-8")).get("config", {})
        substitutions = config.get("substitutions") or {}
        if FIRMWARE_BYTES_SUBSTITUTION in substitutions:
            return int(substitutions[FIRMWARE_BYTES_SUBSTITUTION])
    if env := os.environ.get(FIRMWARE_BYTES_ENV):
        return int(env)
    return 100_000 + random.Random(seed).randrange(200_000)


def config_hash(build_path: Path) -> str:
    """Return ESPHome's configuration hash for the build (part of the image seed)."""
    build_info = build_path / BUILD_INFO_JSON
    if not build_info.is_file():
        return ""
    return str(json.loads(build_info.read_text(encoding="utf-8")).get("config_hash", ""))


def load_build_info(storage: Storage, validated_cache: Path) -> BuildInfo:
    """The build's identity: ``build_info.json`` (written if missing) plus the config's.

    ``esphome compile --only-generate`` has written ``build_info.json`` already; should it
    be missing, it is written here in ESPHome's format (``writer.copy_src_tree``) with a
    hash of the validated configuration standing in for ``CORE.config_hash``.
    """
    config: dict[str, Any] = {}
    if validated_cache.is_file():
        config = json.loads(validated_cache.read_text(encoding="utf-8")).get("config") or {}
    path = storage.build_path / BUILD_INFO_JSON
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raw = None
    if not isinstance(raw, dict):
        now = int(time.time())
        digest = zlib.crc32(json.dumps(config, sort_keys=True).encode())
        raw = {
            "config_hash": digest,
            "build_time": now,
            "build_time_str": time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(now)),
            "esphome_version": storage.esphome_version,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    core = config.get("esphome") or {}
    project = core.get("project") or {}
    platform_config = config.get(storage.platform.lower()) or config.get(
        "esp32" if storage.platform.startswith("esp32") else storage.platform
    )
    return BuildInfo(
        name=storage.name,
        friendly_name=storage.friendly_name,
        esphome_version=str(raw["esphome_version"]),
        config_hash=int(raw["config_hash"]),
        build_time=int(raw["build_time"]),
        build_time_str=str(raw["build_time_str"]),
        platform=storage.platform,
        board=str((platform_config or {}).get("board") or ""),
        project_name=str(project.get("name") or ""),
        project_version=str(project.get("version") or ""),
    )


class Builder:
    """Writes one device's build output the way its platform's toolchain lays it out."""

    def __init__(
        self,
        storage: Storage,
        data_dir: Path,
        size: int,
        seed: str,
        build_info: BuildInfo | None = None,
    ) -> None:
        self.storage = storage
        self.data_dir = data_dir
        self.size = size
        self.seed = seed
        self.build_info = build_info
        self.written: list[Written] = []

    def random_file(
        self, path: Path, size: int, magic: bytes, offset: int | None, embedded: bytes = b""
    ) -> Written:
        """Write a pseudo-random file, seeded per device and per file name."""
        stream = random_stream(f"{self.seed}/{path.name}", size, magic, embedded, BUILD_INFO_OFFSET)
        size_written, sha = write_chunks(path, stream)
        return self.record(Written(path.name, path, offset, size_written, sha))

    def firmware_file(self, offset: int) -> Written:
        """The application image, with the build-info block where its constants live."""
        marker = b"" if self.build_info is None else self.build_info.marker()
        return self.random_file(self.storage.firmware, self.size, _ESP_IMAGE_MAGIC, offset, marker)

    def derived_file(self, path: Path, chunks: Iterator[bytes], offset: int | None) -> Written:
        size, sha = write_chunks(path, chunks)
        return self.record(Written(path.name, path, offset, size, sha))

    def record(self, written: Written) -> Written:
        say(f"[{min(99, 20 + 10 * len(self.written)):3d}%] Building {written.path.name}")
        self.written.append(written)
        return written

    def build(self) -> str:
        """Write every file; return the firmware offset."""
        family = "esp32" if self.storage.platform.startswith("esp32") else self.storage.platform
        if family == "esp8266":
            self.build_esp8266()
            return "0x0"
        if family == "esp32":
            self.build_esp32()
            return hex(_APP_OFFSET)
        raise UnsupportedPlatformError(self.storage.platform)

    def build_esp8266(self) -> None:
        out = self.storage.firmware.parent
        self.firmware_file(0)
        self.write_idedata([])
        self.random_file(out / "firmware.elf", self.size // 4 + 4096, _ELF_MAGIC, None)

    def build_esp32(self) -> None:
        esp_idf = self.storage.toolchain == "esp-idf"
        out = self.storage.firmware.parent
        firmware = self.firmware_file(_APP_OFFSET)
        bootloader_offset = _BOOTLOADER_OFFSETS.get(self.storage.platform, 0x0)
        flash = [
            self.random_file(
                out / "bootloader" / "bootloader.bin" if esp_idf else out / "bootloader.bin",
                _BOOTLOADER_BYTES,
                _ESP_IMAGE_MAGIC,
                bootloader_offset,
            ),
            self.random_file(
                out / "partition_table" / "partition-table.bin"
                if esp_idf
                else out / "partitions.bin",
                _PARTITION_TABLE_BYTES,
                _PARTITION_MAGIC,
                _PARTITION_TABLE_OFFSET,
            ),
            self.random_file(
                out / "ota_data_initial.bin",
                _OTA_DATA_BYTES,
                b"",
                ota_data_offset(self.storage.build_path / "partitions.csv"),
            ),
        ]
        if not esp_idf:  # native ESP-IDF builds write no idedata (the receiver allows it)
            self.write_idedata(flash)
        self.derived_file(
            out / "firmware.factory.bin",
            factory_chunks([*flash, firmware], _APP_OFFSET + firmware.size),
            0x0,
        )
        self.derived_file(out / "firmware.ota.bin", file_chunks(firmware.path), None)
        self.random_file(out / "firmware.elf", self.size // 4 + 4096, _ELF_MAGIC, None)

    def write_idedata(self, flash_images: list[Written]) -> None:
        """Write ESPHome's idedata cache where the receiver's packer looks for it."""
        suffix = ".arduino.json" if self.storage.toolchain == "arduino" else ".json"
        path = self.data_dir / "idedata" / f"{self.storage.name}{suffix}"
        gcc = (
            self.data_dir
            / ".platformio/packages/toolchain-standin/bin"
            / f"{self.storage.platform}-elf-gcc"
        )
        idedata: dict[str, Any] = {
            "env_name": self.storage.name,
            "prog_path": str(self.storage.firmware.with_name("firmware.elf")),
            "cc_path": str(gcc),
            "cxx_path": str(gcc.with_name(gcc.name.replace("gcc", "g++"))),
            "defines": ["ESPHOME_STANDIN_BUILD"],
            "includes": {"build": [str(self.storage.build_path / "src")], "toolchain": []},
            "extra": {
                "flash_images": [
                    {"path": str(image.path), "offset": hex(image.offset or 0)}
                    for image in flash_images
                ]
            },
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(idedata, indent=2) + "\n", encoding="utf-8")
        say(f"Wrote idedata {path}")

    def write_receipt(self, firmware_offset: str) -> Path:
        """Record what was written, in flashing order, outside everything that is packed."""
        receipt = {
            "device_name": self.storage.name,
            "platform": self.storage.platform,
            "toolchain": self.storage.toolchain,
            "firmware_offset": firmware_offset,
            "build_path": str(self.storage.build_path),
            "build_info": None if self.build_info is None else asdict(self.build_info),
            "files": [
                {
                    "name": item.name,
                    "path": item.path.relative_to(self.storage.build_path).as_posix(),
                    "offset": None if item.offset is None else hex(item.offset),
                    "size": item.size,
                    "sha256": item.sha256,
                }
                for item in self.written
            ],
        }
        path = self.storage.build_path / RECEIPT_NAME
        path.write_text(json.dumps(receipt, indent=2) + "\n", encoding="utf-8")
        return path


class UnsupportedPlatformError(Exception):
    """The stand-in only lays out ESP8266 and ESP32 builds."""


def take_time(default: float | None) -> None:
    """Pretend to compile for a while, printing progress like PlatformIO does."""
    seconds = float(os.environ.get(COMPILE_SECONDS_ENV) or default or 0)
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        say(f"Compiling src/main.cpp.o ({left:.1f} s left)")
        time.sleep(min(0.1, left))


def compile_one(config: Path) -> int:
    """Turn one generated configuration into a finished "build"; return the exit code."""
    data_dir = Path(os.environ.get("ESPHOME_DATA_DIR") or config.parent / ".esphome")
    storage_dir = data_dir / "storage"
    storage = Storage.load(storage_dir / f"{config.name}.json")
    if os.environ.get(FAIL_ENV) == "1" or "fail" in storage.name:
        say(f"ERROR stand-in compiler: simulated build failure for {storage.name}")
        return 1
    seed = f"{storage.name}:{config_hash(storage.build_path)}"
    validated = storage_dir / f"{config.name}.validated.json"
    size = firmware_size(validated, seed)
    build_info = load_build_info(storage, validated)
    say(f"INFO Compiling app... Build path: {storage.build_path}")
    say(f"[ 10%] Stand-in compiler: {storage.platform} ({storage.toolchain}), {size} bytes")
    say(
        f"[ 15%] ESPHome {build_info.esphome_version}, config hash "
        f"{build_info.config_hash:08x}, built {build_info.build_time_str}"
    )
    take_time(SLOW_DEVICE_SECONDS if "slow" in storage.name else None)
    builder = Builder(storage, data_dir, size, seed, build_info)
    try:
        firmware_offset = builder.build()
    except UnsupportedPlatformError:
        say(f"ERROR stand-in compiler: platform {storage.platform!r} is not supported")
        return 1
    builder.write_receipt(firmware_offset)
    say(f"[100%] Linked {len(builder.written)} files for {storage.name}")
    say("INFO Successfully compiled program.")
    return 0


def main(argv: list[str]) -> int:
    """Run the real ESPHome for everything but a full compile, which we fake."""
    options, command, rest = split_command(argv)
    configs = [arg for arg in rest if not arg.startswith("-")]
    real = [sys.executable, "-m", "esphome"]
    if command != "compile" or "--only-generate" in rest or not configs:
        os.execv(sys.executable, [*real, *argv])
    for config in configs:
        code = subprocess.call([*real, *options, "compile", "--only-generate", config])
        if code == 0:
            code = compile_one(Path(config).absolute())
        if code != 0:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
