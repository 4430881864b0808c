"""The integration's main job end to end, on loopback, against real programs.

Started by ``scripts/demo`` (which sets up the venvs and enters a loopback-only network
namespace first). It starts the real ESPHome Device Builder headless as the build server,
an emulated ESPHome device (``tests/support/device_emulator.py``: native API, native OTA,
mDNS inside the namespace; after an update it reboots into the build identity embedded in
the image it received) and a real Home Assistant with this integration. Then, through
Home Assistant's HTTP and WebSocket APIs only, it

* pairs Home Assistant with the build server, and adds the device to Home Assistant's own
  ``esphome`` integration through its config flow (address, then the encryption key);
* builds the device with ``submit_build`` and checks the stored images;
* installs the firmware update the device's update entity offers (build, download,
  flash, verify), watching the entity's progress and the flash events, and shows what the
  device reports against the build it was sent;
* changes the device's YAML, waits for the entity to offer the change, installs it, and
  rolls back to the first build by its job id;
* flashes the ``submit_build`` job with the ``flash`` action.

Exit status 0 only if every step passed. Everything it started is stopped on the way out
(also on errors, Ctrl-C and SIGTERM); the working directory goes too unless ``--keep``.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
import contextlib
from dataclasses import dataclass, field, replace
from datetime import datetime
import hashlib
import json
import os
from pathlib import Path
import re
import secrets
import shutil
import signal
import sys
import tempfile
import time
from typing import Any

import aiohttp
from demo_hass import (
    DOMAIN,
    LOOPBACK,
    FlowStep,
    HassApi,
    HassApiError,
    HassWebSocket,
    write_config_dir,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.support.child_process import ChildProcess, ChildProcessFailedError  # noqa: E402
from tests.support.device_emulator import (  # noqa: E402
    DeviceEmulator,
    Firmware,
    format_compilation_time,
)
from tests.support.real_builder import RealBuilder, RealBuilderError, free_port  # noqa: E402

VENV_BIN = REPO_ROOT / ".venv" / "bin"
INTEGRATION = REPO_ROOT / "custom_components" / DOMAIN
FIXTURES = REPO_ROOT / "tests" / "fixtures" / "esphome"
# The sample devices: every `<name>-demo.yaml` of the test fixtures.
DEVICES = sorted(path.stem for path in FIXTURES.glob("*-demo.yaml"))
SECRET_RE = re.compile(r"!secret\s+(\w+)")
OTA_BLOCK = "  - platform: esphome\n"
# The edit that makes the second build: a sensor more, as a user would add one.
YAML_CHANGE = "\nsensor:\n  - platform: uptime\n    name: Uptime\n"
# What the emulated device runs before the demo updates it (older than the server's).
FACTORY_ESPHOME = "2026.9.0"
HASS_START_TIMEOUT = 120.0
HASS_STOP_TIMEOUT = 30.0
STEP_TIMEOUT = 60.0
# fleet.py re-reads the device YAML files once a minute (CONFIG_REFRESH_INTERVAL), and at
# once for `homeassistant.update_entity` on the update entity.
YAML_REREAD_TIMEOUT = 20.0
POLL = 0.05

# A Home Assistant log record at WARNING or worse (continuation lines are indented).
HA_PROBLEM_RE = re.compile(r"^\d{4}-\d\d-\d\d [\d:.]+ (WARNING|ERROR|CRITICAL) ")
# Logged for every custom integration; not about this one's behaviour.
UNTESTED_CUSTOM = "has not been tested by Home Assistant"


class DemoError(Exception):
    """A step did not get the answer it needed."""


@dataclass
class Installed:
    """One verified install: the build and what the device reports afterwards."""

    label: str
    job_id: str
    seconds: float
    firmware: Firmware
    image: str
    image_sha256: str


@dataclass
class Report:
    """What the summary prints: step timings and what the steps established."""

    timings: list[tuple[str, float]] = field(default_factory=list)
    server: str = ""
    fingerprint: tuple[str, str] = ("", "")
    build: dict[str, Any] = field(default_factory=dict)
    installs: list[Installed] = field(default_factory=list)
    flash: dict[str, Any] = field(default_factory=dict)
    reread_wait: float = 0.0


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as src:
        while block := src.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def yaml_value(text: str, key: str) -> str | None:
    """A plain ``key: value`` of the device YAML (what the emulated device is built like)."""
    match = re.search(rf"^\s*{re.escape(key)}:\s*(\S[^#\n]*?)\s*$", text, re.MULTILINE)
    return None if match is None else match.group(1).strip("\"'")


# What ESPHome compiles into every image (writer.py's build_info_data.cpp, version.h):
# ESPHOME_BUILD_TIME_STR and ESPHOME_VERSION, each a NUL-terminated string literal.
REAL_BUILD_TIME_RE = re.compile(rb"(?<![\x20-\x7e])(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4})\x00")
REAL_VERSION_RE = re.compile(rb"(?<![\x20-\x7e])(20\d\d\.\d{1,2}\.\d+(?:b\d+|-dev)?)\x00")


def real_image_firmware(image: bytes, device: Firmware) -> Firmware | None:
    """What a real ESPHome image reports once booted: its compiled-in build time and
    version (its config hash is a bare constant, so the emulated device announces none).
    """
    build_time = REAL_BUILD_TIME_RE.search(image)
    version = REAL_VERSION_RE.search(image)
    if not image or image[0] != 0xE9 or build_time is None or version is None:
        return None
    return replace(
        device,
        esphome_version=version.group(1).decode(),
        compilation_time=build_time.group(1).decode(),
        config_hash=None,
    )


def boot_real_images(device: DeviceEmulator) -> None:
    """Let the emulated device boot real ESPHome images too (``--real-compile``).

    The device emulator boots the identity the stand-in compiler embeds; a real build has
    none, so it would "fail to boot" and roll back. Here it boots what ESPHome itself
    compiled in instead: the build time and version a real device would report.
    """
    stand_in = Firmware.from_image

    def from_image(image: bytes) -> Firmware | None:
        return stand_in(image) or real_image_firmware(image, device.firmware)

    Firmware.from_image = from_image  # type: ignore[method-assign]


def demo_mac(name: str) -> str:
    """A locally administered MAC address, stable per device name."""
    digest = hashlib.sha256(name.encode()).digest()
    return ":".join(f"{byte:02X}" for byte in (0x02, 0x00, *digest[:4]))


class Demo:
    """One demo run; ``run()`` raises on the first failed step, ``close()`` cleans up."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.report = Report()
        self.owner_password = secrets.token_urlsafe(12)
        self.builder = RealBuilder(workdir / "builder", real_compile=args.real_compile)
        self.hass = ChildProcess("Home Assistant", log_path=workdir / "hass.log")
        self.hass_dir = workdir / "hass"
        self.esphome_dir = self.hass_dir / "esphome"
        self.yaml_name = f"{args.device}.yaml"
        self.http_port = free_port()
        self.device_yaml = (FIXTURES / self.yaml_name).read_text("utf-8")
        fixture_secrets = (FIXTURES / "secrets.yaml").read_text("utf-8")
        used = SECRET_RE.findall(self.device_yaml)
        api_keys = [name for name in used if name.endswith("_api_key")]
        ota_passwords = [name for name in used if name.endswith("_ota_password")]
        if len(api_keys) != 1 or len(ota_passwords) != 1:
            raise DemoError(f"{self.yaml_name} needs one *_api_key and one *_ota_password secret")
        self.api_key = yaml_value(fixture_secrets, api_keys[0])
        self.ota_password = yaml_value(fixture_secrets, ota_passwords[0])
        if not self.api_key or not self.ota_password:
            raise DemoError(f"{FIXTURES / 'secrets.yaml'} lacks {api_keys + ota_passwords}")
        # mDNS only where it cannot leave the machine (the loopback-only namespace).
        self.mdns = os.environ.get("ERB_DEMO_IN_NETNS") == "1"
        platform = next(p for p in ("esp32", "esp8266", "rp2040") if f"\n{p}:" in self.device_yaml)
        self.device = DeviceEmulator(
            name=args.device,
            friendly_name=yaml_value(self.device_yaml, "friendly_name") or args.device,
            mac=demo_mac(args.device),
            esphome_version=FACTORY_ESPHOME,
            compilation_time=format_compilation_time(time.time() - 30 * 86400),
            platform=platform,
            board=yaml_value(self.device_yaml, "board") or "",
            encryption_key=self.api_key,
            ota_password=self.ota_password,
            mdns=self.mdns,
        )
        if args.real_compile:
            boot_real_images(self.device)
        self.entity_id = ""
        self.esphome_entry_id = ""
        self.flash_events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._upload_quarter = -1

    @contextlib.asynccontextmanager
    async def step(self, name: str) -> AsyncIterator[None]:
        """Time one step and say how it went."""
        print(f"▶ {name} …", flush=True)
        start = time.monotonic()
        try:
            yield
        except BaseException:
            print(f"✗ {name} failed after {time.monotonic() - start:.2f} s", flush=True)
            raise
        elapsed = time.monotonic() - start
        self.report.timings.append((name, elapsed))
        print(f"  ✓ {elapsed:.2f} s", flush=True)

    async def run(self) -> None:
        async with self.step("start the Device Builder (headless build server)"):
            await self.builder.start()
            if self.builder.pairing_key is None:
                raise DemoError("the Device Builder opened no pairing window")
            print(f"  listening on {LOOPBACK}:{self.builder.port}, pin {self.builder.pin[:16]}…")
        async with self.step("power on the emulated ESPHome device"):
            await self._start_device()
        async with self.step("start Home Assistant"):
            await self._start_hass()
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            api = HassApi(session, self.http_port)
            async with self.step("wait for Home Assistant's HTTP API"):
                await api.wait_http(HASS_START_TIMEOUT, lambda: self.hass.running)
            async with self.step("onboarding: owner user, auth code, access token"):
                await self._onboard(api)
            async with api.websocket() as ws:
                self.flash_events = await ws.subscribe_events(f"{DOMAIN}_flash")
                await self._run_with_api(api, ws)

    async def _run_with_api(self, api: HassApi, ws: HassWebSocket) -> None:
        async with self.step("config flow: user → pair → entry (the build server)"):
            entry_id = await self._pair(api)
        async with self.step("config flow of HA's esphome integration: the device"):
            await self._add_device(api)
        async with self.step("the device's update entity offers an update"):
            await self._wait_for_offer(api, "ESPHome", STEP_TIMEOUT)
        async with self.step("update.install: build, download, flash, verify"):
            first = await self._install(api, ws, "update", None)
        async with self.step(f"change {self.yaml_name}"):
            changed_at = await self._change_yaml()
        async with self.step("meanwhile submit_build (wait: true) and download"):
            build = await self._build(api, entry_id)
        async with self.step("verify the stored images"):
            await asyncio.to_thread(self._verify_store, build)
        async with self.step("wait until the update entity offers the change"):
            await self._wait_for_change(api, changed_at)
        async with self.step("update.install: the changed configuration"):
            await self._install(api, ws, "changed YAML", None)
        async with self.step(f"rollback: update.install version {first.job_id}"):
            await self._install(api, ws, "rollback", first.job_id)
        async with self.step(f"flash action: the submit_build job {build['job_id']}"):
            await self._flash(api, ws, build)

    # --- the emulated device and Home Assistant -----------------------------------------

    async def _start_device(self) -> None:
        await self.device.start()
        device, firmware = self.device, self.device.firmware
        print(
            f"  {firmware.name} ({firmware.friendly_name}), MAC {device.mac_address}, "
            f"runs ESPHome {firmware.esphome_version} compiled {firmware.compilation_time}"
        )
        print(
            f"  native API {device.host}:{device.api_port} (Noise, the key in secrets.yaml), "
            f"OTA {device.host}:{device.ota_port} (password in secrets.yaml), "
            f"mDNS {'on (loopback only)' if self.mdns else 'off (no isolated namespace)'}"
        )

    def _write_hass_config(self) -> None:
        write_config_dir(self.hass_dir, self.http_port, INTEGRATION)
        self.esphome_dir.mkdir()
        shutil.copytree(FIXTURES / "common", self.esphome_dir / "common")
        shutil.copy2(FIXTURES / "secrets.yaml", self.esphome_dir / "secrets.yaml")
        # The device listens on a free port; its YAML says which, as a user's would.
        if self.device_yaml.count(OTA_BLOCK) != 1:
            raise DemoError(f"{self.yaml_name} needs exactly one `{OTA_BLOCK.strip()}`")
        text = self.device_yaml.replace(OTA_BLOCK, f"{OTA_BLOCK}    port: {self.device.ota_port}\n")
        (self.esphome_dir / self.yaml_name).write_text(text, encoding="utf-8")

    async def _start_hass(self) -> None:
        await asyncio.to_thread(self._write_hass_config)
        await self.hass.start(
            [str(VENV_BIN / "hass"), "-c", str(self.hass_dir), "--skip-pip"], cwd=self.workdir
        )
        print(f"  hass -c {self.hass_dir} --skip-pip  (http://{LOOPBACK}:{self.http_port})")
        print(
            f"  {self.esphome_dir.relative_to(self.hass_dir)}/{self.yaml_name}: the sample, "
            f"with `port: {self.device.ota_port}` under `ota:`"
        )

    async def _onboard(self, api: HassApi) -> None:
        await api.onboard("demo", self.owner_password)
        config = await api.wait_running(HASS_START_TIMEOUT)
        print(f"  Home Assistant {config.get('version')} is {config.get('state')}")

    async def _pair(self, api: HassApi) -> str:
        form = await api.start_flow(DOMAIN)
        expect_form(form, "user")
        form = await api.flow_step(form.flow_id, {"host": LOOPBACK, "port": self.builder.port})
        expect_form(form, "pair")
        shown = form.placeholders
        emoji, pin_hex = shown.get("server_emoji"), shown.get("server_pin")
        if not emoji or not pin_hex:
            raise DemoError(f"the pair step shows no server fingerprint: {shown}")
        if "".join(pin_hex.split()).lower() != self.builder.pin:
            raise DemoError(f"HA shows pin {pin_hex}, the server logged {self.builder.pin}")
        print(f"  server fingerprint: {emoji}  ({shown.get('server_emoji_names', '')})")
        print(f"                      {pin_hex}")
        print("  = the pin the Device Builder logged; sending its pairing key")
        self.report.fingerprint = (emoji, pin_hex)
        self.report.server = f"{shown.get('name', '?')} (ESPHome {shown.get('version', '?')})"
        done = await api.flow_step(form.flow_id, {"pairing_key": self.builder.pairing_key})
        if done.type != "create_entry":
            raise DemoError(f"pairing did not create an entry: {done.raw}")
        entry_id = str(done.raw["result"]["entry_id"])
        await wait_until(
            lambda: api.entry_state(entry_id), "loaded", STEP_TIMEOUT, "config entry state"
        )
        print(f"  config entry {entry_id} loaded")
        return entry_id

    async def _add_device(self, api: HassApi) -> None:
        form = await api.start_flow("esphome")
        expect_form(form, "user")
        form = await api.flow_step(
            form.flow_id, {"host": self.device.host, "port": self.device.api_port}
        )
        print(f"  user: host {self.device.host}, port {self.device.api_port}")
        if form.type == "form" and form.step_id == "encryption_key":
            print(f"  encryption_key: asked for {form.placeholders.get('name', '?')}; sent")
            form = await api.flow_step(form.flow_id, {"noise_psk": self.api_key})
        if form.type != "create_entry":
            raise DemoError(f"the esphome flow created no entry: {form.raw}")
        self.esphome_entry_id = str(form.raw["result"]["entry_id"])
        await wait_until(
            lambda: api.entry_state(self.esphome_entry_id, "esphome"),
            "loaded",
            STEP_TIMEOUT,
            "esphome config entry state",
        )
        print(f"  esphome entry {self.esphome_entry_id} ({form.raw.get('title')}) loaded")

    # --- job-level actions --------------------------------------------------------------

    async def _build(self, api: HassApi, entry_id: str) -> dict[str, Any]:
        async with asyncio.timeout(self.args.build_timeout):
            build = await api.call_service(
                "submit_build",
                {"config_entry_id": entry_id, "configuration": self.yaml_name, "wait": True},
            )
        images = build.get("images") or []
        if not build.get("job_id") or not images or images[0].get("name") != "firmware.bin":
            raise DemoError(f"submit_build returned no job with firmware.bin first: {build}")
        print(
            f"  job {build['job_id']} of {self.yaml_name} as it is now: {build.get('status')}, "
            f"{len(images)} image(s)"
        )
        self.report.build = build
        return build

    def _verify_store(self, build: dict[str, Any]) -> None:
        for image in build["images"]:
            path = Path(image["path"])
            if not path.is_relative_to(self.hass_dir):
                raise DemoError(f"{image['name']} is stored outside HA's config dir: {path}")
            size, digest = path.stat().st_size, sha256_file(path)
            if (size, digest) != (image["size"], image["sha256"]):
                raise DemoError(
                    f"{path}: {size} bytes sha256 {digest}, response said "
                    f"{image['size']} bytes sha256 {image['sha256']}"
                )
        print(f"  every stored file matches its size and SHA-256 ({build.get('directory')})")
        if info := build.get("build_info"):
            print(
                f"  build_info: ESPHome {info.get('esphome_version')}, built "
                f"{info.get('build_time_str')}, config_hash {info.get('config_hash')}"
            )

    async def _flash(self, api: HassApi, ws: HassWebSocket, build: dict[str, Any]) -> None:
        """The ``flash`` action by device id: address and key from the esphome entry."""
        entity = await ws.command("config/entity_registry/get", entity_id=self.entity_id)
        mark = self._mark()
        drain(self.flash_events)
        start, wall = time.monotonic(), time.time()
        result = await api.call_service(
            "flash", {"job_id": build["job_id"], "device_id": entity["device_id"]}
        )
        elapsed = time.monotonic() - start
        self._print_flash_events(wall)
        print(
            f"  sent {result.get('bytes_sent'):,} bytes to {result.get('host')}:"
            f"{result.get('port')} in {result.get('duration')} s (encrypted "
            f"{result.get('encrypted')}); verified {result.get('verified')} by "
            f"{json.dumps(result.get('evidence'))}"
        )
        if not result.get("verified"):
            raise DemoError(f"the flash action did not verify the device: {result}")
        installed = await self._evidence(api, ws, "flash action", build["job_id"], mark)
        installed.seconds = elapsed
        self.report.flash = result

    # --- the update entity --------------------------------------------------------------

    async def _find_entity(self, api: HassApi) -> dict[str, Any] | None:
        """The update entity of our YAML (``update.<device>_firmware``), once it exists."""
        for state in await api.states():
            attributes = state.get("attributes", {})
            if (
                state["entity_id"].startswith("update.")
                and attributes.get("configuration") == self.yaml_name
            ):
                found: dict[str, Any] = state
                return found
        return None

    async def _wait_for_offer(self, api: HassApi, reason: str, timeout: float) -> None:
        """Wait until the update entity is ``on`` for ``reason`` (in its release summary)."""
        deadline = time.monotonic() + timeout
        state: dict[str, Any] | None = None
        while True:
            if not self.entity_id:
                state = await self._find_entity(api)
                if state is not None:
                    self.entity_id = state["entity_id"]
            else:
                state = await api.state(self.entity_id)
            summary = (state or {}).get("attributes", {}).get("release_summary") or ""
            if state is not None and state["state"] == "on" and reason in summary:
                break
            if time.monotonic() > deadline:
                raise DemoError(f"no update offered for {reason!r} within {timeout:.0f} s: {state}")
            await asyncio.sleep(0.2)
        attributes = state["attributes"]
        print(f"  {self.entity_id}: {state['state']}")
        print(f"    installed_version  {attributes.get('installed_version')}")
        print(f"    latest_version     {attributes.get('latest_version')}")
        print(f"    release_summary    {attributes.get('release_summary')}")
        print(f"    stored_builds      {attributes.get('stored_builds')}")

    async def _change_yaml(self) -> float:
        """Add a sensor to the device's YAML, as a user would; return when."""
        path = self.esphome_dir / self.yaml_name
        await asyncio.to_thread(
            path.write_text, path.read_text("utf-8") + YAML_CHANGE, encoding="utf-8"
        )
        print(f"  appended {YAML_CHANGE.strip()!r}")
        print(
            "  the integration re-reads device YAML files once a minute, or at once for "
            "homeassistant.update_entity;\n  first the job-level actions build the change"
        )
        return time.monotonic()

    async def _wait_for_change(self, api: HassApi, changed_at: float) -> None:
        print(f"  homeassistant.update_entity {self.entity_id} (re-read the YAML now)")
        await api.call("homeassistant", "update_entity", {"entity_id": self.entity_id})
        await self._wait_for_offer(api, "Configuration changed", YAML_REREAD_TIMEOUT)
        self.report.reread_wait = time.monotonic() - changed_at
        print(f"  noticed {self.report.reread_wait:.1f} s after the change")

    async def _install(
        self, api: HassApi, ws: HassWebSocket, label: str, version: str | None
    ) -> Installed:
        """``update.install`` over REST, its progress as the entity and the events show it."""
        mark = self._mark()
        drain(self.flash_events)
        data: dict[str, Any] = {"entity_id": self.entity_id}
        if version is not None:
            await self._show_rollback_targets(api, ws, version)
            data["version"] = version
        print(f"  POST /api/services/update/install {json.dumps(data)}")
        start, wall = time.monotonic(), time.time()
        call = asyncio.create_task(api.call("update", "install", data))
        seen: tuple[object, ...] = ()
        events: list[dict[str, Any]] = []
        try:
            async with asyncio.timeout(self.args.build_timeout + STEP_TIMEOUT):
                while True:
                    done = call.done()
                    state = await api.state(self.entity_id) or {}
                    attributes = state.get("attributes", {})
                    now = (
                        state.get("state"),
                        attributes.get("in_progress"),
                        attributes.get("update_percentage"),
                    )
                    events += self._print_flash_events(wall)
                    if now != seen:
                        seen = now
                        percent = "indeterminate" if now[2] is None else f"{now[2]} %"
                        print(
                            f"    {time.monotonic() - start:6.2f} s  entity {now[0]}, "
                            f"in_progress {now[1]}, update_percentage {percent}",
                            flush=True,
                        )
                    if done and not now[1]:
                        break
                    await asyncio.sleep(POLL)
        finally:
            if not call.done():
                call.cancel()
        await call  # the service's own error, if it failed
        elapsed = time.monotonic() - start
        events += self._print_flash_events(wall)
        verified = [e for e in events if e.get("status") == "verified"]
        if not verified:
            statuses = [e.get("status") for e in events]
            raise DemoError(f"no 'verified' flash event (saw {statuses})")
        job_id = str(verified[-1]["job_id"])
        if version is not None and job_id != version:
            raise DemoError(f"asked for build {version}, the flash events name {job_id}")
        installed = await self._evidence(api, ws, label, job_id, mark)
        installed.seconds = elapsed
        return installed

    async def _show_rollback_targets(self, api: HassApi, ws: HassWebSocket, job_id: str) -> None:
        """The stored builds the entity offers to roll back to (attribute, release notes)."""
        state = await api.state(self.entity_id) or {}
        stored = state.get("attributes", {}).get("stored_builds") or []
        print(f"  {self.entity_id} stored_builds: {stored}")
        if job_id not in stored:
            raise DemoError(f"build {job_id} is not among the entity's stored builds {stored}")
        notes = await ws.command("update/release_notes", entity_id=self.entity_id)
        print("  its release notes:")
        for line in str(notes).splitlines():
            if line.strip():
                print(f"    | {line}")

    def _print_flash_events(self, start: float) -> list[dict[str, Any]]:
        """Print the flash events that arrived (at their ``time_fired``, from ``start``, a
        ``time.time()``): each status, and uploads as they pass each quarter.
        """
        events = drain(self.flash_events)
        for event in events:
            data = event["data"]
            status, progress = data["status"], int(data.get("progress") or 0)
            if status == "uploading":
                if progress // 25 <= self._upload_quarter:
                    continue
                self._upload_quarter = progress // 25
            else:
                self._upload_quarter = -1 if status == "started" else 4
            fired = datetime.fromisoformat(event["time_fired"]).timestamp() - start
            print(
                f"    {fired:6.2f} s  event {DOMAIN}_flash: {status} {progress} % "
                f"(job {data.get('job_id')})"
            )
        return [event["data"] for event in events]

    def _mark(self) -> tuple[int, int]:
        """How many OTA sessions and boots the device has had so far."""
        return len(self.device.ota_sessions), len(self.device.boots)

    async def _evidence(
        self, api: HassApi, ws: HassWebSocket, label: str, job_id: str, mark: tuple[int, int]
    ) -> Installed:
        """Show what the device reports now against the stored build's build_info."""
        sessions, boots = mark
        # Home Assistant may hear from the device before its boot is complete (the API
        # answers before mDNS has announced it); the boot record comes at the end.
        boot = await self.device.wait_for_boot(boots + 1, timeout=STEP_TIMEOUT)
        manifest_path = self.hass_dir / DOMAIN / "builds" / job_id / "manifest.json"
        manifest = json.loads(await asyncio.to_thread(manifest_path.read_text, "utf-8"))
        info = manifest.get("build_info")
        if not info:
            raise DemoError(f"{manifest_path} records no build_info")
        firmware = self.device.firmware
        print(f"  job {job_id}: the device reports / the stored build says (manifest.json)")
        print(f"    esphome_version   {firmware.esphome_version:<26} {info['esphome_version']}")
        print(f"    compilation_time  {firmware.compilation_time:<26} {info['build_time_str']}")
        print(
            f"    config_hash       {firmware.config_hash_hex or '(none)':<26} "
            f"{info['config_hash']:08x}{'  (the mDNS TXT record)' if self.mdns else ''}"
        )
        reported: tuple[object, ...] = (firmware.esphome_version, firmware.compilation_time)
        expected: tuple[object, ...] = (info["esphome_version"], info["build_time_str"][:25])
        if firmware.config_hash is not None:  # a real image (--real-compile) names none
            reported += (firmware.config_hash,)
            expected += (info["config_hash"],)
        if reported != expected:
            raise DemoError(f"the device does not run build {job_id}: {firmware}")
        # The image the device took, and that it booted it (not a rollback to the old one).
        new_sessions = [s for s in self.device.ota_sessions[sessions:] if s.completed]
        if not new_sessions or new_sessions[-1].image is None:
            raise DemoError("the device saw no completed OTA upload")
        received = hashlib.sha256(new_sessions[-1].image).hexdigest()
        images = {image["name"]: image for image in manifest["images"]}
        name = "firmware.ota.bin" if "firmware.ota.bin" in images else "firmware.bin"
        if received != images[name]["sha256"]:
            raise DemoError(f"the device received sha256 {received}, {name} is {images[name]}")
        if boot.reason != "ota" or boot.rolled_back or boot.image_sha256 != received:
            raise DemoError(f"the device did not boot the image it received: {boot}")
        print(
            f"    received {len(new_sessions[-1].image):,} bytes, sha256 {received[:16]}… = "
            f"stored {name}; booted it (boot #{boot.index + 1}, "
            f"{'encrypted' if new_sessions[-1].encrypted else 'plain'} OTA)"
        )
        earlier = [(item.job_id, item.image_sha256) for item in self.report.installs] + [
            (self.report.build["job_id"], image["sha256"])
            for image in self.report.build.get("images", [])
        ]
        same = [other for other, sha256 in earlier if sha256 == received and other != job_id]
        if same:
            print(
                f"    (the image of job {same[-1]}: ESPHome keeps a configuration's build time "
                "while its hash is unchanged, so a rebuild is the same image)"
            )
        sw_version = await self._registry_sw_version(ws, firmware)
        print(f"    HA's esphome device: sw_version {sw_version!r}")
        state = await self._available_state(api)
        attributes = state.get("attributes", {})
        print(
            f"    {self.entity_id}: {state.get('state')}, installed "
            f"{attributes.get('installed_version')!r}, latest "
            f"{attributes.get('latest_version')!r}"
            + (f" ({attributes['release_summary']})" if attributes.get("release_summary") else "")
        )
        installed = Installed(label, job_id, 0.0, firmware, name, received)
        self.report.installs.append(installed)
        return installed

    async def _available_state(self, api: HassApi) -> dict[str, Any]:
        """The update entity's state once it is available again (the device reconnected)."""
        deadline = time.monotonic() + 10.0
        while True:
            state = await api.state(self.entity_id) or {}
            if state.get("state") not in {None, "unavailable"} or time.monotonic() > deadline:
                return state
            await asyncio.sleep(0.2)

    async def _registry_sw_version(self, ws: HassWebSocket, firmware: Firmware) -> str:
        """What HA's device registry says the device runs (the esphome integration's view)."""
        wanted = f"{firmware.esphome_version} ({firmware.compilation_time})"
        deadline = time.monotonic() + 10.0
        mac = ["mac", self.device.mac_address.lower()]
        while True:
            devices = await ws.command("config/device_registry/list")
            sw_version = next(
                (str(d.get("sw_version")) for d in devices if mac in d.get("connections", [])),
                "",
            )
            if sw_version == wanted:
                return sw_version
            if time.monotonic() > deadline:
                raise DemoError(f"HA's device registry says {sw_version!r}, not {wanted!r}")
            await asyncio.sleep(0.2)

    # --- stopping and reporting ---------------------------------------------------------

    async def close(self) -> None:
        """Stop Home Assistant first (it holds a session to the builder), then the rest."""
        await self.hass.stop(HASS_STOP_TIMEOUT)
        await self.builder.stop()
        await self.device.stop()

    def integration_warnings(self) -> list[str]:
        """Home Assistant's warnings and errors about this integration (a user sees them)."""
        return [
            line
            for line in self.hass.lines
            if HA_PROBLEM_RE.match(line) and DOMAIN in line and UNTESTED_CUSTOM not in line
        ]

    def failure_logs(self) -> str:
        """The tails a reader needs to see why a step failed, Home Assistant's first."""
        parts = []
        if self.hass.lines:
            parts.append(f"--- Home Assistant log tail ({self.hass.log_path}):\n{self.hass.tail()}")
        if builder_log := self.builder.log_tail(15):
            indented = "\n".join(f"    {line}" for line in builder_log.splitlines())
            parts.append(f"--- Device Builder log tail:\n{indented}")
        device = [
            f"    boot #{boot.index + 1} ({boot.reason}"
            f"{', rolled back' if boot.rolled_back else ''}): ESPHome "
            f"{boot.firmware.esphome_version}, {boot.firmware.compilation_time}"
            for boot in self.device.boots
        ] + [f"    OTA session {json.dumps(s.summary())}" for s in self.device.ota_sessions]
        if device:
            parts.append(f"--- emulated device ({self.device.state}):\n" + "\n".join(device))
        return "\n".join(parts)


