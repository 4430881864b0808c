"""Benchmarks: our download and OTA against their ceilings (issue #5), an update's
overhead, and what the integration costs an idle Home Assistant.

Started by ``scripts/bench`` inside a loopback-only network namespace; ``--only`` picks
the measurements (default: all four, in this order):

* ``downloads`` — the real Device Builder (stand-in compiler) builds one ESP8266 device
  per size with an incompressible firmware image of that size; each build is downloaded
  with our client and with a bare baseline client (``bench_download.py``), alternating
  which goes first. Every download is a fresh worker process, so CPU time, peak RSS and
  event-loop stalls belong to that one transfer; the server runs in another process.
* ``ota`` — one incompressible image to the OTA device emulator with our client
  (``bench_ota.py``) and with ESPHome's ``espota2`` (``bench_espota.py``), fresh workers.
* ``update`` — ``update.install`` to verified in a real Home Assistant with its
  ``esphome`` integration and an emulated device, minus the compile, against the bare
  steps (``bench_update.py``).
* ``fleet-idle`` — Home Assistant's CPU time and memory with ten emulated devices idle,
  with and without this integration (``bench_fleet.py``).

Prints tables, then one JSON line. Everything it starts is stopped and its temporary
directory removed on exit and on Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
import dataclasses
import json
import os
from pathlib import Path
import platform
import shutil
import signal
import sys
import tempfile
from typing import Any

import aiohttp

from custom_components.esphome_remote_build.artifacts import write_config_bundle
from custom_components.esphome_remote_build.peerlink import (
    Identity,
    JobStatus,
    PairOutcome,
    PeerLinkClient,
    pair_request,
)
from scripts.bench_fleet import (
    DEFAULT_IDLE,
    DEFAULT_TRACE,
    FleetBench,
    FleetBenchError,
    IdleSample,
    notes as fleet_notes,
    render as render_fleet,
)
from scripts.bench_hass import BenchHassError
from scripts.bench_report import (
    MIB,
    DownloadSample,
    DownloadSummary,
    OtaSummary,
    as_json,
    judge,
    render,
)
from scripts.bench_update import (
    UpdateBench,
    UpdateBenchError,
    UpdateSummary,
    notes as update_notes,
    render as render_update,
)
from scripts.demo_hass import HassApiError
from tests.support.child_process import ChildProcessFailedError
from tests.support.ota_emulator import DeviceConfig, OTADeviceEmulator
from tests.support.real_builder import BUILDER_PYTHON, REPO_ROOT, RealBuilder, RealBuilderError

MEASUREMENTS = ("downloads", "ota", "update", "fleet-idle")
DEFAULT_SIZES = (1.0, 16.0, 64.0)
DEFAULT_REPEAT = 5
DEFAULT_OTA_MIB = 1.5
#: OTA uploads are ~30 ms: each worker process does several, for a steadier median.
OTA_UPLOADS_PER_PROCESS = 5
BUILD_TIMEOUT = 300.0
WORKER_TIMEOUT = 300.0
#: Exit status when every figure was measured but a goal was missed (errors exit 1).
EXIT_GOAL_MISSED = 3
_STDERR_TAIL = 3000


class BenchError(Exception):
    """A step of the benchmark failed; the message says which and why."""


def network_interfaces() -> set[str]:
    """Interfaces of this process's network namespace (sysfs would show the host's)."""
    lines = Path("/proc/self/net/dev").read_text(encoding="ascii").splitlines()[2:]
    return {line.split(":", 1)[0].strip() for line in lines}


def machine_info() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "loadavg_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def device_yaml(name: str, firmware_bytes: int) -> str:
    """A minimal ESP8266 device whose stand-in build writes a firmware of this size."""
    return (
        f'substitutions:\n  standin_firmware_bytes: "{firmware_bytes}"\n\n'
        f"esphome:\n  name: {name}\n\nesp8266:\n  board: d1_mini\n"
    )


def device_name(size_mib: float) -> str:
    return f"bench-{size_mib:g}mib".replace(".", "p")


async def run_worker(
    argv: Sequence[str], *, env: dict[str, str], timeout: float = WORKER_TIMEOUT
) -> dict[str, Any]:
    """Run one worker process and return the JSON object on its last stdout line."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=REPO_ROOT,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await process.communicate()
    except TimeoutError:
        raise BenchError(f"{' '.join(argv[:3])} did not finish within {timeout:g} s") from None
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    lines = out.decode(errors="replace").strip().splitlines()
    if process.returncode != 0 or not lines:
        tail = err.decode(errors="replace")[-_STDERR_TAIL:]
        raise BenchError(f"{' '.join(argv[:3])} exited {process.returncode}:\n{tail}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def our_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT)}


class Bench:
    """One benchmark run: its temporary directory, its builder and what it measured."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.sizes: list[float] = args.sizes
        self.repeat: int = args.repeat
        self.ota_bytes = int(args.ota_mib * MIB)
        self.work = work
        self.identity = Identity.generate()
        self.identity_file = work / "identity.json"
        self.samples: dict[str, Any] = {"downloads": [], "ota": []}

    # --- downloads ------------------------------------------------------------------

    async def downloads(self) -> dict[float, dict[str, DownloadSummary]]:
        async with RealBuilder(self.work / "device-builder") as builder:
            jobs = await self._build_all(builder)
            await self._download(builder, jobs[self.sizes[0]], self.sizes[0], "baseline")  # warm-up
            summaries: dict[float, dict[str, DownloadSummary]] = {}
            for size in self.sizes:
                runs: dict[str, list[DownloadSample]] = {"ours": [], "baseline": []}
                for rep in range(self.repeat):
                    order = ("ours", "baseline") if rep % 2 == 0 else ("baseline", "ours")
                    for kind in order:
                        sample = await self._download(builder, jobs[size], size, kind)
                        runs[kind].append(sample)
                        self.samples["downloads"].append(
                            {"size_mib": size, **dataclasses.asdict(sample)}
                        )
                # The server re-packs per request (gzip header times differ), so sizes agree
                # but hashes do not; our client verifies each hash against the header.
                if len({s.bytes for s in runs["ours"] + runs["baseline"]}) != 1:
                    raise BenchError(f"{size:g} MiB: the tarball size varies between downloads")
                summaries[size] = {k: DownloadSummary.of(size, v) for k, v in runs.items()}
                print(f"[bench] {size:g} MiB downloads done", file=sys.stderr, flush=True)
        return summaries

    async def _build_all(self, builder: RealBuilder) -> dict[float, str]:
        """Pair, then have the builder compile one device per size; return the job ids."""
        async with aiohttp.ClientSession() as http:
            outcome = await pair_request(
                http,
                builder.host,
                builder.port,
                self.identity,
                builder.pin,
                label="bench",
                friendly_name="bench",
                pairing_key=builder.pairing_key,
            )
            if outcome is not PairOutcome.APPROVED:
                raise BenchError(f"pairing was not approved: {outcome}")
            self.identity_file.write_text(json.dumps(self.identity.to_dict()), encoding="utf-8")
            client = PeerLinkClient(http, builder.host, builder.port, self.identity, builder.pin)
            await client.start()
            try:
                await client.wait_connected(15)
                jobs = {size: await self._submit(client, size) for size in self.sizes}
                for size, job_id in jobs.items():
                    final = await client.wait_for_job(job_id, timeout=BUILD_TIMEOUT)
                    if final.status is not JobStatus.COMPLETED:
                        raise BenchError(
                            f"build of {size:g} MiB ended {final.status}: {final.error_message}"
                            f"\n{builder.log_tail()}"
                        )
            finally:
                await client.stop()
        print(f"[bench] {len(jobs)} builds done", file=sys.stderr, flush=True)
        return jobs

    async def _submit(self, client: PeerLinkClient, size: float) -> str:
        name = device_name(size)
        config = self.work / f"config-{name}"
        config.mkdir()
        (config / f"{name}.yaml").write_text(device_yaml(name, int(size * MIB)), encoding="utf-8")
        bundle = self.work / f"{name}.bundle.tar.gz"
        await asyncio.to_thread(write_config_bundle, config, f"{name}.yaml", bundle)
        return await client.submit_job(bundle, f"{name}.yaml", device_name=name)

    async def _download(
        self, builder: RealBuilder, job_id: str, size: float, kind: str
    ) -> DownloadSample:
        dest = Path(tempfile.mkdtemp(prefix=f"dl-{kind}-", dir=self.work))
        try:
            raw = await run_worker(
                [
                    sys.executable,
                    "-m",
                    "scripts.bench_download",
                    f"--kind={kind}",
                    f"--port={builder.port}",
                    f"--pin={builder.pin}",
                    f"--identity={self.identity_file}",
                    f"--job-id={job_id}",
                    f"--dest-dir={dest}",
                ],
                env=our_env(),
            )
        finally:
            shutil.rmtree(dest, ignore_errors=True)
        sample = DownloadSample.from_json(raw)
        if sample.bytes < size * MIB:
            raise BenchError(f"{size:g} MiB build gave a {sample.bytes}-byte tarball")
        return sample

    # --- OTA ------------------------------------------------------------------------

    async def ota(self) -> list[OtaSummary]:
        image = self.work / "firmware.bin"
        payload = b"\xe9" + os.urandom(self.ota_bytes - 1)
        image.write_bytes(payload)
        clients = {
            "ours": [sys.executable, "-m", "scripts.bench_ota"],
            "espota2": [str(BUILDER_PYTHON), str(REPO_ROOT / "scripts" / "bench_espota.py")],
        }
        envs = {"ours": our_env(), "espota2": {**os.environ, "PYTHONPATH": ""}}
        uploads: dict[str, list[dict[str, Any]]] = {"ours": [], "espota2": []}
        probed: dict[str, list[dict[str, Any]]] = {"ours": [], "espota2": []}
        async with OTADeviceEmulator(DeviceConfig(version=2)) as device:
            for rep in range(self.repeat):
                order = ("ours", "espota2") if rep % 2 == 0 else ("espota2", "ours")
                for client in order:
                    argv = [
                        *clients[client],
                        f"--port={device.port}",
                        f"--image={image}",
                        f"--count={OTA_UPLOADS_PER_PROCESS}",
                    ]
                    first = len(device.sessions)
                    raw = await run_worker(argv, env=envs[client])
                    runs = raw["uploads"] + raw.get("probed", [])
                    await self._check_sessions(device, payload, client, runs, first)
                    uploads[client] += raw["uploads"]
                    probed[client] += raw.get("probed", [])
                    self.samples["ota"].append(raw)
        return [
            OtaSummary.of(client, self.ota_bytes, uploads[client], probed[client])
            for client in uploads
        ]

    @staticmethod
    async def _check_sessions(
        device: OTADeviceEmulator,
        image: bytes,
        client: str,
        uploads: list[dict[str, Any]],
        first: int,
    ) -> None:
        """Count uploads only if each was one clean session that delivered the exact image."""
        records = await device.wait_for_sessions(first + len(uploads), timeout=10)
        if len(device.sessions) != first + len(uploads) or any(
            upload.get("rc", 0) != 0 or upload.get("attempts", 1) != 1 for upload in uploads
        ):
            raise BenchError(f"{client} did not upload in clean single attempts: {uploads}")
        for record in records[first:]:
            if record.image != image or not record.final_ack or record.violation:
                raise BenchError(f"{client}: the emulator got a bad session {record.summary()}")


#: Method notes, each with the measurements it belongs to (printed when one of them ran).
NOTES: list[tuple[str, tuple[str, ...]]] = [
    (
        "each measurement is a fresh worker process; the server runs in its own process",
        ("downloads", "ota"),
    ),
    (
        (
            "stream = first artifacts frame to the end (download_artifacts returning: verified, "
            "renamed into place); end-to-end adds the server packing the tarball after the "
            "request"
        ),
        ("downloads",),
    ),
    (
        (
            "baseline = same handshake + request via peerlink.channel.open_channel, then only "
            "decrypt + JSON parse + base64-decode per frame; decoded bytes counted and dropped"
        ),
        ("downloads",),
    ),
    (
        (
            "CPU/MiB = time.process_time() of the worker over the stream window (the stall "
            "probe's ticks, ~5 % of a core, included for both clients)"
        ),
        ("downloads",),
    ),
    ("peak RSS growth: {rss}", ("downloads",)),
    (
        "max stall = largest lateness of a 1 ms asyncio.sleep loop during the transfer",
        ("downloads", "ota"),
    ),
    (
        (
            "OTA: emulator v2, no compression (device config default), no password, no Noise; "
            "{ota_mib:g} MiB incompressible image; time around async_flash / espota2.run_ota "
            "in their worker, espota2's post-success time.sleep(1) recorded, not slept"
        ),
        ("ota",),
    ),
    (
        (
            "downloads: medians over {repeat} worker processes per client and size (range in "
            "brackets; worst value for RSS and stalls), client order alternated, 1 warm-up "
            "download not counted"
        ),
        ("downloads",),
    ),
    (
        (
            "OTA: medians over {repeat} worker processes x {ota_count} uploads per client, "
            "client order alternated; our stall is measured in 1 extra upload per process, "
            "as the probe's ticks cost CPU that the timed uploads (and espota2) do not pay"
        ),
        ("ota",),
    ),
]


def parse_sizes(text: str) -> list[float]:
    sizes = [float(part) for part in text.split(",") if part.strip()]
    if not sizes or any(size <= 0 for size in sizes):
        raise argparse.ArgumentTypeError("sizes are positive MiB values, e.g. 1,16,64")
    return sizes


_received: list[signal.Signals] = []


def stop(task: asyncio.Task[int], sig: signal.Signals) -> None:
    """Cancel the run; its ``finally`` blocks stop the builder and remove the files."""
    _received.append(sig)
    task.cancel()


async def run(args: argparse.Namespace) -> int:
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    # Explicitly, for both: a shell starts background jobs with SIGINT ignored.
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop, task, sig)
    machine = machine_info()
    only: set[str] = args.only
    work = Path(tempfile.mkdtemp(prefix="erb-bench-"))
    downloads: dict[float, dict[str, DownloadSummary]] = {}
    ota: list[OtaSummary] = []
    update: UpdateSummary | None = None
    fleet: list[IdleSample] = []
    try:
        bench = Bench(args, work)
        if "downloads" in only:
            downloads = await bench.downloads()
        if "ota" in only:
            ota = await bench.ota()
        if "update" in only:
            (work / "update").mkdir()
            update = await UpdateBench(work / "update", args.repeat).run()
        if "fleet-idle" in only:
            (work / "fleet").mkdir()
            fleet = await FleetBench(work / "fleet", args.idle_seconds, args.trace_seconds).run()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    machine["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    goals = judge(downloads, ota)
    rss_methods = {s["rss_method"] for s in bench.samples["downloads"]}
    notes = [
        note.format(
            rss=" / ".join(sorted(rss_methods)),
            ota_mib=args.ota_mib,
            repeat=args.repeat,
            ota_count=OTA_UPLOADS_PER_PROCESS,
        )
        for note, parts in NOTES
        if only.intersection(parts)
    ]
    sections: list[list[str]] = []
    extra: dict[str, Any] = {}
    if update is not None:
        sections.append(render_update(update))
        notes += update_notes(args.repeat)
        extra["update"] = dataclasses.asdict(update)
    if fleet:
        sections.append(render_fleet(fleet))
        notes += fleet_notes(fleet)
        extra["fleet_idle"] = [dataclasses.asdict(sample) for sample in fleet]
    print(render(machine, downloads, ota, goals, notes, sections))
    print(as_json(machine, downloads, ota, goals, bench.samples, extra), flush=True)
    return EXIT_GOAL_MISSED if any(goal.passed is False for goal in goals) else 0


def parse_only(text: str) -> set[str]:
    parts = {part.strip() for part in text.split(",") if part.strip()}
    unknown = parts - set(MEASUREMENTS)
    if not parts or unknown:
        raise argparse.ArgumentTypeError(
            f"choose from {','.join(MEASUREMENTS)} (comma-separated); unknown: {sorted(unknown)}"
        )
    return parts


def multicast_routed() -> bool:
    """Whether 224.0.0.0/4 has a route (Home Assistant's zeroconf needs one on ``lo``)."""
    lines = Path("/proc/net/route").read_text(encoding="ascii").splitlines()[1:]
    return any(line.split()[1:2] == ["000000E0"] for line in lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        default=list(DEFAULT_SIZES),
        help="artifact (firmware) sizes in MiB, comma-separated (default 1,16,64)",
    )
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT, help="repetitions")
    parser.add_argument("--ota-mib", type=float, default=DEFAULT_OTA_MIB, help="OTA image MiB")
    parser.add_argument(
        "--only",
        type=parse_only,
        default=set(MEASUREMENTS),
        help=f"measurements to run, comma-separated (default: all = {','.join(MEASUREMENTS)})",
    )
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=DEFAULT_IDLE,
        help=f"fleet-idle: CPU/RSS window per Home Assistant (default {DEFAULT_IDLE:g})",
    )
    parser.add_argument(
        "--trace-seconds",
        type=float,
        default=DEFAULT_TRACE,
        help=f"fleet-idle: tracemalloc window per Home Assistant (default {DEFAULT_TRACE:g})",
    )
    args = parser.parse_args()
    if network_interfaces() != {"lo"}:
        sys.exit(
            "scripts/bench.py must run in a loopback-only network namespace (the Device "
            "Builder multicasts mDNS): start it as scripts/bench"
        )
    if args.only & {"update", "fleet-idle"} and not multicast_routed():
        sys.exit(
            "update and fleet-idle start Home Assistant, whose zeroconf needs multicast on lo: "
            "ip link set lo multicast on && ip route add 224.0.0.0/4 dev lo (scripts/bench does)"
        )
    try:
        sys.exit(asyncio.run(run(args)))
    except asyncio.CancelledError:
        sig = _received[0] if _received else signal.SIGINT
        print(f"bench stopped by {sig.name}; everything it started was cleaned up", file=sys.stderr)
        sys.exit(128 + sig)
    except (
        BenchError,
        UpdateBenchError,
        FleetBenchError,
        BenchHassError,
        HassApiError,
        RealBuilderError,
        ChildProcessFailedError,
    ) as err:
        sys.exit(f"bench failed: {type(err).__name__}: {err}")


if __name__ == "__main__":
    main()
