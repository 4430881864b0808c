"""``build_info.json`` in an artifacts tarball: read strictly into ``ImageSet.build_info``.

The file is the evidence a flash is verified against (the device reports the same version,
build time and configuration hash), so a malformed one makes the whole build invalid, while
a build without one (older ESPHome) is still usable.
"""

from __future__ import annotations

from pathlib import Path
import time
from typing import Any

import pytest

from custom_components.esphome_remote_build.artifacts import (
    BuildInfo,
    InvalidArtifactsError,
    UnsafeTarballError,
    read_image_set,
)
from custom_components.esphome_remote_build.artifacts.build_metadata import (
    MAX_BUILD_INFO_JSON,
    parse_build_info,
)
from tests.artifacts.build_info_samples import (
    BUILD_TIME,
    BUILD_TIME_STR,
    CONFIG_HASH,
    ESPHOME_VERSION,
    SAMPLE_INFO,
    build_info_json,
)
from tests.artifacts.tarballs import Entry, files_in, idedata, payload, regular, storage, write

PIO = ".pioenvs/dev1"


def _tarball(tmp_path: Path, *extra: Entry) -> Path:
    """A minimal ESP8266-style build plus ``extra`` metadata members."""
    return write(
        tmp_path / "a.tar.gz",
        [
            storage(),
            idedata([]),
            *extra,
            regular(f"{PIO}/firmware.bin", payload("firmware")),
        ],
    )


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        pytest.param([regular("build_info.json", build_info_json())], SAMPLE_INFO, id="present"),
        pytest.param([], None, id="absent"),
        pytest.param(
            # Keys ESPHome may add later are ignored.
            [regular("build_info.json", build_info_json(comment="x", build_id=[1, 2]))],
            SAMPLE_INFO,
            id="extra-keys",
        ),
        pytest.param(
            [regular("build_info.json", build_info_json(config_hash=0, build_time=0))],
            BuildInfo(0, 0, BUILD_TIME_STR, ESPHOME_VERSION),
            id="zeros",
        ),
        pytest.param(
            [regular("build_info.json", build_info_json(config_hash=2**32 - 1))],
            BuildInfo(2**32 - 1, BUILD_TIME, BUILD_TIME_STR, ESPHOME_VERSION),
            id="largest-hash",
        ),
        pytest.param(
            [regular("build_info.json", build_info_json(esphome_version="2026.11.0-dev"))],
            BuildInfo(CONFIG_HASH, BUILD_TIME, BUILD_TIME_STR, "2026.11.0-dev"),
            id="dev-version",
        ),
        pytest.param(
            # A build_info.json deeper in the build folder is not the metadata member.
            [regular(f"{PIO}/build_info.json", b"not json")],
            None,
            id="not-at-root",
        ),
    ],
)
def test_build_info_is_read(
    tmp_path: Path, members: list[Entry], expected: BuildInfo | None
) -> None:
    dest = tmp_path / "out"
    result = read_image_set(_tarball(tmp_path, *members), "0x0", dest)
    assert result.build_info == expected
    assert files_in(dest) == ["firmware.bin"]  # never written out as an image


def _text(**changes: Any) -> bytes:
    return build_info_json(**changes)