def drain(queue: asyncio.Queue[dict[str, Any]]) -> list[dict[str, Any]]:
    """Everything queued so far."""
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


def expect_form(step: FlowStep, step_id: str) -> None:
    if step.type != "form" or step.step_id != step_id:
        raise DemoError(f"expected the {step_id!r} form, got {step.raw}")
    if step.errors:
        raise DemoError(f"the {step_id!r} form shows errors {step.errors}: {step.raw}")


async def wait_until(
    read: Callable[[], Awaitable[str | None]], wanted: str, timeout: float, what: str
) -> None:
    """Poll a state Home Assistant exposes only by request (no push over plain HTTP)."""
    deadline = time.monotonic() + timeout
    while (state := await read()) != wanted:
        if state in {"setup_error", "setup_retry", "not_loaded", "failed_unload"}:
            raise DemoError(f"{what} is {state}")
        if time.monotonic() > deadline:
            raise DemoError(f"{what} is still {state} after {timeout:.0f}s")
        await asyncio.sleep(0.2)


def print_summary(report: Report, total: float) -> None:
    emoji, pin_hex = report.fingerprint
    build, flash = report.build, report.flash
    print("\n══ ESPHome Remote Build demo: every step passed ══")
    print(f"build server   {report.server}")
    print(f"fingerprint    {emoji}\n               {pin_hex}")
    print(
        f"submit_build   job {build['job_id']} ({build.get('status')}), "
        f"device {build.get('device_name')} [{build.get('platform')}]"
    )
    for image in build["images"]:
        print(
            f"  {image['name']:<22} {image['offset'] or '-':>9} {image['size']:>10,} B  "
            f"{image['sha256']}"
        )
    print("installs       each verified: the device reports the build's version, compilation")
    print("               time and config hash, and booted the stored image it received")
    for item in report.installs:
        fw = item.firmware
        print(
            f"  {item.label:<13} job {item.job_id}  {item.seconds:5.2f} s  ESPHome "
            f"{fw.esphome_version}, {fw.compilation_time}, hash {fw.config_hash_hex}"
        )
    print(
        f"flash action   {flash.get('bytes_sent'):,} bytes to {flash.get('host')}:"
        f"{flash.get('port')} in {flash.get('duration')} s, verified {flash.get('verified')}"
    )
    print(f"YAML re-read   noticed after {report.reread_wait:.1f} s (update_entity)")
    print("timings")
    for step_name, seconds in report.timings:
        print(f"  {seconds:7.2f} s  {step_name}")
    print(f"  {total:7.2f} s  total")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/demo", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--real-compile",
        action="store_true",
        help="let the Device Builder run the real ESPHome toolchain (downloads toolchains: "
        "needs network, fails inside the isolated namespace)",
    )
    parser.add_argument("--device", choices=DEVICES, default="esp8266-demo")
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    parser.add_argument(
        "--build-timeout", type=float, default=900.0, help="seconds for one build (wait)"
    )
    return parser.parse_args()


