"""A stored build keeps its ``build_info.json`` in the manifest (docs/store.md).

The manifest records the four fields as ESPHome wrote them, reads them back as strictly as
the rest, and a manifest written before the field existed still loads.
"""

from __future__ import annotations

from collections.abc import Callable
import json
from pathlib import Path
from typing import Any

import pytest

from custom_components.esphome_remote_build.artifacts import BuildInfo, InvalidArtifactsError
from custom_components.esphome_remote_build.store import BuildStore
from custom_components.esphome_remote_build.store_errors import CorruptBuildError
from custom_components.esphome_remote_build.stored_build import (
    MANIFEST_NAME,
    MANIFEST_SCHEMA,
    StoredBuild,
)
from tests.artifacts.build_info_samples import (
    BUILD_TIME_STR,
    ESPHOME_VERSION,
    SAMPLE,
    SAMPLE_INFO,
    build_info_json,
)

from .helpers import Member, Tarball, commit, esp32_members

MakeTarball = Callable[..., Tarball]


def _members(build_info: bytes | None) -> list[Member]:
    """An ESP32 build; ``build_info.json`` after the other metadata, as the server packs it."""
    members = esp32_members()
    if build_info is not None:
        members.insert(3, Member("build_info.json", build_info))
    return members


def _manifest(build: StoredBuild) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((build.directory / MANIFEST_NAME).read_text())
    return manifest


def _rewrite(build: StoredBuild, change: Callable[[dict[str, Any]], object]) -> None:
    manifest = _manifest(build)
    change(manifest)
    (build.directory / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))


@pytest.mark.parametrize(
    ("build_info", "expected", "recorded", "response"),
    [
        pytest.param(
            build_info_json(),
            SAMPLE_INFO,
            SAMPLE,
            {
                "esphome_version": ESPHOME_VERSION,
                "build_time_str": BUILD_TIME_STR,
                "config_hash": "00c0ffee",
            },
            id="present",
        ),
        pytest.param(None, None, None, None, id="absent"),
    ],
)
async def test_manifest_round_trips_build_info(
    store: BuildStore,
    root: Path,
    make_tarball: MakeTarball,
    build_info: bytes | None,
    expected: BuildInfo | None,
    recorded: dict[str, Any] | None,
    response: dict[str, str] | None,
) -> None:
    committed = await commit(store, make_tarball(_members(build_info)))
    assert committed.build_info == expected
    manifest = _manifest(committed)
    assert manifest["schema"] == MANIFEST_SCHEMA == 1
    assert manifest["build_info"] == recorded  # always written, null when there is none

    # A fresh store (another process) reads the same from disk.
    reread = await BuildStore(root).async_get("job-1")
    assert reread == committed
    assert reread is not None
    assert reread.build_info == expected
    assert reread.as_response()["build_info"] == response
    assert await store.async_verify("job-1") == committed


async def test_manifest_from_before_build_info_still_loads(
    store: BuildStore, make_tarball: MakeTarball
) -> None:
    committed = await commit(store, make_tarball(_members(build_info_json())))
    _rewrite(committed, lambda manifest: manifest.pop("build_info"))

    old = await store.async_get("job-1")

    assert old is not None
    assert old.build_info is None
    assert old.as_response()["build_info"] is None
    assert old.images == committed.images  # everything else as before
    assert (await store.async_list()) == [old]


BAD_RECORDS: dict[str, object] = {
    "list": [SAMPLE],
    "string": json.dumps(SAMPLE),
    "number": 0,
    "false": False,
    "empty-object": {},
    "hash-hex-string": {**SAMPLE, "config_hash": "00c0ffee"},
    "hash-33-bits": {**SAMPLE, "config_hash": 2**32},
    "hash-negative": {**SAMPLE, "config_hash": -1},
    "hash-bool": {**SAMPLE, "config_hash": True},
    "time-float": {**SAMPLE, "build_time": 1.79e9},
    "time-missing": {key: value for key, value in SAMPLE.items() if key != "build_time"},
    "time_str-too-long": {**SAMPLE, "build_time_str": "x" * 65},
    "time_str-control": {**SAMPLE, "build_time_str": "2026\x1b[2J"},
    "version-null": {**SAMPLE, "esphome_version": None},
    "version-empty": {**SAMPLE, "esphome_version": ""},
}


@pytest.mark.parametrize("record", BAD_RECORDS.values(), ids=BAD_RECORDS.keys())
async def test_tampered_build_info_makes_the_build_corrupt(
    store: BuildStore, make_tarball: MakeTarball, record: object
) -> None:
    committed = await commit(store, make_tarball(_members(build_info_json())))
    _rewrite(committed, lambda manifest: manifest.update(build_info=record))

    with pytest.raises(CorruptBuildError, match="build_info") as err:
        await store.async_get("job-1")
    assert err.value.key == "corrupt_build"
    assert await store.async_list() == []  # skipped, never offered for flashing


async def test_a_tarball_with_a_malformed_build_info_is_not_stored(
    store: BuildStore, root: Path, make_tarball: MakeTarball
) -> None:
    with pytest.raises(InvalidArtifactsError, match="config_hash"):
        await commit(store, make_tarball(_members(build_info_json(config_hash="c0ffee"))))
    assert await store.async_get("job-1") is None
    assert not (root / "job-1").exists()


def _stored(build_info: BuildInfo | None = None) -> StoredBuild:
    return StoredBuild(
        job_id="job",
        device_name="kitchen",
        platform="esp32",
        target_platform="esp32s3",
        firmware_offset="0x10000",
        artifacts_sha256="0" * 64,
        directory=Path("/builds/job"),
        images=(),
        created_at="2026-12-02T00:00:00+00:00",
        server_pin="1" * 64,
        configuration="kitchen.yaml",
        **({} if build_info is None else {"build_info": build_info}),
    )


@pytest.mark.parametrize(
    ("build_info", "response"),
    [
        pytest.param(
            BuildInfo(0x5A94A12D, 1_790_000_000, "2026-09-21 16:13:20 +0200", "2026.10.0"),
            {
                "esphome_version": "2026.10.0",
                "build_time_str": "2026-09-21 16:13:20 +0200",
                "config_hash": "5a94a12d",
            },
            id="present",
        ),
        pytest.param(
            BuildInfo(7, 0, "1970-01-01 00:00:00 +0000", "2026.11.0-dev"),
            {
                "esphome_version": "2026.11.0-dev",
                "build_time_str": "1970-01-01 00:00:00 +0000",
                "config_hash": "00000007",
            },
            id="padded-hash",
        ),
        pytest.param(None, None, id="absent"),  # also: the field defaults to None
    ],
)
def test_as_response_shape(build_info: BuildInfo | None, response: dict[str, str] | None) -> None:
    answer = _stored(build_info).as_response()
    assert answer["build_info"] == response
    assert list(answer)[-1] == "build_info"  # added; the other keys are unchanged
    assert json.loads(json.dumps(answer)) == answer  # plain JSON, as an action response
