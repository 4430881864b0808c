"""The on-disk store of downloaded builds (layout: ``docs/store.md``).

A build is flashed long after it was downloaded, maybe after a restart, so its images and
what is needed to flash them (offsets, platform, hashes, the server it came from) live in
``<root>/<job_id>/`` next to a ``manifest.json`` of our own.  The folder appears in one
``rename`` only after every check passed: a reader either sees a complete build or none,
and a failed or cancelled download or commit leaves no trace.  Builds may embed Wi-Fi
credentials and API keys, so every folder is 0700 and every file 0600 whatever the umask.

Reading needs no write access: only a write (a download, a delete) creates the root,
forces its mode and sweeps the debris of interrupted commits, so a store on a read-only
filesystem still flashes what it holds.  The module is free of Home Assistant.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
import hashlib
import itertools
import json
import logging
import os
from pathlib import Path
import secrets
import shutil
import stat
import threading
from typing import Protocol
import weakref

from .artifacts import read_image_set
from .peerlink import InvalidJobIdError, is_valid_job_id
from .store_errors import ForeignBuildError, StoreError
from .stored_build import (
    IMAGES_DIR,
    MANIFEST_NAME,
    BuildOrigin,
    StoredBuild,
    build_manifest,
    corrupt,
    parse_manifest,
)

_LOGGER = logging.getLogger(__name__)

_DIR_MODE = 0o700
_FILE_MODE = 0o600
_TMP_PREFIX = ".tmp-"
_MANIFEST_MAX_BYTES = 1 << 20
_HASH_CHUNK = 1 << 20


def validate_job_id(job_id: str) -> str:
    """Return ``job_id`` if it is safe as a single path component, else raise."""
    if not is_valid_job_id(job_id):
        raise InvalidJobIdError(job_id)
    return job_id


class Fetched(Protocol):
    """What a finished download tells the store about the file it wrote."""

    @property
    def sha256(self) -> str:
        """The SHA-256 the download verified the file against."""

    @property
    def firmware_offset(self) -> str:
        """Where the build's firmware image goes in flash."""


type Fetch = Callable[[Path], Awaitable[Fetched]]


@dataclass(frozen=True, slots=True)
class _Commit:
    """Everything the executor job needs to commit one build."""

    origin: BuildOrigin
    tarball: Path
    firmware_offset: str


def _utcnow() -> datetime:
    return datetime.now(UTC)


