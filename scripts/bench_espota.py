"""Benchmark worker: uploads with ESPHome's own ``espota2.run_ota``, timed in-process.

Runs on the Device Builder's interpreter (``.venv-builder``), where ESPHome is installed;
it imports nothing of ours. Each timed window is one ``run_ota`` call, like ours around
``async_flash``, with the process CPU time over the same window. One change to ESPHome's
code path: the ``time.sleep(1)`` it does after a successful upload ("do not connect logs
until it is fully on") is recorded instead of slept, because it waits for the rebooting
device and is no transfer time. Prints one JSON line with the seconds that were skipped.
"""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path
import time
import types
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--image", type=Path, required=True)
    parser.add_argument("--count", type=int, default=1, help="uploads, one after the other")
    args = parser.parse_args()
    espota2: Any = importlib.import_module("esphome.espota2")  # not importable from .venv
    uploads = []
    for _ in range(args.count):
        skipped: list[float] = []
        espota2.time = types.SimpleNamespace(perf_counter=time.perf_counter, sleep=skipped.append)
        cpu, started = time.process_time(), time.perf_counter()
        returncode, _host = espota2.run_ota(args.host, args.port, None, args.image)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        uploads.append(
            {"rc": returncode, "seconds": seconds, "cpu_seconds": cpu, "skipped_sleep": skipped}
        )
    print(json.dumps({"client": "espota2", "uploads": uploads}), flush=True)


if __name__ == "__main__":
    main()
