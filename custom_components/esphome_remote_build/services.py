"""The integration's actions: validate the call, ask the link or the store, translate.

Registered once in ``async_setup`` so they exist (and explain themselves) even while no
server is loaded.  Every failure leaves as a translated ``ServiceValidationError`` (the
caller asked for something impossible) or ``HomeAssistantError`` (the server or the
network failed) — responses only ever carry results.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import replace
from functools import partial
from typing import Any

from homeassistant.const import (
    ATTR_CONFIG_ENTRY_ID,
    ATTR_DEVICE_ID,
    CONF_HOST,
    CONF_PASSWORD,
    CONF_PORT,
)
from homeassistant.core import HomeAssistant, ServiceCall, ServiceResponse, SupportsResponse
from homeassistant.helpers import config_validation as cv, service
import probatio

from .configurations import check_configuration, configuration_dir
from .const import (
    CLEAN_WAIT_TIMEOUT,
    DATA_STORE,
    DOMAIN,
    KEEP_LAST_MAX,
    KEEP_LAST_MIN,
)
from .errors import service_error, translated_errors
from .esphome_devices import esphome_device
from .flash import (
    ATTR_ENCRYPTION_KEY,
    FlashTarget,
    ImageKind,
    async_flash_build,
    resolve_target,
)
from .fleet import async_get_fleet
from .install import async_finish_build, checked_esphome_version
from .link import RemoteBuildConfigEntry, RemoteBuildLink
from .peerlink import JobStatus, is_valid_job_id
from .stored_build import StoredBuild

SERVICE_SUBMIT_BUILD = "submit_build"
SERVICE_DOWNLOAD_ARTIFACTS = "download_artifacts"
SERVICE_CANCEL_BUILD = "cancel_build"
SERVICE_DELETE_ARTIFACTS = "delete_artifacts"
SERVICE_FLASH = "flash"
SERVICE_CLEAN_BUILD_ENVIRONMENT = "clean_build_environment"

ATTR_CONFIGURATION = "configuration"
ATTR_WAIT = "wait"
ATTR_JOB_ID = "job_id"
ATTR_KEEP_LAST = "keep_last"
ATTR_DEVICE_NAME = "device_name"
ATTR_FLASH = "flash"
ATTR_IMAGE = "image"
ATTR_VERIFY = "verify"
ATTR_ESPHOME_VERSION = "esphome_version"
ATTR_LOG = "log"

# A refused value is quoted in the message; a pasted novel is not.
_QUOTE_MAX = 64

# Where a flash goes: exactly one of host / device_id, checked by ``resolve_target`` so
# that a wrong combination is a translated error, not a bare schema error.
FLASH_TARGET_FIELDS: dict[probatio.Marker, Any] = {
    probatio.Optional(CONF_HOST): cv.string,
    probatio.Optional(CONF_PORT): cv.port,
    probatio.Optional(CONF_PASSWORD): cv.string,
    probatio.Optional(ATTR_ENCRYPTION_KEY): cv.string,
    probatio.Optional(ATTR_DEVICE_ID): cv.string,
}

SUBMIT_BUILD_SCHEMA = probatio.Schema(
    {
        probatio.Required(ATTR_CONFIG_ENTRY_ID): cv.string,
        probatio.Required(ATTR_CONFIGURATION): cv.string,
        probatio.Optional(ATTR_WAIT, default=False): cv.boolean,
        probatio.Optional(ATTR_FLASH): probatio.Schema(FLASH_TARGET_FIELDS),
        probatio.Optional(ATTR_ESPHOME_VERSION): cv.string,
    }
)
CLEAN_BUILD_ENVIRONMENT_SCHEMA = probatio.Schema(
    {
        probatio.Required(ATTR_CONFIG_ENTRY_ID): cv.string,
        probatio.Optional(ATTR_WAIT, default=False): cv.boolean,
    }
)
FLASH_SCHEMA = probatio.Schema(
    {
        probatio.Required(ATTR_JOB_ID): cv.string,
        probatio.Optional(ATTR_VERIFY): cv.boolean,
        probatio.Optional(ATTR_IMAGE, default=ImageKind.APPLICATION): probatio.Coerce(ImageKind),
        **FLASH_TARGET_FIELDS,
    }
)
JOB_SCHEMA = probatio.Schema(
    {
        probatio.Required(ATTR_CONFIG_ENTRY_ID): cv.string,
        probatio.Required(ATTR_JOB_ID): cv.string,
    }
)
DELETE_ARTIFACTS_SCHEMA = probatio.Schema(
    {
        probatio.Optional(ATTR_JOB_ID): cv.string,
        probatio.Optional(ATTR_KEEP_LAST): probatio.All(
            probatio.Coerce(int), probatio.Range(min=KEEP_LAST_MIN, max=KEEP_LAST_MAX)
        ),
        probatio.Optional(ATTR_DEVICE_NAME): cv.string,
    }
)

type _Handler = Callable[[HomeAssistant, ServiceCall], Coroutine[Any, Any, ServiceResponse]]


def quoted(value: str) -> str:
    """Cut a value the caller gave to a length a message can show."""
    return value if len(value) <= _QUOTE_MAX else f"{value[:_QUOTE_MAX]}…"


def checked_job_id(value: str) -> str:
    """Return a job id of the one valid shape, or raise the translated refusal.

    Checked before anything is sent or opened: a job id travels to the server and names
    a folder of the store.
    """
    if not is_valid_job_id(value):
        raise service_error("invalid_job_id", validation=True, job_id=quoted(value))
    return value


def _loaded_entry(hass: HomeAssistant, call: ServiceCall) -> RemoteBuildConfigEntry:
    entry: RemoteBuildConfigEntry = service.async_get_config_entry(
        hass, DOMAIN, call.data[ATTR_CONFIG_ENTRY_ID]
    )
    return entry


async def async_download_build(entry: RemoteBuildConfigEntry, job_id: str) -> StoredBuild:
    """Download (or find) a build of one server's job."""
    with translated_errors(job_id=job_id, server=entry.title):
        return await entry.runtime_data.link.async_download(job_id)


