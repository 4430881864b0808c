"""Every text a user can be shown exists, renders in full, and is shown somewhere.

Checked by making each error happen, not by reading source:

* every library error class (and every OTA result code) names an ``exceptions`` key;
* each such error, raised where it can occur inside an action, reaches the caller as a
  translated error whose message renders with every placeholder filled (Home Assistant
  leaves a message with a missing value unformatted) and without the library's own text;
* each of the glue's own errors is produced by an action call (table-driven), so every
  ``exceptions`` key has a producer: no dead keys;
* every error and abort key of the config flow is reachable; the flows themselves are
  checked on every result by ``flow_translations_checked`` (see test_config_flow.py);
* repair issues: each one raised renders, and each one defined is raised.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
import inspect
import json
from pathlib import Path
from typing import Any
from unittest.mock import patch

from aiohttp import web
from homeassistant.config_entries import SOURCE_REAUTH
from homeassistant.const import CONF_HOST, CONF_PASSWORD, CONF_PORT
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResult, FlowResultType
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import device_registry as dr, issue_registry as ir
from homeassistant.helpers.service import async_get_all_descriptions
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.esphome_remote_build import config_flow, flash, install, ota, services
from custom_components.esphome_remote_build.artifacts import ArtifactsError, BundleError
from custom_components.esphome_remote_build.const import CONF_PAIRING_KEY, DOMAIN
from custom_components.esphome_remote_build.errors import CALLER_FAULT_KEYS, LIBRARY_ERRORS
from custom_components.esphome_remote_build.link import RemoteBuildLink
from custom_components.esphome_remote_build.ota import OTAError
from custom_components.esphome_remote_build.ota.errors import (
    DEVICE_ERRORS,
    OTADeviceError,
    device_error,
)
from custom_components.esphome_remote_build.peerlink import (
    Disconnected,
    DownloadError,
    Identity,
    InvalidJobIdError,
    InvalidPairingKeyError,
    NoPairingWindowError,
    NotPairedError,
    PeerLinkError,
    PinMismatchError,
    SubmitRejectedError,
)
from custom_components.esphome_remote_build.store import BuildStore
from custom_components.esphome_remote_build.store_errors import ForeignBuildError, StoreError
from custom_components.esphome_remote_build.stored_build import MANIFEST_NAME
from tests.store.helpers import esp32_members, esp8266_members
from tests.support.receiver_double import (
    JobScript,
    JobStatus as RdStatus,
    ReceiverDouble,
)

from .conftest import (
    PACKAGE,
    STRINGS,
    StoreBuild,
    assert_translated,
    call_service,
    client_of,
    make_entry,
    render,
)
from .test_config_flow import (
    discovery,
    finish,
    free_port,
    pair,
    start_pending,
    start_user_flow,
    start_zeroconf,
)

EXCEPTIONS: dict[str, Any] = STRINGS["exceptions"]
LIBRARY_TEXT = "the library's own words"
#: OTA result codes the table knows, and one it does not.
DEVICE_CODES = [*DEVICE_ERRORS, 0xA5]


def test_translations_match_strings() -> None:
    english = json.loads((PACKAGE / "translations" / "en.json").read_text())
    assert english == STRINGS


async def test_services_are_described(hass: HomeAssistant) -> None:
    assert await async_setup_component(hass, DOMAIN, {})
    descriptions = (await async_get_all_descriptions(hass))[DOMAIN]
    assert set(descriptions) == set(STRINGS["services"])
    for name, description in descriptions.items():
        assert set(description["fields"]) == set(STRINGS["services"][name]["fields"])
    icons = json.loads((PACKAGE / "icons.json").read_text())
    assert set(icons["services"]) == set(STRINGS["services"])


# --- (a) every library error has a key -------------------------------------------------------


def _subclasses(base: type[Exception]) -> Iterator[type[Exception]]:
    yield base
    for subclass in base.__subclasses__():
        yield from _subclasses(subclass)


def library_error_classes() -> list[type[Exception]]:
    return [cls for base in LIBRARY_ERRORS for cls in _subclasses(base)]


def make_error(cls: type[Exception]) -> Exception:
    """One instance of a library error, built the way its raisers build it."""
    special: dict[type[Exception], Callable[[], Exception]] = {
        PinMismatchError: lambda: PinMismatchError("ab" * 32, "cd" * 32),
        NoPairingWindowError: NoPairingWindowError,
        SubmitRejectedError: lambda: SubmitRejectedError("oversized"),
        ForeignBuildError: lambda: ForeignBuildError("job1", "cd" * 32),
        InvalidJobIdError: lambda: InvalidJobIdError("job1"),
        OTADeviceError: lambda: device_error(0x81),
    }
    if cls in special:
        return special[cls]()
    try:
        first = next(iter(inspect.signature(cls).parameters))
    except ValueError:  # Exception's own __init__: a message
        first = "message"
    # A peer's short code where the class takes one, a sentence otherwise.
    return cls("peer_code") if first == "reason" else cls(LIBRARY_TEXT)


def library_errors(*bases: type[Exception], without: tuple[type[Exception], ...] = ()) -> list:
    """An instance of every library error under ``bases``, OTA result codes included."""
    errors: list[Exception] = []
    for base in bases:
        for cls in _subclasses(base):
            if issubclass(cls, without):
                continue
            if cls is OTADeviceError:
                errors += [device_error(code) for code in DEVICE_CODES]
            else:
                errors.append(make_error(cls))
    return errors


def library_keys() -> set[str]:
    return {error.key for error in library_errors(*LIBRARY_ERRORS)}  # type: ignore[attr-defined]


# Library errors whose key has no message (product bugs, see the commit that added each).
KNOWN_UNTRANSLATED: dict[str, str] = {}


@pytest.mark.parametrize(
    "cls",
    [
        pytest.param(
            cls,
            id=cls.__name__,
            marks=[pytest.mark.xfail(strict=True, reason=KNOWN_UNTRANSLATED[cls.__name__])]
            if cls.__name__ in KNOWN_UNTRANSLATED
            else [],
        )
        for cls in library_error_classes()
    ],
)
def test_every_library_error_has_a_translated_key(cls: type[Exception]) -> None:
    errors = library_errors(cls) if cls is OTADeviceError else [make_error(cls)]
    for error in errors:
        key: str = error.key  # type: ignore[attr-defined]
        assert key in EXCEPTIONS, f"{cls.__name__}: {key}"


def test_every_device_result_code_has_its_own_key() -> None:
    keys = {device_error(code).key for code in DEVICE_CODES}  # type: ignore[attr-defined]
    # 0x82 and 0x94 have families of their own (wrong password, encryption required).
    assert keys >= {f"ota_device_{info.reason}" for code, info in DEVICE_ERRORS.items()} - {
        "ota_device_invalid_auth",
        "ota_device_encryption_required",
    }
    assert device_error(0xA5).key == "ota_device_unknown_error"  # type: ignore[attr-defined]


# --- (b) each library error renders where it can occur -----------------------------------------

#: Errors of a download or of a job id we sent: not from a submission.
DOWNLOAD_ONLY = (DownloadError, InvalidJobIdError)
#: Refusals of a pairing request: only the config flow asks for one.
PAIRING_ONLY = (InvalidPairingKeyError,)


@dataclass(frozen=True)
class Context:
    """An action, the seam inside it where a library error surfaces, and its values."""

    seam: tuple[Any, str]
    data: dict[str, Any]
    service: str
    errors: Callable[[], list[Exception]]
    values: dict[str, str]
    prepare: Callable[[], dict[str, Any]] | None = None


CONTEXTS: dict[str, Context] = {
    "submit_build": Context(
        (RemoteBuildLink, "async_submit"),
        {"configuration": "esp32-demo.yaml"},
        "submit_build",
        lambda: [
            *library_errors(PeerLinkError, without=DOWNLOAD_ONLY + PAIRING_ONLY),
            ArtifactsError(LIBRARY_TEXT),  # writing the bundle
            BundleError(LIBRARY_TEXT),
            StoreError(LIBRARY_TEXT),  # the private scratch file
        ],
        {"configuration": "esp32-demo.yaml", "server": "build-box"},
    ),
    "submit_build_wait": Context(
        (RemoteBuildLink, "async_wait_for_job"),
        {"configuration": "esp32-demo.yaml", "wait": True},
        "submit_build",
        lambda: library_errors(PeerLinkError, without=(DownloadError, *PAIRING_ONLY)),
        {"job_id": "job1", "server": "build-box"},
        prepare=lambda: {"target": (RemoteBuildLink, "async_submit"), "return_value": "job1"},
    ),
    "download_artifacts": Context(
        (BuildStore, "async_download"),
        {"job_id": "job1"},
        "download_artifacts",
        lambda: [
            *library_errors(PeerLinkError, without=PAIRING_ONLY),
            *library_errors(ArtifactsError, without=(BundleError,)),
            *library_errors(StoreError),
        ],
        {"job_id": "job1", "server": "build-box"},
    ),
    "cancel_build": Context(
        (RemoteBuildLink, "async_cancel"),
        {"job_id": "job1"},
        "cancel_build",
        lambda: library_errors(PeerLinkError, without=(DownloadError, *PAIRING_ONLY)),
        {"job_id": "job1", "server": "build-box"},
    ),
    "clean_build_environment": Context(
        (RemoteBuildLink, "async_clean_build_environment"),
        {},
        "clean_build_environment",
        lambda: library_errors(PeerLinkError, without=DOWNLOAD_ONLY + PAIRING_ONLY),
        {"server": "build-box"},
    ),
    "clean_build_environment_wait": Context(
        (RemoteBuildLink, "async_wait_for_job"),
        {"wait": True},
        "clean_build_environment",
        lambda: library_errors(PeerLinkError, without=(DownloadError, *PAIRING_ONLY)),
        {"job_id": "job1", "server": "build-box"},
        prepare=lambda: {
            "target": (RemoteBuildLink, "async_clean_build_environment"),
            "return_value": "job1",
        },
    ),
    "delete_artifacts_job": Context(
        (BuildStore, "async_delete"),
        {"job_id": "job1"},
        "delete_artifacts",
        lambda: [
            *library_errors(StoreError, without=(ForeignBuildError,)),
            make_error(InvalidJobIdError),
        ],
        {"job_id": "job1"},
    ),
    "delete_artifacts_keep_last": Context(
        (BuildStore, "async_keep_last"),
        {"keep_last": 2},
        "delete_artifacts",
        lambda: [StoreError(LIBRARY_TEXT)],
        {},
    ),
    "flash_verify": Context(
        (BuildStore, "async_verify"),
        {"job_id": "job1", "host": "kitchen.local"},
        "flash",
        lambda: [
            *library_errors(StoreError, without=(ForeignBuildError,)),
            make_error(InvalidJobIdError),
        ],
        {"job_id": "job1"},
    ),
    "flash": Context(
        (flash, "async_flash"),
        {"job_id": "job1", "host": "kitchen.local", "port": 3232},
        "flash",
        lambda: library_errors(OTAError),
        {"job_id": "job1", "host": "kitchen.local", "port": "3232"},
    ),
}


@pytest.mark.parametrize("name", list(CONTEXTS))
async def test_library_errors_render_where_they_occur(
    hass: HomeAssistant,
    loaded: MockConfigEntry,
    esphome_dir: Path,
    store_build: StoreBuild,
    name: str,
) -> None:
    context = CONTEXTS[name]
    await store_build(esp32_members(), job_id="job1")  # what flash finds in the store
    data = dict(context.data)
    if context.service in {
        "submit_build",
        "download_artifacts",
        "cancel_build",
        "clean_build_environment",
    }:
        data["config_entry_id"] = loaded.entry_id
    errors = context.errors()
    assert errors
    for error in errors:
        with (
            patch.object(*context.seam, side_effect=error),
            _prepared(context),
            pytest.raises(HomeAssistantError) as caught,
        ):
            await call_service(hass, context.service, **data)
        raised = caught.value
        key: str = error.key  # type: ignore[attr-defined]
        assert raised.translation_key == key, repr(error)
        assert isinstance(raised, ServiceValidationError) is (key in CALLER_FAULT_KEYS)
        assert (raised.translation_placeholders or {}).items() >= context.values.items()
        message = assert_translated(raised)
        assert str(error) not in message  # the library's text is for the log


def _prepared(context: Context) -> AbstractContextManager[Any]:
    if context.prepare is None:
        return nullcontext()
    prepared = context.prepare()
    return patch.object(*prepared["target"], return_value=prepared["return_value"])


# --- (c) the glue's own errors, produced through the actions -----------------------------------


@dataclass
class Env:
    """What a scenario needs: a loaded server, its double, the esphome folder, the store."""

    hass: HomeAssistant
    entry: MockConfigEntry
    rd: ReceiverDouble
    esphome_dir: Path
    store_build: StoreBuild
    tmp_path: Path

    async def submit(self, configuration: str = "esp8266-demo.yaml", **data: Any) -> Any:
        return await call_service(
            self.hass,
            "submit_build",
            config_entry_id=self.entry.entry_id,
            configuration=configuration,
            **data,
        )

    async def flash(self, **data: Any) -> Any:
        await self.store_build(esp32_members(), job_id="job1")
        await self.store_build(esp8266_members(), job_id="porch")
        return await call_service(self.hass, "flash", **{"job_id": "job1", **data})


async def _build_outcome(env: Env, script: JobScript) -> Any:
    env.rd.job_script = script
    return await env.submit(wait=True)


async def _wait_times_out(env: Env) -> Any:
    env.rd.job_script = JobScript(hold=True)
    with patch.object(install, "BUILD_WAIT_TIMEOUT", 0.2):
        return await env.submit(wait=True)


async def _clean(env: Env, **data: Any) -> Any:
    return await call_service(
        env.hass, "clean_build_environment", config_entry_id=env.entry.entry_id, **data
    )


async def _clean_outcome(env: Env, script: JobScript) -> Any:
    env.rd.reset_script = script
    return await _clean(env, wait=True)


async def _clean_times_out(env: Env) -> Any:
    env.rd.reset_script = JobScript(hold=True)
    with patch.object(services, "CLEAN_WAIT_TIMEOUT", 0.2):
        return await _clean(env, wait=True)


async def _clean_while_building(env: Env) -> Any:
    env.rd.job_script = JobScript(hold=True)
    job_id = (await env.submit())["job_id"]
    await env.rd.wait_job_status(job_id, RdStatus.RUNNING)
    return await _clean(env)


async def _clean_refused(env: Env) -> Any:
    env.rd.faults.reset_refusal = "not_ready"
    return await _clean(env)


async def _clean_on_a_server_without_it(env: Env) -> Any:
    """The server (an older Device Builder) does not announce reset_build_env."""
    env.rd.reset_build_env_supported = False
    client = client_of(env.entry)
    await env.rd.session().drop()
    async with asyncio.timeout(5):
        while client.connected:
            await asyncio.sleep(0.01)
    await client.wait_connected(5)
    assert client.server_info is not None
    assert not client.server_info.reset_build_env_supported
    return await _clean(env)


async def _configuration_outside(env: Env) -> Any:
    elsewhere = env.tmp_path / "elsewhere.yaml"
    elsewhere.write_text("esphome:\n  name: elsewhere\n")
    (env.esphome_dir / "outside.yaml").symlink_to(elsewhere)
    return await env.submit("outside.yaml")


def _device_of(hass: HomeAssistant, domain: str) -> str:
    entry = MockConfigEntry(
        domain=domain, data={CONF_HOST: "127.0.0.1", CONF_PORT: 6053, CONF_PASSWORD: ""}
    )
    entry.add_to_hass(hass)
    device = dr.async_get(hass).async_get_or_create(
        config_entry_id=entry.entry_id, identifiers={(domain, "x")}, name="Thing"
    )
    return device.id


async def _no_default_port(env: Env) -> Any:
    stored = await env.store_build(esp32_members(), job_id="odd")
    manifest = json.loads((stored.directory / MANIFEST_NAME).read_text())
    manifest["platform"] = "nrf52"  # a platform without a known OTA port
    (stored.directory / MANIFEST_NAME).write_text(json.dumps(manifest))
    return await call_service(env.hass, "flash", job_id="odd", host="kitchen.local")


async def _flash_twice(env: Env) -> Any:
    await env.store_build(esp32_members(), job_id="job1")
    entered, gate = asyncio.Event(), asyncio.Event()

    async def held(host: str, port: int, *_args: Any, **_kwargs: Any) -> Any:
        entered.set()
        await gate.wait()
        raise ota.OTANetworkError("released")

    with patch.object(flash, "async_flash", held):
        first = asyncio.create_task(
            call_service(env.hass, "flash", job_id="job1", host="kitchen.local", port=3232)
        )
        await entered.wait()
        try:
            return await call_service(
                env.hass, "flash", job_id="job1", host="kitchen.local", port=3232
            )
        finally:
            gate.set()
            with pytest.raises(HomeAssistantError):
                await first


type Scenario = Callable[[Env], Awaitable[Any]]

#: (the glue's key, whether the caller is at fault, how an action call produces it)
GLUE_ERRORS: dict[str, tuple[str, bool, Scenario]] = {
    "build_failed": (
        "build_failed",
        False,
        lambda env: _build_outcome(env, JobScript(outcome=RdStatus.FAILED, error_message="x")),
    ),
    "build_cancelled": (
        "build_cancelled",
        False,
        lambda env: _build_outcome(env, JobScript(outcome=RdStatus.CANCELLED)),
    ),
    "build_wait_timeout": ("build_wait_timeout", False, _wait_times_out),
    "invalid_configuration": (
        "invalid_configuration",
        True,
        lambda env: env.submit("../esp32-demo.yaml"),
    ),
    "configuration_not_found": (
        "configuration_not_found",
        True,
        lambda env: env.submit("missing.yaml"),
    ),
    "configuration_outside": ("configuration_outside", True, _configuration_outside),
    "delete_target": (
        "delete_target",
        True,
        lambda env: call_service(env.hass, "delete_artifacts"),
    ),
    "build_not_found_delete": (
        "build_not_found",
        True,
        lambda env: call_service(env.hass, "delete_artifacts", job_id="nojob"),
    ),
    "build_not_found_flash": (
        "build_not_found",
        True,
        lambda env: call_service(env.hass, "flash", job_id="nojob", host="kitchen.local"),
    ),
    "invalid_job_id": (
        "invalid_job_id",
        True,
        lambda env: call_service(
            env.hass, "download_artifacts", config_entry_id=env.entry.entry_id, job_id="../x"
        ),
    ),
    "flash_target": ("flash_target", True, lambda env: env.flash(port=3232)),
    "device_not_found": ("device_not_found", True, lambda env: env.flash(device_id="nope")),
    "not_esphome_device": (
        "not_esphome_device",
        True,
        lambda env: env.flash(device_id=_device_of(env.hass, "other")),
    ),
    "image_not_in_build": (
        "image_not_in_build",
        True,
        lambda env: env.flash(job_id="porch", host="kitchen.local", image="bootloader"),
    ),
    "ota_port_required": ("ota_port_required", True, _no_default_port),
    "flash_in_progress": ("flash_in_progress", False, _flash_twice),
    "invalid_esphome_version": (
        "invalid_esphome_version",
        True,
        lambda env: env.submit(esphome_version="latest"),
    ),
    "esphome_version_unavailable": (
        "esphome_version_unavailable",
        False,
        lambda env: env.submit(wait=True, esphome_version="2099.1.0"),
    ),
    "clean_failed": (
        "clean_failed",
        False,
        lambda env: _clean_outcome(
            env, JobScript(lines=["rm: denied\n"], outcome=RdStatus.FAILED, error_message="x")
        ),
    ),
    "clean_wait_timeout": ("clean_wait_timeout", False, _clean_times_out),
    # Library refusals of a clean, each made to happen through the action.
    "clean_not_supported": ("clean_not_supported", True, _clean_on_a_server_without_it),
    "clean_busy": ("clean_busy", False, _clean_while_building),
    "clean_rejected": ("clean_rejected", False, _clean_refused),
}


@pytest.mark.parametrize("case", list(GLUE_ERRORS))
async def test_glue_errors_render(
    hass: HomeAssistant,
    loaded: MockConfigEntry,
    rd: ReceiverDouble,
    esphome_dir: Path,
    store_build: StoreBuild,
    tmp_path: Path,
    case: str,
) -> None:
    key, validation, scenario = GLUE_ERRORS[case]
    env = Env(hass, loaded, rd, esphome_dir, store_build, tmp_path)
    with pytest.raises(HomeAssistantError) as caught:
        await scenario(env)
    assert caught.value.translation_key == key
    assert isinstance(caught.value, ServiceValidationError) is validation
    assert_translated(caught.value)


#: Keys the update entity's installs produce; each is raised and rendered in the test named.
INSTALL_ERRORS = {
    "no_server_connected": "test_fleet.py::test_no_connected_server_is_a_translated_error",
    "encryption_key_differs": "test_update.py::test_a_yaml_with_another_api_key_is_refused...",
    "build_of_other_device": "test_update.py::test_rollback_refuses_another_devices_build",
    "not_verified_other_firmware": "test_update.py::test_a_device_that_boots_its_old_firmware...",
    "not_verified_not_back": "test_update.py::test_a_device_that_never_returns_fails_verification",
}


def test_no_dead_exception_keys() -> None:
    """Every message has a producer: a library error class or one of the glue's errors."""
    produced = library_keys() | {key for key, _, _ in GLUE_ERRORS.values()} | set(INSTALL_ERRORS)
    assert set(EXCEPTIONS) - produced == set()


