"""The integration's main job end to end, on loopback, against real programs.

Started by ``scripts/demo`` (which sets up the venvs and enters a loopback-only network
namespace first). It starts the real ESPHome Device Builder headless as the build server,
an emulated ESPHome device that accepts OTA updates, and a real Home Assistant with this
integration; then, through Home Assistant's HTTP API only, it pairs Home Assistant with the
build server, builds the sample device, stores the images and flashes the firmware onto
the device, and checks that the device received exactly the stored firmware image.

Exit status 0 only if every step passed. Everything it started is stopped on the way out
(also on errors, Ctrl-C and SIGTERM); the working directory goes too unless ``--keep``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
from collections.abc import AsyncIterator, Awaitable, Callable
import contextlib
from dataclasses import dataclass, field
import hashlib
import json
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
    write_config_dir,
    yaml_text,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.support.child_process import ChildProcess, ChildProcessFailedError  # noqa: E402
from tests.support.real_builder import RealBuilder, RealBuilderError, free_port  # noqa: E402

VENV_BIN = REPO_ROOT / ".venv" / "bin"
INTEGRATION = REPO_ROOT / "custom_components" / DOMAIN
FIXTURES = REPO_ROOT / "tests" / "fixtures" / "esphome"
# The sample devices: every `<name>-demo.yaml` of the test fixtures.
DEVICES = sorted(path.stem for path in FIXTURES.glob("*-demo.yaml"))
SECRET_RE = re.compile(r"!secret\s+(\w+)")
HASS_START_TIMEOUT = 120.0
HASS_STOP_TIMEOUT = 30.0
STEP_TIMEOUT = 60.0


# A Home Assistant log record at WARNING or worse (continuation lines are indented).
HA_PROBLEM_RE = re.compile(r"^\d{4}-\d\d-\d\d [\d:.]+ (WARNING|ERROR|CRITICAL) ")
# Logged for every custom integration; not about this one's behaviour.
UNTESTED_CUSTOM = "has not been tested by Home Assistant"


class DemoError(Exception):
    """A step did not get the answer it needed."""


@dataclass
class Report:
    """What the summary prints: step timings and what the steps established."""

    timings: list[tuple[str, float]] = field(default_factory=list)
    server: str = ""
    fingerprint: tuple[str, str] = ("", "")
    build: dict[str, Any] = field(default_factory=dict)
    flash: dict[str, Any] = field(default_factory=dict)
    flash_round_trip: float = 0.0
    device: dict[str, Any] = field(default_factory=dict)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as src:
        while block := src.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class Demo:
    """One demo run; ``run()`` raises on the first failed step, ``close()`` cleans up."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.report = Report()
        self.ota_password = secrets.token_urlsafe(12)
        self.owner_password = secrets.token_urlsafe(12)
        self.builder = RealBuilder(workdir / "builder", real_compile=args.real_compile)
        self.device = ChildProcess("OTA device emulator", log_path=workdir / "device.log")
        self.hass = ChildProcess("Home Assistant", log_path=workdir / "hass.log")
        self.hass_dir = workdir / "hass"
        self.device_port = 0
        self.http_port = free_port()

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
        async with self.step("start the OTA device emulator"):
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
            async with self.step("config flow: user → pair → entry"):
                entry_id = await self._pair(api)
            async with self.step("submit_build (wait: true) and download"):
                build = await self._build(api, entry_id)
            async with self.step("verify the stored images"):
                await asyncio.to_thread(self._verify_store, build)
            async with self.step("flash the firmware to the device"):
                await self._flash(api, build)
            async with self.step("verify the image the device received"):
                await self._verify_device(build)

    async def _start_device(self) -> None:
        save_dir = self.workdir / "device"
        await self.device.start(
            [
                str(VENV_BIN / "python"),
                "-m",
                "tests.support.ota_emulator",
                "--host",
                LOOPBACK,
                "--port",
                "0",
                "--version",
                "2",
                "--password",
                self.ota_password,
                "--save-dir",
                str(save_dir),
            ],
            cwd=REPO_ROOT,
        )
        line = await self.device.wait_for_line(r'"event": "listening"', timeout=STEP_TIMEOUT)
        self.device_port = int(json.loads(line.string)["port"])
        print(f"  ESPHome OTA v2, password-protected, on {LOOPBACK}:{self.device_port}")

    def _write_hass_config(self) -> None:
        write_config_dir(self.hass_dir, self.http_port, INTEGRATION)
        esphome = self.hass_dir / "esphome"
        esphome.mkdir()
        yaml_name = f"{self.args.device}.yaml"
        shutil.copy2(FIXTURES / yaml_name, esphome / yaml_name)
        shutil.copytree(FIXTURES / "common", esphome / "common")
        sources = [esphome / yaml_name, *(esphome / "common").glob("*.yaml")]
        names = {name for path in sources for name in SECRET_RE.findall(path.read_text("utf-8"))}
        (esphome / "secrets.yaml").write_text(yaml_text(self._secrets(names)), encoding="utf-8")

    def _secrets(self, names: set[str]) -> dict[str, Any]:
        """Fresh values for the sample's secrets; the OTA one is the emulated device's."""
        values: dict[str, Any] = {}
        for name in sorted(names):
            if name.endswith("_ota_password"):
                values[name] = self.ota_password
            elif name.endswith("_api_key"):
                values[name] = base64.b64encode(secrets.token_bytes(32)).decode()
            else:
                values[name] = secrets.token_urlsafe(12)
        if list(values.values()).count(self.ota_password) != 1:
            raise DemoError(f"{self.args.device}.yaml needs exactly one *_ota_password secret")
        return values

    async def _start_hass(self) -> None:
        await asyncio.to_thread(self._write_hass_config)
        await self.hass.start(
            [str(VENV_BIN / "hass"), "-c", str(self.hass_dir), "--skip-pip"], cwd=self.workdir
        )
        print(f"  hass -c {self.hass_dir} --skip-pip  (http://{LOOPBACK}:{self.http_port})")

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

    async def _build(self, api: HassApi, entry_id: str) -> dict[str, Any]:
        async with asyncio.timeout(self.args.build_timeout):
            build = await api.call_service(
                "submit_build",
                {
                    "config_entry_id": entry_id,
                    "configuration": f"{self.args.device}.yaml",
                    "wait": True,
                },
            )
        images = build.get("images") or []
        if not build.get("job_id") or not images or images[0].get("name") != "firmware.bin":
            raise DemoError(f"submit_build returned no job with firmware.bin first: {build}")
        print(f"  job {build['job_id']}: {build.get('status')}, {len(images)} image(s)")
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

    async def _flash(self, api: HassApi, build: dict[str, Any]) -> None:
        services = await api.services_of(DOMAIN)
        if "flash" not in services:
            raise DemoError(
                f"Home Assistant has no service {DOMAIN}.flash (registered: "
                f"{', '.join(sorted(services)) or 'none'})"
            )
        start = time.monotonic()
        result = await api.call_service(
            "flash",
            {
                "job_id": build["job_id"],
                "host": LOOPBACK,
                "port": self.device_port,
                "password": self.ota_password,
            },
        )
        self.report.flash_round_trip = time.monotonic() - start
        print(
            f"  sent {result.get('bytes_sent')} bytes to {result.get('host')}:{result.get('port')}"
        )
        self.report.flash = result

    async def _verify_device(self, build: dict[str, Any]) -> None:
        line = await self.device.wait_for_line(r'"event": "session"', timeout=STEP_TIMEOUT)
        session = json.loads(line.string)
        if not (session["auth_ok"] and session["completed"] and session["md5_ok"]):
            raise DemoError(f"the device's OTA session did not complete: {session}")
        firmware = build["images"][0]
        stored = await asyncio.to_thread(sha256_file, Path(firmware["path"]))
        received = await asyncio.to_thread(
            sha256_file, self.workdir / "device" / f"session-{session['index']}.bin"
        )
        if not stored == received == firmware["sha256"]:
            raise DemoError(
                f"the device received sha256 {received}; stored firmware.bin is {stored}"
            )
        print(f"  device image sha256 {received} == stored firmware.bin")
        self.report.device = session

    async def close(self) -> None:
        """Stop Home Assistant first (it holds a session to the builder), then the rest."""
        await self.hass.stop(HASS_STOP_TIMEOUT)
        await self.builder.stop()
        await self.device.stop(STEP_TIMEOUT)

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
        if self.device.lines:
            parts.append(f"--- OTA device emulator output:\n{self.device.tail(10)}")
        return "\n".join(parts)


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
    build, flash, device = report.build, report.flash, report.device
    print("\n══ ESPHome Remote Build demo: every step passed ══")
    print(f"build server   {report.server}")
    print(f"fingerprint    {emoji}\n               {pin_hex}")
    print(
        f"job            {build['job_id']} ({build.get('status')}), "
        f"device {build.get('device_name')} [{build.get('platform')}]"
    )
    print("images")
    for image in build["images"]:
        print(
            f"  {image['name']:<22} {image['offset'] or '-':>9} {image['size']:>10,} B  "
            f"{image['sha256']}"
        )
    duration = flash.get("duration")
    took = (
        f"in {float(duration):.2f} s"
        if duration is not None
        else f"(service round trip {report.flash_round_trip:.2f} s)"
    )
    print(
        f"flash          {flash.get('bytes_sent'):,} bytes sent to {flash.get('host')}:"
        f"{flash.get('port')} {took}; the device received {device['image_size']:,} bytes, "
        "sha256 = stored firmware.bin"
    )
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
        "--build-timeout", type=float, default=900.0, help="seconds for submit_build (wait)"
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
