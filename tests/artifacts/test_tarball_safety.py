"""Hostile and broken artifacts tarballs: refused with a precise error, nothing left behind."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path
import tarfile

import pytest

from custom_components.esphome_remote_build.artifacts import (
    ArtifactsError,
    InvalidArtifactsError,
    TarLimits,
    UnsafeTarballError,
    image_set as image_set_module,
    read_image_set,
)
from custom_components.esphome_remote_build.artifacts.safe_tar import (
    bounded_chunks,
    open_tarball,
)
from tests.artifacts.tarballs import (
    Entry,
    declared_only,
    extension,
    files_in,
    idedata,
    pax_records,
    payload,
    regular,
    special,
    storage,
    tar_bytes,
    write,
)

MIB = 1024 * 1024
PIO = ".pioenvs/dev1"
FLASH = [{"path": "/b/bootloader.bin", "offset": "0x1000"}]


def good_members() -> list[Entry]:
    return [
        storage(),
        idedata(FLASH),
        regular(f"{PIO}/firmware.bin", payload("fw")),
        regular(f"{PIO}/bootloader.bin", payload("bl")),
    ]


def _refused(
    tarball: Path, dest: Path, error: type[Exception], match: str, **kwargs: object
) -> None:
    """The read fails with exactly ``error`` and leaves no file in ``dest``."""
    with pytest.raises(error, match=match) as caught:
        read_image_set(tarball, kwargs.pop("offset", "0x10000"), dest, **kwargs)  # type: ignore[arg-type]
    assert type(caught.value) is error
    assert files_in(dest) == []


UNSAFE_MEMBERS = [
    pytest.param(
        special("link.bin", tarfile.SYMTYPE, linkname="/etc/passwd"),
        "'link.bin' is a symbolic link",
        id="symlink",
    ),
    pytest.param(
        special("hard.bin", tarfile.LNKTYPE, linkname="storage.json"),
        "'hard.bin' is a hard link",
        id="hardlink",
    ),
    pytest.param(special("somedir", tarfile.DIRTYPE), "'somedir' is a directory", id="directory"),
    pytest.param(
        special("tty", tarfile.CHRTYPE, devmajor=4, devminor=1),
        "'tty' is a character device",
        id="char-device",
    ),
    pytest.param(
        special("sda", tarfile.BLKTYPE, devmajor=8), "'sda' is a block device", id="block-device"
    ),
    pytest.param(special("pipe", tarfile.FIFOTYPE), "'pipe' is a FIFO", id="fifo"),
    pytest.param(
        special("holes.bin", tarfile.GNUTYPE_SPARSE), "'holes.bin' is a sparse file", id="sparse"
    ),
    pytest.param(special("volume", b"V"), "'volume' is a member of type b'V'", id="unknown-type"),
    pytest.param(
        regular("../firmware.bin", b"x"), "'../firmware.bin' has an unsafe path", id="dotdot"
    ),
    pytest.param(regular("a/../../b.bin", b"x"), "unsafe path", id="inner-dotdot"),
    pytest.param(
        regular("/abs/firmware.bin", b"x"), "'/abs/firmware.bin' has an unsafe path", id="absolute"
    ),
    pytest.param(regular("C:/x/firmware.bin", b"x"), "unsafe path", id="drive-letter"),
    pytest.param(regular("a\\..\\..\\b.bin", b"x"), "unsafe path", id="backslash"),
    pytest.param(regular("a//b.bin", b"x"), "unsafe path", id="empty-component"),
    pytest.param(regular("./storage.json", b"x"), "unsafe path", id="dot-component"),
    pytest.param(
        Entry(tarfile.TarInfo("x"), pax={"path": "fw\x00.bin"}), "unsafe path", id="nul-in-pax-path"
    ),
    pytest.param(regular("d/" + "x" * 1100, b""), "unsafe path", id="overlong-path"),
    pytest.param(
        declared_only(f"{PIO}/firmware.elf", 256 * MIB + 1),
        "declares 268435457 bytes, over the 268435456 byte limit",
        id="huge-declared",
    ),
]


@pytest.mark.parametrize(("hostile", "match"), UNSAFE_MEMBERS)
def test_unsafe_member_refused_before_anything_is_written(
    tmp_path: Path, hostile: Entry, match: str
) -> None:
    # The hostile member comes after the good ones: everything before it was acceptable.
    tarball = write(tmp_path / "a.tar.gz", [*good_members(), hostile])
    _refused(tarball, tmp_path / "out", UnsafeTarballError, match)


def test_huge_declared_size_refused_without_reading_its_data(tmp_path: Path) -> None:
    """Only a header: reading the member's data would fail as truncated, not as unsafe."""
    tarball = write(tmp_path / "a.tar.gz", [declared_only("storage.json", 300 * MIB)], end=False)
    _refused(tarball, tmp_path / "out", UnsafeTarballError, "over the 268435456 byte limit")


