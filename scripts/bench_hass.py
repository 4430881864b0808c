"""A real Home Assistant for the benchmark: its process, its APIs, and what it costs.

The update and fleet benchmarks (``bench_update.py``, ``bench_fleet.py``) measure Home
Assistant the way it runs at home: a ``hass`` process of its own (as ``scripts/demo``
starts it), Home Assistant's own ``esphome`` integration talking to emulated devices,
and this integration set up through its config flow. They drive it only through its
HTTP and WebSocket APIs (config flows, actions, events), and read its CPU time and
memory from ``/proc`` — from the outside, so nothing of the measurement runs in it,
except the tiny ``erb_bench_probe`` helper (``bench_hass_probe/``) that both the
measured and the baseline Home Assistant load, for a garbage collection and tracemalloc.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
import json
import os
from pathlib import Path
import secrets
import time
from typing import Any, Self

import aiohttp

from custom_components.esphome_remote_build.const import CONF_PAIRING_KEY
from scripts.demo_hass import HassApi, HassApiError, yaml_text
from tests.support.child_process import ChildProcess
from tests.support.device_emulator import DeviceEmulator
from tests.support.real_builder import LOOPBACK, REPO_ROOT, DashboardClient, RealBuilder

DOMAIN = "esphome_remote_build"
PROBE_DOMAIN = "erb_bench_probe"
INTEGRATION = REPO_ROOT / "custom_components" / DOMAIN
PROBE = REPO_ROOT / "scripts" / "bench_hass_probe"
FIXTURES = REPO_ROOT / "tests" / "fixtures" / "esphome"
HASS = REPO_ROOT / ".venv" / "bin" / "hass"
START_TIMEOUT = 180.0
STOP_TIMEOUT = 30.0
STEP_TIMEOUT = 60.0
_CLK_TCK = os.sysconf("SC_CLK_TCK")
#: Writing this to /proc/<pid>/clear_refs resets VmHWM to the current RSS (proc(5)).
_RESET_PEAK_RSS = "5"


class BenchHassError(Exception):
    """Home Assistant did not start, answer or behave as the benchmark needs."""


# --- the process, from the outside ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProcessSample:
    """CPU time and memory of a process at one moment.

    ``cpu_seconds`` sums the threads' own nanosecond counters
    (``/proc/<pid>/task/*/schedstat``), as an idle Home Assistant uses less than the
    10 ms tick that ``/proc/<pid>/stat`` counts in; ``tick_cpu_seconds`` is that
    process-wide figure (it keeps threads that ended, which the sum loses).
    """

    at: float
    cpu_seconds: float
    tick_cpu_seconds: float
    threads: int
    rss_bytes: int
    peak_rss_bytes: int


def _thread_cpu(pid: int) -> tuple[float, int]:
    total, threads = 0, 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text(encoding="ascii").split()[0])
        except (OSError, ValueError, IndexError):
            continue  # the thread ended meanwhile
        threads += 1
    return total / 1e9, threads


def sample_process(pid: int) -> ProcessSample:
    """Read ``/proc/<pid>``: CPU (ns per thread, and ticks), RSS and its peak (kB)."""
    at = time.monotonic()
    cpu, threads = _thread_cpu(pid)
    stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    fields = stat.rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    kib = {
        key: int(value.split()[0])
        for key, value in (line.split(":", 1) for line in status.splitlines() if ":" in line)
        if key in ("VmRSS", "VmHWM")
    }
    return ProcessSample(
        at,
        cpu,
        (utime + stime) / _CLK_TCK,
        threads,
        kib["VmRSS"] * 1024,
        kib["VmHWM"] * 1024,
    )


def reset_peak_rss(pid: int) -> bool:
    """Reset the process's VmHWM to its current RSS (False where the kernel refuses)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text(_RESET_PEAK_RSS, encoding="ascii")
    except OSError:
        return False
    return True


class HassProcess(ChildProcess):
    """The ``hass`` child process, with its pid for ``/proc``."""

    @property
    def pid(self) -> int:
        if self._process is None:
            raise BenchHassError("Home Assistant is not running")
        return self._process.pid


# --- the APIs ---------------------------------------------------------------------------


class BenchApi(HassApi):
    """The demo's REST client, plus what the benchmark needs beyond our actions."""

    @property
    def token(self) -> str:
        if self._token is None:
            raise BenchHassError("not onboarded yet")
        return self._token

    async def request(self, method: str, path: str, body: object = None) -> Any:  # noqa: ANN401
        return await self._request(method, path, json=body)

    async def states(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await self._request("GET", "/api/states")
        return found

    async def state(self, entity_id: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = await self._request("GET", f"/api/states/{entity_id}")
        except HassApiError as err:
            if "HTTP 404" in str(err):
                return None
            raise
        return found

    async def entries(self, domain: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await self._request(
            "GET", f"/api/config/config_entries/entry?domain={domain}"
        )
        return found

    async def flow(self, handler: str, *steps: dict[str, Any]) -> dict[str, Any]:
        """Run a config flow with the given inputs, one per form; return the last answer."""
        answer: dict[str, Any] = (await self.start_flow(handler)).raw
        for step in steps:
            if answer.get("type") != "form":
                raise BenchHassError(f"{handler} flow: expected a form, got {answer}")
            if answer.get("errors"):
                raise BenchHassError(f"{handler} flow shows errors: {answer}")
            answer = (await self.flow_step(str(answer["flow_id"]), step)).raw
        return answer


@dataclass(frozen=True, slots=True)
class HassEvent:
    """One event as Home Assistant fired it (``fired``: its own wall clock, epoch s)."""

    event_type: str
    data: dict[str, Any]
    fired: float


class HassSocket:
    """Home Assistant's WebSocket API: event subscriptions and blocking action calls.

    Every event of the subscribed types is kept with the time Home Assistant fired it,
    which is on the same wall clock as ``time.time()`` here: the benchmark's phases are
    read from those stamps, not from when the events arrived.
    """

    def __init__(self, session: aiohttp.ClientSession, api: BenchApi) -> None:
        self._session = session
        self._api = api
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[HassEvent] = []
        self._changed = asyncio.Condition()

    async def __aenter__(self) -> Self:
        self._ws = await self._session.ws_connect(
            self._api.base.replace("http://", "ws://") + "/api/websocket", max_msg_size=0
        )
        hello = await self._ws.receive_json()
        if hello.get("type") != "auth_required":
            raise BenchHassError(f"websocket: {hello}")
        await self._ws.send_json({"type": "auth", "access_token": self._api.token})
        if (answer := await self._ws.receive_json()).get("type") != "auth_ok":
            raise BenchHassError(f"websocket auth: {answer}")
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._ws is not None:
            await self._ws.close()

    async def _read(self) -> None:
        assert self._ws is not None
        async for message in self._ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                break
            payload = json.loads(message.data)
            for item in payload if isinstance(payload, list) else [payload]:
                await self._dispatch(item)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(BenchHassError("websocket closed"))

    async def _dispatch(self, item: dict[str, Any]) -> None:
        if item.get("type") == "event":
            raw = item["event"]
            fired = datetime.fromisoformat(raw["time_fired"]).timestamp()
            self.events.append(HassEvent(raw["event_type"], raw["data"], fired))
            async with self._changed:
                self._changed.notify_all()
        elif (future := self._pending.pop(item.get("id", -1), None)) is not None:
            future.set_result(item)

    async def command(self, kind: str, timeout: float = STEP_TIMEOUT, **fields: Any) -> Any:  # noqa: ANN401
        """Send one command and return its result (raise on an error answer)."""
        assert self._ws is not None
        self._next_id += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[self._next_id] = future
        await self._ws.send_json({"id": self._next_id, "type": kind, **fields})
        answer = await asyncio.wait_for(future, timeout)
        if not answer.get("success"):
            raise BenchHassError(f"{kind} {fields}: {answer.get('error')}")
        return answer.get("result")

    async def subscribe(self, *event_types: str) -> None:
        for event_type in event_types:
            await self.command("subscribe_events", event_type=event_type)

    async def call(self, domain: str, service: str, data: dict[str, Any], timeout: float) -> Any:  # noqa: ANN401
        """Call an action and wait until it finished (no 10 s cut-off, unlike REST)."""
        return await self.command(
            "call_service", timeout, domain=domain, service=service, service_data=data
        )

    async def wait_for(
        self, match: Callable[[HassEvent], bool], *, since: int = 0, timeout: float = STEP_TIMEOUT
    ) -> HassEvent:
        """Return the first kept event from index ``since`` on that matches."""
        async with asyncio.timeout(timeout), self._changed:
            while True:
                for event in self.events[since:]:
                    if match(event):
                        return event
                since = len(self.events)
                await self._changed.wait()


# --- one Home Assistant ---------------------------------------------------------------


def configuration(http_port: int) -> dict[str, Any]:
    """Basics, loopback HTTP, the APIs, warnings only, the probe; no default_config."""
    return {
        "homeassistant": {
            "name": "ESPHome Remote Build bench",
            "latitude": 52.37,
            "longitude": 4.89,
            "elevation": 0,
            "unit_system": "metric",
            "time_zone": "UTC",
            "country": "NL",
            "currency": "EUR",
        },
        "http": {"server_host": LOOPBACK, "server_port": http_port},
        "api": None,
        "onboarding": None,
        "logger": {"default": "warning"},
        PROBE_DOMAIN: None,
    }


def write_device_files(esphome_dir: Path, devices: list[DeviceYaml]) -> None:
    """Home Assistant's ``esphome`` folder: one ESP32 YAML per device, shared wifi package."""
    esphome_dir.mkdir(parents=True, exist_ok=True)
    (esphome_dir / "common").mkdir(exist_ok=True)
    (esphome_dir / "common" / "wifi.yaml").write_text(
        (FIXTURES / "common" / "wifi.yaml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    values = {
        "wifi_ssid": "bench-network",
        "wifi_password": "bench-password",
        "fallback_password": "bench-fallback",
    }
    for device in devices:
        (esphome_dir / f"{device.name}.yaml").write_text(device.yaml(), encoding="utf-8")
        values[f"{device.secret_prefix}_api_key"] = device.api_key
        values[f"{device.secret_prefix}_ota_password"] = device.ota_password
    (esphome_dir / "secrets.yaml").write_text(yaml_text(values), encoding="utf-8")


@dataclass(frozen=True, slots=True)
class DeviceYaml:
    """One emulated device as its user's YAML describes it (name, keys, OTA port).

    ``firmware_bytes`` sets the stand-in compiler's image size (its
    ``standin_firmware_bytes`` substitution); without it the size follows the build's
    configuration hash, which changes from build to build.
    """

    name: str
    friendly_name: str
    api_key: str
    ota_password: str
    ota_port: int
    firmware_bytes: int | None = None

    @property
    def secret_prefix(self) -> str:
        return self.name.replace("-", "_")

    def yaml(self) -> str:
        size = (
            ""
            if self.firmware_bytes is None
            else f'  standin_firmware_bytes: "{self.firmware_bytes}"\n'
        )
        return (
            f"substitutions:\n  name: {self.name}\n{size}\n"
            f"esphome:\n  name: ${{name}}\n  friendly_name: {self.friendly_name}\n\n"
            "esp32:\n  board: esp32dev\n  toolchain: platformio\n"
            "  framework:\n    type: arduino\n\n"
            "packages:\n  wifi: !include common/wifi.yaml\n\nlogger:\n\n"
            f"api:\n  encryption:\n    key: !secret {self.secret_prefix}_api_key\n\n"
            f"ota:\n  - platform: esphome\n    port: {self.ota_port}\n"
            f"    password: !secret {self.secret_prefix}_ota_password\n"
        )

    @classmethod
    def of(
        cls, device: DeviceEmulator, ota_password: str, firmware_bytes: int | None = None
    ) -> DeviceYaml:
        assert device.noise_psk is not None
        return cls(
            device.firmware.name,
            device.firmware.friendly_name,
            device.noise_psk,
            ota_password,
            device.ota_port,
            firmware_bytes,
        )


class BenchHass:
    """One ``hass`` process with its own config folder; ``ours`` links the integration."""

    def __init__(self, workdir: Path, *, ours: bool) -> None:
        self.workdir = workdir
        self.ours = ours
        self.config_dir = workdir / "config"
        self.esphome_dir = self.config_dir / "esphome"
        self.http_port = 0
        self.process = HassProcess("Home Assistant", log_path=workdir / "hass.log")
        self._session: aiohttp.ClientSession | None = None
        self.api: BenchApi | None = None

    @property
    def rest(self) -> BenchApi:
        if self.api is None:
            raise BenchHassError("Home Assistant is not started")
        return self.api

    def _write_config(self) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        (self.config_dir / "configuration.yaml").write_text(
            yaml_text(configuration(self.http_port)), encoding="utf-8"
        )
        custom = self.config_dir / "custom_components"
        custom.mkdir(exist_ok=True)
        (custom / PROBE_DOMAIN).symlink_to(PROBE, target_is_directory=True)
        if self.ours:
            (custom / DOMAIN).symlink_to(INTEGRATION, target_is_directory=True)

    async def start(self, http_port: int) -> None:
        """Start ``hass``, onboard an owner, wait until it runs."""
        self.http_port = http_port
        await asyncio.to_thread(self._write_config)
        await self.process.start(
            [str(HASS), "-c", str(self.config_dir), "--skip-pip"],
            cwd=self.workdir,
            # Our PYTHONPATH would make the repository's custom_components the package.
            env={"PYTHONPATH": ""},
        )
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        self._session = aiohttp.ClientSession(timeout=timeout)
        self.api = BenchApi(self._session, http_port)
        await self.api.wait_http(START_TIMEOUT, lambda: self.process.running)
        await self.api.onboard("bench", secrets.token_urlsafe(12))
        await self.api.wait_running(START_TIMEOUT)

    def socket(self) -> HassSocket:
        if self._session is None:
            raise BenchHassError("Home Assistant is not started")
        return HassSocket(self._session, self.rest)

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        await self.process.stop(STOP_TIMEOUT)

    # --- set-up through the config flows ------------------------------------------------

    async def add_esphome_device(self, device: DeviceEmulator) -> str:
        """Add a device as a user does: host and port, then its encryption key."""
        answer = await self.rest.flow(
            "esphome",
            {"host": device.host, "port": device.api_port},
            {"noise_psk": device.noise_psk},
        )
        if answer.get("type") != "create_entry":
            raise BenchHassError(f"esphome flow for {device.firmware.name}: {answer}")
        return str(answer["result"]["entry_id"])

    async def pair(self, builder: RealBuilder, operator: DashboardClient | None = None) -> str:
        """Pair with a build server: its printed key, or its operator's approval."""
        rest = self.rest
        key = {CONF_PAIRING_KEY: builder.pairing_key} if builder.pairing_key else {}
        answer = await rest.flow(DOMAIN, {"host": LOOPBACK, "port": builder.port}, key)
        if answer.get("type") == "progress":
            if operator is None:
                raise BenchHassError("the build server waits for an operator; none given")
            await approve_pending(operator, "Home Assistant")
            flow_id = str(answer["flow_id"])
            async with asyncio.timeout(STEP_TIMEOUT):
                while answer.get("type") in ("progress", "progress_done"):
                    await asyncio.sleep(0.2)
                    answer = await rest.request(
                        "POST", f"/api/config/config_entries/flow/{flow_id}"
                    )
        if answer.get("type") != "create_entry":
            raise BenchHassError(f"pairing did not create an entry: {answer}")
        entry_id = str(answer["result"]["entry_id"])
        async with asyncio.timeout(STEP_TIMEOUT):
            while True:
                entry = next(e for e in await rest.entries(DOMAIN) if e["entry_id"] == entry_id)
                if entry["state"] == "loaded":
                    return entry_id
                await asyncio.sleep(0.2)

    async def probe(self, op: str) -> dict[str, Any]:
        """Call the probe inside Home Assistant (``op``: see ``bench_hass_probe``)."""
        answer = await self.rest.request(
            "POST", f"/api/services/{PROBE_DOMAIN}/memory?return_response", {"op": op}
        )
        response: dict[str, Any] = answer["service_response"]
        return response

    async def wait_states(
        self, ready: Callable[[list[dict[str, Any]]], bool], what: str, timeout: float
    ) -> list[dict[str, Any]]:
        """Poll ``/api/states`` until ``ready`` holds."""
        deadline = time.monotonic() + timeout
        while True:
            states = await self.rest.states()
            if ready(states):
                return states
            if time.monotonic() > deadline:
                raise BenchHassError(f"{what}: not within {timeout:g} s")
            await asyncio.sleep(0.25)


async def approve_pending(operator: DashboardClient, label: str) -> str:
    """Approve the one pending pairing request (the operator's click); return its id."""
    async with asyncio.timeout(STEP_TIMEOUT):
        while True:
            pending = [
                peer
                for peer in (await operator.get_settings()).get("peers", [])
                if peer.get("status") == "pending"
            ]
            if pending:
                dashboard_id = str(pending[0]["dashboard_id"])
                await operator.approve_peer(dashboard_id)
                return dashboard_id
            await asyncio.sleep(0.1)
