"""Benchmark worker: uploads with our OTA client (``ota.async_flash``), measured in-process.

Run by ``scripts/bench.py`` in a fresh process, like ESPHome's client in
``bench_espota.py``, so both pay their start-up outside the timed windows and the device
emulator (in the benchmark's own process) serves both alike. Each of ``--count`` uploads
is timed on its own (wall and process CPU time, nothing else running in the process);
then one more upload runs under the stall probe and RSS meter, whose 1 ms ticks would
otherwise slow the timed uploads down, which ESPHome's client is not made to pay.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
import time
from typing import Any

from custom_components.esphome_remote_build.ota import FlashResult, async_flash
from scripts.bench_probe import Meter


def _outcome(result: FlashResult) -> dict[str, Any]:
    return {
        "bytes_sent": result.bytes_sent,
        "compressed": result.compressed,
        "attempts": result.attempts,
    }


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    uploads = []
    for _ in range(args.count):
        cpu, started = time.process_time(), time.perf_counter()
        result = await async_flash(args.host, args.port, args.image)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        uploads.append({**_outcome(result), "seconds": seconds, "cpu_seconds": cpu})
    async with Meter() as meter:
        result = await async_flash(args.host, args.port, args.image)
    assert meter.figures is not None
    probed = {**_outcome(result), **meter.figures.as_dict()}
    return {"client": "ours", "uploads": uploads, "probed": [probed]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--image", type=Path, required=True)
    parser.add_argument("--count", type=int, default=1, help="uploads, one after the other")
    print(json.dumps(asyncio.run(_main(parser.parse_args()))), flush=True)


if __name__ == "__main__":
    main()