def test_cumulative_declared_size_refused_before_the_member_is_read(tmp_path: Path) -> None:
    limits = TarLimits(max_member_size=4000, max_total_size=10_000, max_members=50)
    members = [storage(), idedata([])] + [
        regular(f"{PIO}/part{i}.bin", payload(str(i), 3000)) for i in range(3)
    ]
    # 4th part pushes the sum over 10 000; it carries no data, so only a pre-read check passes.
    tarball = write(
        tmp_path / "a.tar.gz", [*members, declared_only(f"{PIO}/part3.bin", 3000)], end=False
    )
    _refused(
        tarball,
        tmp_path / "out",
        UnsafeTarballError,
        r"members up to '\.pioenvs/dev1/part3\.bin' declare \d+ bytes, over the 10000",
        limits=limits,
    )


def test_member_count_capped(tmp_path: Path) -> None:
    limits = TarLimits(max_members=4)
    members = [*good_members(), regular("extra.txt", b"1")]
    _refused(
        write(tmp_path / "a.tar.gz", members),
        tmp_path / "out",
        UnsafeTarballError,
        "more than 4 members",
        limits=limits,
    )


def test_stream_cap_leaves_room_for_the_largest_extension_headers(tmp_path: Path) -> None:
    """Extension headers are data the declared sizes do not cover; the stream cap allows
    the most the header limits let through, so only trailing data can reach it."""
    limits = TarLimits(max_member_size=1, max_total_size=100, max_members=100)
    most = [extension(tarfile.XHDTYPE, pax_records({"comment": "c" * 2034}))] * 4
    assert sum(entry.info.size for entry in most) == 8192
    names = [f"m{i}.bin" for i in range(100)]
    tarball = write(tmp_path / "a.tar.gz", [e for n in names for e in (*most, regular(n, b"x"))])
    assert len(gzip.decompress(tarball.read_bytes())) > limits.max_total_size + 100 * 8192

    with open_tarball(tarball, limits) as tar:
        assert [member.path for member in tar.members()] == names


def test_data_after_the_archive_counts_against_the_stream_cap(tmp_path: Path) -> None:
    limits = TarLimits(max_member_size=10_000, max_total_size=10_000, max_members=10)
    tarball = tmp_path / "a.tar.gz"
    tarball.write_bytes(gzip.compress(tar_bytes(good_members()) + b"\0" * 200_000))
    _refused(
        tarball, tmp_path / "out", UnsafeTarballError, "decompresses to more than", limits=limits
    )


def _corrupt_crc(data: bytes) -> bytes:
    trailer_crc = bytearray(data[-8:-4])
    trailer_crc[0] ^= 0xFF
    return data[:-8] + bytes(trailer_crc) + data[-4:]


GOOD_GZ = gzip.compress(tar_bytes(good_members()))

