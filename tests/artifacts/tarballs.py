"""Build artifacts tarballs for tests, including ones tarfile itself would refuse to write.

Members are serialised by hand (header blocks + padded data), so a test can declare a size
without providing the data, use any member type, or put any path into a header.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import gzip
import json
from pathlib import Path
import tarfile
from typing import Any

BLOCK = 512


@dataclass
class Entry:
    """One tar member: its header and the bytes that follow it (padded on write)."""

    info: tarfile.TarInfo
    data: bytes = b""
    pax: dict[str, str] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        self.info.pax_headers = dict(self.pax)
        header = self.info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        padding = -len(self.data) % BLOCK
        return header + self.data + b"\0" * padding


def regular(name: str, data: bytes = b"") -> Entry:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return Entry(info, data)


def special(name: str, kind: bytes, **attrs: Any) -> Entry:
    info = tarfile.TarInfo(name)
    info.type = kind
    for key, value in attrs.items():
        setattr(info, key, value)
    return Entry(info)


def declared_only(name: str, size: int) -> Entry:
    """A regular member claiming ``size`` bytes, none of which follow."""
    info = tarfile.TarInfo(name)
    info.size = size
    return Entry(info)


def extension(kind: bytes, data: bytes = b"", *, size: int | None = None) -> Entry:
    """An extension header (GNU long name/link, pax extended/global) with ``data``.

    ``size`` declares a different size; the bytes it claims are then the caller's to append.
    """
    gnu = kind in (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
    info = tarfile.TarInfo("././@LongLink" if gnu else "PaxHeader")
    info.type = kind
    info.size = len(data) if size is None else size
    return Entry(info, data)


def pax_records(records: dict[str, str]) -> bytes:
    """Serialise pax records: ``"<length> <key>=<value>\\n"``, length counting itself."""
    out = b""
    for key, value in records.items():
        body = f" {key}={value}\n".encode()
        length = len(body) + 1
        while len(str(length).encode() + body) != length:
            length += 1
        out += str(length).encode() + body
    return out


def with_checksum(block: bytes) -> bytes:
    """Recompute a hand-edited header block's checksum."""
    block = block[:148] + b" " * 8 + block[156:]
    return block[:148] + b"%06o\0 " % sum(block) + block[156:]


def storage(
    name: str = "dev1", esp_platform: Any = "ESP32", toolchain: Any = None, **extra: Any
) -> Entry:
    body: dict[str, Any] = {
        "storage_version": 1,
        "name": name,
        "esp_platform": esp_platform,
        "core_platform": str(esp_platform).lower(),
        "build_path": f"/data/build/{name}",
        "firmware_bin_path": f"/data/build/{name}/.pioenvs/{name}/firmware.bin",
        "toolchain": toolchain,
        "esphome_version": "2026.10.0",
        **extra,
    }
    return regular("storage.json", json.dumps(body).encode())


def idedata(flash_images: Any, **extra: Any) -> Entry:
    body = {
        "prog_path": "/data/build/dev1/.pioenvs/dev1/firmware.elf",
        "extra": {"flash_images": flash_images},
        **extra,
    }
    return regular("idedata.json", json.dumps(body).encode())


def tar_bytes(entries: list[Entry], *, end: bool = True) -> bytes:
    body = b"".join(entry.to_bytes() for entry in entries)
    return body + (b"\0" * (2 * BLOCK) if end else b"")


def write(path: Path, entries: list[Entry], *, end: bool = True) -> Path:
    path.write_bytes(gzip.compress(tar_bytes(entries, end=end)))
    return path


def payload(label: str, size: int = 3000) -> bytes:
    """Distinct, non-trivial image bytes per label."""
    seed = label.encode()
    return (seed * (size // len(seed) + 1))[:size]


def files_in(directory: Path) -> list[str]:
    """Every file below ``directory`` (empty when it does not exist)."""
    if not directory.exists():
        return []
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if not p.is_dir())
