"""Reassembly of an artifacts stream straight to disk.

Chunks are decoded on the event loop as they arrive and handed, in batches of about
1 MiB, to a worker thread that hashes and appends them to a temporary file — one batch in
flight at a time, so memory stays bounded whatever the artifact size, and the loop only
pays for decoding.  The assembler enforces the stream's rules
(docs/protocol.md §5.7) and, on any failure, removes its temporary file; only a stream that
ended with ``accepted:true``, the declared size and the declared SHA-256 is renamed into
place.

A failure of our own disk (full, read-only, no permission) is a
:class:`DownloadWriteError` wherever it happens — creating the file included — and never
leaves as a raw ``OSError``: the session must outlive it.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import hashlib
import logging
import os
from pathlib import Path
import re
import time
from typing import IO

from .errors import (
    BuildGoneError,
    DownloadBusyError,
    DownloadError,
    DownloadIntegrityError,
    DownloadRejectedError,
    DownloadWriteError,
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

_LOGGER = logging.getLogger(__name__)
_SHA256_RE = re.compile(r"^[0-9a-fA-F]{64}$")
_OFFSET_RE = re.compile(r"^0x[0-9a-fA-F]{1,16}$")

_REJECT_TYPES: dict[str, type[DownloadRejectedError]] = {
    "unknown_job": UnknownJobError,
    "build_dir_missing": BuildGoneError,
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


BATCH_BYTES = 1 << 20


class _BatchWriter:
    """Hashes and appends batches of decoded data to a file on a worker thread.

    At most one batch is in flight: the next one waits for it, which is the back-pressure
    that keeps memory bounded when the disk is slower than the network.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._hash = hashlib.sha256()
        # Creating one file in a directory we own is a metadata operation, not bulk I/O.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self._file: IO[bytes] = os.fdopen(fd, "wb")
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._inflight: asyncio.Future[None] | None = None

    async def add(self, data: bytes) -> None:
        """Queue decoded bytes; a full batch goes to the worker thread."""
        self._pending.append(data)
        self._pending_bytes += len(data)
        if self._pending_bytes >= BATCH_BYTES:
            await self._flush()

    async def _flush(self) -> None:
        if self._inflight is not None:
            await self._inflight  # raises the worker's OSError, if any
        batch = b"".join(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        self._inflight = asyncio.get_running_loop().run_in_executor(None, self._write, batch)

    def _write(self, batch: bytes) -> None:
        self._hash.update(batch)
        self._file.write(batch)

    async def finish(self) -> str:
        """Write what is left and return the SHA-256 of everything written."""
        await self._flush()
        assert self._inflight is not None
        await self._inflight
        return self._hash.hexdigest()

    def close_and_rename(self, dest: Path) -> None:
        """Close the finished file and move it into place (run in an executor).

        No fsync: the file is a transient hand-over to the caller, which reads it at
        once (the build store re-hashes it and syncs what it keeps).
        """
        self._file.close()
        self._path.replace(dest)

    def discard(self) -> None:
        """Close and delete the file, after a write still running on the worker ends."""
        inflight = self._inflight
        if inflight is not None and not inflight.done():
            inflight.add_done_callback(self._remove)
        else:
            self._remove(inflight)

    def _remove(self, inflight: asyncio.Future[None] | None) -> None:
        """Delete the file; never raises, cleanup runs on failure paths (and as a callback)."""
        if inflight is not None and not inflight.cancelled():
            inflight.exception()  # retrieved: a failed write is already reported elsewhere
        with contextlib.suppress(OSError):
            self._file.close()
        try:
            self._path.unlink(missing_ok=True)
        except OSError as err:  # e.g. the file system turned read-only under us
            _LOGGER.warning("could not remove the partial download %s: %s", self._path, err)


class ArtifactAssembler:
    """State of one ``download_artifacts`` request, fed frame by frame by the session."""

    def __init__(self, job_id: str, dest: Path) -> None:
        self.job_id = job_id
        self.dest = dest
        self.result: asyncio.Future[DownloadResult] = asyncio.get_running_loop().create_future()
        # When the stream last moved; the caller's gap watchdog reads it, so no per-chunk
        # wake-up is needed.
        self.last_activity = time.monotonic()
        self._tmp = dest.with_name(f".{dest.name}.part")
        self._writer: _BatchWriter | None = None
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
        self.last_activity = time.monotonic()
        if self.done:
            return
        problem = _start_problem(frame) if self._start is None else "duplicate_start"
        if problem is not None:
            self.fail(DownloadIntegrityError("invalid_start_header", problem))
            return
        try:
            self._writer = _BatchWriter(self._tmp)
        except OSError as err:  # the disk is full or read-only, the folder is not ours, …
            self.fail(DownloadWriteError(f"cannot create {self._tmp}: {err.strerror or err}"))
            return
        self._start = frame

    async def on_chunk(self, frame: ArtifactsChunkFrame) -> None:
        """Decode and bound one chunk, then hand it to the writer."""
        # The stream moves even when we stopped listening: the client waits for an
        # abandoned stream's tail and reads this to tell a slow tail from a dead one.
        self.last_activity = time.monotonic()
        if self.done or self._start is None or self._writer is None:
            return  # a chunk before any start is dropped, as the reference does
        try:
            data = self._checked_chunk(self._start, frame)
            await self._writer.add(data)
        except DownloadIntegrityError as err:
            self.fail(err)
            return
        except (OSError, ValueError) as err:  # ValueError: the file was closed under us
            self.fail(DownloadWriteError(str(err)))
            return
        self._next_index += 1
        self._finished_chunks = frame["is_last"]
        self.last_activity = time.monotonic()

    def _checked_chunk(self, start: ArtifactsStartFrame, frame: ArtifactsChunkFrame) -> bytes:
        if self._finished_chunks:
            raise DownloadIntegrityError("post_completion")
        if frame["chunk_index"] != self._next_index:
            raise DownloadIntegrityError(
                "out_of_order", f"got chunk {frame['chunk_index']}, expected {self._next_index}"
            )
        try:
            # strict_mode: the alphabet, padding and length are checked in C, as
            # b64decode(validate=True) does with a much slower regex
            data = binascii.a2b_base64(frame["data_b64"], strict_mode=True)
        except (binascii.Error, ValueError) as err:
            raise DownloadIntegrityError("bad_chunk_encoding", f"chunk {self._next_index}") from err
        self._received += len(data)
        if self._received > start["total_bytes"]:
            raise DownloadIntegrityError("oversized")
        if frame["is_last"] != (self._next_index == start["num_chunks"] - 1):
            raise DownloadIntegrityError("chunk_count_mismatch")
        return data

    async def on_end(self, frame: ArtifactsEndFrame) -> None:
        """Close the stream: verify, move the file into place, and settle the result."""
        if self.done:
            return
        if not frame["accepted"]:
            self.fail(rejected(frame["reason"], frame["detail"]))
            return
        start, writer = self._start, self._writer
        if start is None or writer is None:
            self.fail(DownloadIntegrityError("missing_start"))
            return
        if not self._finished_chunks or self._received != start["total_bytes"]:
            self.fail(
                DownloadIntegrityError(
                    "undersized", f"{self._received} of {start['total_bytes']} bytes"
                )
            )
            return
        try:
            digest = await writer.finish()
            if digest != start["artifacts_sha256"].lower():
                self.fail(DownloadIntegrityError("hash_mismatch", f"got {digest}"))
                return
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, writer.close_and_rename, self.dest)
        except (OSError, ValueError) as err:
            self.fail(DownloadWriteError(str(err)))
            return
        result = DownloadResult(
            job_id=self.job_id,
            path=self.dest,
            total_bytes=self._received,
            sha256=digest,
            firmware_offset=start["firmware_offset"].lower(),
        )
        if not self.result.done():
            self.result.set_result(result)

    def fail(self, error: DownloadError) -> None:
        """Record the outcome and remove every trace on disk."""
        self.discard()
        if not self.result.done():
            self.result.set_exception(error)

    def abandon(self) -> None:
        """Give up locally (timeout, cancellation): delete the file, ignore later frames."""
        if not self.result.done():
            self.result.cancel()
            self.discard()

    def discard(self) -> None:
        """Delete the temporary file; safe to call more than once."""
        if self._writer is not None:
            self._writer.discard()