# --- (d) the config flow's errors and aborts ---------------------------------------------------


type FlowScenario = Callable[[HomeAssistant, ReceiverDouble, Identity], Awaitable[FlowResult]]


async def _user(hass: HomeAssistant, rd: ReceiverDouble, *_: Any) -> FlowResult:
    return await start_user_flow(hass, rd.host, rd.port)


async def _unreachable(hass: HomeAssistant, *_: Any) -> FlowResult:
    return await start_user_flow(hass, "127.0.0.1", free_port())


def _answer(status: int, body: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(_request: web.Request) -> web.Response:
        return web.Response(status=status, text=body)

    return handler


async def _http_without_peer_link(hass: HomeAssistant, *_: Any) -> FlowResult:
    """A web server (an old dashboard, say) answers, but not with the peer link."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", _answer(404, "Not Found"))
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        return await start_user_flow(hass, "127.0.0.1", port)
    finally:
        await runner.cleanup()


async def _preview_refused(hass: HomeAssistant, rd: ReceiverDouble, *_: Any) -> FlowResult:
    rd.faults.refuse_intent["preview"] = ("rejected", "bad_intent")
    return await _user(hass, rd)


async def _loopback(hass: HomeAssistant, rd: ReceiverDouble, identity: Identity) -> FlowResult:
    rd.set_static_key(identity.private_key)
    return await _user(hass, rd)


async def _pair_with(
    hass: HomeAssistant, rd: ReceiverDouble, *, headless: bool, key: str | None
) -> FlowResult:
    # A headless server prints a key and opens its window at start; a dashboard's is shut.
    rd.requires_pairing_key = rd.pairing_window_open = headless
    rd.pairing_key = "ABCD-EFGH-JKMN-PQRS" if headless else None
    return await pair(hass, await _user(hass, rd), **({CONF_PAIRING_KEY: key} if key else {}))


async def _configured(hass: HomeAssistant, rd: ReceiverDouble, *_: Any) -> FlowResult:
    make_entry(rd).add_to_hass(hass)
    return await _user(hass, rd)


async def _key_changes_before_pairing(hass: HomeAssistant, rd: ReceiverDouble, *_: Any) -> Any:
    result = await _user(hass, rd)
    rd.set_static_key()
    return await pair(hass, result)


async def _rejected(hass: HomeAssistant, rd: ReceiverDouble, identity: Identity) -> FlowResult:
    rd.add_peer(identity.dashboard_id, "cd" * 32)
    return await pair(hass, await _user(hass, rd))


async def _approval_garbage(hass: HomeAssistant, rd: ReceiverDouble, *_: Any) -> FlowResult:
    rd.faults.refuse_intent["pair_status"] = ("maybe", None)
    rd.open_pairing_window()
    return await finish(hass, await pair(hass, await _user(hass, rd)))


async def _approval_times_out(hass: HomeAssistant, rd: ReceiverDouble, *_: Any) -> FlowResult:
    with patch.object(config_flow, "APPROVAL_TIMEOUT", 0.3):
        return await finish(hass, await start_pending(hass, rd))


async def _reauth_other_key(hass: HomeAssistant, rd: ReceiverDouble, *_: Any) -> FlowResult:
    entry = make_entry(rd)
    entry.add_to_hass(hass)
    rd.set_static_key()
    result = await entry.start_reauth_flow(hass)
    return await hass.config_entries.flow.async_configure(result["flow_id"], {})


async def _reauth_succeeds(hass: HomeAssistant, rd: ReceiverDouble, identity: Identity) -> Any:
    entry = make_entry(rd)
    entry.add_to_hass(hass)
    rd.add_peer(identity.dashboard_id, identity.pin_sha256)
    result = await entry.start_reauth_flow(hass)
    result = await pair(hass, await hass.config_entries.flow.async_configure(result["flow_id"], {}))
    await hass.async_block_till_done()  # the entry reloads with the new pairing
    await hass.config_entries.async_unload(entry.entry_id)
    return result


async def _reconfigure_succeeds(hass: HomeAssistant, rd: ReceiverDouble, *_: Any) -> Any:
    entry = make_entry(rd)
    entry.add_to_hass(hass)
    result = await entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_HOST: rd.host, CONF_PORT: rd.port}
    )
    await hass.async_block_till_done()  # the entry reloads at its (same) address
    await hass.config_entries.async_unload(entry.entry_id)
    return result


async def _txt_without_pin(hass: HomeAssistant, rd: ReceiverDouble, *_: Any) -> FlowResult:
    return await start_zeroconf(hass, discovery(rd, pin_sha256=None))


#: (section, key) -> a flow that shows it.  Built-in success aborts are not ours to show.
FLOW_KEYS: dict[tuple[str, str], FlowScenario] = {
    ("error", "cannot_connect"): _unreachable,
    ("error", "not_build_server"): _preview_refused,
    ("error", "self_loopback"): _loopback,
    ("error", "server_too_old"): _http_without_peer_link,
    ("error", "no_pairing_window"): lambda h, rd, _: _pair_with(h, rd, headless=False, key=None),
    ("error", "wrong_pairing_key"): lambda h, rd, _: _pair_with(
        h, rd, headless=True, key="ZZZZ-ZZZZ-ZZZZ-ZZZZ"
    ),
    ("error", "pairing_key_required"): lambda h, rd, _: _pair_with(h, rd, headless=True, key=None),
    ("error", "invalid_pairing_key"): lambda h, rd, _: _pair_with(h, rd, headless=True, key="x"),
    ("abort", "already_configured"): _configured,
    ("abort", "not_build_server"): _txt_without_pin,
    ("abort", "cannot_connect"): _approval_garbage,
    ("abort", "pin_changed"): _key_changes_before_pairing,
    ("abort", "pin_mismatch"): _reauth_other_key,
    ("abort", "pairing_rejected"): _rejected,
    ("abort", "approval_timeout"): _approval_times_out,
    ("abort", "reauth_successful"): _reauth_succeeds,
    ("abort", "reconfigure_successful"): _reconfigure_succeeds,
}

# Config flow texts no flow can show.
UNREACHABLE_FLOW_KEYS: set[tuple[str, str]] = set()


@pytest.mark.usefixtures("flow_translations_checked")
@pytest.mark.parametrize("section_key", list(FLOW_KEYS), ids="-".join)
async def test_flow_keys_are_shown(
    hass: HomeAssistant, rd: ReceiverDouble, identity: Identity, section_key: tuple[str, str]
) -> None:
    section, key = section_key
    result = await FLOW_KEYS[section_key](hass, rd, identity)
    if section == "error":
        assert result["type"] is FlowResultType.FORM
        assert key in result["errors"].values()
    else:
        assert result["type"] is FlowResultType.ABORT
        assert result["reason"] == key


def test_every_flow_key_is_shown_somewhere() -> None:
    config = STRINGS["config"]
    defined = {("error", key) for key in config["error"]} | {
        ("abort", key) for key in config["abort"]
    }
    assert defined - set(FLOW_KEYS) == UNREACHABLE_FLOW_KEYS
    assert set(FLOW_KEYS) <= defined


# --- repair issues -----------------------------------------------------------------------------

#: Issue key -> the terminal refusal that raises it.
ISSUES: dict[str, Disconnected] = {
    "server_key_changed": Disconnected(
        "pin_mismatch", terminal=True, error=PinMismatchError("ab" * 32, "cd" * 32)
    ),
    "identity_in_use": Disconnected("superseded", terminal=True),
}


@pytest.mark.parametrize("key", list(ISSUES))
async def test_issues_render(hass: HomeAssistant, loaded: MockConfigEntry, key: str) -> None:
    client_of(loaded)._emit(ISSUES[key])
    await hass.async_block_till_done()
    issue = ir.async_get(hass).async_get_issue(DOMAIN, f"pairing_{loaded.entry_id}")
    assert issue is not None
    assert issue.translation_key == key
    text = STRINGS["issues"][key]
    placeholders = issue.translation_placeholders or {}
    shown = render(text["title"], placeholders) + render(text["description"], placeholders)
    assert "build-box" in shown


async def test_a_revoked_pairing_raises_no_issue(
    hass: HomeAssistant, loaded: MockConfigEntry
) -> None:
    """Its one message is the reauth notice (the reauth_confirm step's text)."""
    client_of(loaded)._emit(
        Disconnected("no_approved_peer", terminal=True, error=NotPairedError("no_approved_peer"))
    )
    await hass.async_block_till_done()
    assert ir.async_get(hass).async_get_issue(DOMAIN, f"pairing_{loaded.entry_id}") is None
    [flow] = [
        flow
        for flow in hass.config_entries.flow.async_progress_by_handler(DOMAIN)
        if flow["context"]["source"] == SOURCE_REAUTH
    ]
    assert flow["step_id"] == "reauth_confirm"


def test_every_issue_is_raised() -> None:
    assert set(STRINGS["issues"]) == set(ISSUES)
