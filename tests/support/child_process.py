"""A child process that cannot outlive us, with its output kept line by line.

The interop tests, the demo and the benchmark start real programs next to the test
process (the Device Builder, Home Assistant, the OTA device emulator). Each must stop
when we do — normally, on an error, on Ctrl-C, and even when we are killed — so every
child gets its own process group (a Ctrl-C in the terminal reaches only us, and we stop
the children in order) and a parent-death signal. Its output is kept in memory for
waiting on a line and for the log tail shown on failure, and optionally copied to a file.
Standard library only, so it runs in any venv.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
import contextlib
import ctypes
import os
from pathlib import Path
import re
import signal
import sys
from typing import TextIO

_PR_SET_PDEATHSIG = 1


class ChildProcessFailedError(Exception):
    """A child exited, or did not print what we waited for, in time (log tail attached)."""


def _die_with_parent() -> None:
    """Run in the child before exec: the kernel SIGTERMs it when its parent dies."""
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class ChildProcess:
    """A started command whose merged stdout/stderr is kept line by line.

    ``clean`` rewrites each line before it is kept (e.g. strips colour codes). The same
    object can be started again after ``stop()``; ``lines`` keeps every run's output.
    """

    def __init__(
        self,
        name: str,
        *,
        log_path: Path | None = None,
        clean: Callable[[str], str] | None = None,
    ) -> None:
        self.name = name
        self.log_path = log_path
        self.lines: list[str] = []
        self._clean = clean
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
        self,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """Start *argv*; its output goes to ``lines`` (and ``log_path``)."""
        if self.running:
            raise ChildProcessFailedError(f"{self.name} is already running")
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
        log = self.log_path.open("a", encoding="utf-8") if self.log_path else None
        self._reader = asyncio.create_task(self._read(self._process, log))

    async def _read(self, process: asyncio.subprocess.Process, log: TextIO | None) -> None:
        assert process.stdout is not None
        try:
            while raw := await process.stdout.readline():
                line = raw.decode(errors="replace").rstrip("\r\n")
                if self._clean is not None:
                    line = self._clean(line)
                self.lines.append(line)
                if log is not None:
                    log.write(line + "\n")
                    log.flush()
                self._line_added.set()
        finally:
            if log is not None:
                log.close()
            self._line_added.set()

    async def wait_for_line(
        self, pattern: str | re.Pattern[str], *, timeout: float, since: int = 0
    ) -> re.Match[str]:
        """Wait for a line (from index *since* on) matching *pattern*.

        Fails early, with the output's tail, if the child exits first.
        """
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        index = since
        try:
            async with asyncio.timeout(timeout):
                while True:
                    for line in self.lines[index:]:
                        if match := regex.search(line):
                            return match
                    index = len(self.lines)
                    if self._reader is None or self._reader.done():
                        raise ChildProcessFailedError(
                            f"{self.name} exited ({self.returncode}) before printing "
                            f"{regex.pattern!r}\n{self.tail()}"
                        )
                    self._line_added.clear()
                    await self._line_added.wait()
        except TimeoutError:
            raise ChildProcessFailedError(
                f"{self.name} did not print {regex.pattern!r} within {timeout:.0f} s\n{self.tail()}"
            ) from None

    def tail(self, count: int = 40) -> str:
        """The last output lines, for an error report."""
        return "\n".join(self.lines[-count:])

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
        # Whatever is left of its process group (a hung child, its own children) goes too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        if self._reader is not None:
            await self._reader
        return process.returncode
