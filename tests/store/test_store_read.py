"""Reading, listing, verifying and pruning stored builds; hostile ids and manifests."""

from __future__ import annotations

from collections.abc import Callable
import json
import logging
from pathlib import Path
import shutil
import stat
from typing import Any

import pytest

from custom_components.esphome_remote_build import store as store_module
from custom_components.esphome_remote_build.const import DEFAULT_KEEP_LAST
from custom_components.esphome_remote_build.peerlink import InvalidJobIdError
from custom_components.esphome_remote_build.store import BuildStore
from custom_components.esphome_remote_build.store_errors import (
    CorruptBuildError,
    ForeignBuildError,
    StoreError,
)
from custom_components.esphome_remote_build.stored_build import MANIFEST_NAME, StoredBuild

from .helpers import (
    SERVER_PIN,
    Fetched,
    Tarball,
    commit,
    esp32_members,
    esp8266_members,
    published,
    snapshot,
)

MakeTarball = Callable[..., Tarball]


async def _fill(store: BuildStore, make_tarball: MakeTarball, plan: list[tuple[str, str]]) -> None:
    """Commit one build per (job id, device) in order, so later means newer."""
    for job_id, device in plan:
        members = esp32_members(device) if device != "porch" else esp8266_members()
        await commit(store, make_tarball(members), job_id)


async def test_get_missing_build(store: BuildStore) -> None:
    assert await store.async_get("nope") is None
    assert await store.async_verify("nope") is None