async def amain(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    assert main_task is not None
    loop.add_signal_handler(signal.SIGTERM, main_task.cancel)
    workdir = Path(tempfile.mkdtemp(prefix="erb-demo-"))
    demo = Demo(args, workdir)
    started = time.monotonic()
    status = 1
    try:
        await demo.run()
        status = 0
    except (
        DemoError,
        ChildProcessFailedError,
        HassApiError,
        RealBuilderError,
        aiohttp.ClientError,
        OSError,
        TimeoutError,
    ) as err:
        print(f"\nFAILED: {err}", file=sys.stderr)
        print(demo.failure_logs(), file=sys.stderr)
    except asyncio.CancelledError:
        main_task.uncancel()  # Ctrl-C / SIGTERM: still stop everything below
        print("\ninterrupted", file=sys.stderr)
        print(demo.failure_logs(), file=sys.stderr)
        status = 130
    finally:
        stopping = time.monotonic()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(demo.close())
        demo.report.timings.append(
            ("stop Home Assistant, Device Builder, device", time.monotonic() - stopping)
        )
        if status == 0:
            print_summary(demo.report, time.monotonic() - started)
        else:
            print(f"stopped everything in {demo.report.timings[-1][1]:.2f} s", file=sys.stderr)
        if warnings := demo.integration_warnings():
            print(f"Home Assistant logged {len(warnings)} warning(s)/error(s) about {DOMAIN}:")
            for line in warnings:
                print(f"  {line[:400]}")
        if args.keep:
            print(f"kept {workdir} (HA config in hass/, owner demo / {demo.owner_password})")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return status


def main() -> None:
    args = parse_args()
    try:
        status = asyncio.run(amain(args))
    except KeyboardInterrupt:
        status = 130
    raise SystemExit(status)


if __name__ == "__main__":
    main()
