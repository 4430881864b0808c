"""The on-disk store of downloaded builds.

A build is flashed long after it was downloaded, maybe after a restart, so its images and
what is needed to flash them (offsets, platform, hashes) live in
``<root>/<job_id>/`` next to a ``manifest.json`` of our own.  The folder appears in one
``rename`` only after every check passed: a reader either sees a complete build or none,
and a failed or cancelled commit leaves no trace.  Builds may embed Wi-Fi credentials and
API keys, so every folder is 0700 and every file 0600 whatever the umask says.

The module is free of Home Assistant: the HA layer owns one :class:`BuildStore` per root
and maps :class:`StoreError` ``reason`` strings to translated errors.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
import hashlib
import itertools
import json
import logging
import os
from pathlib import Path, PurePosixPath
import re
import secrets
import shutil
import stat
import threading
from typing import Any
import weakref

from .artifacts import ArtifactsError, ImageSet, read_image_set

_LOGGER = logging.getLogger(__name__)

#: Builds kept per device when the caller does not say otherwise.
DEFAULT_KEEP_LAST = 3

MANIFEST_NAME = "manifest.json"
MANIFEST_SCHEMA = 1
IMAGES_DIR = "images"

_DIR_MODE = 0o700
_FILE_MODE = 0o600
_TMP_PREFIX = ".tmp-"
_MANIFEST_MAX_BYTES = 1 << 20
_HASH_CHUNK = 1 << 20

_JOB_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
# Empty = an image without a fixed flash address (artifacts.NO_FLASH_OFFSET).
_OFFSET_RE = re.compile(r"^(0x[0-9a-f]{1,16})?$")


class StoreError(Exception):
    """A build could not be stored, read or removed; ``reason`` is a stable key."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class InvalidJobIdError(StoreError):
    """A job id that cannot safely become a folder name."""

    def __init__(self, job_id: str) -> None:
        super().__init__("invalid_job_id", f"invalid job id {job_id!r}")


def validate_job_id(job_id: str) -> str:
    """Return ``job_id`` if it is safe as a single path component, else raise."""
    if not _JOB_ID_RE.fullmatch(job_id):
        raise InvalidJobIdError(job_id)
    return job_id


@dataclass(frozen=True, slots=True)
class StoredImage:
    """One stored image; ``path`` is absolute, inside the build's folder."""

    name: str
    offset: str
    size: int
    sha256: str
    path: Path


@dataclass(frozen=True, slots=True)
class StoredBuild:
    """A committed build as recorded by its manifest."""

    job_id: str
    device_name: str
    platform: str
    target_platform: str
    firmware_offset: str
    artifacts_sha256: str
    directory: Path
    images: tuple[StoredImage, ...]
    created_at: str
    server_pin: str
    configuration: str

    def as_response(self) -> dict[str, Any]:
        """Shape the build as the ``download_artifacts`` service response (DESIGN.md)."""
        return {
            "job_id": self.job_id,
            "device_name": self.device_name,
            "platform": self.platform,
            "target_platform": self.target_platform,
            "firmware_offset": self.firmware_offset,
            "artifacts_sha256": self.artifacts_sha256,
            "directory": str(self.directory),
            "images": [
                {
                    "name": image.name,
                    "offset": image.offset,
                    "size": image.size,
                    "sha256": image.sha256,
                    "path": str(image.path),
                }
                for image in self.images
            ],
            "created_at": self.created_at,
            "configuration": self.configuration,
        }


@dataclass(frozen=True, slots=True)
class _Commit:
    """Everything the executor job needs to commit one build."""

    job_id: str
    tarball: Path
    firmware_offset: str
    artifacts_sha256: str
    server_pin: str
    configuration: str


def _utcnow() -> datetime:
    return datetime.now(UTC)