async def test_list_newest_first_and_skips_what_is_not_a_build(
    store: BuildStore,
    root: Path,
    make_tarball: MakeTarball,
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert await store.async_list() == []
    await _fill(store, make_tarball, [("b-old", "kitchen"), ("a-mid", "porch"), ("c-new", "hall")])
    assert any(p.name.startswith(".tmp-") for p in root.iterdir())  # the scratch folder
    (root / "broken").mkdir()  # looks like a job, has no manifest
    (root / "not a job").mkdir()
    (root / "stray.txt").write_text("x")
    with caplog.at_level(logging.WARNING):
        builds = await store.async_list()
    assert [b.job_id for b in builds] == ["c-new", "a-mid", "b-old"]
    assert [b.device_name for b in builds] == ["hall", "porch", "kitchen"]
    assert "broken" in caplog.text
    assert builds[0] == await store.async_get("c-new")


async def test_list_skips_a_build_deleted_meanwhile(
    store: BuildStore, root: Path, make_tarball: MakeTarball, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _fill(store, make_tarball, [("kept", "kitchen"), ("ghost", "hall")])
    real = store._load

    def vanish(job_id: str) -> StoredBuild | None:
        return None if job_id == "ghost" else real(job_id)

    monkeypatch.setattr(store, "_load", vanish)
    assert [b.job_id for b in await store.async_list()] == ["kept"]


async def test_delete(store: BuildStore, root: Path, make_tarball: MakeTarball) -> None:
    await _fill(store, make_tarball, [("one", "kitchen"), ("two", "kitchen")])
    assert await store.async_delete("one") is True
    assert await store.async_delete("one") is False
    assert await store.async_get("one") is None
    assert published(root) == {"two"}
    # A build whose manifest is unreadable can still be removed.
    (root / "two" / MANIFEST_NAME).write_text("garbage")
    assert await store.async_delete("two") is True
    assert published(root) == set()


async def test_delete_failure(
    store: BuildStore, root: Path, make_tarball: MakeTarball, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _fill(store, make_tarball, [("one", "kitchen")])
    before = snapshot(root)

    def refuse(self: Path, target: Any) -> Path:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "rename", refuse)
    with pytest.raises(StoreError) as err:
        await store.async_delete("one")
    monkeypatch.undo()
    assert err.value.key == "store_failed"
    assert snapshot(root) == before


PLAN = [
    ("k1", "kitchen"),
    ("p1", "porch"),
    ("k2", "kitchen"),
    ("k3", "kitchen"),
    ("p2", "porch"),
    ("k4", "kitchen"),
    ("k5", "kitchen"),
]


@pytest.mark.parametrize(
    ("keep", "device", "deleted"),
    [
        pytest.param(DEFAULT_KEEP_LAST, None, ["k2", "k1"], id="default-all-devices"),
        pytest.param(1, None, ["k4", "k3", "k2", "p1", "k1"], id="one-each"),
        pytest.param(1, "porch", ["p1"], id="one-device"),
        pytest.param(0, "kitchen", ["k5", "k4", "k3", "k2", "k1"], id="none-of-one-device"),
        pytest.param(10, None, [], id="nothing-to-do"),
        pytest.param(0, "attic", [], id="unknown-device"),
    ],
)
async def test_keep_last(
    store: BuildStore,
    make_tarball: MakeTarball,
    keep: int,
    device: str | None,
    deleted: list[str],
) -> None:
    await _fill(store, make_tarball, PLAN)
    assert await store.async_keep_last(keep, device) == deleted
    remaining = [b.job_id for b in await store.async_list()]
    assert remaining == [job for job, _ in reversed(PLAN) if job not in deleted]


def test_default_keep_last_is_three() -> None:
    # The store has no default any more; the entry's option falls back to this one.
    assert DEFAULT_KEEP_LAST == 3


async def test_keep_last_rejects_negative(store: BuildStore) -> None:
    with pytest.raises(ValueError, match="keep"):
        await store.async_keep_last(-1)


BAD_IDS = ["../x", "a/b", "", "x" * 65, ".", "..", "a b", "job\x00", "jöb", ".tmp-x", "a\\b"]


@pytest.mark.parametrize("job_id", BAD_IDS)
@pytest.mark.parametrize("method", ["commit", "get", "verify", "delete"])
async def test_invalid_job_ids(
    store: BuildStore,
    tmp_path: Path,
    make_tarball: MakeTarball,
    method: str,
    job_id: str,
) -> None:
    tarball = make_tarball()
    calls: dict[str, Callable[[], Any]] = {
        "commit": lambda: commit(store, tarball, job_id),
        "get": lambda: store.async_get(job_id),
        "verify": lambda: store.async_verify(job_id),
        "delete": lambda: store.async_delete(job_id),
    }
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(InvalidJobIdError) as err:
        await calls[method]()
    assert err.value.key == "invalid_job_id"
    assert err.value.job_id == job_id
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no root created either


def test_longest_job_id_is_fine() -> None:
    assert store_module.validate_job_id("A-z_9" * 12 + "abcd") == "A-z_9" * 12 + "abcd"


def _edit(change: Callable[[dict[str, Any]], object]) -> Callable[[StoredBuild], None]:
    """Change the manifest in place (the change's return value is ignored)."""

    def apply(build: StoredBuild) -> None:
        path = build.directory / MANIFEST_NAME
        manifest = json.loads(path.read_text())
        change(manifest)
        path.write_text(json.dumps(manifest))

    return apply


def _image(index: int, **changes: object) -> Callable[[StoredBuild], None]:
    return _edit(lambda m: m["images"][index].update(changes))


def _drop(key: str) -> Callable[[StoredBuild], None]:
    return _edit(lambda m: m.pop(key))


def _write(data: bytes) -> Callable[[StoredBuild], None]:
    def apply(build: StoredBuild) -> None:
        (build.directory / MANIFEST_NAME).write_bytes(data)

    return apply


def _replace_image_by_link(build: StoredBuild) -> None:
    target = build.images[1].path
    outside = build.directory.parent.parent / "elsewhere.bin"
    outside.write_bytes(target.read_bytes())
    target.unlink()
    target.symlink_to(outside)


def _images_folder_is_a_link(build: StoredBuild) -> None:
    outside = build.directory.parent.parent / "elsewhere"
    (build.directory / "images").rename(outside)
    (build.directory / "images").symlink_to(outside)


def _build_is_a_link(build: StoredBuild) -> None:
    outside = build.directory.parent.parent / "elsewhere"
    build.directory.rename(outside)
    build.directory.symlink_to(outside)


def _manifest_is_a_link(build: StoredBuild) -> None:
    manifest = build.directory / MANIFEST_NAME
    outside = build.directory.parent.parent / "manifest.json"
    manifest.rename(outside)
    manifest.symlink_to(outside)


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(_write(b"{not json"), id="invalid-json"),
        pytest.param(_write(b"\xff\xfe"), id="not-utf8"),
        pytest.param(_write(b" " * (1 << 20) + b"{}"), id="huge"),
        pytest.param(_write(b'[{"schema": 1}]'), id="not-an-object"),
        pytest.param(lambda b: (b.directory / MANIFEST_NAME).unlink(), id="missing"),
        pytest.param(_manifest_is_a_link, id="manifest-link"),
        pytest.param(_build_is_a_link, id="build-link"),
        pytest.param(_edit(lambda m: m.update(schema=2)), id="schema"),
        pytest.param(_edit(lambda m: m.update(schema=True)), id="schema-bool"),
        pytest.param(_edit(lambda m: m.update(job_id="other")), id="other-job"),
        pytest.param(_drop("device_name"), id="no-device"),
        pytest.param(_edit(lambda m: m.update(platform=32)), id="platform-type"),
        pytest.param(_edit(lambda m: m.update(firmware_offset="65536")), id="fw-offset"),
        pytest.param(_edit(lambda m: m.update(artifacts_sha256="abc")), id="sha"),
        pytest.param(_edit(lambda m: m.update(created_at="yesterday")), id="time"),
        pytest.param(_edit(lambda m: m.update(created_at="2026-11-01T12:00:00")), id="naive"),
        pytest.param(_edit(lambda m: m.update(images=[])), id="no-images"),
        pytest.param(_edit(lambda m: m.update(images={})), id="images-type"),
        pytest.param(_edit(lambda m: m["images"].append("x")), id="image-type"),
        pytest.param(_image(0, size=1), id="size"),
        pytest.param(_image(0, size=True), id="size-bool"),
        pytest.param(_image(0, size="70"), id="size-str"),
        pytest.param(_image(1, offset="0X1000"), id="offset"),
        pytest.param(_image(1, sha256="A" * 64), id="image-sha"),
        pytest.param(_image(0, file="../../elsewhere.bin"), id="dotdot"),
        pytest.param(_image(0, file="/etc/passwd"), id="absolute"),
        pytest.param(_image(0, file=""), id="empty-file"),
        pytest.param(_image(0, file="images/nothing.bin"), id="missing-file"),
        pytest.param(_image(0, file="images"), id="folder"),
        pytest.param(_replace_image_by_link, id="image-link"),
        pytest.param(_images_folder_is_a_link, id="images-link"),
        pytest.param(lambda b: shutil.rmtree(b.directory / "images"), id="images-gone"),
    ],
)
async def test_tampered_build_is_rejected(
    store: BuildStore, make_tarball: MakeTarball, tamper: Callable[[StoredBuild], None]
) -> None:
    build = await commit(store, make_tarball())
    tamper(build)
    for read in (store.async_get, store.async_verify):
        with pytest.raises(CorruptBuildError) as err:
            await read("job-1")
        assert err.value.key == "corrupt_build"
    # A commit of the same job does not paper over it either.
    with pytest.raises(CorruptBuildError) as err:
        await commit(store, make_tarball())
    assert err.value.key == "corrupt_build"