async def _build_response(link: RemoteBuildLink, stored: StoredBuild) -> dict[str, Any]:
    """Shape a stored build as a response that names its build log (``None``: no log)."""
    log = await link.async_log(stored.job_id)
    return {**stored.as_response(), ATTR_LOG: str(log) if log is not None else None}


async def _async_submit_build(hass: HomeAssistant, call: ServiceCall) -> ServiceResponse:
    entry = _loaded_entry(hass, call)
    link = entry.runtime_data.link
    name: str = call.data[ATTR_CONFIGURATION]
    esphome_version = checked_esphome_version(call.data.get(ATTR_ESPHOME_VERSION))
    # A flash target is checked before the build: a typo should not cost a compile.
    target: FlashTarget | None = None
    if ATTR_FLASH in call.data:
        target = resolve_target(hass, call.data[ATTR_FLASH])
    config_dir = configuration_dir(hass)
    await hass.async_add_executor_job(check_configuration, config_dir, name)
    with translated_errors(configuration=quoted(name), server=entry.title):
        job_id = await link.async_submit(config_dir, name, esphome_version=esphome_version)
    if not call.data[ATTR_WAIT] and target is None:
        status = link.job_status(job_id) or JobStatus.QUEUED
        return {"job_id": job_id, "status": status.value}
    stored = await async_finish_build(link, job_id, name)
    response = {**await _build_response(link, stored), "status": JobStatus.COMPLETED.value}
    if target is not None:
        response[ATTR_FLASH] = await async_flash_build(hass, stored, target, ImageKind.APPLICATION)
    return response


async def _async_download_artifacts(hass: HomeAssistant, call: ServiceCall) -> ServiceResponse:
    entry = _loaded_entry(hass, call)
    stored = await async_download_build(entry, checked_job_id(call.data[ATTR_JOB_ID]))
    return await _build_response(entry.runtime_data.link, stored)


async def _async_cancel_build(hass: HomeAssistant, call: ServiceCall) -> ServiceResponse:
    entry = _loaded_entry(hass, call)
    link = entry.runtime_data.link
    job_id = checked_job_id(call.data[ATTR_JOB_ID])
    with translated_errors(job_id=job_id, server=entry.title):
        await link.async_cancel(job_id)
    # Cancelling is fire-and-forget on the wire; the outcome arrives as a job event.
    status = link.job_status(job_id)
    return {"job_id": job_id, "status": status.value if status is not None else None}


