"""Benchmark: what this integration costs an idle Home Assistant with ten ESPHome devices.

Two fresh ``hass`` processes in turn, the same in everything but one: ten emulated
ESP32s (native API, mDNS on; ``tests/support/device_emulator.py``) connected through
Home Assistant's own ``esphome`` integration, each with its YAML in ``<config>/esphome``,
a Device Builder running next to them, and the ``erb_bench_probe`` helper in both. The
**baseline** stops there; **ours** also pairs with the Device Builder, so the ten update
entities appear (one paired server).

After the set-up settles (a pause, then a full garbage collection inside Home
Assistant), nothing talks to Home Assistant for ``idle`` seconds: its CPU time (all
threads, ``/proc/<pid>/stat``), its RSS and the peak RSS over that window
(``VmHWM`` reset through ``clear_refs``) are read from the outside. Then tracemalloc is
switched on inside it for a shorter window, for the peak and the retained Python
allocations of idling (a window of its own, as tracing slows every allocation down).
The difference between the two is this integration's cost; divided by ten, per device
(an upper bound: the integration's fixed cost, such as its peer link to the server, is
in it too).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
from dataclasses import asdict, dataclass
import json
from pathlib import Path
import time
from typing import Any

from scripts.bench_hass import (
    BenchHass,
    DeviceYaml,
    reset_peak_rss,
    sample_process,
    write_device_files,
)
from scripts.bench_report import MIB, table
from tests.support.device_emulator import DeviceEmulator
from tests.support.real_builder import DashboardClient, RealBuilder, free_port

DEVICES = 10
DEFAULT_IDLE = 60.0
DEFAULT_TRACE = 60.0
#: After the last device and entity appeared: deferred start-up work (registry saves are
#: delayed 10 s) finishes before the window opens.
SETTLE = 10.0
SET_UP_TIMEOUT = 120.0
OTA_PASSWORD = "bench-fleet-ota"  # noqa: S105 - an emulated device's


class FleetBenchError(Exception):
    """A step of the fleet benchmark failed."""


@dataclass(frozen=True, slots=True)
class IdleSample:
    """One Home Assistant over its idle windows."""

    kind: str
    idle_seconds: float
    cpu_seconds: float
    #: The same from /proc/<pid>/stat (10 ms ticks; threads that ended included).
    tick_cpu_seconds: float
    threads: tuple[int, int]
    rss_start_bytes: int
    rss_end_bytes: int
    peak_rss_growth_bytes: int
    peak_rss_method: str
    trace_seconds: float
    traced_peak_bytes: int
    #: Still traced at the window's end after a full garbage collection.
    traced_kept_bytes: int
    #: RSS after the windows and a full garbage collection.
    rss_settled_bytes: int
    gc_objects: int
    update_entities: int

    @property
    def cpu_per_minute(self) -> float:
        return self.cpu_seconds * 60.0 / self.idle_seconds


def device_emulators() -> list[DeviceEmulator]:
    return [
        DeviceEmulator(
            name=f"bench-fleet-{index:02d}",
            friendly_name=f"Bench Fleet {index:02d}",
            mac=f"AA:BB:CC:00:F1:{index:02X}",
            esphome_version="2026.9.0",
            compilation_time="2026-09-01 10:00:00 +0000",
            encryption_key=base64.b64encode(bytes([index + 1]) * 32).decode(),
            ota_password=OTA_PASSWORD,
            mdns=True,
        )
        for index in range(DEVICES)
    ]


class FleetBench:
    """Both Home Assistants in turn against the same devices and Device Builder."""

    def __init__(self, work: Path, idle: float, trace: float) -> None:
        self.work = work
        self.idle = idle
        self.trace = trace

    async def run(self) -> list[IdleSample]:
        devices = device_emulators()
        builder = RealBuilder(self.work / "device-builder", dashboard=True)
        started: list[DeviceEmulator] = []
        try:
            async with builder, builder.dashboard_client() as operator:
                await operator.set_pairing_window(True)
                for device in devices:
                    await device.start()
                    started.append(device)
                samples = []
                for kind in ("baseline", "ours"):
                    samples.append(await self._one(kind, devices, builder, operator))
                    print(f"[bench] fleet idle: {kind} done", flush=True)
                return samples
        finally:
            for device in started:
                await device.stop()

    async def _one(
        self,
        kind: str,
        devices: list[DeviceEmulator],
        builder: RealBuilder,
        operator: DashboardClient,
    ) -> IdleSample:
        ours = kind == "ours"
        hass = BenchHass(self.work / kind, ours=ours)
        write_device_files(hass.esphome_dir, [DeviceYaml.of(d, OTA_PASSWORD) for d in devices])
        try:
            await hass.start(free_port())
            await asyncio.gather(*(hass.add_esphome_device(device) for device in devices))
            if ours:
                await hass.pair(builder, operator)
            names = {f"{d.firmware.friendly_name} Status" for d in devices}
            wanted = DEVICES if ours else 0

            def ready(states: list[dict[str, Any]]) -> bool:
                online = {
                    s["attributes"].get("friendly_name")
                    for s in states
                    if s["entity_id"].startswith("binary_sensor.") and s["state"] == "on"
                }
                updates = [
                    s for s in states if s["entity_id"].startswith("update.") and s["state"] == "on"
                ]
                return names <= online and len(updates) >= wanted

            states = await hass.wait_states(ready, f"{kind}: ten devices online", SET_UP_TIMEOUT)
            await asyncio.sleep(SETTLE)
            await hass.probe("collect")
            return await self._windows(hass, kind, states)
        except BaseException:
            print(f"--- Home Assistant log tail ({kind}):\n{hass.process.tail(30)}", flush=True)
            raise
        finally:
            await hass.stop()

    async def _windows(
        self, hass: BenchHass, kind: str, states: list[dict[str, Any]]
    ) -> IdleSample:
        pid = hass.process.pid
        start = sample_process(pid)
        exact_peak = reset_peak_rss(pid)
        peak_base = sample_process(pid).rss_bytes if exact_peak else start.rss_bytes
        peak = start.rss_bytes
        deadline = time.monotonic() + self.idle
        while (left := deadline - time.monotonic()) > 0:  # RSS sampled once a second too
            await asyncio.sleep(min(1.0, left))
            peak = max(peak, sample_process(pid).rss_bytes)
        end = sample_process(pid)
        peak_growth = (end.peak_rss_bytes if exact_peak else peak) - peak_base
        await hass.probe("trace_start")
        await asyncio.sleep(self.trace)
        traced = await hass.probe("trace_read")
        await hass.probe("trace_stop")
        collected = await hass.probe("collect")
        return IdleSample(
            kind=kind,
            idle_seconds=end.at - start.at,
            cpu_seconds=end.cpu_seconds - start.cpu_seconds,
            tick_cpu_seconds=end.tick_cpu_seconds - start.tick_cpu_seconds,
            threads=(start.threads, end.threads),
            rss_start_bytes=start.rss_bytes,
            rss_end_bytes=end.rss_bytes,
            peak_rss_growth_bytes=peak_growth,
            peak_rss_method="VmHWM after clear_refs" if exact_peak else "VmRSS every 1 s",
            trace_seconds=self.trace,
            traced_peak_bytes=int(traced["traced_peak"]),
            traced_kept_bytes=int(traced["traced_kept"]),
            rss_settled_bytes=sample_process(pid).rss_bytes,
            gc_objects=int(collected["gc_objects"]),
            update_entities=sum(1 for s in states if s["entity_id"].startswith("update.")),
        )


def _mib(value: float) -> str:
    return f"{value / MIB:+.2f} MiB" if value < 0 else f"{value / MIB:.2f} MiB"


def _kib(value: float) -> str:
    return f"{value / 1024:.0f} KiB"


def render(samples: list[IdleSample]) -> list[str]:
    by_kind = {s.kind: s for s in samples}
    base, ours = by_kind["baseline"], by_kind["ours"]
    header = [
        "Home Assistant",
        "CPU / min",
        "of one core",
        "RSS",
        "RSS growth",
        "peak RSS +",
        "traced peak",
        "traced kept",
        "gc objects",
    ]

    def row(label: str, s: IdleSample) -> list[str]:
        return [
            label,
            f"{s.cpu_per_minute * 1000:.0f} ms",
            f"{s.cpu_per_minute / 60:.2%}",
            _mib(s.rss_settled_bytes),
            _kib(s.rss_end_bytes - s.rss_start_bytes),
            _kib(s.peak_rss_growth_bytes),
            _kib(s.traced_peak_bytes),
            _kib(s.traced_kept_bytes),
            f"{s.gc_objects:,}",
        ]

    def delta(label: str, divisor: int) -> list[str]:
        def kib(value: float) -> str:
            return f"{value / divisor / 1024:+.0f} KiB"

        growth = (ours.rss_end_bytes - ours.rss_start_bytes) - (
            base.rss_end_bytes - base.rss_start_bytes
        )
        cpu = ours.cpu_per_minute - base.cpu_per_minute
        return [
            label,
            f"{cpu * 1000 / divisor:+.1f} ms",
            f"{cpu / 60 / divisor:+.3%}",
            f"{(ours.rss_settled_bytes - base.rss_settled_bytes) / divisor / MIB:+.2f} MiB",
            kib(growth),
            kib(ours.peak_rss_growth_bytes - base.peak_rss_growth_bytes),
            kib(ours.traced_peak_bytes - base.traced_peak_bytes),
            kib(ours.traced_kept_bytes - base.traced_kept_bytes),
            f"{(ours.gc_objects - base.gc_objects) / divisor:+,.0f}",
        ]

    title = (
        f"Fleet idle: {DEVICES} emulated ESP32s via HA's esphome integration, "
        f"{base.idle_seconds:.0f} s idle window (tracemalloc: {base.trace_seconds:.0f} s window)"
    )
    return [
        title,
        *table(
            header,
            [
                row("without this integration", base),
                row(f"with it ({ours.update_entities} update entities)", ours),
                delta("difference (ours)", 1),
                delta(f"per device (difference / {DEVICES})", DEVICES),
            ],
            labels=1,
        ),
    ]


NOTES = [
    (
        "fleet idle: two fresh `hass` processes in turn (baseline first) with the same {devices} "
        "emulated ESP32s (mDNS on, no state updates: API keep-alives only), their YAMLs and a "
        "running Device Builder; ours also pairs, so {devices} update entities exist; "
        "{settle:g} s settle + gc.collect() before the window; CPU = utime+stime of all "
        "threads from /proc over the window, RSS from /proc, RSS after the windows + "
        "gc.collect(); peak RSS: {peak}; tracemalloc in a window of its own, started inside HA "
        "by the bench probe (loaded in both); per device = difference / {devices}, the "
        "integration's fixed cost included"
    ),
]


def notes(samples: list[IdleSample]) -> list[str]:
    peak = " / ".join(sorted({s.peak_rss_method for s in samples}))
    return [n.format(devices=DEVICES, settle=SETTLE, peak=peak) for n in NOTES]


def main() -> None:  # pragma: no cover - for running it alone inside the namespace
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--idle", type=float, default=DEFAULT_IDLE)
    parser.add_argument("--trace", type=float, default=DEFAULT_TRACE)
    parser.add_argument("--work", type=Path, required=True)
    args = parser.parse_args()
    samples = asyncio.run(FleetBench(args.work, args.idle, args.trace).run())
    print("\n".join(render(samples)))
    print(json.dumps([asdict(s) for s in samples]))


if __name__ == "__main__":
    main()
