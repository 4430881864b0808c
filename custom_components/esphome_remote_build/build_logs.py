r"""Build logs: every line a job printed, on disk and bounded (layout: ``docs/store.md``).

A compile error is explained by the compiler's output, and a failed job leaves no build
to look at; so each job's ``job_output`` lines (both streams, in arrival order) go to
``<root>/<job_id>.log``, for every job, whatever its outcome.  The link feeds lines in as
they arrive (plain calls on the event loop, nothing awaited); they are written by one
background task on a worker thread in batches, at most ``flush_delay`` late, never one
thread hop per line.  ``async_flush`` makes everything fed so far readable on disk.

What a log holds:

* a header (``# …`` lines: the job, what it builds, the server, when it started) and, once
  the job ended, a footer (``# ended: …``);
* colour codes removed: terminal colour sequences, and the ``\033[…m`` text that ESPHome
  writes in their place when the Device Builder runs it with ``--dashboard`` (it does for
  every job);
* progress bars collapsed: a line that ends in a bare ``\r`` replaces the previous such
  line instead of adding one, and the last state is written when a full line follows
  (or the job ends); within a line only what follows its last ``\r`` is kept, as a
  terminal would show it;
* at most ``max_bytes`` in all: when the output is longer, the beginning is kept, then a
  note of how much was left out, then the last ``tail_bytes`` — where a compile error is.

Retention: a log whose job has a stored build lives and dies with that build (the store
calls :func:`remove_log` when it deletes one).  Logs without a build — failed and
cancelled jobs, and builds not downloaded (yet) — are kept for the newest
``keep_per_subject`` jobs of each configuration and ``keep_unstored`` in all; older ones
are removed whenever a job ends.  Folder 0700, files 0600: output can quote a
configuration.  The module is free of Home Assistant.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Callable, Mapping
import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
import itertools
import logging
import os
from pathlib import Path
import re
import stat

from .peerlink import is_valid_job_id

_LOGGER = logging.getLogger(__name__)

LOG_SUFFIX = ".log"
#: The most one job's log takes on disk, header and footer included.
LOG_MAX_BYTES = 1 << 20
#: Of that, the end of an over-long output (the part that says why a build failed).
TAIL_BYTES = 128 << 10
#: The longest line kept (the peer link's own limit for one ``job_output`` line).
LINE_MAX_CHARS = 16_384
#: Lines wait at most this long (seconds) before they are written, in one batch.
FLUSH_DELAY = 0.5
#: Logs without a stored build kept per configuration, and in all.
KEEP_PER_SUBJECT = 5
KEEP_UNSTORED = 50

_RESERVE = 4096  # header, the note of what was left out, and the footer
_META_MAX_CHARS = 500
_SUBJECT_READ_BYTES = 2048
_FAILED_REMEMBERED = 1000
_DIR_MODE = 0o700
_FILE_MODE = 0o600
# A colour code (SGR) as the terminal gets it, or as ESPHome's --dashboard mode writes it.
_COLOUR_RE = re.compile(r"(?:\x1b|\\033)\[[0-9;]*m")


def strip_colours(text: str) -> str:
    r"""Remove colour codes from a line of output (real ones and ``\033[…m`` text)."""
    return _COLOUR_RE.sub("", text) if "[" in text else text


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _one_line(text: str) -> str:
    """Flatten a value for a header line: no line breaks, bounded."""
    flat = " ".join(text.splitlines()) if text else ""
    return flat if len(flat) <= _META_MAX_CHARS else f"{flat[:_META_MAX_CHARS]}…"


def _shown(text: str) -> str:
    """Return what a terminal shows of a line: the part after its last carriage return."""
    return text.rsplit("\r", 1)[-1]


def _size(count: int) -> str:
    return f"{count / (1 << 20):.1f} MiB" if count >= 1 << 20 else f"{count / 1024:.0f} KiB"


def log_path(root: Path, job_id: str) -> Path:
    """Where the log of ``job_id`` lives (``ValueError`` for an id that is no job id)."""
    if not is_valid_job_id(job_id):
        raise ValueError(f"not a job id: {job_id[:80]!r}")
    return root / f"{job_id}{LOG_SUFFIX}"


def remove_log(root: Path, job_id: str) -> None:
    """Remove the log of ``job_id`` if there is one (blocking; never raises for a missing one)."""
    with contextlib.suppress(FileNotFoundError, ValueError):
        log_path(root, job_id).unlink()


@dataclass
class _Log:
    """One job's log while it is written: what waits for the disk, and what is left of it."""

    head_left: int
    pending: list[bytes] = field(default_factory=list)
    fresh: bool = True  # nothing written yet: the first write replaces an old file
    progress: str | None = None
    overflowing: bool = False
    tail: deque[bytes] = field(default_factory=deque)
    tail_bytes: int = 0
    omitted_lines: int = 0
    omitted_bytes: int = 0
    footer: bytes | None = None  # the job ended: the next write is the last
    discarded: bool = False


@dataclass(frozen=True, slots=True)
class _Write:
    """One step for the worker thread."""

    job_id: str
    data: bytes
    truncate: bool = False
    remove: bool = False


class BuildLogs:
    """The build logs of one installation, under one folder (one instance per folder)."""

    def __init__(
        self,
        root: Path,
        *,
        is_stored: Callable[[str], bool] = lambda _job_id: False,
        max_bytes: int = LOG_MAX_BYTES,
        tail_bytes: int = TAIL_BYTES,
        flush_delay: float = FLUSH_DELAY,
        keep_per_subject: int = KEEP_PER_SUBJECT,
        keep_unstored: int = KEEP_UNSTORED,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        if max_bytes < tail_bytes + _RESERVE or tail_bytes <= 0:
            raise ValueError("max_bytes must hold tail_bytes plus 4 KiB")
        self.root = root
        self._is_stored = is_stored
        self._max_bytes = max_bytes
        self._tail_budget = tail_bytes
        self._flush_delay = flush_delay
        self._keep_per_subject = keep_per_subject
        self._keep_unstored = keep_unstored
        self._clock = clock
        self._logs: dict[str, _Log] = {}
        self._dirty: dict[str, None] = {}  # job ids with something to write, in order
        self._writer: asyncio.Task[None] | None = None
        self._hurry = asyncio.Event()
        self._queued = 0  # marks made, and how many of them are on disk
        self._written = 0
        self._failed: set[str] = set()  # jobs whose log could not be written (said once)
        self._prepared = False  # the folder's mode was forced (worker thread only)

    # -- what the link calls (on the event loop, never awaiting) -------------------------

    def path(self, job_id: str) -> Path:
        """Where the log of ``job_id`` is (or would be)."""
        return log_path(self.root, job_id)

    def is_open(self, job_id: str) -> bool:
        """Tell whether ``job_id``'s log still takes lines (started, not ended)."""
        log = self._logs.get(job_id)
        return log is not None and log.footer is None and not log.discarded

    def start(self, job_id: str, subject: str, details: Mapping[str, str] | None = None) -> None:
        """Begin the log of a job: what it is for (``subject``, one line) and some facts.

        Failed logs are kept per ``subject`` (e.g. ``configuration: kitchen.yaml``).  A
        job that already has a log here keeps it.
        """
        log_path(self.root, job_id)  # refuse a bad id before anything is remembered
        if job_id in self._logs:
            return
        header = [
            f"# ESPHome Remote Build: output of job {job_id}",
            f"# {_one_line(subject)}",
            *(f"# {_one_line(key)}: {_one_line(value)}" for key, value in (details or {}).items()),
            f"# started: {self._clock().isoformat(timespec='seconds')}",
        ]
        text = "".join(f"{line}\n" for line in header).encode("utf-8", "replace")
        log = _Log(head_left=self._max_bytes - self._tail_budget - _RESERVE)
        log.pending.append(text[: _RESERVE // 2])
        self._logs[job_id] = log
        self._mark(job_id)

    def append(self, job_id: str, line: str) -> None:
        """Add one output line (with its line ending) to an open log; others are ignored."""
        if not self.is_open(job_id):
            return
        log = self._logs[job_id]
        line = strip_colours(line)
        if line.endswith("\r"):  # a progress bar: replaces the previous state
            if shown := _shown(line.rstrip("\r")):
                log.progress = shown
            return
        if log.progress is not None:
            self._add(log, log.progress)
            log.progress = None
        self._add(log, _shown(line.rstrip("\r\n")))
        self._mark(job_id)

    def end(self, job_id: str, outcome: str) -> None:
        """End a job's log: write what is left, then ``# ended: <outcome>``, and close it."""
        if not self.is_open(job_id):
            return
        log = self._logs[job_id]
        if log.progress is not None:
            self._add(log, log.progress)
            log.progress = None
        when = self._clock().isoformat(timespec="seconds")
        log.footer = f"# ended: {_one_line(outcome)} ({when})\n".encode("utf-8", "replace")
        self._mark(job_id)

    def discard(self, job_id: str) -> None:
        """Forget a job that never started (its submission failed): no log remains."""
        log = self._logs.get(job_id)
        if log is not None:
            log.discarded = True
            self._mark(job_id)

    # -- waiting for the disk ------------------------------------------------------------

    async def async_flush(self) -> None:
        """Return once every line fed so far is written (or could not be written)."""
        target = self._queued
        while self._written < target and (writer := self._writer) is not None:
            self._hurry.set()
            await asyncio.shield(writer)

    async def async_log_of(self, job_id: str) -> Path | None:
        """Return the path of ``job_id``'s log, complete so far, or ``None`` if there is none."""
        if not is_valid_job_id(job_id):
            return None
        await self.async_flush()
        path = self.path(job_id)
        return path if await asyncio.to_thread(_is_regular_file, path) else None

    # -- plumbing ------------------------------------------------------------------------

    def _add(self, log: _Log, text: str) -> None:
        """Queue one line: into the head while it has room, then into the rolling tail."""
        if len(text) > LINE_MAX_CHARS:
            text = f"{text[:LINE_MAX_CHARS]}…"
        data = f"{text}\n".encode("utf-8", "replace")  # "replace": lone surrogates from JSON
        if not log.overflowing and len(data) <= log.head_left:
            log.pending.append(data)
            log.head_left -= len(data)
            return
        log.overflowing = True
        log.tail.append(data)
        log.tail_bytes += len(data)
        while log.tail_bytes > self._tail_budget:
            dropped = log.tail.popleft()
            log.tail_bytes -= len(dropped)
            log.omitted_lines += 1
            log.omitted_bytes += len(dropped)

    def _mark(self, job_id: str) -> None:
        self._dirty[job_id] = None
        self._queued += 1
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(
                self._write_batches(), name="esphome_remote_build build logs"
            )

    async def _write_batches(self) -> None:
        """Write what is queued, a batch at a time, until nothing is left."""
        try:
            while self._dirty:
                if not self._hurry.is_set():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._flush_delay):
                            await self._hurry.wait()
                marks = self._queued
                batch, ended = self._take()
                await asyncio.to_thread(self._write_blocking, batch, ended, frozenset(self._logs))
                self._written = marks
        finally:
            self._hurry.clear()

    def _take(self) -> tuple[list[_Write], bool]:
        """Everything queued, as writes; whether a log was closed (then old ones are pruned)."""
        batch: list[_Write] = []
        ended = False
        for job_id in self._dirty:
            log = self._logs.get(job_id)
            if log is None:
                continue
            if log.discarded:
                del self._logs[job_id]
                batch.append(_Write(job_id, b"", remove=True))
                continue
            parts = [*log.pending]
            log.pending.clear()
            if log.footer is not None:
                parts += [self._omission_note(log), *log.tail, log.footer]
                del self._logs[job_id]
                ended = True
            if data := b"".join(parts):
                batch.append(_Write(job_id, data, truncate=log.fresh))
                log.fresh = False
        self._dirty.clear()
        return batch, ended

    def _omission_note(self, log: _Log) -> bytes:
        if not log.omitted_lines:
            return b""
        note = (
            f"# … {log.omitted_lines} lines ({_size(log.omitted_bytes)}) left out: a log keeps"
            f" {_size(self._max_bytes)}, the beginning and the end …\n"
        )
        return note.encode()

    def _write_blocking(self, batch: list[_Write], ended: bool, open_logs: frozenset[str]) -> None:
        for step in batch:
            try:
                if step.remove:
                    remove_log(self.root, step.job_id)
                else:
                    self._append_blocking(step)
            except OSError as err:
                if step.job_id not in self._failed:
                    if len(self._failed) >= _FAILED_REMEMBERED:  # a disk gone for months
                        self._failed.clear()
                    self._failed.add(step.job_id)
                    _LOGGER.warning("Cannot write the build log of job %s: %s", step.job_id, err)
        if ended:
            try:
                self._prune_blocking(open_logs)
            except OSError as err:
                _LOGGER.warning("Cannot tidy the build logs in %s: %s", self.root, err)

    def _append_blocking(self, step: _Write) -> None:
        _make_private_dirs(self.root)
        if not self._prepared:
            self.root.chmod(_DIR_MODE)
            self._prepared = True
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
        if step.truncate:
            flags |= os.O_TRUNC
        fd = os.open(self.path(step.job_id), flags, _FILE_MODE)
        try:
            os.fchmod(fd, _FILE_MODE)
            view = memoryview(step.data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)

    def _prune_blocking(self, open_logs: frozenset[str]) -> list[str]:
        """Remove old logs without a stored build; return the job ids removed."""
        candidates: list[tuple[int, str, str]] = []
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return []
        for entry in entries:
            job_id = entry.name.removesuffix(LOG_SUFFIX)
            if (
                job_id == entry.name
                or not is_valid_job_id(job_id)
                or job_id in open_logs
                or not entry.is_file(follow_symlinks=False)
                or self._is_stored(job_id)
            ):
                continue
            mtime = entry.stat(follow_symlinks=False).st_mtime_ns
            candidates.append((mtime, job_id, _subject_of(Path(entry.path))))
        candidates.sort(reverse=True)
        per_subject: Counter[str] = Counter()
        kept = 0
        removed: list[str] = []
        for _mtime, job_id, subject in candidates:
            per_subject[subject] += 1
            if per_subject[subject] <= self._keep_per_subject and kept < self._keep_unstored:
                kept += 1
                continue
            remove_log(self.root, job_id)
            removed.append(job_id)
        if removed:
            _LOGGER.debug("Removed old build logs: %s", ", ".join(removed))
        return removed


def _subject_of(path: Path) -> str:
    """Return the subject line of a log (its second line), ``""`` if it cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return ""
    with os.fdopen(fd, "rb") as file:
        head = file.read(_SUBJECT_READ_BYTES)
    lines = head.split(b"\n")
    return lines[1].decode("utf-8", "replace") if len(lines) > 2 else ""


def _is_regular_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _make_private_dirs(path: Path) -> None:
    """Create ``path`` and any missing parent as 0700 (``mkdir`` alone obeys the umask)."""
    if path.is_dir():
        return
    missing = list(itertools.takewhile(lambda p: not p.is_dir(), (path, *path.parents)))
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(_DIR_MODE)
            directory.chmod(_DIR_MODE)
