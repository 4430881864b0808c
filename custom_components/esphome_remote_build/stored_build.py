"""What a stored build is: the ``manifest.json`` beside its images, and its response shape.

A build is flashed long after it was downloaded, maybe after a restart, by code that
trusts what this file says (offsets, sizes, hashes, the server it came from).  So the
manifest is parsed as strictly as a peer's frame: every field typed and bounded, every
image a regular file of the recorded size inside the build's own folder.  The layout is
described in ``docs/store.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
import os
from pathlib import Path, PurePosixPath
import re
import stat
from typing import Any

from .artifacts import BuildInfo, Image, ImageSet, InvalidArtifactsError
from .artifacts.build_metadata import build_info_from_object
from .store_errors import CorruptBuildError

MANIFEST_NAME = "manifest.json"
MANIFEST_SCHEMA = 1
IMAGES_DIR = "images"

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
# Empty = an image without a fixed flash address (artifacts.NO_FLASH_OFFSET).
_OFFSET_RE = re.compile(r"^(0x[0-9a-f]{1,16})?$")


@dataclass(frozen=True, slots=True)
class StoredBuild:
    """A committed build as recorded by its manifest; image paths are absolute.

    ``build_info`` is the build's ``build_info.json``: ``None`` when the build had none, or
    when it was stored before manifests recorded it.
    """

    job_id: str
    device_name: str
    platform: str
    target_platform: str
    firmware_offset: str
    artifacts_sha256: str
    directory: Path
    images: tuple[Image, ...]
    created_at: str
    server_pin: str
    configuration: str
    build_info: BuildInfo | None = None

    def as_response(self) -> dict[str, Any]:
        """Shape the build as the ``download_artifacts`` action's response (docs/design.md)."""
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
            "build_info": _build_info_response(self.build_info),
        }


def _build_info_response(info: BuildInfo | None) -> dict[str, str] | None:
    """Give what a user compares with a device: version, build time, mDNS config hash."""
    if info is None:
        return None
    return {
        "esphome_version": info.esphome_version,
        "build_time_str": info.build_time_str,
        "config_hash": info.config_hash_hex,
    }


@dataclass(frozen=True, slots=True)
class BuildOrigin:
    """Where a build came from: the facts the store records next to its images."""

    job_id: str
    server_pin: str
    configuration: str
    artifacts_sha256: str


def build_manifest(
    origin: BuildOrigin, image_set: ImageSet, folder: Path, created_at: datetime
) -> dict[str, Any]:
    """Describe ``image_set`` (written under ``folder``) as the manifest to store with it."""
    return {
        "schema": MANIFEST_SCHEMA,
        "job_id": origin.job_id,
        "device_name": image_set.device_name,
        "platform": image_set.platform,
        "target_platform": image_set.target_platform,
        "firmware_offset": image_set.firmware_offset,
        "artifacts_sha256": origin.artifacts_sha256,
        "server_pin": origin.server_pin,
        "configuration": origin.configuration,
        "created_at": created_at.isoformat(),
        "images": [
            {
                "name": image.name,
                "offset": image.offset,
                "size": image.size,
                "sha256": image.sha256,
                "file": image.path.relative_to(folder).as_posix(),
            }
            for image in image_set.images
        ],
        "build_info": _build_info_record(image_set.build_info),
    }


def _build_info_record(info: BuildInfo | None) -> dict[str, Any] | None:
    """``build_info.json``'s four fields as ESPHome writes them (the hash an integer)."""
    if info is None:
        return None
    return {
        "config_hash": info.config_hash,
        "build_time": info.build_time,
        "build_time_str": info.build_time_str,
        "esphome_version": info.esphome_version,
    }


def corrupt(job_id: str, detail: str) -> CorruptBuildError:
    """Say that the stored build of ``job_id`` cannot be trusted, and why (for the log)."""
    return CorruptBuildError(f"stored build {job_id}: {detail}")


def _field[T](data: Mapping[str, Any], key: str, kind: type[T], job_id: str) -> T:
    value = data.get(key)
    # bool is an int to Python, never to us.
    if not isinstance(value, kind) or isinstance(value, bool) is not (kind is bool):
        raise corrupt(job_id, f"{key!r} is missing or not a {kind.__name__}")
    return value


def _matching(data: Mapping[str, Any], key: str, pattern: re.Pattern[str], job_id: str) -> str:
    value = _field(data, key, str, job_id)
    if not pattern.fullmatch(value):
        raise corrupt(job_id, f"{key!r} is malformed")
    return value


def parse_manifest(directory: Path, job_id: str, manifest: object) -> StoredBuild:
    """Check every field and every image file, so a tampered manifest never reaches a flash."""
    if not isinstance(manifest, dict):
        raise corrupt(job_id, "manifest is not an object")
    if _field(manifest, "schema", int, job_id) != MANIFEST_SCHEMA:
        raise corrupt(job_id, "unknown manifest schema")
    if _field(manifest, "job_id", str, job_id) != job_id:
        raise corrupt(job_id, "manifest belongs to another job")
    created_at = _field(manifest, "created_at", str, job_id)
    try:
        moment = datetime.fromisoformat(created_at)
    except ValueError as err:
        raise corrupt(job_id, "'created_at' is not an ISO time") from err
    if moment.utcoffset() is None:
        raise corrupt(job_id, "'created_at' has no time zone")
    entries = _field(manifest, "images", list, job_id)
    if not entries:
        raise corrupt(job_id, "no images")
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
        build_info=_parse_build_info(manifest, job_id),
    )


def _parse_build_info(manifest: Mapping[str, Any], job_id: str) -> BuildInfo | None:
    """Read the optional ``build_info``: absent (an older manifest) or null mean none."""
    record = manifest.get("build_info")
    if record is None:
        return None
    if not isinstance(record, dict):
        raise corrupt(job_id, "'build_info' is not an object or null")
    try:
        return build_info_from_object(record, "'build_info'")
    except InvalidArtifactsError as err:
        raise corrupt(job_id, str(err)) from err


def _parse_image(directory: Path, job_id: str, entry: object) -> Image:
    if not isinstance(entry, dict):
        raise corrupt(job_id, "image entry is not an object")
    name = _field(entry, "name", str, job_id)
    size = _field(entry, "size", int, job_id)
    path = _image_path(directory, job_id, _field(entry, "file", str, job_id))
    try:
        info = os.lstat(path)
    except OSError as err:
        raise corrupt(job_id, f"{name}: {err}") from err
    if not stat.S_ISREG(info.st_mode) or info.st_size != size:
        raise corrupt(job_id, f"{name} is not a regular file of {size} bytes")
    return Image(
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
        raise corrupt(job_id, f"image file {file!r} is not a plain relative path")
    path = directory.joinpath(*relative.parts)
    if not path.resolve().is_relative_to(directory.resolve()):
        raise corrupt(job_id, f"image file {file!r} leaves the build folder")
    return path
