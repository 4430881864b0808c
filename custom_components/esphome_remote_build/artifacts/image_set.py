"""Turn a downloaded artifacts tarball into verified image files on disk.

Two streaming passes over the tarball: the first checks every member and reads only the
small metadata, which decides the image list; the second streams exactly those images to
disk, hashing as it writes.  Nothing but the chosen images is ever written, memory does not
grow with image size, and a failure leaves no file behind.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from dataclasses import dataclass
import os
from pathlib import Path

from .build_metadata import (
    BUILD_INFO_JSON,
    IDEDATA_JSON,
    MAX_BUILD_INFO_JSON,
    MAX_IDEDATA_JSON,
    MAX_STORAGE_JSON,
    METADATA_MEMBERS,
    STORAGE_JSON,
    PlannedImage,
    normalise_offset,
    parse_build_info,
    parse_flash_images,
    parse_json_object,
    parse_storage,
    plan_images,
)
from .errors import ArtifactsError, ArtifactsMismatchError, InvalidArtifactsError
from .models import Image, ImageSet
from .safe_tar import DEFAULT_LIMITS, Member, TarballPass, TarLimits, open_tarball

_IMAGE_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW


@dataclass(frozen=True, slots=True)
class _Index:
    """What the first pass learned: metadata bytes and the other members' basenames."""

    storage: bytes
    idedata: bytes | None
    build_info: bytes | None
    basenames: frozenset[str]
    sha256: str


def read_image_set(
    tarball: Path,
    firmware_offset: str,
    dest_dir: Path,
    *,
    limits: TarLimits = DEFAULT_LIMITS,
    expected_sha256: str | None = None,
) -> ImageSet:
    """Check the tarball, write its images into ``dest_dir`` and describe them. Blocking.

    ``firmware_offset`` is the one the server announced for this download.  ``dest_dir`` is
    created (0700) if missing; images are written 0600 and never overwrite a file.  With
    ``expected_sha256`` the file must hash to it (checked in the first pass, before any
    image is written).  A ``build_info.json`` is optional but, when present, must be
    well-formed: it is the evidence a flash is later verified against.
    """
    offset = normalise_offset(firmware_offset, "firmware offset")
    index = _index(tarball, limits)
    if expected_sha256 is not None and index.sha256 != expected_sha256.lower():
        raise ArtifactsMismatchError(f"{tarball.name} does not match its sha256")
    facts = parse_storage(index.storage)
    flash_images = (
        None
        if index.idedata is None
        else parse_flash_images(parse_json_object(index.idedata, IDEDATA_JSON))
    )
    build_info = None if index.build_info is None else parse_build_info(index.build_info)
    plan = plan_images(facts, flash_images, index.basenames, offset)
    return ImageSet(
        device_name=facts.device_name,
        platform=facts.platform,
        target_platform=facts.target_platform,
        firmware_offset=offset,
        images=_write_images(tarball, limits, plan, dest_dir),
        storage=facts.storage,
        build_info=build_info,
    )


async def async_read_image_set(
    tarball: Path,
    firmware_offset: str,
    dest_dir: Path,
    *,
    limits: TarLimits = DEFAULT_LIMITS,
    expected_sha256: str | None = None,
) -> ImageSet:
    """Run :func:`read_image_set` in a worker thread: it decompresses and writes files."""
    return await asyncio.to_thread(
        read_image_set,
        tarball,
        firmware_offset,
        dest_dir,
        limits=limits,
        expected_sha256=expected_sha256,
    )


def _index(tarball: Path, limits: TarLimits) -> _Index:
    """First pass: check every member, keep the metadata, key the rest by basename."""
    metadata: dict[str, bytes] = {}
    seen_metadata: set[str] = set()
    paths: dict[str, str] = {}
    with open_tarball(tarball, limits) as tar:
        for member in tar.members():
            if member.path in METADATA_MEMBERS:
                if member.path in seen_metadata:
                    raise InvalidArtifactsError(f"the tarball holds {member.path} twice")
                seen_metadata.add(member.path)
                if member.path == STORAGE_JSON:
                    metadata[STORAGE_JSON] = tar.read_bytes(member, MAX_STORAGE_JSON)
                elif member.path == IDEDATA_JSON:
                    metadata[IDEDATA_JSON] = tar.read_bytes(member, MAX_IDEDATA_JSON)
                elif member.path == BUILD_INFO_JSON:
                    metadata[BUILD_INFO_JSON] = tar.read_bytes(member, MAX_BUILD_INFO_JSON)
                continue
            other = paths.setdefault(member.basename, member.path)
            if other != member.path:
                raise InvalidArtifactsError(
                    f"members {other!r} and {member.path!r} share the name {member.basename!r}"
                )
        sha256 = tar.file_sha256()
    if STORAGE_JSON not in metadata:
        raise InvalidArtifactsError(f"the tarball has no {STORAGE_JSON}")
    return _Index(
        storage=metadata[STORAGE_JSON],
        idedata=metadata.get(IDEDATA_JSON),
        build_info=metadata.get(BUILD_INFO_JSON),
        basenames=frozenset(paths),
        sha256=sha256,
    )


def _write_images(
    tarball: Path, limits: TarLimits, plan: list[PlannedImage], dest_dir: Path
) -> list[Image]:
    """Second pass, wrapped so that any failure removes what this call created."""
    created: list[Path] = []
    made_dir = not dest_dir.exists()
    try:
        if made_dir:
            dest_dir.mkdir(mode=0o700, parents=True)
        return _stream_images(tarball, limits, plan, dest_dir, created)
    except BaseException as err:
        for path in created:
            path.unlink(missing_ok=True)
        if made_dir:
            with suppress(OSError):
                dest_dir.rmdir()
        if isinstance(err, OSError):
            raise ArtifactsError(f"cannot write images to {dest_dir}: {err}") from err
        raise


def _stream_images(
    tarball: Path,
    limits: TarLimits,
    plan: list[PlannedImage],
    dest_dir: Path,
    created: list[Path],
) -> list[Image]:
    """Stream the planned images to disk, recording each file before writing to it."""
    by_source = {planned.source: planned for planned in plan}
    written: dict[str, Image] = {}
    with open_tarball(tarball, limits) as tar:
        for member in tar.members():
            planned = by_source.get(member.basename)
            if planned is None or member.path in METADATA_MEMBERS:
                continue
            path = dest_dir / planned.name
            written[planned.name] = Image(
                name=planned.name,
                offset=planned.offset,
                size=member.size,
                sha256=_write_member(tar, member, path, created),
                path=path,
            )
    if len(written) != len(plan):
        raise InvalidArtifactsError("the tarball changed while it was being read")
    return [written[planned.name] for planned in plan]


def _write_member(tar: TarballPass, member: Member, path: Path, created: list[Path]) -> str:
    """Create ``path`` exclusively (0600) and stream the member into it."""
    fd = os.open(path, _IMAGE_FILE_FLAGS, 0o600)
    created.append(path)
    with os.fdopen(fd, "wb") as dst:
        return tar.copy_to(member, dst)