async def test_verify_rehashes_images(store: BuildStore, make_tarball: MakeTarball) -> None:
    build = await commit(store, make_tarball())
    assert await store.async_verify("job-1") == build
    data = bytearray(build.images[2].path.read_bytes())
    data[0] ^= 0x01  # same size: only a rehash notices
    build.images[2].path.write_bytes(bytes(data))
    assert await store.async_get("job-1") == build
    with pytest.raises(CorruptBuildError) as err:
        await store.async_verify("job-1")
    assert err.value.key == "corrupt_build"
    assert build.images[2].name in str(err.value)


async def test_verify_read_error(
    store: BuildStore, make_tarball: MakeTarball, monkeypatch: pytest.MonkeyPatch
) -> None:
    await commit(store, make_tarball())

    def unreadable(path: Path) -> str:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(store_module, "_sha256_file", unreadable)
    with pytest.raises(CorruptBuildError) as err:
        await store.async_verify("job-1")
    assert err.value.key == "corrupt_build"


async def test_root_vanishing_under_a_ready_store(
    store: BuildStore, root: Path, make_tarball: MakeTarball
) -> None:
    await commit(store, make_tarball())
    shutil.rmtree(root)
    root.write_bytes(b"now a file")
    for call in (store.async_list(), store.async_get("job-1")):
        with pytest.raises(StoreError) as err:
            await call
        assert type(err.value) is StoreError
        assert err.value.key == "store_failed"


