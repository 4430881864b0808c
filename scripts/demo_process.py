"""One child process of the demo: started so it cannot outlive us, its output kept.

The demo starts a real Home Assistant and an OTA device emulator next to the Device
Builder (which ``tests/support/real_builder.py`` runs). Each must stop when the demo ends —
normally, on an error, on Ctrl-C, and even when the demo itself is killed — so every child
gets its own process group (a Ctrl-C in the terminal reaches only the demo, which stops the
children in order) and a parent-death signal. Its output is kept in memory for waiting on a
line and for the log tail printed on failure, and is copied to a log file for ``--keep``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
import contextlib
import ctypes
import os
from pathlib import Path
import re
import signal
import sys
from typing import TextIO

_PR_SET_PDEATHSIG = 1


class DemoProcessError(Exception):
    """A child exited, or did not say what we waited for, in time (log tail attached)."""


def _die_with_parent() -> None:
    """Runs in the child before exec: the kernel SIGTERMs it when the demo dies."""
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class ChildProcess:
    """A started command whose merged stdout/stderr is kept line by line."""

    def __init__(self, name: str, log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self.lines: list[str] = []
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._line_added = asyncio.Event()

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.returncode

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def start(
        self, argv: Sequence[str], *, cwd: Path | None = None, env: dict[str, str] | None = None
    ) -> None:
        """Start *argv*; its output goes to memory and to ``log_path``."""
        self._process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
            limit=1 << 20,
        )
        log = self.log_path.open("w", encoding="utf-8")
        self._reader = asyncio.create_task(self._read(self._process, log))

    async def _read(self, process: asyncio.subprocess.Process, log: TextIO) -> None:
        assert process.stdout is not None
        with log:
            while raw := await process.stdout.readline():
                line = raw.decode(errors="replace").rstrip("\r\n")
                self.lines.append(line)
                log.write(line + "\n")
                log.flush()
                self._line_added.set()
        self._line_added.set()

    async def wait_for_line(self, pattern: str, timeout: float) -> re.Match[str]:
        """Wait for an output line matching *pattern*; fail early if the child exits."""
        regex = re.compile(pattern)
        index = 0
        try:
            async with asyncio.timeout(timeout):
                while True:
                    for line in self.lines[index:]:
                        if match := regex.search(line):
                            return match
                    index = len(self.lines)
                    if self._reader is None or self._reader.done():
                        raise DemoProcessError(
                            f"{self.name} exited ({self.returncode}) before printing "
                            f"{pattern!r}\n{self.tail()}"
                        )
                    self._line_added.clear()
                    await self._line_added.wait()
        except TimeoutError:
            raise DemoProcessError(
                f"{self.name} did not print {pattern!r} within {timeout:.0f}s\n{self.tail()}"
            ) from None

    def tail(self, count: int = 40) -> str:
        """The last output lines, indented, for an error report."""
        return "\n".join(f"    {line}" for line in self.lines[-count:])

    async def stop(self, timeout: float) -> int | None:
        """SIGTERM, wait up to *timeout*, then SIGKILL whatever is left of its group."""
        process = self._process
        if process is None:
            return None
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        if self._reader is not None:
            await self._reader
        return process.returncode
