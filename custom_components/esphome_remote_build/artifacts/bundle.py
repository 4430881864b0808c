"""Write ESPHome's config bundle: what ``submit_job`` uploads (docs/bundle-and-artifacts.md §1).

The build server hands the upload to ESPHome's own bundle reader, so the format is
ESPHome's: a gzip tar with ``manifest.json`` first, then the filtered secrets files, then
every other file sorted by path, all with normalised metadata (mode 0644, owner 0, mtime 0).
Our output is also byte-deterministic (no gzip timestamp or file name), which ESPHome's is
not.  The archive is written to a temporary file beside ``out`` and renamed into place, so
``out`` is either the complete bundle or untouched.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
from pathlib import Path
import tarfile
import tempfile
from typing import BinaryIO, Final

from .config_scan import MAX_BUNDLE_BYTES, SourceFile, scan_config
from .errors import BundleError
from .models import BundleInfo

MANIFEST_NAME: Final = "manifest.json"
MANIFEST_VERSION: Final = 1


class _CappedHashingWriter:
    """Hashes and counts the compressed bytes on their way to disk; refuses past the cap."""

    def __init__(self, raw: BinaryIO, limit: int) -> None:
        self._raw = raw
        self._limit = limit
        self._digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes, /) -> int:
        self.size += len(data)
        if self.size > self._limit:
            raise BundleError(f"the bundle is larger than {self._limit} bytes")
        self._digest.update(data)
        return self._raw.write(data)

    def flush(self) -> None:
        self._raw.flush()

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def write_config_bundle(
    config_dir: Path,
    yaml_name: str,
    out: Path,
    *,
    esphome_version: str = "",
    max_size: int = MAX_BUNDLE_BYTES,
) -> BundleInfo:
    """Bundle ``config_dir/yaml_name`` and everything it needs into ``out``. Blocking.

    ``max_size`` caps both the files' total size and the compressed bundle (the peer-link
    upload limit).  ``out`` holds secrets, so it is created readable by its owner only.
    """
    scan = scan_config(config_dir, yaml_name, max_bytes=max_size)
    files = [source.arcname for source in scan.files]
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "esphome_version": esphome_version,
        "config_filename": yaml_name,
        "config_dir": str(scan.root),
        "files": files,
        "has_secrets": bool(scan.secrets),
    }
    try:
        fd, temp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    except OSError as err:
        raise BundleError(f"cannot create the bundle in {out.parent}: {err}") from err
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as raw:
            writer = _CappedHashingWriter(raw, max_size)
            with (
                gzip.GzipFile(filename="", mode="wb", fileobj=writer, mtime=0) as compressed,
                tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as tar,
            ):
                _add(tar, MANIFEST_NAME, json.dumps(manifest, indent=2).encode())
                for arcname in sorted(scan.secrets):
                    _add(tar, arcname, scan.secrets[arcname])
                for source in sorted(scan.files, key=lambda source: source.arcname):
                    if source.arcname not in scan.secrets:
                        with source.path.open("rb") as data:
                            _check_identity(source, data)
                            tar.addfile(_member(source.arcname, source.size), data)
        temp.replace(out)
    except BaseException as err:
        temp.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise BundleError(f"cannot write the bundle {out}: {err}") from err
        raise
    return BundleInfo(path=out, size=writer.size, sha256=writer.hexdigest(), files=files)


def _check_identity(source: SourceFile, data: BinaryIO) -> None:
    """Refuse a file that is no longer the one the scan checked (it may be a secrets file now)."""
    found = os.fstat(data.fileno())
    if (found.st_dev, found.st_ino) != source.identity:
        raise BundleError(f"{source.arcname} changed while the bundle was written")


def _member(name: str, size: int) -> tarfile.TarInfo:
    """Member header with the metadata ESPHome's bundler uses: nothing host-specific."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(_member(name, len(data)), io.BytesIO(data))
