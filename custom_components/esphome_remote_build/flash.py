"""Flashing a stored build over the air: where to, which image, and what the user sees.

The glue between the build store, the HA-free OTA client and Home Assistant: it turns a
target (an address, or a device of Home Assistant's ``esphome`` integration) into an
address and an encryption key, picks the image that goes over the air, lets one flash
at a time reach a device, reports progress as events and on the build server's
last-job sensor, and translates the client's failures.  Passwords and keys stay in
:class:`FlashTarget` (hidden from its ``repr``) and reach nothing but the OTA client.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
import logging
from typing import Any, Final

from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import ATTR_DEVICE_ID, CONF_HOST, CONF_PASSWORD, CONF_PORT
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import device_registry as dr
from homeassistant.util.hass_dict import HassKey

from .artifacts import Image
from .const import DOMAIN, ESPHOME_DOMAIN, EVENT_FLASH, FlashStatus
from .errors import service_error, translate
from .esphome_devices import EsphomeDevice, device_of_entry
from .link import FlashProgress, RemoteBuildLink
from .ota import (
    OTAError,
    OTAInvalidKeyError,
    OTAType,
    async_flash,
    decode_noise_psk,
    default_ota_port,
)
from .stored_build import StoredBuild
from .verify import (
    Outcome,
    Verification,
    async_announced_config_hash,
    async_verify_device,
)

_LOGGER = logging.getLogger(__name__)

ATTR_ENCRYPTION_KEY: Final = "encryption_key"

# Devices (``host:port``) with a flash running; a second flash is refused, not queued.
_FLASHING: HassKey[set[str]] = HassKey(f"{DOMAIN}_flashing")


class ImageKind(StrEnum):
    """Which image of a build goes over the air (the ``image`` field of ``flash``)."""

    APPLICATION = "application"
    PARTITION_TABLE = "partition_table"
    BOOTLOADER = "bootloader"


# Image kind -> (file names in order of preference, OTA type).  ESP32 PlatformIO builds
# carry ``firmware.ota.bin`` next to ``firmware.bin``; native ESP-IDF builds name the
# partition table ``partition-table.bin``; the factory image (bootloader +
# partitions + app) is for serial flashing and never goes over the air.
_IMAGES: Final[dict[ImageKind, tuple[tuple[str, ...], OTAType]]] = {
    ImageKind.APPLICATION: (("firmware.ota.bin", "firmware.bin"), OTAType.APPLICATION),
    ImageKind.PARTITION_TABLE: (("partitions.bin", "partition-table.bin"), OTAType.PARTITION_TABLE),
    ImageKind.BOOTLOADER: (("bootloader.bin",), OTAType.BOOTLOADER),
}


@dataclass(frozen=True, slots=True)
class FlashTarget:
    """A device to flash, resolved and checked before anything is built or sent."""

    host: str
    #: ``None``: the default port of the build's platform.
    port: int | None
    password: str | None = field(repr=False)
    noise_psk: bytes | None = field(repr=False)
    #: The ``esphome`` entry of a device chosen by ``device_id``: it can verify the flash.
    esphome_entry_id: str | None = None


def resolve_target(hass: HomeAssistant, data: Mapping[str, Any]) -> FlashTarget:
    """Turn the target fields of a call into an address, a password and a key.

    Exactly one of ``host`` and ``device_id``.  A device of the ``esphome`` integration
    lends its address and API encryption key; an explicit ``encryption_key`` wins.
    """
    host: str | None = data.get(CONF_HOST) or None
    device_id: str | None = data.get(ATTR_DEVICE_ID) or None
    device: EsphomeDevice | None = None
    if host is not None and device_id is None:
        device_key = None
    elif device_id is not None and host is None:
        device = esphome_device_by_id(hass, device_id)
        host, device_key = device.host, device.noise_psk
    else:
        raise service_error("flash_target", validation=True)
    key: str | None = data.get(ATTR_ENCRYPTION_KEY) or device_key
    try:
        psk = None if key is None else decode_noise_psk(key)
    except OTAInvalidKeyError as err:
        raise translate(err) from None
    return FlashTarget(
        host,
        data.get(CONF_PORT),
        data.get(CONF_PASSWORD) or None,
        psk,
        device.entry_id if device is not None else None,
    )


def esphome_device_by_id(hass: HomeAssistant, device_id: str) -> EsphomeDevice:
    """Return the ``esphome`` integration's device behind a device registry id."""
    registered = dr.async_get(hass).async_get(device_id)
    if registered is None:
        raise service_error("device_not_found", validation=True, device_id=device_id)
    # A device belongs to one config entry; child devices name theirs too.
    entry = hass.config_entries.async_get_entry(registered.config_entry_id)
    if entry is not None and entry.domain == ESPHOME_DOMAIN and CONF_HOST in entry.data:
        return device_of_entry(hass, entry)
    raise service_error(
        "not_esphome_device",
        validation=True,
        device=registered.name_by_user or registered.name or "",
    )


def select_image(stored: StoredBuild, kind: ImageKind) -> tuple[Image, OTAType]:
    """Pick the stored image that goes over the air as ``kind``."""
    names, ota_type = _IMAGES[kind]
    images = {image.name: image for image in stored.images}
    for name in names:
        if name in images:
            return images[name], ota_type
    raise service_error(
        "image_not_in_build", validation=True, job_id=stored.job_id, image=kind.value
    )


