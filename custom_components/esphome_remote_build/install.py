"""One install on one device: build → download → flash → verify, or reflash a stored build.

The update entity's work, kept apart from the entity so that a rollout (and the tests)
can run the same steps.  Everything the device needs comes from what Home Assistant
already knows: the address and API key from the ``esphome`` entry, the OTA password from
the device's YAML.  Refusals that cost nothing come first (a YAML whose API key would
lock Home Assistant out), the build next, and a verified install is recorded so the next
configuration change is recognised.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
import logging

from homeassistant.core import HomeAssistant

from .artifacts import DeviceConfig
from .configurations import configuration_dir
from .const import BUILD_WAIT_TIMEOUT, DATA_STORE
from .errors import service_error, translated_errors
from .esphome_devices import EsphomeDevice
from .flash import FlashTarget, ImageKind, async_flash_build
from .fleet import Fleet
from .installs import InstallRecord
from .link import RemoteBuildLink
from .ota import OTAInvalidKeyError, decode_noise_psk
from .peerlink import FailureReason, JobStatus, is_valid_esphome_version
from .stored_build import StoredBuild

_LOGGER = logging.getLogger(__name__)

#: Progress of an install: ``None`` while the server compiles, else percent flashed.
type Progress = Callable[[int | None], None]

# A refused value is quoted in the message; a pasted novel is not.
_QUOTE_MAX = 64


@dataclass(frozen=True, slots=True)
class InstallResult:
    """What an install did, as the update entity and the actions report it."""

    job_id: str
    flash: dict[str, object]


def _same_key(left: str | None, right: str | None) -> bool:
    """Compare two base64 keys by their bytes (padding and spelling may differ)."""
    if not left or not right:
        return not left and not right
    try:
        return base64.b64decode(left, validate=True) == base64.b64decode(right, validate=True)
    except (binascii.Error, ValueError):
        return left.strip() == right.strip()


def check_encryption(device: EsphomeDevice, config: DeviceConfig, *, allow_change: bool) -> None:
    """Refuse a build whose API key differs from the one Home Assistant holds.

    Installed, it would lock Home Assistant's ``esphome`` integration out of the device
    (it could no longer decrypt, or the device would no longer encrypt).
    """
    if allow_change or _same_key(config.api_encryption_key, device.noise_psk):
        return
    raise service_error(
        "encryption_key_differs",
        validation=True,
        device=device.title,
        configuration=config.yaml_name,
    )


def device_target(device: EsphomeDevice, config: DeviceConfig | None) -> FlashTarget:
    """Where and how to flash a device: its entry's address and key, its YAML's password."""
    try:
        psk = decode_noise_psk(device.noise_psk) if device.noise_psk else None
    except OTAInvalidKeyError:
        psk = None  # the esphome integration could not use it either; OTA says so
    return FlashTarget(
        host=device.host,
        port=config.ota_port if config is not None else None,
        password=config.ota_password if config is not None else None,
        noise_psk=psk,
        esphome_entry_id=device.entry_id,
    )


def checked_esphome_version(version: str | None) -> str | None:
    """Return the ESPHome version a build asks for, or raise the translated refusal.

    ``None`` or an empty value means the server's own version.  Checked before anything
    is sent: the server would quietly build "as is" with a version it does not understand.
    """
    if version is None or not (version := version.strip()):
        return None
    if not is_valid_esphome_version(version):
        shown = version if len(version) <= _QUOTE_MAX else f"{version[:_QUOTE_MAX]}…"
        raise service_error("invalid_esphome_version", validation=True, esphome_version=shown)
    return version


async def async_build_for(
    hass: HomeAssistant,
    link: RemoteBuildLink,
    config: DeviceConfig,
    progress: Progress,
    *,
    esphome_version: str | None = None,
) -> StoredBuild:
    """Build a configuration on one server (with its ESPHome, or another) and store it."""
    esphome_version = checked_esphome_version(esphome_version)
    progress(None)
    with translated_errors(configuration=config.yaml_name, server=link.title):
        job_id = await link.async_submit(
            configuration_dir(hass), config.yaml_name, esphome_version=esphome_version
        )
    return await async_finish_build(link, job_id, config.yaml_name)


async def async_finish_build(link: RemoteBuildLink, job_id: str, configuration: str) -> StoredBuild:
    """Wait for a submitted job to end, then store its build; a failure says why.

    The message quotes the output's last lines and names the job's build log.
    """
    with translated_errors(job_id=job_id, server=link.title):
        try:
            final = await link.async_wait_for_job(job_id, BUILD_WAIT_TIMEOUT)
        except TimeoutError:
            raise service_error("build_wait_timeout", job_id=job_id) from None
    if final.status is JobStatus.COMPLETED:
        with translated_errors(job_id=job_id, server=link.title):
            return await link.async_download(job_id)
    log = str(await link.async_log(job_id) or "-")
    output = link.failure_reason(final) or "-"
    requested = link.esphome_version_of(job_id)
    if final.status is JobStatus.CANCELLED:
        raise service_error("build_cancelled", job_id=job_id, configuration=configuration, log=log)
    if final.failure_reason == FailureReason.PROVISION and requested is not None:
        raise service_error(
            "esphome_version_unavailable",
            job_id=job_id,
            configuration=configuration,
            esphome_version=requested,
            server=link.title,
            output=output,
            log=log,
        )
    raise service_error(
        "build_failed", job_id=job_id, configuration=configuration, output=output, log=log
    )


async def async_install(
    hass: HomeAssistant,
    fleet: Fleet,
    device: EsphomeDevice,
    config: DeviceConfig,
    progress: Progress,
    *,
    job_id: str | None = None,
    allow_key_change: bool = False,
) -> InstallResult:
    """Install a fresh build (or, with ``job_id``, a stored one) and verify it."""
    check_encryption(device, config, allow_change=allow_key_change)
    if job_id is None:
        stored = await async_build_for(hass, fleet.pick_link(), config, progress)
        fingerprint, files = config.fingerprint, dict(config.files)
    else:
        stored = await async_stored_build_of(hass, device, job_id)
        built_from = fleet.records.built_from(job_id)
        fingerprint, files = built_from if built_from is not None else ("", {})
    if job_id is None:
        fleet.records.remember_build(stored.job_id, fingerprint, files)
    response = await async_flash_build(
        hass,
        stored,
        device_target(device, config),
        ImageKind.APPLICATION,
        verify=True,
        node_name=device.name,
        on_progress=progress,
    )
    if stored.build_info is not None and device.mac is not None:
        await fleet.records.async_set(
            device.mac,
            InstallRecord(
                job_id=stored.job_id,
                configuration=config.yaml_name,
                fingerprint=fingerprint,
                esphome_version=stored.build_info.esphome_version,
                compilation_time=stored.build_info.compilation_time,
                installed_at=datetime.now(UTC).isoformat(),
                files=files,
            ),
        )
    return InstallResult(stored.job_id, response)


async def async_stored_build_of(
    hass: HomeAssistant, device: EsphomeDevice, job_id: str
) -> StoredBuild:
    """Return a stored build of this device, rehashed; refuse another device's build."""
    with translated_errors(job_id=job_id):
        stored = await hass.data[DATA_STORE].async_verify(job_id)
    if stored is None:
        raise service_error("build_not_found", validation=True, job_id=job_id)
    if stored.device_name != device.name:
        raise service_error(
            "build_of_other_device",
            validation=True,
            job_id=job_id,
            device=device.title,
            build_device=stored.device_name,
        )
    return stored