CORRUPT_FILES = [
    pytest.param(GOOD_GZ[: len(GOOD_GZ) // 2], "corrupt", id="truncated-gzip"),
    pytest.param(GOOD_GZ[:-4], r"corrupt \(end of archive\)", id="missing-gzip-trailer"),
    pytest.param(_corrupt_crc(GOOD_GZ), r"corrupt \(end of archive\)", id="bad-crc"),
    pytest.param(
        b"PK\x03\x04 this is a zip, not a gzip" * 20, r"corrupt \(header\)", id="not-gzip"
    ),
    pytest.param(b"", r"corrupt \(header\)", id="empty-file"),
    pytest.param(
        gzip.compress(b"definitely not a tar header" * 40),
        r"corrupt \(header\)",
        id="gzip-of-garbage",
    ),
    pytest.param(GOOD_GZ + b"trailing junk", r"corrupt \(end of archive\)", id="junk-after-gzip"),
    pytest.param(
        gzip.compress(
            tar_bytes([storage(), declared_only(f"{PIO}/firmware.bin", 5000)], end=False)
        ),
        "corrupt",
        id="member-data-missing",
    ),
]


@pytest.mark.parametrize(("content", "match"), CORRUPT_FILES)
def test_corrupt_file_is_invalid(tmp_path: Path, content: bytes, match: str) -> None:
    tarball = tmp_path / "a.tar.gz"
    tarball.write_bytes(content)
    _refused(tarball, tmp_path / "out", InvalidArtifactsError, match)


def _bad_storage(**fields: object) -> Entry:
    base = {"name": "dev1", "esp_platform": "ESP32", "toolchain": None}
    return regular("storage.json", json.dumps({**base, **fields}).encode())


INVALID_BUILDS = [
    pytest.param(
        [idedata(FLASH), regular(f"{PIO}/firmware.bin", b"x")],
        "has no storage.json",
        id="no-storage",
    ),
    pytest.param([*good_members(), storage()], "holds storage.json twice", id="storage-twice"),
    pytest.param(
        [*good_members(), regular("other/bootloader.bin", b"x")],
        "members '.pioenvs/dev1/bootloader.bin' and 'other/bootloader.bin' share "
        "the name 'bootloader.bin'",
        id="duplicate-basename",
    ),
    pytest.param(
        [storage(), idedata(FLASH), regular(f"{PIO}/bootloader.bin", b"x")],
        "the build has no firmware.bin",
        id="no-firmware",
    ),
    pytest.param(
        [storage(), idedata(FLASH), regular(f"{PIO}/firmware.bin", b"x")],
        "the build has no bootloader.bin",
        id="missing-flash-image",
    ),
    pytest.param(
        [storage(), regular(f"{PIO}/firmware.bin", b"x")],
        "has no idedata.json",
        id="platformio-without-idedata",
    ),
    pytest.param(
        [storage(toolchain="esp-idf"), regular("build/firmware.bin", b"x")],
        "the build has no dev1.bin",
        id="esp-idf-without-app-image",
    ),
    pytest.param(
        [storage(), regular("idedata.json", b"{not json"), regular(f"{PIO}/firmware.bin", b"x")],
        "idedata.json is not valid JSON",
        id="idedata-bad-json",
    ),
    pytest.param(
        [storage(), regular("idedata.json", b"[1, 2]"), regular(f"{PIO}/firmware.bin", b"x")],
        "idedata.json is not a JSON object",
        id="idedata-not-object",
    ),
    pytest.param(
        [
            storage(),
            regular("idedata.json", b"[" * 100_000 + b"]" * 100_000),
            regular(f"{PIO}/firmware.bin", b"x"),
        ],
        "idedata.json is not valid JSON",
        id="idedata-nested-too-deep",
    ),
    pytest.param(
        [
            storage(),
            regular("idedata.json", b'{"extra": []}'),
            regular(f"{PIO}/firmware.bin", b"x"),
        ],
        "'extra' is not an object",
        id="idedata-extra-not-object",
    ),
    pytest.param(
        [storage(), idedata({"path": "x"}), regular(f"{PIO}/firmware.bin", b"x")],
        "'extra.flash_images' is not a list",
        id="flash-images-not-list",
    ),
    pytest.param(
        [storage(), idedata(["bootloader.bin"]), regular(f"{PIO}/firmware.bin", b"x")],
        "flash image #0 is not an object with a string 'path'",
        id="entry-not-object",
    ),
    pytest.param(
        [storage(), idedata([{"path": 7, "offset": "0x0"}]), regular(f"{PIO}/firmware.bin", b"x")],
        "flash image #0 is not an object",
        id="entry-path-not-string",
    ),
    pytest.param(
        [
            storage(),
            idedata([*FLASH, {"path": "/p/partitions.bin"}]),
            regular(f"{PIO}/firmware.bin", b"x"),
        ],
        "flash image #1 None is not a hex offset",
        id="entry-without-offset",
    ),
    pytest.param(
        [
            storage(),
            idedata([{"path": "/b/bootloader.bin", "offset": "4096"}]),
            regular(f"{PIO}/firmware.bin", b"x"),
        ],
        "'4096' is not a hex offset",
        id="entry-decimal-offset",
    ),
    pytest.param(
        [
            storage(),
            idedata([{"path": "/b/bootloader.bin", "offset": 4096}]),
            regular(f"{PIO}/firmware.bin", b"x"),
        ],
        "4096 is not a hex offset",
        id="entry-integer-offset",
    ),
    pytest.param(
        [
            storage(),
            idedata([{"path": "/b/bootloader.bin", "offset": "0x123456789"}]),
            regular(f"{PIO}/firmware.bin", b"x"),
        ],
        "is not a hex offset",
        id="entry-offset-too-long",
    ),
    pytest.param(
        [storage(), idedata([*FLASH, *FLASH]), *good_members()[2:]],
        "lists 'bootloader.bin' twice",
        id="flash-image-twice",
    ),
    pytest.param(
        [
            storage(),
            idedata([{"path": "/b/firmware.bin", "offset": "0x0"}]),
            regular(f"{PIO}/firmware.bin", b"x"),
        ],
        "lists 'firmware.bin' twice",
        id="flash-image-is-firmware",
    ),
    pytest.param(
        [
            storage(),
            idedata([{"path": "C:\\b\\.hidden.bin", "offset": "0x0"}]),
            regular(f"{PIO}/firmware.bin", b"x"),
            regular(f"{PIO}/.hidden.bin", b"x"),
        ],
        "image name '.hidden.bin' is not a plain file name",
        id="hidden-image-name",
    ),
    pytest.param(
        [regular("storage.json", b"\xff\xfe"), idedata([])],
        "storage.json is not valid",
        id="storage-not-utf8",
    ),
    pytest.param(
        [regular("storage.json", b'"dev1"'), idedata([])],
        "storage.json is not a JSON object",
        id="storage-not-object",
    ),
    pytest.param(
        [regular("storage.json", b" " * (MIB + 1))],
        "storage.json is 1048577 bytes",
        id="storage-too-large",
    ),
    pytest.param(
        [_bad_storage(name="../evil")], "invalid device name '../evil'", id="name-traversal"
    ),
    pytest.param([_bad_storage(name="-dash")], "invalid device name", id="name-leading-dash"),
    pytest.param([_bad_storage(name="")], "invalid device name", id="name-empty"),
    pytest.param([_bad_storage(name="a" * 64)], "invalid device name", id="name-too-long"),
    pytest.param([_bad_storage(name=42)], "invalid device name 42", id="name-not-string"),
    pytest.param([_bad_storage(name="dev 1")], "invalid device name", id="name-space"),
    pytest.param([_bad_storage(esp_platform=None)], "invalid platform None", id="no-platform"),
    pytest.param([_bad_storage(esp_platform=32)], "invalid platform 32", id="platform-number"),
    pytest.param([_bad_storage(esp_platform="ESP 32")], "invalid platform", id="platform-space"),
    pytest.param([_bad_storage(toolchain=["esp-idf"])], "invalid toolchain", id="toolchain-list"),
]


@pytest.mark.parametrize(("members", "match"), INVALID_BUILDS)
def test_unusable_build_is_invalid(tmp_path: Path, members: list[Entry], match: str) -> None:
    tarball = write(tmp_path / "a.tar.gz", members)
    _refused(tarball, tmp_path / "out", InvalidArtifactsError, match)


@pytest.mark.parametrize("offset", ["10000", "0x", "", "0x1g", "0x10000 ", "0x123456789", "-0x1"])
def test_bad_firmware_offset(tmp_path: Path, offset: str) -> None:
    tarball = write(tmp_path / "a.tar.gz", good_members())
    _refused(tarball, tmp_path / "out", InvalidArtifactsError, "firmware offset", offset=offset)


def test_missing_tarball_is_a_local_error(tmp_path: Path) -> None:
    _refused(tmp_path / "nope.tar.gz", tmp_path / "out", ArtifactsError, "cannot open")


def test_write_conflict_removes_the_images_already_written(tmp_path: Path) -> None:
    """firmware.bin is written, then bootloader.bin exists: undo firmware.bin only."""
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "bootloader.bin").write_bytes(b"someone else's")
    tarball = write(tmp_path / "a.tar.gz", good_members())

    with pytest.raises(ArtifactsError, match="cannot write images") as caught:
        read_image_set(tarball, "0x10000", dest)

    assert type(caught.value) is ArtifactsError
    assert isinstance(caught.value.__cause__, FileExistsError)
    assert files_in(dest) == ["bootloader.bin"]
    assert (dest / "bootloader.bin").read_bytes() == b"someone else's"


def test_dest_dir_that_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    tarball = write(tmp_path / "a.tar.gz", good_members())
    with pytest.raises(ArtifactsError, match="cannot write images"):
        read_image_set(tarball, "0x10000", tmp_path / "file" / "out")


def test_tarball_replaced_between_the_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plan comes from pass one; pass two must find every planned image or undo all."""
    tarball = write(tmp_path / "a.tar.gz", good_members())
    real_index = image_set_module._index

    def index_then_swap(path: Path, limits: TarLimits) -> object:
        result = real_index(path, limits)
        write(path, good_members()[:3])  # bootloader.bin gone
        return result

    monkeypatch.setattr(image_set_module, "_index", index_then_swap)
    _refused(tarball, tmp_path / "out", InvalidArtifactsError, "changed while it was being read")
    assert not (tmp_path / "out").exists()


class _FailingWriter(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, data: object) -> int:
        raise OSError(28, "No space left on device")


def test_write_error_while_copying_is_a_local_error(tmp_path: Path) -> None:
    tarball = write(tmp_path / "a.tar.gz", good_members())
    with open_tarball(tarball) as tar:
        firmware = next(m for m in tar.members() if m.basename == "firmware.bin")
        with pytest.raises(ArtifactsError, match=r"cannot write firmware\.bin") as caught:
            tar.copy_to(firmware, _FailingWriter())  # type: ignore[arg-type]
    assert type(caught.value) is ArtifactsError


@pytest.mark.parametrize(
    ("source", "declared", "error", "match"),
    [
        (b"x" * 10, 9, UnsafeTarballError, "yields more than its 9 bytes"),
        (b"x" * 10, 11, InvalidArtifactsError, r"truncated \(10 of 11 bytes\)"),
    ],
)
def test_member_must_yield_exactly_its_declared_size(
    source: bytes, declared: int, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match) as caught:
        list(bounded_chunks(io.BytesIO(source), declared, "m"))
    assert type(caught.value) is error


def test_default_limits_are_the_protocol_caps() -> None:
    """docs/protocol.md §6.5/§6.6: 256 MiB per member and in total."""
    limits = TarLimits()
    assert (limits.max_member_size, limits.max_total_size) == (256 * MIB, 256 * MIB)
