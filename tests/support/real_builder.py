"""Run the real ESPHome Device Builder as a test peer, from pytest or from a script.

Our integration is only correct if it works against the build server its users run, so
interop tests and the demo start the published Device Builder in its own venv and talk
to it over loopback. This module owns that process: start it on free ports with a fresh
config dir, learn its pin and one-time pairing key from its log, stop it cleanly (and
never leave it behind), and — in dashboard mode — drive the operator side through the
dashboard's WebSocket API. It uses only the standard library, so it runs in any venv.

By default the Device Builder runs on ``.venv-standin``, whose ``esphome`` is the
stand-in compiler from ``tests/standin`` (no toolchain downloads; images are written
directly). ``build_files`` reads the receipt the stand-in leaves in the receiver's
build tree, so tests know exactly which images the receiver packed.

Which Device Builder release runs is chosen by the environment (``scripts/interop`` runs
the interop tests once per release this way):

* ``REMOTE_BUILD_BUILDER_VENV=/path/to/venv`` — a venv with
  ``esphome-device-builder[esphome]`` installed;
* ``REMOTE_BUILD_BUILDER_VERSION=1.24.0`` — ``.venv-builder-1.24.0`` in the repo
  (``bash scripts/venv.sh builder 1.24.0`` makes it); the version pinned in
  ``requirements_builder.txt`` is ``.venv-builder`` itself;
* neither — ``.venv-builder`` (what ``scripts/setup`` installs).

The stand-in venv follows the builder venv: ``.venv-standin`` for ``.venv-builder``,
``.venv-standin-1.24.0`` for ``.venv-builder-1.24.0``, ``<venv>-standin`` for any other
venv (or ``REMOTE_BUILD_STANDIN_VENV``). It needs no network, so it is (re)made on demand
by ``scripts/venv.sh standin`` when missing or pointing at another builder venv.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping
from dataclasses import dataclass
import fcntl
import hashlib
import json
import os
from pathlib import Path
import re
import socket
import subprocess
import tempfile
from types import TracebackType
from typing import Any, Self

from tests.support.child_process import ChildProcess, ChildProcessFailedError

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILDER_VENV_ENV = "REMOTE_BUILD_BUILDER_VENV"
BUILDER_VERSION_ENV = "REMOTE_BUILD_BUILDER_VERSION"
STANDIN_VENV_ENV = "REMOTE_BUILD_STANDIN_VENV"
DEFAULT_BUILDER_VENV = REPO_ROOT / ".venv-builder"
BUILDER_REQUIREMENTS = REPO_ROOT / "requirements_builder.txt"
VENV_SCRIPT = REPO_ROOT / "scripts" / "venv.sh"
_PINNED_RE = re.compile(r"^esphome-device-builder(?:\[[^\]]*\])?==(\S+)", re.MULTILINE)
_VERSION_RE = re.compile(r"\d+(?:\.\d+)*(?:[.-]?\w+)?")
_STANDIN_PTH = "builder.pth"
LOOPBACK = "127.0.0.1"
RECEIPT_NAME = "standin-receipt.json"

ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
PIN_RE = re.compile(r"\bpin=([0-9a-f]{64})\b")
PAIRING_KEY_RE = re.compile(r"^\s+([A-Z0-9]{4}(?:-[A-Z0-9]{4}){3})\s*$")
LISTENING_RE = re.compile(r"Remote-build peer-link site listening on \S+?:(\d+)\b")
READY_RE = re.compile(r"Device Builder ready")
HTTP_RE = re.compile(r"Running on http://\S+?:(\d+)\b")
# In headless mode one of these ends start-up: a fresh server opens its pairing window,
# a paired one says so.
HEADLESS_SERVING_RE = re.compile(
    rf"{PAIRING_KEY_RE.pattern}|Remote-build server already paired with"
)

_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_LOG_TAIL_LINES = 60


class RealBuilderError(Exception):
    """The Device Builder did not start, stop or answer as expected (log tail attached)."""


class DashboardCommandError(RealBuilderError):
    """The dashboard answered a WebSocket command with an error message."""

    def __init__(self, command: str, code: str, details: str) -> None:
        super().__init__(f"{command}: {code} {details}".strip())
        self.command = command
        self.code = code
        self.details = details


def pinned_builder_version() -> str | None:
    """The Device Builder version ``requirements_builder.txt`` pins (``.venv-builder``)."""
    try:
        text = BUILDER_REQUIREMENTS.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    match = _PINNED_RE.search(text)
    return None if match is None else match[1]


def standin_venv_for(builder: Path) -> Path:
    """The stand-in venv that belongs to *builder* (the rule ``scripts/venv.sh`` uses)."""
    if builder.name.startswith(".venv-builder"):
        return builder.with_name(".venv-standin" + builder.name.removeprefix(".venv-builder"))
    return builder.with_name(builder.name + "-standin")


def _site_packages(python: Path) -> str:
    return subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()


@dataclass(frozen=True)
class BuilderVenvs:
    """The Device Builder's venv and the stand-in compiler venv that runs on it."""

    builder: Path
    standin: Path

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> BuilderVenvs:
        """Pick the venvs from ``REMOTE_BUILD_BUILDER_VENV``/``_VERSION`` (see module doc)."""
        env = os.environ if environ is None else environ
        venv, version = env.get(BUILDER_VENV_ENV, ""), env.get(BUILDER_VERSION_ENV, "")
        if venv and version:
            raise RealBuilderError(f"set {BUILDER_VENV_ENV} or {BUILDER_VERSION_ENV}, not both")
        if venv:
            builder = Path(venv).expanduser().absolute()
        elif version and version != pinned_builder_version():
            if not _VERSION_RE.fullmatch(version):
                raise RealBuilderError(f"{BUILDER_VERSION_ENV}={version!r} is not a version")
            builder = REPO_ROOT / f".venv-builder-{version}"
        else:
            builder = DEFAULT_BUILDER_VENV
        standin = env.get(STANDIN_VENV_ENV, "")
        return cls(
            builder,
            Path(standin).expanduser().absolute() if standin else standin_venv_for(builder),
        )

    @property
    def python(self) -> Path:
        return self.builder / "bin" / "python"

    @property
    def esphome(self) -> Path:
        return self.builder / "bin" / "esphome"

    @property
    def standin_python(self) -> Path:
        return self.standin / "bin" / "python"

    @property
    def standin_esphome(self) -> Path:
        return self.standin / "bin" / "esphome"

    def how_to_install(self) -> str:
        if self.builder == DEFAULT_BUILDER_VENV:
            return "run scripts/setup"
        if (version := self.builder.name.removeprefix(".venv-builder-")) != self.builder.name:
            release, _, esphome = version.partition("-esphome-")
            args = f"{release} {esphome}".strip()
            spec = f"{release}:{esphome}".rstrip(":")
            return f"run `bash scripts/venv.sh builder {args}` (or scripts/interop {spec})"
        return "install esphome-device-builder[esphome] into it"

    def versions(self) -> dict[str, str]:
        """Installed versions of the Device Builder and of ESPHome, by package name."""
        if not self.python.exists():
            raise RealBuilderError(f"no venv at {self.builder}: {self.how_to_install()}")
        script = (
            "import importlib.metadata as m, json; print(json.dumps({n: m.version(n) for n in "
            "('esphome-device-builder', 'esphome')}))"
        )
        result = subprocess.run(
            [str(self.python), "-c", script],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise RealBuilderError(f"{self.builder}: {result.stderr.strip()}")
        found: dict[str, str] = json.loads(result.stdout)
        return found

    def standin_is_current(self) -> bool:
        """True when the stand-in venv exists and sees this builder venv's packages."""
        if not (self.standin_python.exists() and self.standin_esphome.exists()):
            return False
        pth = Path(_site_packages(self.standin_python)) / _STANDIN_PTH
        try:
            return pth.read_text(encoding="utf-8").strip() == _site_packages(self.python)
        except FileNotFoundError:
            return False

    def ensure(self) -> None:
        """Fail unless the builder venv exists; (re)make its stand-in venv if needed.

        The stand-in venv is made by ``scripts/venv.sh standin`` (no network needed).
        """
        if not self.python.exists():
            raise RealBuilderError(
                f"no Device Builder venv at {self.builder}: {self.how_to_install()}"
            )
        if self.standin_is_current():
            return
        # pytest-xdist workers may get here together: one makes it, the others wait.
        key = hashlib.sha256(str(self.standin).encode()).hexdigest()[:16]
        lock_path = Path(tempfile.gettempdir()) / f"erb-standin-{key}.lock"
        with lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.standin_is_current():
                return
            result = subprocess.run(
                ["bash", str(VENV_SCRIPT), "standin", str(self.builder), str(self.standin)],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        if result.returncode != 0 or not self.standin_is_current():
            raise RealBuilderError(
                f"could not make the stand-in venv {self.standin}: {result.stderr.strip()}"
            )


BUILDER_VENVS = BuilderVenvs.from_environment()
BUILDER_PYTHON = BUILDER_VENVS.python
STANDIN_PYTHON = BUILDER_VENVS.standin_python


def free_port() -> int:
    """Return a TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def strip_ansi(text: str) -> str:
    """Remove colour codes: the Device Builder colours its log even into a pipe."""
    return ANSI_RE.sub("", text)


@dataclass(frozen=True)
class BuiltFile:
    """One file the stand-in compiler wrote into the receiver's build tree."""

    name: str
    path: Path
    offset: str | None
    size: int
    sha256: str

    def read_sha256(self) -> str:
        """Hash the file as it is on disk now (the receipt says what was written)."""
        digest = hashlib.sha256()
        with self.path.open("rb") as src:
            while block := src.read(1 << 20):
                digest.update(block)
        return digest.hexdigest()


@dataclass(frozen=True)
class BuildReceipt:
    """What one stand-in compile produced: firmware first, then flash images in order."""

    device_name: str
    platform: str
    toolchain: str | None
    firmware_offset: str
    build_path: Path
    files: tuple[BuiltFile, ...]

    @classmethod
    def load(cls, path: Path) -> BuildReceipt:
        raw = json.loads(path.read_text(encoding="utf-8"))
        build_path = Path(raw["build_path"])
        return cls(
            device_name=raw["device_name"],
            platform=raw["platform"],
            toolchain=raw["toolchain"],
            firmware_offset=raw["firmware_offset"],
            build_path=build_path,
            files=tuple(
                BuiltFile(
                    name=item["name"],
                    path=build_path / item["path"],
                    offset=item["offset"],
                    size=item["size"],
                    sha256=item["sha256"],
                )
                for item in raw["files"]
            ),
        )

    def file(self, name: str) -> BuiltFile:
        """Return the file called *name* (``firmware.bin``, ``bootloader.bin``, …)."""
        for item in self.files:
            if item.name == name:
                return item
        raise KeyError(name)


def find_receipt(root: Path, device_name: str, *, dir_id: str | None = None) -> BuildReceipt:
    """Find the newest stand-in receipt for *device_name* anywhere under *root*.

    *dir_id* (a ``dashboard_id[:8]``) narrows it to one offloader's build tree.
    """
    candidates = [
        path
        for path in root.rglob(RECEIPT_NAME)
        if (dir_id is None or dir_id in path.parts)
        and json.loads(path.read_text(encoding="utf-8")).get("device_name") == device_name
    ]
    if not candidates:
        raise RealBuilderError(f"no stand-in build of {device_name!r} under {root}")
    return BuildReceipt.load(max(candidates, key=lambda path: path.stat().st_mtime))


class RealBuilder:
    """One Device Builder process on loopback; ``async with`` starts and always stops it.

    ``dashboard=False`` runs it headless (``--remote-build-only``): a fresh config dir
    opens a pairing window and ``pairing_key`` is set. ``dashboard=True`` serves the
    dashboard too (``http_port``; use ``dashboard_client()``) and pairing is approved by
    an operator. ``real_compile=True`` uses the real ``esphome`` instead of the stand-in.
    ``env`` is added to the process environment (e.g. ``ERB_STANDIN_FIRMWARE_BYTES``).
    ``venvs`` picks the Device Builder release (default: ``BUILDER_VENVS``, chosen by the
    environment). The same object can be started again after ``stop()`` (same ports and
    config dir).
    """

    host = LOOPBACK

    def __init__(
        self,
        config_dir: Path,
        *,
        dashboard: bool = False,
        real_compile: bool = False,
        env: Mapping[str, str] | None = None,
        venvs: BuilderVenvs | None = None,
        start_timeout: float = 60.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self.config_dir = config_dir
        self.dashboard = dashboard
        self.venvs = venvs or BUILDER_VENVS
        self.python = self.venvs.python if real_compile else self.venvs.standin_python
        self.env = dict(env or {})
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.port = free_port()
        self.http_port: int | None = free_port() if dashboard else None
        self.pin = ""
        self.pairing_key: str | None = None
        self._child = ChildProcess("Device Builder", clean=strip_ansi)
        self._run_start = 0

    @property
    def log_text(self) -> str:
        """Everything the process logged so far (all runs), colour codes stripped."""
        return "\n".join(self._child.lines)

    @property
    def returncode(self) -> int | None:
        return self._child.returncode

    def argv(self) -> list[str]:
        """The Device Builder command line, as documented by its ``--help``."""
        args = [str(self.python), "-m", "esphome_device_builder"]
        if self.dashboard:
            args += ["--host", self.host, "--port", str(self.http_port), "--trusted-domains", ""]
        else:
            args.append("--remote-build-only")
        args += ["--remote-build-host", self.host, "--remote-build-port", str(self.port)]
        return [*args, "--log-level", "info", str(self.config_dir)]

    async def start(self) -> None:
        """Start the process and return once it serves (pin, port and key known)."""
        if self._child.running:
            raise RealBuilderError("already running")
        if not self.python.exists():
            raise RealBuilderError(f"{self.python} is missing: {self.venvs.how_to_install()}")
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self._run_start = len(self._child.lines)
        self.pin, self.pairing_key = "", None
        await self._child.start(self.argv(), env=self.env)
        try:
            await self._wait_serving()
        except BaseException:
            await self.stop()
            raise

    async def _wait_serving(self) -> None:
        timeout = self.start_timeout
        self.pin = (await self.wait_for_log(PIN_RE, timeout=timeout))[1]
        self.port = int((await self.wait_for_log(LISTENING_RE, timeout=timeout))[1])
        await self.wait_for_log(READY_RE, timeout=timeout)
        if self.dashboard:
            self.http_port = int((await self.wait_for_log(HTTP_RE, timeout=timeout))[1])
        else:
            serving = await self.wait_for_log(HEADLESS_SERVING_RE, timeout=timeout)
            self.pairing_key = serving[1]

    async def wait_for_log(
        self, pattern: str | re.Pattern[str], *, timeout: float = 30.0
    ) -> re.Match[str]:
        """Wait until a line logged since the last start matches *pattern*."""
        try:
            return await self._child.wait_for_line(pattern, timeout=timeout, since=self._run_start)
        except ChildProcessFailedError as err:
            raise RealBuilderError(str(err)) from None

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        return self._child.tail(lines)

    async def stop(self) -> int | None:
        """SIGTERM the process (SIGKILL its group after ``stop_timeout``); return its code."""
        return await self._child.stop(self.stop_timeout)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def dashboard_client(self) -> DashboardClient:
        """A WebSocket client for the dashboard's ``/ws`` API (dashboard mode only)."""
        if self.http_port is None:
            raise RealBuilderError("started without dashboard=True")
        return DashboardClient(self.host, self.http_port)

    def build_files(self, device_name: str, *, dashboard_id: str | None = None) -> BuildReceipt:
        """What the stand-in built for *device_name* in this receiver's build trees.

        The receiver keys each offloader's tree on ``dashboard_id[:8]``; pass the
        offloader's id when several offloaders built the same device.
        """
        dir_id = None if dashboard_id is None else dashboard_id[:8]
        return find_receipt(
            self.config_dir / ".esphome" / ".remote_builds", device_name, dir_id=dir_id
        )


class DashboardClient:
    """Minimal WebSocket client for the Device Builder dashboard's ``/ws`` command API.

    Messages are ``{"command", "message_id", "args"}``; answers carry the same
    ``message_id`` with ``result`` or ``error_code``/``details``. Some state (the pairing
    window) lives as long as the connection, so keep the client open while it matters.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.server_info: dict[str, Any] = {}
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._next_id = 0
        self._receive_task: asyncio.Task[None] | None = None
        self._server_info: asyncio.Future[dict[str, Any]] | None = None

    async def __aenter__(self) -> Self:
        self._server_info = asyncio.get_running_loop().create_future()
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        await self._handshake()
        self._receive_task = asyncio.create_task(self._receive())
        self.server_info = await asyncio.wait_for(self._server_info, 10)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._send_frame(0x8, (1000).to_bytes(2, "big"))
            self._writer.close()
        if self._receive_task is not None:
            self._receive_task.cancel()
            await asyncio.gather(self._receive_task, return_exceptions=True)
        if self._writer is not None:
            await asyncio.gather(self._writer.wait_closed(), return_exceptions=True)

    async def _handshake(self) -> None:
        assert self._reader is not None
        assert self._writer is not None
        key = base64.b64encode(os.urandom(16)).decode()
        self._writer.write(
            (
                f"GET /ws HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        status = (await self._reader.readline()).decode()
        headers: dict[str, str] = {}
        while (line := (await self._reader.readline()).decode().strip()) != "":
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        expected = base64.b64encode(hashlib.sha1((key + _WS_GUID).encode()).digest()).decode()
        if " 101 " not in status or headers.get("sec-websocket-accept") != expected:
            raise RealBuilderError(f"WebSocket upgrade refused: {status.strip()}")

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        """Write one masked frame (clients must mask, RFC 6455 §5.3)."""
        assert self._writer is not None
        size = len(payload)
        head = bytearray([0x80 | opcode])
        if size < 126:
            head.append(0x80 | size)
        elif size < 1 << 16:
            head += bytes([0x80 | 126]) + size.to_bytes(2, "big")
        else:
            head += bytes([0x80 | 127]) + size.to_bytes(8, "big")
        mask = os.urandom(4)
        stream = (mask * (size // 4 + 1))[:size]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(
            size, "big"
        )
        self._writer.write(bytes(head) + mask + masked)

    async def _read_frame(self) -> tuple[bool, int, bytes]:
        assert self._reader is not None
        first, second = await self._reader.readexactly(2)
        size = second & 0x7F
        if size >= 126:
            size = int.from_bytes(await self._reader.readexactly(2 if size == 126 else 8), "big")
        mask = await self._reader.readexactly(4) if second & 0x80 else b""
        payload = await self._reader.readexactly(size)
        if mask:
            payload = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
        return bool(first & 0x80), first & 0x0F, payload

    async def _receive(self) -> None:
        message = b""
        try:
            while True:
                final, opcode, payload = await self._read_frame()
                if opcode == 0x9:
                    self._send_frame(0xA, payload)
                elif opcode == 0x8:
                    break
                elif opcode in (0x0, 0x1, 0x2):
                    message += payload
                    if final:
                        self._dispatch(json.loads(message))
                        message = b""
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            for future in [self._server_info, *self._pending.values()]:
                if future is not None and not future.done():
                    future.set_exception(RealBuilderError("dashboard WebSocket closed"))

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "server_version" in message and self._server_info and not self._server_info.done():
            self._server_info.set_result(message)
        elif "event" in message:
            self.events.put_nowait(message)
        elif (future := self._pending.pop(message.get("message_id", ""), None)) is not None:
            future.set_result(message)

    async def _send_command(
        self,
        command: str,
        args: Mapping[str, Any] | None,
        answer: asyncio.Future[dict[str, Any]] | None = None,
    ) -> None:
        """Send a command; *answer* (if given) receives the reply with its message id."""
        assert self._writer is not None
        self._next_id += 1
        message_id = str(self._next_id)
        if answer is not None:
            self._pending[message_id] = answer
        body = {"command": command, "message_id": message_id, "args": dict(args or {})}
        self._send_frame(0x1, json.dumps(body).encode())
        await self._writer.drain()

    async def command(
        self, command: str, args: Mapping[str, Any] | None = None, *, timeout: float = 30.0
    ) -> Any:
        """Send one command and return its ``result`` (raises ``DashboardCommandError``)."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        await self._send_command(command, args, future)
        answer = await asyncio.wait_for(future, timeout)
        if "error_code" in answer:
            raise DashboardCommandError(
                command, str(answer["error_code"]), str(answer.get("details", ""))
            )
        return answer.get("result")

    async def subscribe_events(self) -> None:
        """Have the dashboard push its events (job and pairing changes) into ``events``.

        The subscription never answers; it lasts as long as this connection.
        """
        await self._send_command("subscribe_events", None)

    async def next_event(self, *names: str, timeout: float = 60.0) -> dict[str, Any]:
        """Return the next pushed event called one of *names*; other events are dropped."""
        async with asyncio.timeout(timeout):
            while (event := await self.events.get())["event"] not in names:
                pass
        return event

    async def set_pairing_window(self, open_window: bool = True) -> dict[str, Any]:
        """Open (or close) the pairing window; it stays open while this client is."""
        result: dict[str, Any] = await self.command(
            "remote_build/set_pairing_window", {"open": open_window}
        )
        return result

    async def get_settings(self) -> dict[str, Any]:
        """Receiver settings, with ``peers`` (``status`` pending/approved, ``connected``)."""
        result: dict[str, Any] = await self.command("remote_build/get_settings")
        return result

    async def approve_peer(self, dashboard_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.command(
            "remote_build/approve_peer", {"dashboard_id": dashboard_id}
        )
        return result

    async def remove_peer(self, dashboard_id: str) -> dict[str, Any]:
        """Unpair an offloader (its sessions are refused from then on)."""
        result: dict[str, Any] = await self.command(
            "remote_build/remove_peer", {"dashboard_id": dashboard_id}
        )
        return result

    async def get_jobs(self, **filters: str) -> list[dict[str, Any]]:
        """The firmware job list (``status=``/``configuration=`` filter it)."""
        result: list[dict[str, Any]] = await self.command("firmware/get_jobs", filters)
        return result
