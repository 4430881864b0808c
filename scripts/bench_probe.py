"""What a benchmark worker measures about its own process while one transfer runs.

Every measurement runs in a fresh worker process, so nothing an earlier transfer left in
the heap (freed but not returned to the kernel) can hide the growth of a later one, and
the process's CPU time belongs to that one transfer. ``Meter`` bundles the four figures
the benchmark reports: wall time, process CPU time, peak RSS growth and the longest
event-loop stall.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
import gc
import os
from pathlib import Path
import re
import threading
import time
from types import TracebackType
from typing import Any, Self

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
#: Opened from the loop's thread: "thread-self" is that thread's own scheduler record.
_SCHEDSTAT = "/proc/thread-self/schedstat"
#: Writing this to clear_refs resets VmHWM to the current RSS (Linux >= 4.0, proc(5)).
_RESET_PEAK_RSS = "5"
_KIB = 1024
SAMPLE_INTERVAL = 0.005
STALL_TICK = 0.001


def _status_kib(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", _STATUS.read_text(encoding="ascii"), re.M)
    if match is None:
        raise RuntimeError(f"{field} missing from {_STATUS}")
    return int(match[1])


def rss_bytes() -> int:
    """Resident set size of this process now."""
    return _status_kib("VmRSS") * _KIB


class PeakRss:
    """Peak RSS growth over a window, exact where the kernel can reset its high-water mark.

    With ``clear_refs`` the kernel itself tracks the peak (no sample can miss it); where
    that file is not writable a thread samples VmRSS every 5 ms instead, and the method
    says which one ran.
    """

    def __init__(self) -> None:
        self.method = ""
        self._before = 0
        self._peak = 0
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None

    def start(self) -> None:
        """Collect garbage, then take the baseline."""
        gc.collect()
        try:
            _CLEAR_REFS.write_text(_RESET_PEAK_RSS, encoding="ascii")
        except OSError:
            self.method = f"VmRSS sampled every {SAMPLE_INTERVAL * 1000:g} ms"
            self._before = self._peak = rss_bytes()
            self._sampler = threading.Thread(target=self._sample, daemon=True)
            self._sampler.start()
        else:
            self.method = "VmHWM after clear_refs reset"
            self._before = rss_bytes()

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL):
            self._peak = max(self._peak, rss_bytes())

    def stop(self) -> int:
        """Return how far the RSS rose above the baseline at its highest."""
        if self._sampler is None:
            return _status_kib("VmHWM") * _KIB - self._before
        self._stop.set()
        self._sampler.join()
        return max(self._peak, rss_bytes()) - self._before


class RunQueueClock:
    """Nanoseconds the calling thread spent runnable but waiting for a CPU (schedstat).

    On a loaded machine a sleeping loop can wake late only because another process held
    the CPU. Subtracting that wait from the lateness leaves the stall that is this
    process's own doing: code running on the loop, or a blocking call made from it.
    """

    def __init__(self) -> None:
        try:
            self._fd: int | None = os.open(_SCHEDSTAT, os.O_RDONLY)
        except OSError:
            self._fd = None

    @property
    def available(self) -> bool:
        return self._fd is not None

    def waited(self) -> float:
        """Seconds of run-queue wait so far (0 where the kernel does not tell)."""
        if self._fd is None:
            return 0.0
        return int(os.pread(self._fd, 128, 0).split()[1]) / 1e9

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class StallProbe:
    """The longest time the event loop was late to wake a 1 ms sleep.

    ``max_lateness`` is wall time; ``max_own`` subtracts the time the loop's thread
    waited for a CPU during that tick (see ``RunQueueClock``).
    """

    def __init__(self) -> None:
        self.max_lateness = 0.0
        self.max_own = 0.0
        self._task: asyncio.Task[None] | None = None
        self.clock = RunQueueClock()

    async def _run(self) -> None:
        while True:
            before, waited = time.perf_counter(), self.clock.waited()
            await asyncio.sleep(STALL_TICK)
            lateness = time.perf_counter() - before - STALL_TICK
            self.max_lateness = max(self.max_lateness, lateness)
            self.max_own = max(self.max_own, lateness - (self.clock.waited() - waited))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.clock.close()


@dataclass(frozen=True, slots=True)
class Figures:
    """One transfer, as measured from inside the process that made it."""

    seconds: float
    cpu_seconds: float
    rss_growth_bytes: int
    rss_method: str
    max_stall_ms: float
    #: The stall minus the time the loop waited for a CPU (``None``: kernel cannot tell).
    max_own_stall_ms: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Meter:
    """``async with Meter() as meter:`` around one transfer; ``meter.figures`` afterwards."""

    def __init__(self) -> None:
        self.started = 0.0
        self.cpu_started = 0.0
        self.figures: Figures | None = None
        self._rss = PeakRss()
        self._stall = StallProbe()

    async def __aenter__(self) -> Self:
        self._rss.start()
        self._stall.start()
        self.cpu_started = time.process_time()
        self.started = time.perf_counter()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        seconds = time.perf_counter() - self.started
        cpu = time.process_time() - self.cpu_started
        own_known = self._stall.clock.available
        await self._stall.stop()
        self.figures = Figures(
            seconds=seconds,
            cpu_seconds=cpu,
            rss_growth_bytes=self._rss.stop(),
            rss_method=self._rss.method,
            max_stall_ms=self._stall.max_lateness * 1000,
            max_own_stall_ms=self._stall.max_own * 1000 if own_known else None,
        )