class BuildStore:
    """Atomic, private, idempotent storage of builds under one root folder.

    Use one instance per root in a process: it serialises work on the same job id and
    sweeps the debris of interrupted commits on first use, which would be unsafe if two
    instances shared a root.
    """

    def __init__(self, root: Path, *, clock: Callable[[], datetime] = _utcnow) -> None:
        self.root = root
        self._clock = clock
        # Our own download folder carries the .tmp- prefix so a later run sweeps it.
        self._downloads = root / f"{_TMP_PREFIX}downloads-{secrets.token_hex(4)}"
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._ready = False
        self._ready_lock = asyncio.Lock()

    # -- public API ---------------------------------------------------------------------

    def tmp_dir(self) -> Path:
        """Return a private folder for downloads, on the store's filesystem.

        Creating a couple of folders is a metadata operation, cheap enough for the loop;
        it lets the downloader start before any other store call.
        """
        try:
            _make_private_dirs(self._downloads)
        except OSError as err:
            raise StoreError("storage_failed", f"cannot create {self._downloads}: {err}") from err
        return self._downloads

    async def async_commit(
        self,
        *,
        job_id: str,
        tarball: Path,
        firmware_offset: str,
        artifacts_sha256: str,
        server_pin: str,
        configuration: str,
    ) -> StoredBuild:
        """Verify and unpack ``tarball`` into the store, or return the build already stored.

        Raises :class:`StoreError` whose ``reason`` is ``invalid_job_id``, one of the
        artifacts package's (``invalid_artifacts``, ``unsafe_tarball``, ``artifacts_error``),
        ``artifacts_mismatch``, ``storage_failed`` or ``corrupt_build`` (the stored build
        of this job is damaged).  The tarball is left for the caller to remove.
        """
        request = _Commit(
            job_id=validate_job_id(job_id),
            tarball=tarball,
            firmware_offset=firmware_offset,
            artifacts_sha256=artifacts_sha256.lower(),
            server_pin=server_pin,
            configuration=configuration,
        )
        await self._async_ready()
        async with self._lock(job_id):
            abort = threading.Event()
            job = asyncio.get_running_loop().run_in_executor(
                None, self._commit_blocking, request, abort
            )
            try:
                return await asyncio.shield(job)
            except asyncio.CancelledError:
                # The thread cannot be interrupted; tell it not to publish, and wait so
                # that neither a temporary folder nor a racing commit outlives us.
                abort.set()
                with contextlib.suppress(Exception):
                    await job
                raise

    async def async_get(self, job_id: str) -> StoredBuild | None:
        """Load a stored build (manifest checked, files present with the right sizes)."""
        validate_job_id(job_id)
        await self._async_ready()
        return await asyncio.to_thread(self._load, job_id)

    async def async_verify(self, job_id: str) -> StoredBuild | None:
        """Like :meth:`async_get`, but also rehash every image (worth it before flashing)."""
        validate_job_id(job_id)
        await self._async_ready()
        return await asyncio.to_thread(self._verify_blocking, job_id)

    async def async_list(self) -> list[StoredBuild]:
        """Return every readable build, newest first; unreadable ones are logged."""
        await self._async_ready()
        return await asyncio.to_thread(self._list_blocking)

    async def async_delete(self, job_id: str) -> bool:
        """Remove a build (readable or not); ``False`` when there was none."""
        validate_job_id(job_id)
        await self._async_ready()
        async with self._lock(job_id):
            return await asyncio.to_thread(self._delete_blocking, job_id)

    async def async_keep_last(
        self, keep: int = DEFAULT_KEEP_LAST, device_name: str | None = None
    ) -> list[str]:
        """Keep the newest ``keep`` builds of each device (or of one); return the removed ids."""
        if keep < 0:
            raise ValueError(f"keep must be >= 0, got {keep}")
        seen: dict[str, int] = {}
        deleted: list[str] = []
        for build in await self.async_list():
            if device_name is not None and build.device_name != device_name:
                continue
            seen[build.device_name] = seen.get(build.device_name, 0) + 1
            if seen[build.device_name] > keep and await self.async_delete(build.job_id):
                deleted.append(build.job_id)
        return deleted

    # -- plumbing -----------------------------------------------------------------------

    def _lock(self, job_id: str) -> asyncio.Lock:
        lock = self._locks.get(job_id)
        if lock is None:
            lock = self._locks[job_id] = asyncio.Lock()
        return lock

    async def _async_ready(self) -> None:
        """Create the root and sweep leftovers once, before any other work touches it."""
        if self._ready:
            return
        async with self._ready_lock:
            if not self._ready:
                await asyncio.to_thread(self._prepare_blocking)
                self._ready = True

    def _prepare_blocking(self) -> None:
        try:
            _make_private_dirs(self.root)
            self.root.chmod(_DIR_MODE)
            for entry in os.scandir(self.root):
                if entry.name.startswith(_TMP_PREFIX) and entry.path != str(self._downloads):
                    _LOGGER.debug("Removing leftover %s", entry.path)
                    _remove(Path(entry.path))
        except OSError as err:
            raise StoreError("storage_failed", f"cannot prepare {self.root}: {err}") from err

    def _build_dir(self, job_id: str) -> Path:
        return self.root / job_id

    def _new_tmp(self, job_id: str) -> Path:
        path = self.root / f"{_TMP_PREFIX}{job_id}-{secrets.token_hex(8)}"
        path.mkdir(_DIR_MODE)
        path.chmod(_DIR_MODE)
        return path

    def _commit_blocking(self, request: _Commit, abort: threading.Event) -> StoredBuild:
        final = self._build_dir(request.job_id)
        try:
            if (stored := self._load(request.job_id)) is not None:
                return stored
            tmp = self._new_tmp(request.job_id)
            try:
                # The reader hashes the file in its first pass, before writing any image,
                # so the manifest's artifacts_sha256 is a fact about this file, not a claim.
                image_set = read_image_set(
                    request.tarball,
                    request.firmware_offset,
                    tmp / IMAGES_DIR,
                    expected_sha256=request.artifacts_sha256,
                )
                manifest = self._manifest(request, image_set, tmp)
                # Parse what we are about to write: a build we could not load is never
                # published.
                _parse_manifest(tmp, request.job_id, manifest)
                _seal_images(tmp, image_set)
                _write_private(tmp / MANIFEST_NAME, json.dumps(manifest, indent=2).encode())
                _fsync(tmp, _DIR_MODE)
                if abort.is_set():
                    raise StoreError("cancelled", f"commit of {request.job_id} was cancelled")
                try:
                    tmp.rename(final)
                except OSError:
                    # Another writer may have published the same job first; theirs stands.
                    if (stored := self._load(request.job_id)) is None:
                        raise
                    return stored
                _fsync(self.root, _DIR_MODE)
                return _parse_manifest(final, request.job_id, manifest)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        except ArtifactsError as err:
            raise StoreError(err.reason, f"{request.job_id}: {err}") from err
        except OSError as err:
            raise StoreError("storage_failed", f"{request.job_id}: {err}") from err

    def _manifest(self, request: _Commit, image_set: ImageSet, tmp: Path) -> dict[str, Any]:
        return {
            "schema": MANIFEST_SCHEMA,
            "job_id": request.job_id,
            "device_name": image_set.device_name,
            "platform": image_set.platform,
            "target_platform": image_set.target_platform,
            "firmware_offset": image_set.firmware_offset,
            "artifacts_sha256": request.artifacts_sha256,
            "server_pin": request.server_pin,
            "configuration": request.configuration,
            "created_at": self._clock().astimezone(UTC).isoformat(),
            "images": [
                {
                    "name": image.name,
                    "offset": image.offset,
                    "size": image.size,
                    "sha256": image.sha256,
                    "file": image.path.relative_to(tmp).as_posix(),
                }
                for image in image_set.images
            ],
        }

    def _load(self, job_id: str) -> StoredBuild | None:
        directory = self._build_dir(job_id)
        try:
            mode = os.lstat(directory).st_mode
        except FileNotFoundError:
            return None
        except OSError as err:
            raise StoreError("storage_failed", f"{job_id}: {err}") from err
        if not stat.S_ISDIR(mode):
            raise _corrupt(job_id, "not a real folder")
        try:
            manifest = json.loads(_read_private(directory / MANIFEST_NAME))
        except (OSError, ValueError) as err:
            raise _corrupt(job_id, f"unreadable manifest: {err}") from err
        return _parse_manifest(directory, job_id, manifest)

    def _verify_blocking(self, job_id: str) -> StoredBuild | None:
        build = self._load(job_id)
        if build is None:
            return None
        for image in build.images:
            try:
                digest = _sha256_file(image.path)
            except OSError as err:
                raise _corrupt(job_id, f"{image.name}: {err}") from err
            if digest != image.sha256:
                raise _corrupt(job_id, f"{image.name} does not match its sha256")
        return build

    def _list_blocking(self) -> list[StoredBuild]:
        builds: list[StoredBuild] = []
        try:
            names = sorted(entry.name for entry in os.scandir(self.root))
        except OSError as err:
            raise StoreError("storage_failed", f"cannot list {self.root}: {err}") from err
        for name in names:
            if not _JOB_ID_RE.fullmatch(name):
                continue
            try:
                build = self._load(name)
            except StoreError as err:
                _LOGGER.warning("Ignoring stored build %s: %s", name, err)
                continue
            if build is not None:
                builds.append(build)
        builds.sort(key=lambda b: (datetime.fromisoformat(b.created_at), b.job_id), reverse=True)
        return builds

    def _delete_blocking(self, job_id: str) -> bool:
        final = self._build_dir(job_id)
        trash = self.root / f"{_TMP_PREFIX}{job_id}-{secrets.token_hex(8)}"
        try:
            # Move it out of sight first so nobody ever reads a half-deleted build.
            final.rename(trash)
        except FileNotFoundError:
            return False
        except OSError as err:
            raise StoreError("storage_failed", f"cannot delete {job_id}: {err}") from err
        _remove(trash)
        return True