async def _async_clean_build_environment(hass: HomeAssistant, call: ServiceCall) -> ServiceResponse:
    entry = _loaded_entry(hass, call)
    link = entry.runtime_data.link
    with translated_errors(server=entry.title):
        job_id = await link.async_clean_build_environment()
    if not call.data[ATTR_WAIT]:
        status = link.job_status(job_id) or JobStatus.QUEUED
        return {"job_id": job_id, "status": status.value}
    with translated_errors(job_id=job_id, server=entry.title):
        try:
            final = await link.async_wait_for_job(job_id, CLEAN_WAIT_TIMEOUT)
        except TimeoutError:
            raise service_error("clean_wait_timeout", job_id=job_id, server=entry.title) from None
    log = await link.async_log(job_id)
    if final.status is not JobStatus.COMPLETED:
        raise service_error(
            "clean_failed",
            job_id=job_id,
            server=entry.title,
            output=link.failure_reason(final) or final.status.value,
            log=str(log or "-"),
        )
    return {
        "job_id": job_id,
        "status": final.status.value,
        ATTR_LOG: str(log) if log is not None else None,
    }


async def _async_delete_artifacts(hass: HomeAssistant, call: ServiceCall) -> ServiceResponse:
    store = hass.data[DATA_STORE]
    job_id: str | None = call.data.get(ATTR_JOB_ID)
    keep_last: int | None = call.data.get(ATTR_KEEP_LAST)
    if keep_last is not None and job_id is None:
        device_name: str | None = call.data.get(ATTR_DEVICE_NAME)
        with translated_errors():
            return {"deleted": [*await store.async_keep_last(keep_last, device_name)]}
    if job_id is not None and keep_last is None:
        job_id = checked_job_id(job_id)
        with translated_errors(job_id=job_id):
            deleted = await store.async_delete(job_id)
        if deleted:
            return {"deleted": [job_id]}
        raise service_error("build_not_found", validation=True, job_id=job_id)
    raise service_error("delete_target", validation=True)


async def _async_flash(hass: HomeAssistant, call: ServiceCall) -> ServiceResponse:
    job_id = checked_job_id(call.data[ATTR_JOB_ID])
    target = resolve_target(hass, call.data)
    node_name: str | None = None
    if target.esphome_entry_id is not None:
        # A device of the esphome integration: its YAML knows the OTA password.
        fleet = await async_get_fleet(hass)
        if (device := esphome_device(hass, target.esphome_entry_id)) is not None:
            node_name = device.name
            config = fleet.config_for(device)
            if config is not None:
                target = replace(
                    target,
                    password=target.password or config.ota_password,
                    port=target.port or config.ota_port,
                )
    with translated_errors(job_id=job_id):
        # Rehash the images: whatever sat on disk since the download must still be the build.
        stored = await hass.data[DATA_STORE].async_verify(job_id)
    if stored is None:
        raise service_error("build_not_found", validation=True, job_id=job_id)
    verify: bool = call.data.get(ATTR_VERIFY, target.esphome_entry_id is not None)
    return await async_flash_build(
        hass, stored, target, call.data[ATTR_IMAGE], verify=verify, node_name=node_name
    )


def async_setup_services(hass: HomeAssistant) -> None:
    """Register the actions of the integration."""
    handlers: dict[str, tuple[_Handler, probatio.Schema]] = {
        SERVICE_SUBMIT_BUILD: (_async_submit_build, SUBMIT_BUILD_SCHEMA),
        SERVICE_DOWNLOAD_ARTIFACTS: (_async_download_artifacts, JOB_SCHEMA),
        SERVICE_CANCEL_BUILD: (_async_cancel_build, JOB_SCHEMA),
        SERVICE_DELETE_ARTIFACTS: (_async_delete_artifacts, DELETE_ARTIFACTS_SCHEMA),
        SERVICE_FLASH: (_async_flash, FLASH_SCHEMA),
        SERVICE_CLEAN_BUILD_ENVIRONMENT: (
            _async_clean_build_environment,
            CLEAN_BUILD_ENVIRONMENT_SCHEMA,
        ),
    }
    for name, (handler, schema) in handlers.items():
        hass.services.async_register(
            DOMAIN,
            name,
            partial(handler, hass),
            schema=schema,
            supports_response=SupportsResponse.OPTIONAL,
        )
