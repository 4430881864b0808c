"""The integration's actions: validate the call, call the libraries, translate their errors.

Registered once in ``async_setup`` so they exist (and explain themselves) even while no
server is loaded.  Every failure leaves as a translated ``ServiceValidationError`` (the
caller asked for something impossible) or ``HomeAssistantError`` (the server or the
network failed) — responses only ever carry results.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
import secrets
from typing import Any

from homeassistant.const import (
    ATTR_CONFIG_ENTRY_ID,
    ATTR_DEVICE_ID,
    CONF_HOST,
    CONF_PASSWORD,
    CONF_PORT,
)
from homeassistant.core import HomeAssistant, ServiceCall, ServiceResponse, SupportsResponse
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import config_validation as cv, service
from homeassistant.util.hass_dict import HassKey
import probatio

from .artifacts import ArtifactsError, BundleError, write_config_bundle
from .const import (
    BUILD_WAIT_TIMEOUT,
    CONF_KEEP_LAST,
    CONF_PIN,
    DEFAULT_KEEP_LAST,
    DOMAIN,
    DOWNLOAD_GAP_TIMEOUT,
    DOWNLOAD_TIMEOUT,
    ESPHOME_CONFIG_FOLDER,
    KEEP_LAST_MAX,
    KEEP_LAST_MIN,
)
from .errors import service_error
from .flash import (
    ATTR_ENCRYPTION_KEY,
    FlashTarget,
    ImageKind,
    async_flash_build,
    resolve_target,
)
from .link import RemoteBuildConfigEntry, RemoteBuildLink
from .peerlink import (
    CannotConnectError,
    DownloadBusyError,
    DownloadError,
    DownloadIntegrityError,
    DownloadRejectedError,
    DownloadTimeoutError,
    JobNotCompletedError,
    JobStatus,
    NotConnectedError,
    NotPairedError,
    PeerLinkError,
    PinMismatchError,
    ProtocolError,
    SessionLostError,
    SubmitRejectedError,
    SubmitTimeoutError,
    UnknownJobError,
)
from .store import BuildStore, InvalidJobIdError, StoredBuild, StoreError

DATA_STORE: HassKey[BuildStore] = HassKey(f"{DOMAIN}_store")

SERVICE_SUBMIT_BUILD = "submit_build"
SERVICE_DOWNLOAD_ARTIFACTS = "download_artifacts"
SERVICE_CANCEL_BUILD = "cancel_build"
SERVICE_DELETE_ARTIFACTS = "delete_artifacts"
SERVICE_FLASH = "flash"

ATTR_CONFIGURATION = "configuration"
ATTR_WAIT = "wait"
ATTR_JOB_ID = "job_id"
ATTR_KEEP_LAST = "keep_last"
ATTR_DEVICE_NAME = "device_name"
ATTR_FLASH = "flash"
ATTR_IMAGE = "image"

_YAML_SUFFIXES = frozenset({".yaml", ".yml"})

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
    }
)
FLASH_SCHEMA = probatio.Schema(
    {
        probatio.Required(ATTR_JOB_ID): cv.string,
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

# Library failure -> (translation key, is it the caller's fault?).  Most specific first:
# the first matching class wins.
_FAILURES: tuple[tuple[type[Exception], str, bool], ...] = (
    (UnknownJobError, "unknown_job", True),
    (JobNotCompletedError, "job_not_completed", True),
    (DownloadBusyError, "download_busy", False),
    (DownloadRejectedError, "download_rejected", False),
    (DownloadIntegrityError, "download_integrity", False),
    (DownloadTimeoutError, "download_timeout", False),
    (DownloadError, "download_failed", False),
    (SubmitRejectedError, "submit_rejected", False),
    (SubmitTimeoutError, "submit_timeout", False),
    (NotConnectedError, "not_connected", False),
    (SessionLostError, "session_lost", False),
    (NotPairedError, "not_paired", False),
    (PinMismatchError, "not_paired", False),
    (CannotConnectError, "cannot_connect", False),
    (ProtocolError, "protocol_error", False),
    (PeerLinkError, "peer_link_failed", False),
    (BundleError, "bundle_failed", True),
    (ArtifactsError, "invalid_artifacts", False),
    (InvalidJobIdError, "invalid_job_id", True),
    (StoreError, "store_failed", False),
)
_MAPPED = (PeerLinkError, ArtifactsError, StoreError)

type _Handler = Callable[[HomeAssistant, ServiceCall], Coroutine[Any, Any, ServiceResponse]]


def translate_error(err: Exception) -> HomeAssistantError:
    """Turn a library exception into the translated error a caller sees."""
    key, validation = next((k, v) for kind, k, v in _FAILURES if isinstance(err, kind))
    return service_error(
        key, validation=validation, reason=getattr(err, "reason", ""), error=str(err)
    )


@contextmanager
def _translated_errors() -> Iterator[None]:
    try:
        yield
    except _MAPPED as err:
        raise translate_error(err) from err


def check_configuration(config_dir: Path, name: str) -> None:
    """Refuse any name but a plain device YAML directly inside ``config_dir``.

    Blocking (resolves symlinks).  The name travels to the build server and picks the
    files we bundle, so nothing may escape the folder: no paths, no ``..``, no link that
    points elsewhere, and never the shared ``secrets.yaml``.
    """
    candidate = Path(name)
    if (
        candidate.name != name
        or "\\" in name
        or "\x00" in name
        or candidate.suffix.lower() not in _YAML_SUFFIXES
        or candidate.stem in {"", ".", ".."}
        or candidate.stem.lower() == "secrets"
    ):
        raise service_error("invalid_configuration", validation=True, configuration=name)
    try:
        real = (config_dir / name).resolve(strict=True)
    except OSError:
        raise service_error(
            "configuration_not_found", validation=True, configuration=name
        ) from None
    if real.parent != config_dir.resolve():
        raise service_error("configuration_outside", validation=True, configuration=name)
    if not real.is_file():
        raise service_error("configuration_not_found", validation=True, configuration=name)


def _loaded_entry(hass: HomeAssistant, call: ServiceCall) -> RemoteBuildConfigEntry:
    entry: RemoteBuildConfigEntry = service.async_get_config_entry(
        hass, DOMAIN, call.data[ATTR_CONFIG_ENTRY_ID]
    )
    return entry


async def _async_remove(hass: HomeAssistant, path: Path) -> None:
    await hass.async_add_executor_job(partial(path.unlink, missing_ok=True))


async def async_download_build(
    hass: HomeAssistant, entry: RemoteBuildConfigEntry, job_id: str
) -> StoredBuild:
    """Return the stored build of ``job_id``, downloading and storing it first if needed.

    Raises library exceptions; callers translate them.
    """
    link, store = entry.runtime_data.link, entry.runtime_data.store
    async with link.download_lock:
        if (stored := await store.async_get(job_id)) is not None:
            return stored
        await link.async_wait_connected()
        tarball = store.tmp_dir() / f"{job_id}.tar.gz"
        try:
            result = await link.client.download_artifacts(
                job_id, tarball, timeout=DOWNLOAD_TIMEOUT, chunk_timeout=DOWNLOAD_GAP_TIMEOUT
            )
            stored = await store.async_commit(
                job_id=job_id,
                tarball=result.path,
                firmware_offset=result.firmware_offset,
                artifacts_sha256=result.sha256,
                server_pin=entry.data[CONF_PIN],
                configuration=link.configuration_of(job_id) or "",
            )
        finally:
            await _async_remove(hass, tarball)
    await store.async_keep_last(
        entry.options.get(CONF_KEEP_LAST, DEFAULT_KEEP_LAST), stored.device_name
    )
    return stored


async def _async_upload(
    hass: HomeAssistant, link: RemoteBuildLink, store: BuildStore, config_dir: Path, name: str
) -> str:
    """Bundle the configuration off the loop, submit it, and always drop the bundle."""
    bundle = store.tmp_dir() / f"bundle-{secrets.token_hex(8)}.tar.gz"
    try:
        await hass.async_add_executor_job(write_config_bundle, config_dir, name, bundle)
        return await link.async_submit(bundle, name)
    finally:
        await _async_remove(hass, bundle)


def _status(link: RemoteBuildLink, job_id: str) -> str | None:
    known = link.client.jobs.get(job_id)
    return known.status.value if known is not None else None


async def _async_submit_build(hass: HomeAssistant, call: ServiceCall) -> ServiceResponse:
    entry = _loaded_entry(hass, call)
    link, store = entry.runtime_data.link, entry.runtime_data.store
    name: str = call.data[ATTR_CONFIGURATION]
    # A flash target is checked before the build: a typo should not cost a compile.
    target: FlashTarget | None = None
    if ATTR_FLASH in call.data:
        target = resolve_target(hass, call.data[ATTR_FLASH])
    config_dir = Path(hass.config.path(ESPHOME_CONFIG_FOLDER))
    await hass.async_add_executor_job(check_configuration, config_dir, name)
    with _translated_errors():
        await link.async_wait_connected()
        job_id = await _async_upload(hass, link, store, config_dir, name)
    if not call.data[ATTR_WAIT] and target is None:
        return {"job_id": job_id, "status": _status(link, job_id) or JobStatus.QUEUED.value}
    with _translated_errors():
        try:
            final = await link.client.wait_for_job(job_id, BUILD_WAIT_TIMEOUT)
        except TimeoutError:
            raise service_error("build_wait_timeout", job_id=job_id) from None
        if final.status is not JobStatus.COMPLETED:
            raise service_error(
                "build_failed",
                job_id=job_id,
                status=final.status.value,
                error_message=link.failure_reason(final),
            )
        stored = await async_download_build(hass, entry, job_id)
    response: dict[str, Any] = {**stored.as_response(), "status": final.status.value}
    if target is not None:
        response[ATTR_FLASH] = await async_flash_build(hass, stored, target, ImageKind.APPLICATION)
    return response


async def _async_download_artifacts(hass: HomeAssistant, call: ServiceCall) -> ServiceResponse:
    entry = _loaded_entry(hass, call)
    with _translated_errors():
        stored = await async_download_build(hass, entry, call.data[ATTR_JOB_ID])
    return stored.as_response()


async def _async_cancel_build(hass: HomeAssistant, call: ServiceCall) -> ServiceResponse:
    entry = _loaded_entry(hass, call)
    link = entry.runtime_data.link
    job_id: str = call.data[ATTR_JOB_ID]
    with _translated_errors():
        await link.async_wait_connected()
        await link.client.cancel_job(job_id)
    # Cancelling is fire-and-forget on the wire; the outcome arrives as a job event.
    return {"job_id": job_id, "status": _status(link, job_id)}


async def _async_delete_artifacts(hass: HomeAssistant, call: ServiceCall) -> ServiceResponse:
    store = hass.data[DATA_STORE]
    job_id: str | None = call.data.get(ATTR_JOB_ID)
    keep_last: int | None = call.data.get(ATTR_KEEP_LAST)
    with _translated_errors():
        if keep_last is not None and job_id is None:
            device_name: str | None = call.data.get(ATTR_DEVICE_NAME)
            return {"deleted": [*await store.async_keep_last(keep_last, device_name)]}
        if job_id is not None and keep_last is None:
            if await store.async_delete(job_id):
                return {"deleted": [job_id]}
            raise service_error("build_not_found", validation=True, job_id=job_id)
    raise service_error("delete_target", validation=True)


async def _async_flash(hass: HomeAssistant, call: ServiceCall) -> ServiceResponse:
    target = resolve_target(hass, call.data)
    job_id: str = call.data[ATTR_JOB_ID]
    with _translated_errors():
        # Rehash the images: whatever sat on disk since the download must still be the build.
        stored = await hass.data[DATA_STORE].async_verify(job_id)
    if stored is None:
        raise service_error("build_not_found", validation=True, job_id=job_id)
    return await async_flash_build(hass, stored, target, call.data[ATTR_IMAGE])


def async_setup_services(hass: HomeAssistant) -> None:
    """Register the actions of the integration."""
    handlers: dict[str, tuple[_Handler, probatio.Schema]] = {
        SERVICE_SUBMIT_BUILD: (_async_submit_build, SUBMIT_BUILD_SCHEMA),
        SERVICE_DOWNLOAD_ARTIFACTS: (_async_download_artifacts, JOB_SCHEMA),
        SERVICE_CANCEL_BUILD: (_async_cancel_build, JOB_SCHEMA),
        SERVICE_DELETE_ARTIFACTS: (_async_delete_artifacts, DELETE_ARTIFACTS_SCHEMA),
        SERVICE_FLASH: (_async_flash, FLASH_SCHEMA),
    }
    for name, (handler, schema) in handlers.items():
        hass.services.async_register(
            DOMAIN,
            name,
            partial(handler, hass),
            schema=schema,
            supports_response=SupportsResponse.OPTIONAL,
        )