# --- builds belong to their server ----------------------------------------------------------

OTHER_PIN = "cd" * 32


async def test_a_build_answers_only_for_its_server(
    store: BuildStore, root: Path, make_tarball: MakeTarball
) -> None:
    build = await commit(store, make_tarball())
    assert await store.async_get("job-1") == build
    assert await store.async_get("job-1", server_pin=SERVER_PIN) == build
    with pytest.raises(ForeignBuildError) as err:
        await store.async_get("job-1", server_pin=OTHER_PIN)
    assert err.value.key == "build_of_other_server"
    assert (err.value.job_id, err.value.server_pin) == ("job-1", SERVER_PIN)


async def test_download_uses_the_stored_build_of_its_own_server_only(
    store: BuildStore, root: Path, make_tarball: MakeTarball
) -> None:
    build = await commit(store, make_tarball())
    before = snapshot(root)
    fetched: list[Path] = []

    async def fetch(dest: Path) -> Fetched:
        fetched.append(dest)
        raise AssertionError("a stored build is never fetched again")

    again = await store.async_download(
        "job-1", server_pin=SERVER_PIN, configuration="other.yaml", fetch=fetch
    )
    assert again == build  # the stored build stands, configuration and all
    with pytest.raises(ForeignBuildError):
        await store.async_download(
            "job-1", server_pin=OTHER_PIN, configuration="kitchen.yaml", fetch=fetch
        )
    assert fetched == []
    assert snapshot(root) == before


# --- reading needs no write access ------------------------------------------------------


async def test_reading_a_store_never_written_creates_nothing(store: BuildStore, root: Path) -> None:
    assert await store.async_list() == []
    assert await store.async_get("job-1") is None
    assert await store.async_verify("job-1") is None
    assert await store.async_keep_last(0) == []
    assert not root.parent.exists()


async def test_reading_changes_nothing_and_the_first_write_tidies_up(
    store: BuildStore, root: Path, make_tarball: MakeTarball
) -> None:
    build = await commit(store, make_tarball())
    root.chmod(0o755)
    (root / ".tmp-job-2-0123456789abcdef").mkdir()
    reader = BuildStore(root)  # a new process: nothing written yet
    before = snapshot(root)
    assert await reader.async_list() == [build]
    assert await reader.async_get("job-1") == build
    assert await reader.async_verify("job-1") == build
    assert snapshot(root) == before
    assert stat.S_IMODE(root.stat().st_mode) == 0o755

    assert await reader.async_delete("nothing") is False  # a write: the root is made right
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert not (root / ".tmp-job-2-0123456789abcdef").exists()
    assert await reader.async_get("job-1") == build
