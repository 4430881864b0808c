"""Reassembly of an artifacts stream straight to disk.

Chunks are decoded, hashed and appended to a temporary file as they arrive, so memory
does not grow with the artifact size.  The assembler enforces the stream's rules
(PROTOCOL.md §5.7) and, on any failure, removes its temporary file; only a stream that
ended with ``accepted:true``, the declared size and the declared SHA-256 is renamed into
place.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import os
from pathlib import Path
import re
from typing import IO

from .errors import (
    DownloadBusyError,
    DownloadError,
    DownloadIntegrityError,
    DownloadRejectedError,
    JobNotCompletedError,
    UnknownJobError,
)
from .frames import (
    ARTIFACTS_MAX_BYTES,
    ArtifactsChunkFrame,
    ArtifactsEndFrame,
    ArtifactsStartFrame,
)
from .models import DownloadResult

_SHA256_RE = re.compile(r"^[0-9a-fA-F]{64}$")
_OFFSET_RE = re.compile(r"^0x[0-9a-fA-F]{1,16}$")

_REJECT_TYPES: dict[str, type[DownloadRejectedError]] = {
    "unknown_job": UnknownJobError,
    "build_dir_missing": UnknownJobError,
    "job_not_completed": JobNotCompletedError,
    "duplicate_download": DownloadBusyError,
    "busy": DownloadBusyError,
}


def rejected(reason: str, detail: str) -> DownloadRejectedError:
    """Map the server's refusal reason to the most specific exception."""
    return _REJECT_TYPES.get(reason, DownloadRejectedError)(reason, detail)


def _start_problem(frame: ArtifactsStartFrame) -> str | None:
    """Say what is wrong with a stream header, if anything."""
    total, chunks = frame["total_bytes"], frame["num_chunks"]
    if not 0 < total <= ARTIFACTS_MAX_BYTES:
        return f"declared size {total} bytes is out of bounds"
    if not 0 < chunks <= total:
        return f"declared chunk count {chunks} is out of bounds"
    if not _SHA256_RE.fullmatch(frame["artifacts_sha256"]):
        return "malformed sha256"
    if not _OFFSET_RE.fullmatch(frame["firmware_offset"]):
        return "malformed firmware offset"
    return None


class ArtifactAssembler:
    """State of one ``download_artifacts`` request, fed frame by frame by the session."""

    def __init__(self, job_id: str, dest: Path) -> None:
        self.job_id = job_id
        self.dest = dest
        self.result: asyncio.Future[DownloadResult] = asyncio.get_running_loop().create_future()
        self.progress = asyncio.Event()
        self._tmp = dest.with_name(f".{dest.name}.part")
        self._file: IO[bytes] | None = None
        self._hash = hashlib.sha256()
        self._start: ArtifactsStartFrame | None = None
        self._next_index = 0
        self._received = 0
        self._finished_chunks = False

    @property
    def done(self) -> bool:
        """Tell whether the request has an outcome (later frames are ignored)."""
        return self.result.done()

    def on_start(self, frame: ArtifactsStartFrame) -> None:
        """Validate the stream header and open the temporary file."""
        if self.done:
            return
        problem = _start_problem(frame) if self._start is None else "duplicate_start"
        if problem is not None:
            self.fail(DownloadIntegrityError("invalid_start_header", problem))
            return
        self._start = frame
        # Opening a fresh file in a directory we own is a metadata operation, not bulk I/O.
        fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self._file = os.fdopen(fd, "wb")
        self.progress.set()

    def on_chunk(self, frame: ArtifactsChunkFrame) -> None:
        """Decode, bound, hash and append one chunk."""
        if self.done or self._start is None or self._file is None:
            return  # a chunk before any start is dropped, as the reference does
        try:
            data = self._checked_chunk(self._start, frame)
        except DownloadIntegrityError as err:
            self.fail(err)
            return
        self._hash.update(data)
        self._file.write(data)
        self._next_index += 1
        self._finished_chunks = frame["is_last"]
        self.progress.set()

    def _checked_chunk(self, start: ArtifactsStartFrame, frame: ArtifactsChunkFrame) -> bytes:
        if self._finished_chunks:
            raise DownloadIntegrityError("post_completion")
        if frame["chunk_index"] != self._next_index:
            raise DownloadIntegrityError(
                "out_of_order", f"got chunk {frame['chunk_index']}, expected {self._next_index}"
            )
        try:
            data = base64.b64decode(frame["data_b64"], validate=True)
        except (binascii.Error, ValueError) as err:
            raise DownloadIntegrityError("bad_chunk_encoding", f"chunk {self._next_index}") from err
        self._received += len(data)
        if self._received > start["total_bytes"]:
            raise DownloadIntegrityError("oversized")
        if frame["is_last"] != (self._next_index == start["num_chunks"] - 1):
            raise DownloadIntegrityError("chunk_count_mismatch")
        return data

    def on_end(self, frame: ArtifactsEndFrame) -> DownloadResult | None:
        """Close the stream; returns the result when the caller must commit it."""
        if self.done:
            return None
        if not frame["accepted"]:
            self.fail(rejected(frame["reason"], frame["detail"]))
            return None
        start = self._start
        if start is None:
            self.fail(DownloadIntegrityError("missing_start"))
            return None
        if not self._finished_chunks or self._received != start["total_bytes"]:
            self.fail(
                DownloadIntegrityError(
                    "undersized", f"{self._received} of {start['total_bytes']} bytes"
                )
            )
            return None
        digest = self._hash.hexdigest()
        if digest != start["artifacts_sha256"].lower():
            self.fail(DownloadIntegrityError("hash_mismatch", f"got {digest}"))
            return None
        return DownloadResult(
            job_id=self.job_id,
            path=self.dest,
            total_bytes=self._received,
            sha256=digest,
            firmware_offset=start["firmware_offset"].lower(),
        )

    def commit(self) -> None:
        """Flush, close and rename the verified file into place (run in an executor)."""
        assert self._file is not None
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._tmp.replace(self.dest)
        except OSError as err:
            self.discard()
            raise DownloadError("write_failed", str(err)) from err

    def succeed(self, result: DownloadResult) -> None:
        """Record the verified, committed result."""
        if not self.result.done():
            self.result.set_result(result)
        self.progress.set()

    def fail(self, error: DownloadError) -> None:
        """Record the outcome and remove every trace on disk."""
        self.discard()
        if not self.result.done():
            self.result.set_exception(error)
        self.progress.set()

    def abandon(self) -> None:
        """Give up locally (timeout, cancellation): delete the file, ignore later frames."""
        if not self.result.done():
            self.result.cancel()
        self.discard()

    def discard(self) -> None:
        """Close and delete the temporary file; safe to call more than once."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()
