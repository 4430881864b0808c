"""Committing builds: layout, modes, manifest, idempotence, and every way it can fail."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import hashlib
import json
import os
from pathlib import Path
import shutil
import stat
import tarfile
import threading
from typing import Any

import pytest

from custom_components.esphome_remote_build import store as store_module
from custom_components.esphome_remote_build.artifacts import (
    ArtifactsError,
    ArtifactsMismatchError,
    ImageSet,
    InvalidArtifactsError,
    UnsafeTarballError,
    read_image_set,
)
from custom_components.esphome_remote_build.store import BuildStore
from custom_components.esphome_remote_build.store_errors import StoreError
from custom_components.esphome_remote_build.stored_build import MANIFEST_NAME

from .helpers import (
    SERVER_PIN,
    Fetched,
    Member,
    StepClock,
    Tarball,
    commit,
    esp32_members,
    esp8266_members,
    published,
    snapshot,
)

MakeTarball = Callable[..., Tarball]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _spy_reader(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Count calls to the tarball reader while keeping its real behaviour."""
    calls: list[Path] = []
    real = read_image_set

    def spy(tarball: Path, firmware_offset: str, dest_dir: Path, **options: Any) -> ImageSet:
        calls.append(tarball)
        return real(tarball, firmware_offset, dest_dir, **options)

    monkeypatch.setattr(store_module, "read_image_set", spy)
    return calls


@pytest.mark.parametrize("mask", [0o000, 0o022, 0o077])
async def test_commit_esp32(
    store: BuildStore,
    root: Path,
    make_tarball: MakeTarball,
    umask: Callable[[int], None],
    mask: int,
) -> None:
    umask(mask)
    tarball = make_tarball()
    build = await commit(store, tarball)

    directory = root / "job-1"
    assert build.directory == directory
    assert (build.device_name, build.platform, build.target_platform) == (
        "kitchen",
        "esp32",
        "esp32s3",
    )
    assert build.firmware_offset == "0x10000"
    assert build.artifacts_sha256 == tarball.sha256
    assert build.server_pin == SERVER_PIN
    assert build.configuration == "kitchen.yaml"
    names = [image.name for image in build.images]
    # Firmware first, then idedata's flash images in declared order, then the extras.
    assert names[:4] == ["firmware.bin", "bootloader.bin", "partitions.bin", "ota_data_initial.bin"]
    assert set(names[4:]) == {"firmware.factory.bin", "firmware.ota.bin"}
    offsets = {image.name: image.offset for image in build.images}
    assert offsets["firmware.bin"] == "0x10000"
    assert offsets["bootloader.bin"] == "0x0"
    assert offsets["ota_data_initial.bin"] == "0xd000"
    for image in build.images:
        assert image.path.parent.parent == directory
        data = image.path.read_bytes()
        assert data == tarball.images[image.name]
        assert image.size == len(data)
        assert image.sha256 == hashlib.sha256(data).hexdigest()

    # Private whatever the umask: every folder 0700 (parents we created too), files 0600.
    for folder in (root.parent.parent, root.parent, root, directory, directory / "images"):
        assert _mode(folder) == 0o700, folder
    for path in directory.rglob("*"):
        assert _mode(path) == (0o700 if path.is_dir() else 0o600), path
    assert published(root) == {"job-1"}

    manifest = json.loads((directory / MANIFEST_NAME).read_text())
    assert manifest["schema"] == 1
    assert manifest["job_id"] == "job-1"
    assert manifest["server_pin"] == SERVER_PIN
    assert manifest["artifacts_sha256"] == tarball.sha256
    assert manifest["created_at"] == build.created_at == "2026-11-01T12:01:00+00:00"
    assert [entry["file"] for entry in manifest["images"]] == [f"images/{n}" for n in names]
    assert str(root) not in json.dumps(manifest)  # only relative names, never absolute

    response = build.as_response()
    assert response["directory"] == str(directory)
    assert [image["name"] for image in response["images"]] == names
    assert response["images"][0] == {
        "name": "firmware.bin",
        "offset": "0x10000",
        "size": build.images[0].size,
        "sha256": build.images[0].sha256,
        "path": str(directory / "images" / "firmware.bin"),
    }
    assert {k: response[k] for k in ("job_id", "device_name", "platform", "firmware_offset")} == {
        "job_id": "job-1",
        "device_name": "kitchen",
        "platform": "esp32",
        "firmware_offset": "0x10000",
    }
    assert response["artifacts_sha256"] == tarball.sha256
    assert response["created_at"] == build.created_at
    assert response["configuration"] == "kitchen.yaml"
    json.dumps(response)  # the service response must be JSON-able
    assert await store.async_get("job-1") == build


