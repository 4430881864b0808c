"""Tarballs shaped like a receiver's ``download_artifacts`` output, and small store helpers."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
import hashlib
import io
import json
import os
from pathlib import Path
import shutil
import stat
import tarfile

from custom_components.esphome_remote_build.store import BuildStore
from custom_components.esphome_remote_build.stored_build import StoredBuild

SERVER_PIN = "ab" * 32
RECEIVER_BUILD = "/data/build"


@dataclass(frozen=True)
class Member:
    """One tar member; ``kind`` is a ``tarfile`` type (regular file by default)."""

    name: str
    data: bytes = b""
    kind: bytes = tarfile.REGTYPE
    linkname: str = ""


@dataclass(frozen=True)
class Tarball:
    """A tarball on disk plus what the download reported about it."""

    path: Path
    sha256: str
    firmware_offset: str
    images: dict[str, bytes] = field(default_factory=dict)


def _json(data: object) -> bytes:
    return json.dumps(data, indent=2).encode()


def esp32_members(name: str = "kitchen", seed: int = 1) -> list[Member]:
    """An ESP32 PlatformIO build, in the receiver's member order (docs/protocol.md §6.2)."""
    env = f"{RECEIVER_BUILD}/{name}/.pioenvs/{name}"
    storage = {
        "storage_version": 1,
        "name": name,
        "friendly_name": name.title(),
        "esp_platform": "ESP32S3",
        "core_platform": "esp32",
        "build_path": f"{RECEIVER_BUILD}/{name}",
        "firmware_bin_path": f"{env}/firmware.bin",
        "toolchain": None,
        "framework": "esp-idf",
        "esphome_version": "2026.10.0",
    }
    idedata = {
        "prog_path": f"{env}/firmware.elf",
        "cc_path": "/root/.platformio/packages/toolchain-xtensa-esp32s3/bin/gcc",
        "extra": {
            "flash_images": [
                {"path": f"{env}/bootloader.bin", "offset": "0x0"},
                {"path": f"{env}/partitions.bin", "offset": "0x8000"},
                {"path": f"{env}/ota_data_initial.bin", "offset": "0xd000"},
            ]
        },
    }
    blob = bytes([seed]) * 64
    return [
        Member("storage.json", _json(storage)),
        Member("idedata.json", _json(idedata)),
        Member("platformio.ini", b"[env:x]\nplatform = espressif32\n"),
        Member(f".pioenvs/{name}/firmware.bin", b"FW" + blob * 40),
        Member(f".pioenvs/{name}/firmware.elf", b"\x7fELF" + blob),
        Member(f".pioenvs/{name}/firmware.factory.bin", b"FACTORY" + blob * 50),
        Member(f".pioenvs/{name}/firmware.ota.bin", b"OTA" + blob * 40),
        Member(f".pioenvs/{name}/bootloader.bin", b"BOOT" + blob),
        Member(f".pioenvs/{name}/partitions.bin", b"PART" + blob),
        Member(f".pioenvs/{name}/ota_data_initial.bin", b"\xff" * 32),
    ]


def esp8266_members(name: str = "porch") -> list[Member]:
    """A single-image ESP8266 build: no flash images besides the firmware."""
    storage = {
        "name": name,
        "esp_platform": "ESP8266",
        "build_path": f"{RECEIVER_BUILD}/{name}",
        "firmware_bin_path": f"{RECEIVER_BUILD}/{name}/.pioenvs/{name}/firmware.bin",
    }
    return [
        Member("storage.json", _json(storage)),
        Member("idedata.json", _json({"extra": {"flash_images": []}})),
        Member("platformio.ini", b"[env:x]\n"),
        Member(f".pioenvs/{name}/firmware.bin", b"8266" * 300),
        Member(f".pioenvs/{name}/firmware.elf", b"\x7fELF8266"),
    ]


def write_tarball(path: Path, members: list[Member], firmware_offset: str) -> Tarball:
    """Pack ``members`` the way the receiver does (gzip tar, regular files, build paths)."""
    with tarfile.open(path, "w:gz") as tar:
        for member in members:
            info = tarfile.TarInfo(member.name)
            info.type = member.kind
            info.linkname = member.linkname
            info.size = len(member.data) if member.kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(member.data) if info.size else None)
    images = {
        Path(m.name).name: m.data
        for m in members
        if m.kind == tarfile.REGTYPE and m.name.startswith(".pioenvs/")
    }
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    return Tarball(path, sha, firmware_offset, images)


class StepClock:
    """A clock that advances one minute per reading, so "newest" is unambiguous."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


@dataclass(frozen=True)
class Fetched:
    """What a finished download reports to the store (``store.Fetched``)."""

    sha256: str
    firmware_offset: str


async def commit(
    store: BuildStore,
    tarball: Tarball,
    job_id: str = "job-1",
    *,
    server_pin: str = SERVER_PIN,
    configuration: str = "kitchen.yaml",
) -> StoredBuild:
    """Store ``tarball`` as ``job_id`` the way a download does: through ``async_download``.

    The fetch copies the prepared tarball to the path the store lends and reports the
    tarball's SHA-256 and firmware offset.  A tarball whose file is gone stands for a
    download that reported success but left nothing at that path.
    """

    async def fetch(dest: Path) -> Fetched:
        if tarball.path.exists():
            await asyncio.to_thread(shutil.copyfile, tarball.path, dest)
        return Fetched(tarball.sha256, tarball.firmware_offset)

    return await store.async_download(
        job_id, server_pin=server_pin, configuration=configuration, fetch=fetch
    )


def snapshot(root: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every entry under ``root`` with its mode and (for files) its bytes."""
    result: dict[str, tuple[int, bytes | None]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath, name)
            info = path.lstat()
            data = path.read_bytes() if stat.S_ISREG(info.st_mode) else None
            result[str(path.relative_to(root))] = (stat.S_IMODE(info.st_mode), data)
    return result


def published(root: Path) -> set[str]:
    """What the store's folder shows: its builds, besides one empty private scratch folder."""
    names = {p.name for p in root.iterdir()}
    scratch = {name for name in names if name.startswith(".tmp-scratch-")}
    assert len(scratch) <= 1, names
    for name in scratch:
        assert list((root / name).iterdir()) == []  # nothing lent is left behind
        assert stat.S_IMODE((root / name).lstat().st_mode) == 0o700
    return names - scratch