class BuildStore:
    """Atomic, private, idempotent storage of builds under one root folder.

    Use one instance per root in a process: it serialises work on the same job id and
    sweeps the debris of interrupted commits before its first write, which would be unsafe
    if two instances shared a root.
    """

    def __init__(
        self,
        root: Path,
        *,
        clock: Callable[[], datetime] = _utcnow,
        on_delete: Callable[[str], None] | None = None,
    ) -> None:
        """Keep builds under ``root``.

        ``on_delete(job_id)`` runs (on a worker thread) after a build was deleted, so what
        belongs to it elsewhere (its build log) goes with it.
        """
        self.root = root
        self._clock = clock
        self._on_delete = on_delete
        # Our own temporary folder carries the .tmp- prefix so a later run sweeps it.
        self._scratch = root / f"{_TMP_PREFIX}scratch-{secrets.token_hex(4)}"
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._writable = False
        self._writable_lock = asyncio.Lock()

    # -- public API ---------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def async_temporary_file(self, name: str) -> AsyncIterator[Path]:
        """Lend a private path on the store's filesystem; it is gone afterwards, always.

        For what must never be readable by others on its way elsewhere (a config bundle
        with secrets, a download before its commit).
        """
        await self._async_writable()
        path = self._scratch / f"{secrets.token_hex(8)}-{name}"
        try:
            yield path
        finally:
            await asyncio.to_thread(_remove, path)

    async def async_download(
        self, job_id: str, *, server_pin: str, configuration: str, fetch: Fetch
    ) -> StoredBuild:
        """Return the stored build of ``job_id``, fetching and committing it first if needed.

        ``fetch`` writes the artifacts tarball to the path it is given and says what it
        verified; the tarball never outlives this call.  A build of the same job id from
        another server raises :class:`ForeignBuildError`.
        """
        validate_job_id(job_id)
        # Held from "stored already?" to the commit: a second request for the same job
        # waits, then finds the first one's build instead of downloading it again.
        async with self._lock(job_id):
            if (stored := await self.async_get(job_id, server_pin=server_pin)) is not None:
                return stored
            async with self.async_temporary_file(f"{job_id}.tar.gz") as tarball:
                fetched = await fetch(tarball)
                return await self._async_commit(
                    _Commit(
                        origin=BuildOrigin(
                            job_id=job_id,
                            server_pin=server_pin,
                            configuration=configuration,
                            artifacts_sha256=fetched.sha256.lower(),
                        ),
                        tarball=tarball,
                        firmware_offset=fetched.firmware_offset,
                    )
                )

    async def async_get(self, job_id: str, *, server_pin: str | None = None) -> StoredBuild | None:
        """Load a stored build (manifest checked, files present with the right sizes).

        With ``server_pin``, a build of that job id from another server is an error.
        """
        validate_job_id(job_id)
        build = await asyncio.to_thread(self._load, job_id)
        if build is not None and server_pin is not None and build.server_pin != server_pin:
            raise ForeignBuildError(job_id, build.server_pin)
        return build

    async def async_verify(self, job_id: str) -> StoredBuild | None:
        """Like :meth:`async_get`, but also rehash every image (worth it before flashing)."""
        validate_job_id(job_id)
        return await asyncio.to_thread(self._verify_blocking, job_id)

    async def async_list(self) -> list[StoredBuild]:
        """Return every readable build, newest first; unreadable ones are logged."""
        return await asyncio.to_thread(self._list_blocking)

    async def async_delete(self, job_id: str) -> bool:
        """Remove a build (readable or not); ``False`` when there was none."""
        validate_job_id(job_id)
        await self._async_writable()
        async with self._lock(job_id):
            return await asyncio.to_thread(self._delete_blocking, job_id)

    def holds(self, job_id: str) -> bool:
        """Tell whether a build of ``job_id`` is stored (blocking, one ``lstat``, unchecked)."""
        if not is_valid_job_id(job_id):
            return False
        try:
            return stat.S_ISDIR(os.lstat(self._build_dir(job_id)).st_mode)
        except OSError:
            return False

    async def async_keep_last(self, keep: int, device_name: str | None = None) -> list[str]:
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

    async def _async_commit(self, request: _Commit) -> StoredBuild:
        """Verify and unpack a tarball into the store (the caller holds the job's lock)."""
        abort = threading.Event()
        job = asyncio.get_running_loop().run_in_executor(
            None, self._commit_blocking, request, abort
        )
        try:
            return await asyncio.shield(job)
        except asyncio.CancelledError:
            # The thread cannot be interrupted; tell it not to publish, and wait so that
            # neither a temporary folder nor a racing commit outlives us.
            abort.set()
            with contextlib.suppress(Exception):
                await job
            raise

    async def _async_writable(self) -> None:
        """Before the first write: create the root and our scratch folder, sweep leftovers."""
        if self._writable:
            return
        async with self._writable_lock:
            if not self._writable:
                await asyncio.to_thread(self._prepare_blocking)
                self._writable = True

    def _prepare_blocking(self) -> None:
        try:
            _make_private_dirs(self.root)
            self.root.chmod(_DIR_MODE)
            for entry in os.scandir(self.root):
                if entry.name.startswith(_TMP_PREFIX):
                    _LOGGER.debug("Removing leftover %s", entry.path)
                    _remove(Path(entry.path))
            _make_private_dirs(self._scratch)
        except OSError as err:
            raise StoreError(f"cannot prepare {self.root}: {err}") from err

    def _build_dir(self, job_id: str) -> Path:
        return self.root / job_id

    def _new_tmp(self, job_id: str) -> Path:
        path = self.root / f"{_TMP_PREFIX}{job_id}-{secrets.token_hex(8)}"
        path.mkdir(_DIR_MODE)
        path.chmod(_DIR_MODE)
        return path

    def _commit_blocking(self, request: _Commit, abort: threading.Event) -> StoredBuild:
        job_id = request.origin.job_id
        final = self._build_dir(job_id)
        try:
            if (stored := self._load(job_id)) is not None:
                return stored
            tmp = self._new_tmp(job_id)
            try:
                # The reader hashes the file in its first pass, before writing any image,
                # so the manifest's artifacts_sha256 is a fact about this file, not a claim.
                image_set = read_image_set(
                    request.tarball,
                    request.firmware_offset,
                    tmp / IMAGES_DIR,
                    expected_sha256=request.origin.artifacts_sha256,
                )
                manifest = build_manifest(
                    request.origin, image_set, tmp, self._clock().astimezone(UTC)
                )
                # Parse what we are about to write: a build we could not load is never
                # published.
                parse_manifest(tmp, job_id, manifest)
                _seal_images(tmp, [image.path for image in image_set.images])
                _write_private(tmp / MANIFEST_NAME, json.dumps(manifest, indent=2).encode())
                _fsync(tmp, _DIR_MODE)
                if abort.is_set():
                    raise StoreError(f"commit of {job_id} was cancelled")
                try:
                    tmp.rename(final)
                except OSError:
                    # Another writer may have published the same job first; theirs stands.
                    if (stored := self._load(job_id)) is None:
                        raise
                    return stored
                _fsync(self.root, _DIR_MODE)
                return parse_manifest(final, job_id, manifest)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError as err:
            raise StoreError(f"{job_id}: {err}") from err

    def _load(self, job_id: str) -> StoredBuild | None:
        directory = self._build_dir(job_id)
        try:
            mode = os.lstat(directory).st_mode
        except FileNotFoundError:
            return None
        except OSError as err:
            raise StoreError(f"{job_id}: {err}") from err
        if not stat.S_ISDIR(mode):
            raise corrupt(job_id, "not a real folder")
        try:
            manifest = json.loads(_read_private(directory / MANIFEST_NAME))
        except (OSError, ValueError) as err:
            raise corrupt(job_id, f"unreadable manifest: {err}") from err
        return parse_manifest(directory, job_id, manifest)

    def _verify_blocking(self, job_id: str) -> StoredBuild | None:
        build = self._load(job_id)
        if build is None:
            return None
        for image in build.images:
            try:
                digest = _sha256_file(image.path)
            except OSError as err:
                raise corrupt(job_id, f"{image.name}: {err}") from err
            if digest != image.sha256:
                raise corrupt(job_id, f"{image.name} does not match its sha256")
        return build

    def _list_blocking(self) -> list[StoredBuild]:
        builds: list[StoredBuild] = []
        try:
            names = sorted(entry.name for entry in os.scandir(self.root))
        except FileNotFoundError:
            return builds  # nothing was ever stored
        except OSError as err:
            raise StoreError(f"cannot list {self.root}: {err}") from err
        for name in names:
            if not is_valid_job_id(name):
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
            raise StoreError(f"cannot delete {job_id}: {err}") from err
        _remove(trash)
        if self._on_delete is not None:
            try:
                self._on_delete(job_id)
            except Exception:
                _LOGGER.exception("Cleaning up after deleting build %s failed", job_id)
        return True


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


def _seal_images(tmp: Path, images: list[Path]) -> None:
    """Force the modes and flush the images before the rename makes them visible."""
    for image in images:
        _fsync(image, _FILE_MODE)
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
