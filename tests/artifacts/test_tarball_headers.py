"""Extension headers and sparse maps: sized up before tarfile reads them, memory stays flat.

tarfile reads a GNU long name, a pax header or a sparse map whole while parsing a header,
before any check of ours on the member runs.  These tarballs are a few hundred kilobytes
of gzip that would make it read hundreds of megabytes into memory; tracemalloc shows the
read is refused without that.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path
import re
import tarfile
import tracemalloc
import zlib

import pytest

from custom_components.esphome_remote_build.artifacts import UnsafeTarballError, read_image_set
from custom_components.esphome_remote_build.artifacts.safe_tar import open_tarball
from tests.artifacts.tarballs import (
    BLOCK,
    Entry,
    extension,
    idedata,
    pax_records,
    payload,
    regular,
    special,
    storage,
    tar_bytes,
    with_checksum,
)

MIB = 1024 * 1024
PIO = ".pioenvs/dev1"
FLASH = [{"path": "/b/bootloader.bin", "offset": "0x1000"}]
HUGE = 250 * MIB
# Reading a refused tarball needs the gzip and tar buffers, a few hundred KiB.
MAX_PEAK = 4 * MIB


@pytest.fixture(scope="module")
def zeros_gz() -> bytes:
    """HUGE zero bytes as one gzip member of about 250 KB, built without holding them."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    block = bytes(MIB)
    parts = [compressor.compress(block) for _ in range(HUGE // MIB)]
    return b"".join([*parts, compressor.flush()])


def rest_of_build() -> list[Entry]:
    return [
        idedata(FLASH),
        regular(f"{PIO}/firmware.bin", payload("fw")),
        regular(f"{PIO}/bootloader.bin", payload("bl")),
    ]


def _refused_peak(tarball: Path, dest: Path, match: str) -> int:
    """Read must fail as unsafe; return the peak memory traced while it tried."""
    tracemalloc.start()
    try:
        with pytest.raises(UnsafeTarballError, match=match):
            read_image_set(tarball, "0x10000", dest)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


HUGE_HEADERS = [
    pytest.param(tarfile.GNUTYPE_LONGNAME, "GNU long name", id="gnu-L"),
    pytest.param(tarfile.GNUTYPE_LONGLINK, "GNU long link name", id="gnu-K"),
    pytest.param(tarfile.XHDTYPE, "pax extended", id="pax-x"),
    pytest.param(tarfile.XGLTYPE, "pax global", id="pax-g"),
    pytest.param(tarfile.SOLARIS_XHDTYPE, "Solaris extended", id="solaris-X"),
]


@pytest.mark.parametrize(("kind", "label"), HUGE_HEADERS)
def test_huge_extension_header_refused_before_it_is_read(
    tmp_path: Path, zeros_gz: bytes, kind: bytes, label: str
) -> None:
    # The header's data really is there: gzip members concatenate into one stream.
    head = gzip.compress(tar_bytes([storage(), extension(kind, size=HUGE)], end=False))
    tarball = tmp_path / "a.tar.gz"
    tarball.write_bytes(head + zeros_gz + gzip.compress(tar_bytes(rest_of_build())))
    assert tarball.stat().st_size < 300_000

    peak = _refused_peak(
        tarball, tmp_path / "out", re.escape(f"a {label} header declares {HUGE} bytes")
    )

    assert peak < MAX_PEAK


def test_gzip_bomb_is_refused_in_flat_memory(tmp_path: Path, zeros_gz: bytes) -> None:
    """Twice HUGE zeros after a valid archive: the decompressed-stream cap stops the read."""
    tarball = tmp_path / "a.tar.gz"
    members = [storage(), *rest_of_build()]
    tarball.write_bytes(gzip.compress(tar_bytes(members)) + zeros_gz + zeros_gz)

    peak = _refused_peak(tarball, tmp_path / "out", "decompresses to more than")

    assert peak < MAX_PEAK


def _write(path: Path, entries: list[Entry]) -> Path:
    path.write_bytes(gzip.compress(tar_bytes(entries)))
    return path


def _comment(size: int) -> bytes:
    """Pax records of exactly ``size`` bytes."""
    records = pax_records({"comment": "c" * (size - 14)})  # for four-digit sizes
    assert len(records) == size, len(records)
    return records


@pytest.mark.parametrize(
    ("before_firmware", "match"),
    [
        pytest.param(
            [extension(tarfile.XHDTYPE, _comment(8193))],
            "a pax extended header declares 8193 bytes, over the 8192 byte limit",
            id="one-header-over-the-limit",
        ),
        pytest.param(
            [
                extension(tarfile.XGLTYPE, _comment(4000)),
                extension(tarfile.XHDTYPE, _comment(4000)),
                extension(tarfile.GNUTYPE_LONGNAME, b"x" * 200 + b"\0"),
            ],
            "a GNU long name header declares 201 bytes, over the 8192 byte limit",
            id="headers-of-one-member-share-the-limit",
        ),
        pytest.param(
            [extension(tarfile.XHDTYPE, pax_records({"comment": "a"}))] * 5,
            "more than 4 extension headers before one member",
            id="too-many-in-a-row",
        ),
        pytest.param(
            [extension(tarfile.XHDTYPE, pax_records({"comment": "a"}))] * 3000,
            "more than 4 extension headers before one member",
            id="deeper-than-the-recursion-limit",
        ),
    ],
)
def test_extension_headers_of_one_member_are_capped(
    tmp_path: Path, before_firmware: list[Entry], match: str
) -> None:
    entries = [storage(), idedata(FLASH), *before_firmware, *rest_of_build()[1:]]
    _refused_peak(_write(tmp_path / "a.tar.gz", entries), tmp_path / "out", re.escape(match))


def test_global_headers_share_one_limit_for_the_whole_archive(tmp_path: Path) -> None:
    """A global header stays in force for every later member, so all of them add up."""
    glob = extension(tarfile.XGLTYPE, _comment(5000))
    entries = [glob, storage(), idedata(FLASH), glob, *rest_of_build()[1:]]
    _refused_peak(
        _write(tmp_path / "a.tar.gz", entries),
        tmp_path / "out",
        "pax global headers declare 10000 bytes in all, over the 8192 byte limit",
    )


def test_negative_extension_header_size_is_refused(tmp_path: Path) -> None:
    header = extension(tarfile.XHDTYPE).to_bytes()
    negative = with_checksum(header[:124] + b"\xff" * 12 + header[136:])  # base-256 -1
    tarball = tmp_path / "a.tar.gz"
    tarball.write_bytes(
        gzip.compress(tar_bytes([storage()], end=False) + negative + tar_bytes(rest_of_build()))
    )
    _refused_peak(tarball, tmp_path / "out", "a pax extended header declares -1 bytes")


def _sparse_header(name: str, *, extended: bool) -> bytes:
    """A GNU sparse member header; ``extended`` says more sparse map blocks follow."""
    header = special(name, tarfile.GNUTYPE_SPARSE).to_bytes()
    return with_checksum(header[:482] + (b"\1" if extended else b"\0") + header[483:])


def _sparse_map_block(*, more: bool) -> bytes:
    """21 (offset, size) pairs, each a new tuple for tarfile to keep."""
    pairs = b"%011o\0%011o\0" % (1, 1) * 21
    return pairs + (b"\1" if more else b"\0") + b"\0" * (BLOCK - len(pairs) - 1)


def test_gnu_sparse_map_refused_before_it_is_read(tmp_path: Path) -> None:
    blocks = 20 * MIB // BLOCK
    sparse_map = _sparse_map_block(more=True) * (blocks - 1) + _sparse_map_block(more=False)
    tarball = tmp_path / "a.tar.gz"
    tarball.write_bytes(
        gzip.compress(
            tar_bytes([storage()], end=False)
            + _sparse_header("holes.bin", extended=True)
            + sparse_map
            + tar_bytes(rest_of_build())
        )
    )

    peak = _refused_peak(tarball, tmp_path / "out", "'holes.bin' is a sparse file")

    assert peak < MAX_PEAK


def test_pax_sparse_map_refused_before_it_is_read(tmp_path: Path) -> None:
    """GNU sparse format 1.0 keeps its map in the member's data, read number by number."""
    numbers = 10_000_000
    sparse = regular("holes.bin", b"%d\n" % (numbers // 2) + b"1\n" * numbers)
    sparse.pax = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.realsize": "1"}
    tarball = _write(tmp_path / "a.tar.gz", [storage(), sparse, *rest_of_build()])

    peak = _refused_peak(tarball, tmp_path / "out", "'holes.bin' is a sparse file")

    assert peak < MAX_PEAK


@pytest.mark.parametrize("tar_format", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_long_names_and_global_headers_as_tarfile_writes_them(
    tmp_path: Path, tar_format: int
) -> None:
    """The longest path we accept (1024 characters, 2 UTF-8 bytes each) still reads."""
    long_path = "d/" + "é" * 1018 + ".bin"
    tarball = tmp_path / "a.tar.gz"
    pax_headers = {"comment": "built by a test"} if tar_format == tarfile.PAX_FORMAT else None
    with tarfile.open(tarball, "w:gz", format=tar_format, pax_headers=pax_headers) as tar:
        for entry in [storage(), *rest_of_build(), regular(long_path, b"long")]:
            entry.info.mtime = 1_700_000_000.5  # a float mtime adds a pax record too
            tar.addfile(entry.info, io.BytesIO(entry.data))

    with open_tarball(tarball) as tar:
        paths = [member.path for member in tar.members()]

    assert paths[-1] == long_path
    assert len(paths) == 5