def _port(target: FlashTarget, stored: StoredBuild) -> int:
    if target.port is not None:
        return target.port
    try:
        return default_ota_port(stored.platform)
    except ValueError:
        raise service_error(
            "ota_port_required", validation=True, platform=stored.platform
        ) from None


class _Reporter:
    """Fires the flash events and mirrors them on the build server's last-job sensor."""

    def __init__(
        self,
        hass: HomeAssistant,
        stored: StoredBuild,
        host: str,
        port: int,
        on_progress: Callable[[int], None] | None,
    ) -> None:
        self._hass = hass
        self._on_progress = on_progress
        self._job_id = stored.job_id
        self._host = host
        self._port = port
        self._link = _link_of(hass, stored.server_pin)
        self._status = FlashStatus.STARTED
        self._progress = 0

    @callback
    def report(self, status: FlashStatus, progress: int | None = None) -> None:
        if progress is not None:
            self._progress = progress
        self._status = status
        self._hass.bus.async_fire(
            EVENT_FLASH,
            {
                "job_id": self._job_id,
                "host": self._host,
                "port": self._port,
                "progress": self._progress,
                "status": status.value,
            },
        )
        if self._link is not None:
            self._link.async_set_flash(FlashProgress(self._job_id, self._progress, status))
        if self._on_progress is not None:
            self._on_progress(self._progress)

    @callback
    def on_progress(self, sent: int, total: int) -> None:
        """Report each new whole percent; a retried attempt honestly starts again at 0."""
        percent = sent * 100 // total
        if self._status is not FlashStatus.UPLOADING or percent != self._progress:
            self.report(FlashStatus.UPLOADING, percent)


def _link_of(hass: HomeAssistant, server_pin: str) -> RemoteBuildLink | None:
    """Return the link of the loaded server that built the build, if there is one."""
    entry = hass.config_entries.async_entry_for_domain_unique_id(DOMAIN, server_pin)
    if entry is None or entry.state is not ConfigEntryState.LOADED:
        return None
    link: RemoteBuildLink = entry.runtime_data.link
    return link


async def async_flash_build(
    hass: HomeAssistant,
    stored: StoredBuild,
    target: FlashTarget,
    kind: ImageKind,
    *,
    verify: bool = False,
    node_name: str | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Flash one image of a stored build onto one device and return the action's response.

    With ``verify`` it then waits for the device to prove it runs the build (see
    ``verify.py``) and raises a translated error when it comes back with other firmware
    or not at all.
    """
    image, ota_type = select_image(stored, kind)
    port = _port(target, stored)
    device = f"{target.host.lower()}:{port}"
    flashing = hass.data.setdefault(_FLASHING, set())
    if device in flashing:
        raise service_error("flash_in_progress", host=target.host, port=str(port))
    flashing.add(device)
    try:
        reporter = _Reporter(hass, stored, target.host, port, on_progress)
        reporter.report(FlashStatus.STARTED, 0)
        _LOGGER.info(
            "Flashing %s of build %s to %s port %s", image.name, stored.job_id, target.host, port
        )
        # What the device announces now: only a change after the upload is evidence.
        announced_before = (
            await async_announced_config_hash(hass, node_name or stored.device_name)
            if verify
            else None
        )
        try:
            result = await async_flash(
                target.host,
                port,
                image.path,
                password=target.password,
                noise_psk=target.noise_psk,
                ota_type=ota_type,
                progress=reporter.on_progress,
            )
        except BaseException as err:
            reporter.report(FlashStatus.FAILED)
            if isinstance(err, OTAError):
                raise translate(
                    err, job_id=stored.job_id, host=target.host, port=str(port)
                ) from err
            raise
        reporter.report(FlashStatus.COMPLETED, 100)
        response: dict[str, Any] = {
            "job_id": stored.job_id,
            "host": target.host,
            "port": port,
            "image": image.name,
            "bytes_sent": result.bytes_sent,
            "duration": round(result.duration, 3),
            "compressed": result.compressed,
            "encrypted": result.encrypted,
            "verified": False,
        }
        if verify and ota_type is OTAType.APPLICATION:
            reporter.report(FlashStatus.VERIFYING, 100)
            verification = await async_verify_device(
                hass,
                target.esphome_entry_id,
                node_name or stored.device_name,
                stored.build_info,
                announced_before=announced_before,
            )
            reporter.report(
                FlashStatus.VERIFIED if verification.verified else FlashStatus.NOT_VERIFIED, 100
            )
            _raise_unless_verified(verification, stored, target)
            response |= {
                "verified": verification.verified,
                "verification": verification.outcome.value,
                "evidence": verification.evidence,
            }
    finally:
        flashing.discard(device)
    return response


def _raise_unless_verified(
    verification: Verification, stored: StoredBuild, target: FlashTarget
) -> None:
    """Raise when the device came back with other firmware, or not at all: say which."""
    if verification.outcome is Outcome.OTHER_FIRMWARE:
        raise service_error(
            "not_verified_other_firmware",
            job_id=stored.job_id,
            host=target.host,
            esphome_version=verification.evidence.get("esphome_version", ""),
            compilation_time=verification.evidence.get("compilation_time", ""),
        )
    if verification.outcome is Outcome.NOT_BACK:
        raise service_error("not_verified_not_back", job_id=stored.job_id, host=target.host)
