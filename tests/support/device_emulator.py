"""An emulated ESPHome device on loopback: native API, native OTA, mDNS, reboots.

It is what an update entity needs to prove itself against: after an OTA upload the
device reboots and comes back running *the image it received*, so "did the device really
take the new build?" can be asked the way Home Assistant asks a real one — its native-API
``DeviceInfoResponse`` (``esphome_version``, ``compilation_time``) and the ``config_hash``
of its ``_esphomelib._tcp`` mDNS announcement.

Pieces, each cross-checked against the real thing in ``tests/emulator/``:

* ``tests/support/native_api.py`` — the API server (plaintext and Noise), answered with
  aioesphomeapi's own protobuf classes; aioesphomeapi's ``APIClient`` and Home
  Assistant's ``esphome`` integration talk to it.
* ``tests/support/ota_emulator.py`` — the OTA server, as is (ESPHome's ``espota2`` flashes it).
* python-zeroconf — the mDNS announcement with the TXT records ESPHome 2026.10 sends
  (``components/mdns/mdns_component.cpp``), off unless ``mdns=True``; it needs the
  loopback-only network namespace the suite runs in (``scripts/test``).

A build's identity travels inside the image: the stand-in compiler embeds a
``BuildInfo`` block (``tests/standin/esphome_standin.py``). After a completed application
upload the device shuts down like ``App.safe_reboot()`` (listeners closed, a
``DisconnectRequest`` to every API client, a second for them to leave), stays away for
``reboot_delay`` seconds and boots what it received. An image without a valid block
(or without the ``0xE9`` magic) "fails to boot": the device comes back with the firmware it
had (an ESP32 bootloader rolling back). ``never_returns=True`` keeps it away.

Typical use::

    build = build_info("kitchen", "2026.10.0")           # or a stand-in build's image
    async with DeviceEmulator(name="kitchen", esphome_version="2026.9.1",
                              encryption_key=key) as device:
        # Home Assistant / aioesphomeapi: device.host, device.api_port, device.noise_psk
        await async_flash(device.host, device.ota_port, firmware_image(build),
                          noise_psk=device.noise_psk)
        boot = await device.wait_for_boot(2)             # the reboot after the upload
        assert boot.firmware.compilation_time == build.build_time_str
        assert device.mdns_txt["config_hash"] == f"{build.config_hash:08x}"

No pytest and no Home Assistant here.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Awaitable, Callable, Coroutine
import contextlib
from dataclasses import dataclass, replace
from enum import StrEnum
import hashlib
import random
import socket
import time
from typing import Any, Self

from zeroconf import IPVersion
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from tests.standin.esphome_standin import BUILD_INFO_OFFSET, BuildInfo

from .native_api import (
    APIConfig,
    APIConnectionRecord,
    BinarySensor,
    DeviceInfo,
    Entity,
    NativeAPIServer,
    Sensor,
)
from .ota_emulator import DeviceConfig as OTAConfig, OTADeviceEmulator, SessionRecord

ESPHOMELIB_SERVICE = "_esphomelib._tcp.local."
NOISE_ENCRYPTION = "Noise_NNpsk0_25519_ChaChaPoly_SHA256"
ESP_IMAGE_MAGIC = 0xE9
OTA_TYPE_APPLICATION = 0x00
#: ``platform`` TXT value and ``DeviceInfoResponse.manufacturer`` per platform.
PLATFORMS = {
    "esp32": ("ESP32", "Espressif"),
    "esp8266": ("ESP8266", "Espressif"),
    "rp2040": ("RP2", "Raspberry Pi"),
    "bk72xx": ("BK7231N", "Beken"),
    "rtl87xx": ("RTL8710BN", "Realtek"),
    "ln882x": ("LN882H", "Lightning"),
    "nrf52": ("nRF52", "Nordic Semiconductor"),
}


def format_compilation_time(epoch: float) -> str:
    """``ESPHOME_BUILD_TIME_STR``: ``%Y-%m-%d %H:%M:%S %z`` in local time, as ESPHome writes it."""
    return time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(epoch))


def firmware_image(info: BuildInfo | None, size: int = 48 * 1024, *, seed: int = 0) -> bytes:
    """An application image as the stand-in compiler writes one: ``0xE9``, the build-info
    block at its offset (none for ``info=None``: an image that will not boot), random rest.
    """
    rng = random.Random(seed)
    marker = b"" if info is None else info.marker()
    head = bytes([ESP_IMAGE_MAGIC]) + rng.randbytes(BUILD_INFO_OFFSET - 1) + marker
    return head + rng.randbytes(max(0, size - len(head)))


def build_info(
    name: str = "emulated-device",
    esphome_version: str = "2026.10.0",
    *,
    build_time: float | None = None,
    config_hash: int = 0x0BADC0DE,
    friendly_name: str = "Emulated Device",
    platform: str = "esp32",
    board: str = "esp32dev",
    project_name: str = "",
    project_version: str = "",
) -> BuildInfo:
    """A ``BuildInfo`` as ``build_info.json`` + the configuration would give it."""
    when = int(time.time() if build_time is None else build_time)
    return BuildInfo(
        name=name,
        friendly_name=friendly_name,
        esphome_version=esphome_version,
        config_hash=config_hash,
        build_time=when,
        build_time_str=format_compilation_time(when),
        platform=platform,
        board=board,
        project_name=project_name,
        project_version=project_version,
    )


def decode_key(key: bytes | str | None) -> bytes | None:
    """An API encryption key as 32 raw bytes (accepts the YAML's base64 form)."""
    if key is None or isinstance(key, bytes):
        raw = key
    else:
        try:
            raw = base64.b64decode(key, validate=True)
        except binascii.Error as err:
            raise ValueError("encryption key is not base64") from err
    if raw is not None and len(raw) != 32:
        raise ValueError("an API encryption key has 32 bytes")
    return raw


@dataclass(frozen=True)
class Firmware:
    """What a device runs: the identity its build compiled in."""

    name: str
    friendly_name: str
    esphome_version: str
    #: ``ESPHOME_BUILD_TIME_STR`` (what ``DeviceInfoResponse.compilation_time`` carries).
    compilation_time: str
    #: ``ESPHOME_CONFIG_HASH`` (``None``: announce none, like firmware before the TXT key).
    config_hash: int | None = None
    platform: str = "esp32"
    board: str = "esp32dev"
    project_name: str = ""
    project_version: str = ""

    @property
    def config_hash_hex(self) -> str:
        """As the mDNS TXT record has it: eight lower-case hex digits."""
        return "" if self.config_hash is None else f"{self.config_hash:08x}"

    @classmethod
    def from_build_info(cls, info: BuildInfo) -> Firmware:
        return cls(
            name=info.name,
            friendly_name=info.friendly_name,
            esphome_version=info.esphome_version,
            compilation_time=info.build_time_str,
            config_hash=info.config_hash,
            platform=info.platform or "esp32",
            board=info.board,
            project_name=info.project_name,
            project_version=info.project_version,
        )

    @classmethod
    def from_image(cls, image: bytes) -> Firmware | None:
        """The firmware *image* boots into, or ``None`` if it would not boot."""
        if not image or image[0] != ESP_IMAGE_MAGIC:
            return None
        info = BuildInfo.from_image(image)
        return None if info is None else cls.from_build_info(info)


class DeviceState(StrEnum):
    """Where the device is in its life."""

    OFF = "off"  # before start(), after stop() or power_off()
    ONLINE = "online"
    REBOOTING = "rebooting"
    ASLEEP = "asleep"
    GONE = "gone"  # rebooted after an upload and never came back


@dataclass(frozen=True)
class DeepSleep:
    """A deep-sleep cycle: awake (online) for ``awake`` s, then away for ``asleep`` s."""

    awake: float
    asleep: float


@dataclass
class BootRecord:
    """One boot of the device."""

    index: int
    reason: str  # "power_on", "ota", "wake", "reboot"
    firmware: Firmware
    at: float
    #: The image that was flashed before this boot (OTA boots only).
    image_sha256: str | None = None
    #: The flashed image did not boot; the previous firmware runs again.
    rolled_back: bool = False


@dataclass
class DeviceSpec:
    """How the emulated device is built and behaves."""

    name: str = "emulated-device"
    friendly_name: str = "Emulated Device"
    #: Upper case with colons, as ``DeviceInfoResponse.mac_address`` has it.
    mac: str = "AA:BB:CC:DD:EE:01"
    esphome_version: str = "2026.9.0"
    compilation_time: str = "2026-09-20 12:00:00 +0000"
    config_hash: int | None = 0x1234ABCD
    platform: str = "esp32"
    board: str = "esp32dev"
    project_name: str = ""
    project_version: str = ""
    #: API encryption key from YAML (raw 32 bytes or base64); also the OTA Noise key, as in
    #: ESPHome. Without one the device takes a key set over the API (and keeps it).
    encryption_key: bytes | str | None = None
    #: ``USE_API_NOISE`` compiled in (ESPHome's default).
    api_encryption_supported: bool = True
    ota_password: str | None = None
    #: Extra OTA-server settings and faults (password/key above fill it unless set in it).
    ota: OTAConfig | None = None
    host: str = "127.0.0.1"
    #: 0: an ephemeral port, kept across reboots.
    api_port: int = 0
    ota_port: int = 0
    #: Seconds away during a reboot.
    reboot_delay: float = 0.2
    #: After an upload the device reboots and does not come back.
    never_returns: bool = False
    #: A reboot says goodbye (DisconnectRequest, mDNS goodbye); False: like a power cut.
    clean_shutdown: bool = True
    mdns: bool = False
    package_import_url: str = ""
    network: str = "wifi"
    deep_sleep: DeepSleep | None = None
    #: Entities; ``None``: an uptime sensor and a status binary sensor.
    entities: list[Entity] | None = None
    #: Ask the client for the time after the hello (``time: platform: homeassistant``).
    request_time: bool = False

    def firmware(self) -> Firmware:
        return Firmware(
            name=self.name,
            friendly_name=self.friendly_name,
            esphome_version=self.esphome_version,
            compilation_time=self.compilation_time,
            config_hash=self.config_hash,
            platform=self.platform,
            board=self.board,
            project_name=self.project_name,
            project_version=self.project_version,
        )


def default_entities() -> list[Entity]:
    return [
        Sensor(
            object_id="uptime",
            name="Uptime",
            state=0.0,
            unit_of_measurement="s",
            device_class="duration",
            state_class=3,  # total_increasing
            entity_category=2,  # diagnostic
        ),
        BinarySensor(
            object_id="status",
            name="Status",
            state=True,
            device_class="connectivity",
            entity_category=2,
            is_status_binary_sensor=True,
        ),
    ]


def esphomelib_txt(
    firmware: Firmware,
    *,
    mac: str,
    psk: bytes | None,
    api_encryption_supported: bool = True,
    network: str = "wifi",
    package_import_url: str = "",
) -> dict[str, str]:
    """The ``_esphomelib._tcp`` TXT records, in the firmware's order (ESPHome 2026.10)."""
    txt: dict[str, str] = {}
    if firmware.friendly_name:
        txt["friendly_name"] = firmware.friendly_name
    txt["version"] = firmware.esphome_version
    txt["config_hash"] = firmware.config_hash_hex
    txt["mac"] = mac.replace(":", "").lower()
    platform = PLATFORMS.get(firmware.platform.lower())
    if platform is not None:
        txt["platform"] = platform[0]
    txt["board"] = firmware.board
    txt["network"] = network
    if api_encryption_supported:
        txt["api_encryption" if psk is not None else "api_encryption_supported"] = NOISE_ENCRYPTION
        if psk is None:
            txt["api_provisioning"] = "zero-psk"
    if firmware.project_name:
        txt["project_name"] = firmware.project_name
        txt["project_version"] = firmware.project_version
    if package_import_url:
        txt["package_import_url"] = package_import_url
    if firmware.config_hash is None:
        del txt["config_hash"]
    return txt


class _Announcer:
    """The device's mDNS responder (python-zeroconf on the loopback address)."""

    def __init__(self, host: str) -> None:
        self._zc = AsyncZeroconf(interfaces=[host], ip_version=IPVersion.V4Only)
        self._host = host
        self.info: AsyncServiceInfo | None = None

    async def announce(self, name: str, port: int, txt: dict[str, str]) -> None:
        self.info = AsyncServiceInfo(
            ESPHOMELIB_SERVICE,
            f"{name}.{ESPHOMELIB_SERVICE}",
            port=port,
            properties=dict(txt),
            server=f"{name}.local.",
            addresses=[socket.inet_aton(self._host)],
        )
        await (await self._zc.async_register_service(self.info))

    async def withdraw(self, *, goodbye: bool) -> None:
        info, self.info = self.info, None
        if info is None:
            return
        if goodbye:
            await (await self._zc.async_unregister_service(info))
        else:  # gone without a word: caches keep the records until they expire
            self._zc.zeroconf.registry.async_remove(info)

    async def close(self) -> None:
        await self.withdraw(goodbye=True)
        await self._zc.async_close()


class DeviceEmulator:
    """One emulated ESPHome device; ``async with`` powers it on and off.

    Keyword arguments are ``DeviceSpec`` fields (or pass ``spec``).
    """

    def __init__(self, spec: DeviceSpec | None = None, **options: Any) -> None:
        self.spec = replace(spec or DeviceSpec(), **options)
        self.psk = decode_key(self.spec.encryption_key)
        self.firmware = self.spec.firmware()
        self.entities: list[Entity] = (
            default_entities() if self.spec.entities is None else list(self.spec.entities)
        )
        self.state = DeviceState.OFF
        self.boots: list[BootRecord] = []
        self.ota_sessions: list[SessionRecord] = []
        self.api = NativeAPIServer(self._api_config, host=self.spec.host, port=self.spec.api_port)
        self._ota: OTADeviceEmulator | None = None
        self._ota_port = self.spec.ota_port
        self._announcer: _Announcer | None = None
        self._lifecycle = asyncio.Lock()
        self._changed = asyncio.Condition()
        self._tasks: set[asyncio.Task[None]] = set()
        self._booted_at = time.monotonic()
        self._pending_image: bytes | None = None

    # ----------------------------------------------------------------- what it reports

    @property
    def host(self) -> str:
        return self.spec.host

    @property
    def api_port(self) -> int:
        """The API port (fixed for the device's life once started)."""
        return self.api.port

    @property
    def ota_port(self) -> int:
        return self._ota_port

    @property
    def ota(self) -> OTADeviceEmulator | None:
        """The OTA server of the current boot (``None`` while the device is away)."""
        return self._ota

    @property
    def online(self) -> bool:
        return self.state is DeviceState.ONLINE

    @property
    def noise_psk(self) -> str | None:
        """The API key in the base64 form YAML and Home Assistant use."""
        return None if self.psk is None else base64.b64encode(self.psk).decode()

    @property
    def mac_address(self) -> str:
        return self.spec.mac.upper()

    @property
    def device_info(self) -> DeviceInfo:
        """What ``DeviceInfoResponse`` says right now."""
        fw = self.firmware
        platform = PLATFORMS.get(fw.platform.lower(), ("", "Espressif"))
        return DeviceInfo(
            name=fw.name,
            friendly_name=fw.friendly_name,
            mac_address=self.mac_address,
            esphome_version=fw.esphome_version,
            compilation_time=fw.compilation_time,
            model=fw.board,
            manufacturer=platform[1],
            project_name=fw.project_name,
            project_version=fw.project_version,
            has_deep_sleep=self.spec.deep_sleep is not None,
            api_encryption_supported=self.spec.api_encryption_supported,
            api_encryption_provisionable=self.spec.api_encryption_supported and self.psk is None,
        )

    @property
    def mdns_txt(self) -> dict[str, str]:
        """The TXT records the device announces (whether or not mDNS is on)."""
        return esphomelib_txt(
            self.firmware,
            mac=self.mac_address,
            psk=self.psk,
            api_encryption_supported=self.spec.api_encryption_supported,
            network=self.spec.network,
            package_import_url=self.spec.package_import_url,
        )

    @property
    def api_connections(self) -> list[APIConnectionRecord]:
        return self.api.records

    def entity(self, object_id: str) -> Entity:
        for entity in self.entities:
            if entity.object_id == object_id:
                return entity
        raise KeyError(object_id)

    def set_state(self, object_id: str, state: float | bool | None) -> None:
        """Change an entity's state and push it to subscribed API clients."""
        entity = self.entity(object_id)
        if isinstance(entity, Sensor):
            entity.state = None if state is None else float(state)
        else:
            entity.state = None if state is None else bool(state)
        self.api.publish(entity)

    # ----------------------------------------------------------------- waiting

    async def wait_for_boot(self, count: int, timeout: float = 15.0) -> BootRecord:
        """Wait until the device has booted *count* times (1 = power on) and is online."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(self.boots) >= count and self.online)
        return self.boots[count - 1]

    async def wait_for_state(self, state: DeviceState, timeout: float = 15.0) -> None:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: self.state is state)

    async def wait_for_ota(self, count: int = 1, timeout: float = 15.0) -> list[SessionRecord]:
        """Return the OTA sessions once *count* have finished (across reboots)."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(self.ota_sessions) >= count)
        return self.ota_sessions[:count]

    async def _set_state(self, state: DeviceState) -> None:
        self.state = state
        async with self._changed:
            self._changed.notify_all()

    # ----------------------------------------------------------------- power

    async def start(self) -> None:
        """Power on (first boot with the spec's firmware)."""
        if self.spec.mdns:
            self._announcer = _Announcer(self.spec.host)
        async with self._lifecycle:
            await self._boot("power_on")
        if self.spec.deep_sleep is not None:
            self._spawn(self._sleep_cycle(self.spec.deep_sleep))

    async def stop(self) -> None:
        """Power off for good and release everything: API and OTA connections drop at
        once; the mDNS service does say goodbye, so no other browser keeps its record.
        """
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._announcer is not None:  # goodbye, so no browser keeps a stale record
            await self._announcer.close()
            self._announcer = None
        await self._shutdown(clean=False)
        await self._set_state(DeviceState.OFF)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def reboot(self, *, delay: float | None = None, clean: bool = True) -> BootRecord:
        """Reboot now (same firmware) and return the new boot once online."""
        async with self._lifecycle:
            await self._shutdown(clean=clean)
            await self._set_state(DeviceState.REBOOTING)
            await asyncio.sleep(self.spec.reboot_delay if delay is None else delay)
            return await self._boot("reboot")

    async def power_off(self) -> None:
        """Cut the power: everything drops at once, the device stays off."""
        async with self._lifecycle:
            await self._shutdown(clean=False)
            await self._set_state(DeviceState.OFF)

    async def power_on(self) -> BootRecord:
        """Power on again after ``power_off``, or bring back a device that was ``GONE``
        (it boots the image it received before it went away).
        """
        async with self._lifecycle:
            image, self._pending_image = self._pending_image, None
            return await self._boot("power_on", image)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _boot(self, reason: str, image: bytes | None = None) -> BootRecord:
        record = BootRecord(len(self.boots), reason, self.firmware, time.time())
        if image is not None:
            record.image_sha256 = hashlib.sha256(image).hexdigest()
            flashed = Firmware.from_image(image)
            if flashed is None:
                record.rolled_back = True
            else:
                self.firmware = record.firmware = flashed
        self._booted_at = time.monotonic()
        await self.api.start()
        ota_config = self._ota_config()
        self._ota = OTADeviceEmulator(
            ota_config, host=self.spec.host, port=self._ota_port, on_session=self._on_ota_session
        )
        await _retry_bind(self._ota.start)
        self._ota_port = self._ota.port
        if self._announcer is not None:
            await self._announcer.announce(self.firmware.name, self.api.port, self.mdns_txt)
        self.boots.append(record)
        await self._set_state(DeviceState.ONLINE)
        return record

    async def _shutdown(self, *, clean: bool) -> None:
        """``App.safe_reboot()`` (clean) or a power cut: everything goes away."""
        if self._announcer is not None:
            await self._announcer.withdraw(goodbye=clean)
        ota, self._ota = self._ota, None
        if ota is not None:
            await ota.stop()
        await self.api.stop(clean=clean)

    def _ota_config(self) -> OTAConfig:
        config = self.spec.ota or OTAConfig()
        if config.password is None and self.spec.ota_password is not None:
            config = replace(config, password=self.spec.ota_password)
        if config.noise_psk is None and self.psk is not None:
            config = replace(config, noise_psk=self.psk)
        return config

    def _api_config(self) -> APIConfig:
        uptime = time.monotonic() - self._booted_at
        for entity in self.entities:
            if isinstance(entity, Sensor) and entity.object_id == "uptime":
                entity.state = round(uptime, 1)
        return APIConfig(
            info=self.device_info,
            entities=self.entities,
            psk=self.psk,
            request_time=self.spec.request_time,
            set_key=None if self.spec.encryption_key is not None else self._set_key,
        )

    def _set_key(self, psk: bytes | None) -> bool:
        """A key provisioned over the API: API sessions, OTA and mDNS use it from now on."""
        self.psk = psk
        if self._ota is not None:
            self._ota.config = replace(self._ota.config, noise_psk=psk)
        return True

    # ----------------------------------------------------------------- OTA reboot

    def _on_ota_session(self, record: SessionRecord) -> None:
        self.ota_sessions.append(record)
        self._spawn(self._notify())
        if record.completed and record.image is not None:
            self._spawn(self._after_upload(record))

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _after_upload(self, record: SessionRecord) -> None:
        """The firmware's ``App.safe_reboot()`` after ``UPDATE_END_OK``, then the boot."""
        ota = self._ota
        if ota is not None:  # let the OTA handler finish its bookkeeping first
            with contextlib.suppress(TimeoutError):
                await ota.wait_for_sessions(record.index + 1, timeout=5.0)
        application = record.ota_type in (None, OTA_TYPE_APPLICATION)
        async with self._lifecycle:
            # A partition-table upload reboots through App.reboot(): no goodbyes.
            await self._shutdown(clean=self.spec.clean_shutdown and application)
            if self.spec.never_returns:
                self._pending_image = record.image if application else None
                await self._set_state(DeviceState.GONE)
                return
            await self._set_state(DeviceState.REBOOTING)
            await asyncio.sleep(self.spec.reboot_delay)
            assert record.image is not None
            await self._boot("ota", record.image if application else None)

    # ----------------------------------------------------------------- deep sleep

    async def _sleep_cycle(self, cycle: DeepSleep) -> None:
        while True:
            async with self._changed:
                await self._changed.wait_for(lambda: self.online)
            boots = len(self.boots)
            await asyncio.sleep(max(0.0, cycle.awake - (time.monotonic() - self._booted_at)))
            async with self._lifecycle:
                if len(self.boots) != boots or not self.online:
                    continue  # rebooted or switched off meanwhile: a fresh awake period
                await self._shutdown(clean=self.spec.clean_shutdown)
                await self._set_state(DeviceState.ASLEEP)
                await asyncio.sleep(cycle.asleep)
                await self._boot("wake")


async def _retry_bind(start: Callable[[], Awaitable[None]], attempts: int = 50) -> None:
    """Call ``start()`` until the port (held for a moment after a restart) is free."""
    for attempt in range(attempts):
        try:
            await start()
        except OSError:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.02)
        else:
            return


__all__ = [
    "ESPHOMELIB_SERVICE",
    "NOISE_ENCRYPTION",
    "BinarySensor",
    "BootRecord",
    "BuildInfo",
    "DeepSleep",
    "DeviceEmulator",
    "DeviceSpec",
    "DeviceState",
    "Firmware",
    "Sensor",
    "build_info",
    "esphomelib_txt",
    "firmware_image",
    "format_compilation_time",
]