# -- manifest validation ----------------------------------------------------------------


def _corrupt(job_id: str, detail: str) -> StoreError:
    return StoreError("corrupt_build", f"stored build {job_id}: {detail}")


def _field[T](data: Mapping[str, Any], key: str, kind: type[T], job_id: str) -> T:
    value = data.get(key)
    # bool is an int to Python, never to us.
    if not isinstance(value, kind) or isinstance(value, bool) is not (kind is bool):
        raise _corrupt(job_id, f"{key!r} is missing or not a {kind.__name__}")
    return value


def _matching(data: Mapping[str, Any], key: str, pattern: re.Pattern[str], job_id: str) -> str:
    value = _field(data, key, str, job_id)
    if not pattern.fullmatch(value):
        raise _corrupt(job_id, f"{key!r} is malformed")
    return value


def _parse_manifest(directory: Path, job_id: str, manifest: object) -> StoredBuild:
    """Check every field and every image file, so a tampered manifest never reaches a flash."""
    if not isinstance(manifest, dict):
        raise _corrupt(job_id, "manifest is not an object")
    if _field(manifest, "schema", int, job_id) != MANIFEST_SCHEMA:
        raise _corrupt(job_id, "unknown manifest schema")
    if _field(manifest, "job_id", str, job_id) != job_id:
        raise _corrupt(job_id, "manifest belongs to another job")
    created_at = _field(manifest, "created_at", str, job_id)
    try:
        moment = datetime.fromisoformat(created_at)
    except ValueError as err:
        raise _corrupt(job_id, "'created_at' is not an ISO time") from err
    if moment.utcoffset() is None:
        raise _corrupt(job_id, "'created_at' has no time zone")
    entries = _field(manifest, "images", list, job_id)
    if not entries:
        raise _corrupt(job_id, "no images")
    return StoredBuild(
        job_id=job_id,
        device_name=_field(manifest, "device_name", str, job_id),
        platform=_field(manifest, "platform", str, job_id),
        target_platform=_field(manifest, "target_platform", str, job_id),
        firmware_offset=_matching(manifest, "firmware_offset", _OFFSET_RE, job_id),
        artifacts_sha256=_matching(manifest, "artifacts_sha256", _SHA256_RE, job_id),
        directory=directory,
        images=tuple(_parse_image(directory, job_id, entry) for entry in entries),
        created_at=created_at,
        server_pin=_field(manifest, "server_pin", str, job_id),
        configuration=_field(manifest, "configuration", str, job_id),
    )


