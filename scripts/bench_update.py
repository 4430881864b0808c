"""Benchmark: what an update costs beyond its steps, from ``update.install`` to verified.

Real parts on loopback: the Device Builder (dashboard mode, stand-in compiler), a real
``hass`` process with Home Assistant's ``esphome`` integration and this integration
(``bench_hass.py``), and one emulated ESP32 (``tests/support/device_emulator.py``: native
API, OTA, mDNS; it reboots into the build info of the image it received).

Each repetition measures two ways of getting the same device from ESPHome 2026.9.0 to
the server's build of its YAML, after resetting it to the old firmware (a reboot):

* **ours** — ``update.install`` on the device's update entity, called over the WebSocket
  API (which, unlike REST, waits for the action however long it takes). Its phases are
  read from the stamps of the events Home Assistant fires (its own clock): the
  ``call_service`` event, our job events (running, completed) and flash events (started,
  completed, verified); it ends when the action's result arrives here. The entity's own
  last state change cannot mark the end: the device is often still reconnecting then, so
  the entity is unavailable before and after. When the device's ESPHome status sensor
  turned on again (Home Assistant's ``esphome`` integration has the device back) is
  recorded too: our verification may come first, from the device's mDNS announcement
  (its ``config_hash``), while Home Assistant's ``esphome`` integration still waits out
  the 5 s aioesphomeapi gives a device after an expected disconnect.
* **bare** — the same steps with nothing around them, from this process: the same
  bundle (made beforehand) uploaded by a ``PeerLinkClient`` of its own (paired through
  the Device Builder's operator API) until the job runs, ``download_artifacts`` from the
  moment the job completed, ``ota.async_flash`` of the same image with the same password
  and key, and the reboot until the ESPHome status sensor says the device is back.

The compile (the job's running → completed, stand-in compiler plus ESPHome's own
``--only-generate``) is measured in both and subtracted: the figure is "ours minus
compile" against "bare minus compile".
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from dataclasses import asdict, dataclass
import io
import json
from pathlib import Path
import statistics
import tarfile
import time
from typing import Any

import aiohttp

from custom_components.esphome_remote_build.artifacts import write_config_bundle
from custom_components.esphome_remote_build.const import EVENT_FLASH, EVENT_JOB
from custom_components.esphome_remote_build.ota import async_flash
from custom_components.esphome_remote_build.peerlink import (
    Identity,
    JobStateChanged,
    JobStatus,
    PairOutcome,
    PeerLinkClient,
    PeerLinkEvent,
    pair_request,
    pair_status,
)
from scripts.bench_hass import (
    BenchHass,
    DeviceYaml,
    HassEvent,
    HassSocket,
    approve_pending,
    write_device_files,
)
from scripts.bench_report import table
from tests.support.device_emulator import DeviceEmulator
from tests.support.real_builder import DashboardClient, RealBuilder, free_port

NAME = "bench-update"
FRIENDLY = "Bench Update"
MAC = "AA:BB:CC:00:BE:01"
API_KEY = "YmVuY2hVcGRhdGVLZXlGb3JUaGVFbXVsYXRvcjMyISE="
OTA_PASSWORD = "bench-ota-password"  # noqa: S105 - the emulated device's
OLD_VERSION = "2026.9.0"
OLD_COMPILED = "2026-09-01 10:00:00 +0000"
#: The stand-in's application image: about what an ESP32 Arduino build with WiFi weighs.
FIRMWARE_BYTES = 1024 * 1024
#: Seconds the emulated device stays away while it reboots (a real ESP32 takes longer).
REBOOT_DELAY = 0.5
INSTALL_TIMEOUT = 300.0
SETTLE = 1.0
OTA_IMAGES = ("firmware.ota.bin", "firmware.bin")  # the order flash.py prefers

#: Phases of an update, in order; ``compile`` is subtracted from the total.
PHASES = ("submit", "compile", "download", "ota", "reboot", "finish")
PHASE_TEXT = {
    "submit": "submit (ours: action + bundle + upload; both: until the job runs)",
    "compile": "compile (stand-in; subtracted)",
    "download": "download (from the job's completion; ours: + store)",
    "ota": "OTA upload",
    "reboot": "reboot: ours until verified, bare until HA's esphome has it back",
    "finish": "finish (ours: record, action returns)",
}


class UpdateBenchError(Exception):
    """A step of the update benchmark failed."""


@dataclass(frozen=True, slots=True)
class UpdateSample:
    """One update, its phases in seconds (``None``: the phase does not exist there)."""

    kind: str
    phases: dict[str, float | None]
    #: Upload end -> Home Assistant's esphome integration has the device back.
    reconnect: float

    def total(self, *, leave_out: tuple[str, ...]) -> float:
        return sum(v for k, v in self.phases.items() if v is not None and k not in leave_out)


#: The totals compared: everything but the compile, and that without the reboot too.
TOTALS = {
    "total minus compile": ("compile",),
    "total minus compile and reboot": ("compile", "reboot"),
}


@dataclass(frozen=True, slots=True)
class Total:
    """One total over the repetitions: medians, ranges and the per-run difference."""

    ours: float
    ours_range: tuple[float, float]
    bare: float
    bare_range: tuple[float, float]
    #: Median of the per-run differences (ours - bare, the pair measured back to back).
    overhead: float
    overheads: list[float]

    @classmethod
    def of(
        cls, pairs: list[tuple[UpdateSample, UpdateSample]], leave_out: tuple[str, ...]
    ) -> Total:
        ours = [pair[0].total(leave_out=leave_out) for pair in pairs]
        bare = [pair[1].total(leave_out=leave_out) for pair in pairs]
        overheads = [o - b for o, b in zip(ours, bare, strict=True)]
        return cls(
            ours=statistics.median(ours),
            ours_range=(min(ours), max(ours)),
            bare=statistics.median(bare),
            bare_range=(min(bare), max(bare)),
            overhead=statistics.median(overheads),
            overheads=overheads,
        )


def _medians(samples: list[UpdateSample]) -> dict[str, float | None]:
    result: dict[str, float | None] = {}
    for phase in PHASES:
        values = [v for s in samples if (v := s.phases.get(phase)) is not None]
        result[phase] = statistics.median(values) if values else None
    return result


@dataclass(frozen=True, slots=True)
class UpdateSummary:
    """Medians per kind and phase over the repetitions, and the totals compared."""

    runs: int
    image_bytes: int
    ours: dict[str, float | None]
    bare: dict[str, float | None]
    totals: dict[str, Total]
    #: Medians of upload end -> HA's esphome integration has the device back.
    ours_reconnect: float
    bare_reconnect: float
    #: Runs in which our verification came before that reconnect (mDNS evidence).
    verified_first: int

    @classmethod
    def of(cls, pairs: list[tuple[UpdateSample, UpdateSample]], image_bytes: int) -> UpdateSummary:
        ours = [pair[0] for pair in pairs]
        bare = [pair[1] for pair in pairs]
        return cls(
            runs=len(pairs),
            image_bytes=image_bytes,
            ours=_medians(ours),
            bare=_medians(bare),
            totals={name: Total.of(pairs, leave_out) for name, leave_out in TOTALS.items()},
            ours_reconnect=statistics.median(s.reconnect for s in ours),
            bare_reconnect=statistics.median(s.reconnect for s in bare),
            verified_first=sum(
                1 for s in ours if (r := s.phases["reboot"]) is not None and r < s.reconnect
            ),
        )


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


def render(summary: UpdateSummary) -> list[str]:
    rows = []
    for phase in PHASES:
        ours, bare = summary.ours[phase], summary.bare[phase]
        difference = "-" if ours is None or bare is None else f"{(ours - bare) * 1000:+.0f} ms"
        rows.append([PHASE_TEXT[phase], ms(ours), ms(bare), difference])
    for name, total in summary.totals.items():
        (low, high), (blow, bhigh) = total.ours_range, total.bare_range
        rows.append(
            [
                name,
                f"{total.ours * 1000:.0f} ms ({low * 1000:.0f}-{high * 1000:.0f})",
                f"{total.bare * 1000:.0f} ms ({blow * 1000:.0f}-{bhigh * 1000:.0f})",
                f"{total.overhead * 1000:+.0f} ms",
            ]
        )
    title = (
        f"Update, update.install to verified, 1 emulated ESP32 ({summary.image_bytes / 1024:.0f}"
        f" KiB image; medians of {summary.runs} runs per kind)"
    )
    return [
        title,
        *table(["step", "ours", "bare", "ours - bare"], rows, labels=1),
        (
            f"  HA's esphome had the device back {summary.ours_reconnect:.2f} s (ours) / "
            f"{summary.bare_reconnect:.2f} s (bare) after the upload; our verification came "
            f"first (mDNS config hash) in {summary.verified_first} of {summary.runs} runs"
        ),
    ]


def _is_state(
    entity_id: str, check: Callable[[dict[str, Any], dict[str, Any]], bool]
) -> Callable[[HassEvent], bool]:
    def match(event: HassEvent) -> bool:
        data = event.data
        if event.event_type != "state_changed" or data.get("entity_id") != entity_id:
            return False
        return check(data.get("old_state") or {}, data.get("new_state") or {})

    return match


def _became(entity_id: str, state: str) -> Callable[[HassEvent], bool]:
    return _is_state(
        entity_id, lambda old, new: new.get("state") == state and old.get("state") != state
    )


class UpdateBench:
    """One update benchmark run: Device Builder, Home Assistant, one device, N updates."""

    def __init__(self, work: Path, repeat: int) -> None:
        self.work = work
        self.repeat = repeat
        self.samples: list[dict[str, Any]] = []
        self.update_entity = ""
        self.status_entity = ""
        self.bundle = work / "bundle.tar.gz"
        self.image_bytes = 0

    async def run(self) -> UpdateSummary:
        builder = RealBuilder(self.work / "device-builder", dashboard=True)
        device = DeviceEmulator(
            name=NAME,
            friendly_name=FRIENDLY,
            mac=MAC,
            esphome_version=OLD_VERSION,
            compilation_time=OLD_COMPILED,
            encryption_key=API_KEY,
            ota_password=OTA_PASSWORD,
            reboot_delay=REBOOT_DELAY,
            mdns=True,
        )
        hass = BenchHass(self.work / "hass", ours=True)
        async with builder, builder.dashboard_client() as operator, device:
            await operator.set_pairing_window(True)
            yaml = DeviceYaml.of(device, OTA_PASSWORD, FIRMWARE_BYTES)
            write_device_files(hass.esphome_dir, [yaml])
            try:
                await hass.start(free_port())
                await self._prepare(hass, builder, operator, device)
                async with aiohttp.ClientSession() as http, hass.socket() as ws:
                    await ws.subscribe("call_service", EVENT_JOB, EVENT_FLASH, "state_changed")
                    client = await self._bare_client(http, builder, operator)
                    try:
                        return await self._measure(hass, ws, client, device)
                    finally:
                        await client.stop()
            except BaseException:
                print(f"--- Home Assistant log tail:\n{hass.process.tail(30)}", flush=True)
                raise
            finally:
                await hass.stop()

    async def _prepare(
        self,
        hass: BenchHass,
        builder: RealBuilder,
        operator: DashboardClient,
        device: DeviceEmulator,
    ) -> None:
        await hass.add_esphome_device(device)
        await hass.pair(builder, operator)

        def ready(states: list[dict[str, Any]]) -> bool:
            for state in states:
                entity_id = state["entity_id"]
                attributes = state.get("attributes", {})
                if (
                    entity_id.startswith("update.")
                    and attributes.get("configuration") == f"{NAME}.yaml"
                ):
                    self.update_entity = entity_id
                elif (
                    entity_id.startswith("binary_sensor.")
                    and attributes.get("friendly_name") == f"{FRIENDLY} Status"
                ):
                    self.status_entity = entity_id
            return bool(self.update_entity and self.status_entity) and any(
                s["entity_id"] == self.update_entity and s["state"] == "on" for s in states
            )

        await hass.wait_states(ready, "the device's update entity offering an update", 60)
        await asyncio.to_thread(write_config_bundle, hass.esphome_dir, f"{NAME}.yaml", self.bundle)

    async def _bare_client(
        self, http: aiohttp.ClientSession, builder: RealBuilder, operator: DashboardClient
    ) -> PeerLinkClient:
        identity = Identity.generate()
        outcome = await pair_request(
            http,
            builder.host,
            builder.port,
            identity,
            builder.pin,
            label="bench",
            friendly_name="bench",
        )
        if outcome is not PairOutcome.APPROVED:
            await approve_pending(operator, "the bare client")
            await pair_status(http, builder.host, builder.port, identity, builder.pin, timeout=30)
        client = PeerLinkClient(
            http, builder.host, builder.port, identity, builder.pin, friendly_name="bench"
        )
        await client.start()
        await client.wait_connected(15)
        return client

    async def _measure(
        self, hass: BenchHass, ws: HassSocket, client: PeerLinkClient, device: DeviceEmulator
    ) -> UpdateSummary:
        await self._reset(hass, ws, device)
        await self._ours(ws)  # warm-up, not counted
        await self._reset(hass, ws, device)
        await self._bare(ws, client, device)
        pairs: list[tuple[UpdateSample, UpdateSample]] = []
        for rep in range(self.repeat):
            taken: dict[str, UpdateSample] = {}
            for kind in ("ours", "bare") if rep % 2 == 0 else ("bare", "ours"):
                await self._reset(hass, ws, device)
                taken[kind] = await (
                    self._ours(ws) if kind == "ours" else self._bare(ws, client, device)
                )
                self.samples.append(asdict(taken[kind]))
            pairs.append((taken["ours"], taken["bare"]))
            print(f"[bench] update run {rep + 1}/{self.repeat} done", flush=True)
        return UpdateSummary.of(pairs, self.image_bytes)

    async def _reset(self, hass: BenchHass, ws: HassSocket, device: DeviceEmulator) -> None:
        """Back to the old firmware (a reboot); wait until the entity offers the update."""
        device.firmware = device.spec.firmware()  # its first firmware, config hash included
        await device.reboot()

        def offered(states: list[dict[str, Any]]) -> bool:
            found = {s["entity_id"]: s for s in states}
            update, status = found.get(self.update_entity), found.get(self.status_entity)
            return (
                update is not None
                and status is not None
                and update["state"] == "on"
                and update["attributes"].get("installed_version") == OLD_VERSION
                and not update["attributes"].get("in_progress")
                and status["state"] == "on"
            )

        await hass.wait_states(offered, "the reset device back in Home Assistant", 60)
        await asyncio.sleep(SETTLE)

    async def _ours(self, ws: HassSocket) -> UpdateSample:
        mark = len(ws.events)
        await ws.call("update", "install", {"entity_id": self.update_entity}, INSTALL_TIMEOUT)
        returned = time.time()
        events = ws.events[mark:]

        def first(match: Callable[[HassEvent], bool], after: float = 0.0) -> float:
            for event in events:
                if event.fired >= after and match(event):
                    return event.fired
            raise UpdateBenchError(
                "an expected event is missing:\n" + "\n".join(_describe(e) for e in events)
            )

        called = first(
            lambda e: (
                e.event_type == "call_service"
                and e.data.get("domain") == "update"
                and e.data.get("service") == "install"
            )
        )

        def job(status: str) -> Callable[[HassEvent], bool]:
            return lambda e: e.event_type == EVENT_JOB and e.data.get("status") == status

        def flash(status: str) -> Callable[[HassEvent], bool]:
            return lambda e: e.event_type == EVENT_FLASH and e.data.get("status") == status

        running = first(job("running"))
        completed = first(job("completed"))
        started = first(flash("started"))
        uploaded = first(flash("completed"))
        verified = first(flash("verified"))
        # When Home Assistant's esphome integration had the device back (for the record:
        # the verification may have come first, from the device's mDNS announcement).
        back = await ws.wait_for(
            lambda e: _became(self.status_entity, "on")(e) and e.fired >= uploaded, since=mark
        )
        return UpdateSample(
            "ours",
            {
                "submit": running - called,
                "compile": completed - running,
                "download": started - completed,
                "ota": uploaded - started,
                "reboot": verified - uploaded,
                "finish": returned - verified,
            },
            back.fired - uploaded,
        )

    async def _bare(
        self, ws: HassSocket, client: PeerLinkClient, device: DeviceEmulator
    ) -> UpdateSample:
        stamps: dict[tuple[str, JobStatus], float] = {}

        def record(event: PeerLinkEvent) -> None:
            if isinstance(event, JobStateChanged):
                stamps.setdefault((event.job_id, event.status), time.time())

        unsubscribe = client.subscribe(record)
        dest = self.work / "bare-artifacts.tar.gz"
        try:
            mark = len(ws.events)
            submitted = time.time()
            job_id = await client.submit_job(self.bundle, f"{NAME}.yaml")
            final = await client.wait_for_job(job_id, INSTALL_TIMEOUT)
            if final.status is not JobStatus.COMPLETED:
                raise UpdateBenchError(f"bare build ended {final.status}: {final.error_message}")
            await client.download_artifacts(job_id, dest)
            downloaded = time.time()
            image = await asyncio.to_thread(_ota_image, dest)
            self.image_bytes = len(image)
            flashing = time.time()
            await async_flash(
                device.host, device.ota_port, image, password=OTA_PASSWORD, noise_psk=API_KEY
            )
            flashed = time.time()
            back = await ws.wait_for(
                lambda e: _became(self.status_entity, "on")(e) and e.fired >= flashed, since=mark
            )
        finally:
            unsubscribe()
            dest.unlink(missing_ok=True)
        running, completed = (
            stamps[(job_id, JobStatus.RUNNING)],
            stamps[(job_id, JobStatus.COMPLETED)],
        )
        return UpdateSample(
            "bare",
            {
                "submit": running - submitted,
                "compile": completed - running,
                "download": downloaded - completed,
                "ota": flashed - flashing,
                "reboot": back.fired - flashed,
                "finish": None,
            },
            back.fired - flashed,
        )


def _describe(event: HassEvent) -> str:
    data = event.data
    if event.event_type == "state_changed":
        new = data.get("new_state") or {}
        attributes = {
            k: v
            for k, v in new.get("attributes", {}).items()
            if k in ("in_progress", "update_percentage")
        }
        data = {"entity_id": data.get("entity_id"), "state": new.get("state"), **attributes}
    return f"{event.fired:.3f} {event.event_type} {json.dumps(data)[:200]}"


def _ota_image(tarball: Path) -> bytes:
    """The image our flash sends: ``firmware.ota.bin``, else ``firmware.bin``."""
    with tarfile.open(tarball, "r:gz") as archive:
        members = {Path(m.name).name: m for m in archive.getmembers() if m.isfile()}
        for name in OTA_IMAGES:
            if name in members and (handle := archive.extractfile(members[name])) is not None:
                with handle:
                    return io.BytesIO(handle.read()).getvalue()
    raise UpdateBenchError(f"no OTA image in the artifacts: {sorted(members)}")


NOTES = [
    (
        "update: real Device Builder (dashboard mode, stand-in compiler), real `hass` with "
        "HA's esphome integration, one emulated ESP32 (mDNS on, {reboot:g} s reboot, "
        "{mib:g} MiB image); medians of "
        "{repeat} runs per kind after 1 warm-up each, order alternated, device reset to "
        "ESPHome {old} (a reboot) before each run"
    ),
    (
        "update: ours = HA's event stamps (call_service, job and flash events) up to the "
        "action's result over the WebSocket API; bare = this process's clock around "
        "PeerLinkClient.submit_job (until the job runs) / download_artifacts (from the job's "
        "completion) / ota.async_flash, then the esphome status sensor's stamp; both on one "
        "wall clock"
    ),
]


def notes(repeat: int) -> list[str]:
    mib = FIRMWARE_BYTES / 1024 / 1024
    return [n.format(reboot=REBOOT_DELAY, mib=mib, repeat=repeat, old=OLD_VERSION) for n in NOTES]


def main() -> None:  # pragma: no cover - for running it alone inside the namespace
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", type=Path, required=True)
    args = parser.parse_args()
    summary = asyncio.run(UpdateBench(args.work, args.repeat).run())
    print("\n".join(render(summary)))
    print(json.dumps(asdict(summary)))


if __name__ == "__main__":
    main()