async def test_commit_esp8266_single_image(store: BuildStore, make_tarball: MakeTarball) -> None:
    build = await commit(store, make_tarball(esp8266_members(), firmware_offset="0x0"), "j8266")
    assert build.platform == "esp8266"
    assert build.firmware_offset == "0x0"
    assert [(i.name, i.offset) for i in build.images] == [("firmware.bin", "0x0")]


async def test_second_commit_returns_stored_build(
    store: BuildStore, make_tarball: MakeTarball, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _spy_reader(monkeypatch)
    tarball = make_tarball()
    first = await commit(store, tarball)
    tarball.path.unlink()  # the second call must not need the tarball at all
    again = await commit(store, tarball)
    other = make_tarball(esp8266_members(), firmware_offset="0x0")
    stored = await commit(store, other)  # same job id, different tarball: stored one stands
    assert first == again == stored
    assert len(calls) == 1


async def test_concurrent_commits_of_one_job(
    store: BuildStore, root: Path, make_tarball: MakeTarball, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _spy_reader(monkeypatch)
    tarball = make_tarball()
    first, second = await asyncio.gather(commit(store, tarball), commit(store, tarball))
    assert first == second
    assert len(calls) == 1
    assert published(root) == {"job-1"}


async def test_losing_a_rename_race_returns_the_winner(
    store: BuildStore,
    root: Path,
    tmp_path: Path,
    make_tarball: MakeTarball,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another writer publishing the same job mid-commit wins; we return its build."""
    other = BuildStore(tmp_path / "other", clock=StepClock())
    winner = await commit(other, make_tarball(esp8266_members(), firmware_offset="0x0"))
    real = read_image_set

    def read_then_lose(
        tarball: Path, firmware_offset: str, dest_dir: Path, **options: Any
    ) -> ImageSet:
        result = real(tarball, firmware_offset, dest_dir, **options)
        shutil.copytree(winner.directory, root / "job-1")
        return result

    monkeypatch.setattr(store_module, "read_image_set", read_then_lose)
    build = await commit(store, make_tarball())
    assert build.device_name == "porch"
    assert build.directory == root / "job-1"
    assert build.created_at == winner.created_at
    assert published(root) == {"job-1"}


def _with(*extra: Member) -> list[Member]:
    return [*esp32_members(), *extra]


def _without(member_name: str) -> list[Member]:
    return [m for m in esp32_members() if not m.name.endswith(member_name)]


# A tarball the store refuses raises the artifacts package's own exception, unwrapped.
@pytest.mark.parametrize(
    ("members", "reason"),
    [
        pytest.param(_with(Member("../../escape.bin", b"x")), "unsafe_tarball", id="dotdot"),
        pytest.param(_with(Member("/etc/evil.bin", b"x")), "unsafe_tarball", id="absolute"),
        pytest.param(
            _with(Member("evil.bin", kind=tarfile.SYMTYPE, linkname="/etc/passwd")),
            "unsafe_tarball",
            id="symlink",
        ),
        pytest.param(
            _with(Member("hard.bin", kind=tarfile.LNKTYPE, linkname="storage.json")),
            "unsafe_tarball",
            id="hardlink",
        ),
        pytest.param(_with(Member(".pioenvs", kind=tarfile.DIRTYPE)), "unsafe_tarball", id="dir"),
        pytest.param(_without("/firmware.bin"), "invalid_artifacts", id="no-firmware"),
        pytest.param(_without("/partitions.bin"), "invalid_artifacts", id="missing-flash-image"),
        pytest.param(_without("idedata.json"), "invalid_artifacts", id="no-idedata"),
        pytest.param(
            [Member("storage.json", b"{not json"), *esp32_members()[1:]],
            "invalid_artifacts",
            id="bad-storage-json",
        ),
    ],
)
async def test_bad_tarball_leaves_no_trace(
    store: BuildStore,
    root: Path,
    make_tarball: MakeTarball,
    members: list[Member],
    reason: str,
) -> None:
    await commit(store, make_tarball(esp8266_members(), firmware_offset="0x0"), "previous")
    before = snapshot(root)
    with pytest.raises(InvalidArtifactsError) as err:
        await commit(store, make_tarball(members))
    assert err.value.key == reason
    assert isinstance(err.value, UnsafeTarballError) is (reason == "unsafe_tarball")
    assert snapshot(root) == before
    assert await store.async_get("job-1") is None


def _rehashed(tarball: Tarball) -> Tarball:
    """What a download would report for the file as it now is (its own hash)."""
    sha = hashlib.sha256(tarball.path.read_bytes()).hexdigest()
    return Tarball(tarball.path, sha, tarball.firmware_offset)


def _flip_a_byte(tarball: Tarball) -> Tarball:
    data = bytearray(tarball.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tarball.path.write_bytes(bytes(data))
    return _rehashed(tarball)


def _not_gzip(tarball: Tarball) -> Tarball:
    tarball.path.write_bytes(b"this is not a tarball" * 10)
    return _rehashed(tarball)


def _truncate(tarball: Tarball) -> Tarball:
    tarball.path.write_bytes(tarball.path.read_bytes()[:-40])
    return _rehashed(tarball)


def _wrong_sha(tarball: Tarball) -> Tarball:
    return Tarball(tarball.path, "0" * 64, tarball.firmware_offset)


def _bad_offset(tarball: Tarball) -> Tarball:
    return Tarball(tarball.path, tarball.sha256, "65536")


def _remove_tarball(tarball: Tarball) -> Tarball:
    tarball.path.unlink()
    return tarball


def _rename_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(src: Any, dst: Any) -> None:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(os, "rename", refuse)


def _fsync_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", refuse)


def _images_dir_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    real = read_image_set

    def write_elsewhere(
        tarball: Path, firmware_offset: str, dest_dir: Path, **options: Any
    ) -> ImageSet:
        dest_dir.write_bytes(b"")  # the reader finds a file where its folder should go
        return real(tarball, firmware_offset, dest_dir, **options)

    monkeypatch.setattr(store_module, "read_image_set", write_elsewhere)


@pytest.mark.parametrize(
    ("spoil", "patch", "error", "key"),
    [
        pytest.param(
            _flip_a_byte, None, InvalidArtifactsError, "invalid_artifacts", id="corrupt-gzip"
        ),
        pytest.param(_not_gzip, None, InvalidArtifactsError, "invalid_artifacts", id="not-gzip"),
        pytest.param(_truncate, None, InvalidArtifactsError, "invalid_artifacts", id="truncated"),
        pytest.param(
            _bad_offset, None, InvalidArtifactsError, "invalid_artifacts", id="bad-firmware-offset"
        ),
        pytest.param(
            _wrong_sha, None, ArtifactsMismatchError, "artifacts_mismatch", id="sha-mismatch"
        ),
        pytest.param(
            _remove_tarball, None, ArtifactsError, "artifacts_failed", id="tarball-missing"
        ),
        pytest.param(None, _rename_fails, StoreError, "store_failed", id="rename-fails"),
        pytest.param(None, _fsync_fails, StoreError, "store_failed", id="fsync-fails"),
        pytest.param(
            None, _images_dir_is_taken, ArtifactsError, "artifacts_failed", id="disk-error"
        ),
    ],
)
async def test_failed_commit_leaves_no_trace(
    store: BuildStore,
    root: Path,
    make_tarball: MakeTarball,
    monkeypatch: pytest.MonkeyPatch,
    spoil: Callable[[Tarball], Tarball] | None,
    patch: Callable[[pytest.MonkeyPatch], None] | None,
    error: type[Exception],
    key: str,
) -> None:
    await commit(store, make_tarball(esp8266_members(), firmware_offset="0x0"), "previous")
    before = snapshot(root)
    tarball = make_tarball()
    if spoil is not None:
        tarball = spoil(tarball)
    if patch is not None:
        patch(monkeypatch)
    with pytest.raises(error) as err:
        await commit(store, tarball)
    monkeypatch.undo()
    assert type(err.value) is error
    assert err.value.key == key  # type: ignore[attr-defined]
    assert snapshot(root) == before
    assert await store.async_get("job-1") is None


async def test_cancelled_commit_leaves_no_trace(
    store: BuildStore, root: Path, make_tarball: MakeTarball, monkeypatch: pytest.MonkeyPatch
) -> None:
    await commit(store, make_tarball(esp8266_members(), firmware_offset="0x0"), "previous")
    before = snapshot(root)
    entered = threading.Event()
    aborts: list[threading.Event] = []
    real_commit, real_reader = store._commit_blocking, read_image_set

    def capture_abort(request: Any, abort: threading.Event) -> Any:
        aborts.append(abort)
        return real_commit(request, abort)

    def reader_until_cancelled(
        tarball: Path, firmware_offset: str, dest_dir: Path, **options: Any
    ) -> ImageSet:
        entered.set()
        # Finish only once the coroutine has seen its cancellation: the worst moment.
        assert aborts[0].wait(timeout=30)
        return real_reader(tarball, firmware_offset, dest_dir, **options)

    monkeypatch.setattr(store, "_commit_blocking", capture_abort)
    monkeypatch.setattr(store_module, "read_image_set", reader_until_cancelled)
    task = asyncio.ensure_future(commit(store, make_tarball()))
    assert await asyncio.to_thread(entered.wait, 30)
    assert any(p.name.startswith(".tmp-job-1-") for p in root.iterdir())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The cancellation only returned once the worker had cleaned up.
    assert snapshot(root) == before
    assert await store.async_get("job-1") is None


async def test_stale_temporary_entries_are_swept_by_the_first_write(
    root: Path, make_tarball: MakeTarball, tmp_path: Path
) -> None:
    first = BuildStore(root, clock=StepClock())
    await commit(first, make_tarball())
    # A download the first store lent a file for and never gave back (the process died).
    abandoned = first.async_temporary_file("artifacts.tar.gz")
    interrupted = await abandoned.__aenter__()
    interrupted.write_bytes(b"half a download")
    leftover = root / ".tmp-job-2-0123456789abcdef"
    (leftover / "images").mkdir(parents=True)
    (leftover / "images" / "firmware.bin").write_bytes(b"partial")
    (root / ".tmp-stray-file").write_bytes(b"x")
    (root / ".tmp-stray-link").symlink_to(tmp_path / "outside")
    (tmp_path / "outside").mkdir()
    debris = {p.name for p in root.iterdir()}

    second = BuildStore(root, clock=StepClock())
    # Reading sweeps nothing: a reader may have no write access.
    assert [b.job_id for b in await second.async_list()] == ["job-1"]
    assert await second.async_get("job-1") is not None
    assert {p.name for p in root.iterdir()} == debris

    async with second.async_temporary_file("in-flight.tar.gz") as in_flight:
        # The first write swept; what it lends afterwards survives.
        in_flight.write_bytes(b"busy")
        assert {p.name for p in root.iterdir()} == {"job-1", in_flight.parent.name}
        assert [b.job_id for b in await second.async_list()] == ["job-1"]
        await commit(second, make_tarball(esp8266_members(), firmware_offset="0x0"), "job-2")
        assert in_flight.read_bytes() == b"busy"
    assert not in_flight.exists()
    assert {p.name for p in root.iterdir()} == {"job-1", "job-2", in_flight.parent.name}
    assert not interrupted.exists()
    assert (tmp_path / "outside").is_dir()  # a swept link is removed, never followed
    await abandoned.__aexit__(None, None, None)  # let the dead process's generator end


async def test_temporary_file_is_private_beside_the_builds_and_always_removed(
    store: BuildStore, root: Path, umask: Callable[[int], None]
) -> None:
    umask(0)
    async with store.async_temporary_file("bundle.tar.gz") as path:
        assert path.parent.parent == root
        assert path.parent.name.startswith(".tmp-")
        assert path.name.endswith("-bundle.tar.gz")
        assert not path.exists()  # a name to write to, nothing more
        assert _mode(path.parent) == _mode(root) == 0o700
        path.write_bytes(b"secrets")
    assert not path.exists()

    async with store.async_temporary_file("bundle.tar.gz") as other:
        assert other != path  # a fresh name every time
        other.mkdir()
        (other / "inside").write_bytes(b"x")
    assert not other.exists()  # a folder is removed too

    lent: list[Path] = []

    async def fail_while_holding_it() -> None:
        async with store.async_temporary_file("bundle.tar.gz") as failed:
            lent.append(failed)
            failed.write_bytes(b"secrets")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await fail_while_holding_it()
    assert not lent[0].exists()
    assert [p.name for p in root.iterdir()] == [path.parent.name]


async def test_failed_fetch_leaves_no_trace(
    store: BuildStore, root: Path, make_tarball: MakeTarball
) -> None:
    await commit(store, make_tarball(esp8266_members(), firmware_offset="0x0"), "previous")
    before = snapshot(root)
    seen: list[Path] = []

    async def fetch(dest: Path) -> Fetched:
        seen.append(dest)
        dest.write_bytes(b"half a download")
        raise ConnectionResetError("dropped")

    with pytest.raises(ConnectionResetError):
        await store.async_download(
            "job-1", server_pin=SERVER_PIN, configuration="kitchen.yaml", fetch=fetch
        )
    [dest] = seen
    assert dest.parent.parent == root
    assert snapshot(root) == before
    assert await store.async_get("job-1") is None


async def test_cancelled_fetch_leaves_no_trace(
    store: BuildStore, root: Path, make_tarball: MakeTarball
) -> None:
    await commit(store, make_tarball(esp8266_members(), firmware_offset="0x0"), "previous")
    before = snapshot(root)
    started = asyncio.Event()

    async def hang(dest: Path) -> Fetched:
        dest.write_bytes(b"a few chunks")
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("never resumed")

    task = asyncio.ensure_future(
        store.async_download("job-1", server_pin=SERVER_PIN, configuration="", fetch=hang)
    )
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert snapshot(root) == before


async def test_existing_root_is_made_private(
    root: Path, make_tarball: MakeTarball, umask: Callable[[int], None]
) -> None:
    umask(0)
    root.mkdir(parents=True, mode=0o777)
    await commit(BuildStore(root), make_tarball())
    assert _mode(root) == 0o700


async def test_unusable_root(tmp_path: Path, make_tarball: MakeTarball) -> None:
    blocker = tmp_path / "config"
    blocker.write_bytes(b"a file where the config folder should be")
    broken = BuildStore(blocker / "builds")
    with pytest.raises(StoreError) as err:
        async with broken.async_temporary_file("bundle.tar.gz"):
            pytest.fail("lent a path in a store that cannot exist")
    assert err.value.key == "store_failed"
    for call in (broken.async_list(), commit(broken, make_tarball())):
        with pytest.raises(StoreError) as err:
            await call
        assert err.value.key == "store_failed"


async def test_a_build_published_during_the_fetch_stands(
    store: BuildStore,
    root: Path,
    tmp_path: Path,
    make_tarball: MakeTarball,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another writer that publishes the job while we fetch wins; its build is returned."""
    other = BuildStore(tmp_path / "other", clock=StepClock())
    winner = await commit(other, make_tarball(esp8266_members(), firmware_offset="0x0"))
    calls = _spy_reader(monkeypatch)
    tarball = make_tarball()

    async def fetch_while_another_publishes(dest: Path) -> Fetched:
        shutil.copyfile(tarball.path, dest)
        shutil.copytree(winner.directory, root / "job-1")
        return Fetched(tarball.sha256, tarball.firmware_offset)

    build = await store.async_download(
        "job-1", server_pin=SERVER_PIN, configuration="", fetch=fetch_while_another_publishes
    )
    assert build.device_name == "porch"
    assert build.created_at == winner.created_at
    assert calls == []  # nothing was unpacked over it
    assert published(root) == {"job-1"}


async def test_two_first_writes_prepare_the_root_once(
    store: BuildStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepared: list[Path] = []
    real = store._prepare_blocking

    def count() -> None:
        prepared.append(root)
        real()

    monkeypatch.setattr(store, "_prepare_blocking", count)
    assert await asyncio.gather(store.async_delete("a"), store.async_delete("b")) == [False, False]
    assert len(prepared) == 1
    assert published(root) == set()