def _parse_image(directory: Path, job_id: str, entry: object) -> StoredImage:
    if not isinstance(entry, dict):
        raise _corrupt(job_id, "image entry is not an object")
    name = _field(entry, "name", str, job_id)
    size = _field(entry, "size", int, job_id)
    path = _image_path(directory, job_id, _field(entry, "file", str, job_id))
    try:
        info = os.lstat(path)
    except OSError as err:
        raise _corrupt(job_id, f"{name}: {err}") from err
    if not stat.S_ISREG(info.st_mode) or info.st_size != size:
        raise _corrupt(job_id, f"{name} is not a regular file of {size} bytes")
    return StoredImage(
        name=name,
        offset=_matching(entry, "offset", _OFFSET_RE, job_id),
        size=size,
        sha256=_matching(entry, "sha256", _SHA256_RE, job_id),
        path=path,
    )


def _image_path(directory: Path, job_id: str, file: str) -> Path:
    """Resolve a manifest file name, refusing anything that leaves the build's folder."""
    relative = PurePosixPath(file)
    if relative.is_absolute() or not relative.parts or ".." in relative.parts:
        raise _corrupt(job_id, f"image file {file!r} is not a plain relative path")
    path = directory.joinpath(*relative.parts)
    if not path.resolve().is_relative_to(directory.resolve()):
        raise _corrupt(job_id, f"image file {file!r} leaves the build folder")
    return path


# -- file helpers -----------------------------------------------------------------------


def _make_private_dirs(path: Path) -> None:
    """Create ``path`` and any missing parent as 0700 (``mkdir`` alone obeys the umask)."""
    missing = list(itertools.takewhile(lambda p: not p.is_dir(), (path, *path.parents)))
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(_DIR_MODE)
            directory.chmod(_DIR_MODE)


def _remove(path: Path) -> None:
    """Remove a file, link or tree without following links; best effort (swept again)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _seal_images(tmp: Path, image_set: ImageSet) -> None:
    """Force the modes and flush the images before the rename makes them visible."""
    for image in image_set.images:
        _fsync(image.path, _FILE_MODE)
    _fsync(tmp / IMAGES_DIR, _DIR_MODE)


def _fsync(path: Path, mode: int) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, _FILE_MODE)
    with os.fdopen(fd, "wb") as file:
        os.fchmod(fd, _FILE_MODE)
        file.write(data)
        file.flush()
        os.fsync(fd)


def _read_private(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as file:
        data = file.read(_MANIFEST_MAX_BYTES + 1)
    if len(data) > _MANIFEST_MAX_BYTES:
        raise ValueError("manifest is too large")
    return data