MALFORMED = {
    "not-json": b"{",
    "not-utf8": b'{"config_hash": "\xff"}',
    "array": b"[]",
    "null": b"null",
    "empty-object": b"{}",
    "missing-config_hash": _text(config_hash=...),
    "missing-build_time": _text(build_time=...),
    "missing-build_time_str": _text(build_time_str=...),
    "missing-esphome_version": _text(esphome_version=...),
    "hash-negative": _text(config_hash=-1),
    "hash-33-bits": _text(config_hash=2**32),
    "hash-bool": _text(config_hash=True),
    "hash-float": _text(config_hash=12.0),
    "hash-hex-string": _text(config_hash="00c0ffee"),
    "hash-null": _text(config_hash=None),
    "hash-huge": b'{"config_hash": 1' + b"0" * 5000 + b"}",
    "time-negative": _text(build_time=-1),
    "time-too-big": _text(build_time=2**63),
    "time-bool": _text(build_time=False),
    "time-float": _text(build_time=1.5e9),
    "time-string": _text(build_time="1790000000"),
    "time-nan": _text(build_time=float("nan")),
    "time_str-empty": _text(build_time_str=""),
    "time_str-65": _text(build_time_str="x" * 65),
    "time_str-newline": _text(build_time_str="2026-09-21\n14:13:20 +0000"),
    "time_str-nul": _text(build_time_str="2026-09-21 14:13:20 +0000\x00"),
    "time_str-non-ascii": _text(build_time_str="2026-09-21 14:13:20 +0000 é"),
    "time_str-int": _text(build_time_str=BUILD_TIME),
    "version-empty": _text(esphome_version=""),
    "version-65": _text(esphome_version="1" * 65),
    "version-null": _text(esphome_version=None),
    "version-list": _text(esphome_version=["2026.10.0"]),
    "version-tab": _text(esphome_version="2026.10.0\t"),
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_build_info_makes_the_build_invalid(tmp_path: Path, data: bytes) -> None:
    dest = tmp_path / "out"
    with pytest.raises(InvalidArtifactsError, match=r"build_info\.json") as err:
        read_image_set(_tarball(tmp_path, regular("build_info.json", data)), "0x0", dest)
    assert not isinstance(err.value, UnsafeTarballError)  # broken, not hostile
    assert err.value.key == "invalid_artifacts"
    assert not dest.exists()  # refused before any image was written


@pytest.mark.parametrize(
    ("size", "refused"),
    [(MAX_BUILD_INFO_JSON, False), (MAX_BUILD_INFO_JSON + 1, True)],
    ids=["at-limit", "over-limit"],
)
def test_build_info_size_limit(tmp_path: Path, size: int, refused: bool) -> None:
    body = build_info_json()
    padded = body[:-2] + b" " * (size - len(body)) + body[-2:]  # whitespace before "}"
    assert len(padded) == size
    tarball = _tarball(tmp_path, regular("build_info.json", padded))
    if refused:
        with pytest.raises(InvalidArtifactsError, match="limit"):
            read_image_set(tarball, "0x0", tmp_path / "out")
        assert not (tmp_path / "out").exists()
    else:
        assert read_image_set(tarball, "0x0", tmp_path / "out").build_info == SAMPLE_INFO


def test_build_info_twice_is_refused(tmp_path: Path) -> None:
    twice = [regular("build_info.json", build_info_json())] * 2
    with pytest.raises(InvalidArtifactsError, match="twice"):
        read_image_set(_tarball(tmp_path, *twice), "0x0", tmp_path / "out")


def test_long_values_are_cut_short_in_the_message() -> None:
    with pytest.raises(InvalidArtifactsError) as err:
        parse_build_info(_text(build_time_str="y" * 60_000))
    assert len(str(err.value)) < 200


@pytest.mark.parametrize(
    ("config_hash", "announced"),
    [
        (0, "00000000"),
        (0x00C0FFEE, "00c0ffee"),
        (0x5A94A12D, "5a94a12d"),
        (0xFFFFFFFF, "ffffffff"),
    ],
)
def test_config_hash_hex_is_the_mdns_txt_form(config_hash: int, announced: str) -> None:
    # ESPHome's mDNS component: format_hex_to(buf, App.get_config_hash()) — the uint32
    # big-endian, two lowercase hex digits per byte, so always eight digits.
    info = BuildInfo(config_hash, BUILD_TIME, BUILD_TIME_STR, ESPHOME_VERSION)
    assert info.config_hash_hex == announced


@pytest.mark.parametrize(
    ("build_time_str", "reported"),
    [
        (BUILD_TIME_STR, BUILD_TIME_STR),
        ("2026-09-21 16:13:20 +0200", "2026-09-21 16:13:20 +0200"),
        # The device copies into a 26-byte buffer: at most 25 characters survive.
        ("12026-09-21 14:13:20 +0000", "12026-09-21 14:13:20 +000"),
        ("short", "short"),
    ],
)
def test_compilation_time_is_what_the_device_reports(build_time_str: str, reported: str) -> None:
    info = BuildInfo(CONFIG_HASH, BUILD_TIME, build_time_str, ESPHOME_VERSION)
    assert info.compilation_time == reported


@pytest.mark.parametrize("zone", ["UTC0", "CET-1CEST,M3.5.0,M10.5.0/3", "<-0930>9:30"])
def test_esphome_time_format_fits_the_device_buffer(
    zone: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # writer.get_build_info: time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(t)).
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        text = time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(BUILD_TIME))
    finally:
        monkeypatch.undo()
        time.tzset()
    info = parse_build_info(_text(build_time_str=text))
    assert len(text) == 25
    assert info.compilation_time == text
