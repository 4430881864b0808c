"""The `flash` action end to end: stored builds flashed onto the OTA device emulator."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from dataclasses import dataclass, field, replace
import json
import logging
import os
from pathlib import Path
import socket
from typing import Any
from unittest.mock import patch

from homeassistant.const import CONF_HOST, CONF_PASSWORD, CONF_PORT
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import device_registry as dr
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_capture_events
import yaml

from custom_components.esphome_remote_build import flash, ota, services
from custom_components.esphome_remote_build.const import DOMAIN, EVENT_FLASH
from custom_components.esphome_remote_build.errors import translate
from custom_components.esphome_remote_build.flash import FlashTarget, ImageKind
from custom_components.esphome_remote_build.ota import (
    OTAAuthenticationError,
    OTADeviceError,
    OTAEncryptionError,
    OTAEncryptionKeyError,
    OTAEncryptionRequiredError,
    OTAEncryptionUnavailableError,
    OTAError,
    OTAImageError,
    OTAMaybeCommittedError,
    OTANetworkError,
    OTAPasswordRequiredError,
    OTAProtocolError,
    OTAResolveError,
    OTATimeoutError,
    OTAUnsupportedError,
)
from tests.store.helpers import Member, esp32_members, esp8266_members
from tests.support.ota_emulator import MAGIC, Stage
from tests.support.receiver_double import ReceiverDouble

from .conftest import StartDevice, StoreBuild, call_service

pytestmark = pytest.mark.usefixtures("fast_ota")

PACKAGE = Path(services.__file__).parent
STRINGS = json.loads((PACKAGE / "strings.json").read_text())
LAST_JOB = "sensor.build_box_last_job"

PASSWORD = "correct horse battery"
WRONG_PASSWORD = "tr0ub4dor&3"
PSK = bytes(range(32))
PSK_B64 = base64.b64encode(PSK).decode()
OTHER_KEY_B64 = base64.b64encode(bytes(range(1, 33))).decode()
SECRETS = (PASSWORD, WRONG_PASSWORD, PSK_B64, OTHER_KEY_B64)

#: Incompressible and several 8 KiB blocks long, so progress has steps to report.
BIG_IMAGE = os.urandom(5 * 8192 + 123)


@pytest.fixture
async def component(hass: HomeAssistant) -> None:
    assert await async_setup_component(hass, DOMAIN, {})


def members_of(members: list[Member]) -> dict[str, bytes]:
    return {Path(member.name).name: member.data for member in members}


def with_image(members: list[Member], name: str, data: bytes) -> list[Member]:
    return [replace(m, data=data) if Path(m.name).name == name else m for m in members]


def esp32_big() -> list[Member]:
    return with_image(esp32_members(), "firmware.ota.bin", BIG_IMAGE)


async def call(hass: HomeAssistant, service: str = "flash", **data: Any) -> dict[str, Any]:
    return await call_service(hass, service, **data)


def flash_result(host: str, port: int) -> ota.FlashResult:
    """What the OTA client returns, for tests that stand in for it."""
    return ota.FlashResult(
        host=host,
        port=port,
        address=host,
        bytes_sent=1000,
        image_size=1000,
        duration=0.5,
        compressed=False,
        encrypted=False,
        ota_version=2,
        attempts=1,
    )


def esphome_device(hass: HomeAssistant, host: str = "127.0.0.1", psk: str = PSK_B64) -> str:
    """A device of Home Assistant's esphome integration, as its config flow stores it."""
    entry = MockConfigEntry(
        domain="esphome",
        title="Kitchen",
        data={CONF_HOST: host, CONF_PORT: 6053, CONF_PASSWORD: "", "noise_psk": psk},
    )
    entry.add_to_hass(hass)
    device = dr.async_get(hass).async_get_or_create(
        config_entry_id=entry.entry_id, identifiers={("esphome", "kitchen")}, name="Kitchen"
    )
    return device.id


def assert_no_secrets(*texts: object) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in str(text)


# --- flashing ----------------------------------------------------------------------------


async def test_flash_by_host(
    hass: HomeAssistant, component: None, store_build: StoreBuild, start_device: StartDevice
) -> None:
    """ESP32: the OTA image goes over the air, compressed, after SHA-256 password auth."""
    stored = await store_build(esp32_big())
    device = await start_device(version=2, compression=True, password=PASSWORD)
    response = await call(
        hass, job_id=stored.job_id, host="127.0.0.1", port=device.port, password=PASSWORD
    )
    [record] = await device.wait_for_sessions(1)
    assert record.image == BIG_IMAGE
    assert record.image != members_of(esp32_big())["firmware.bin"]
    assert record.auth_ok
    assert record.compressed
    assert record.final_ack
    duration = response.pop("duration")
    assert isinstance(duration, float)
    assert duration >= 0
    assert response == {
        "job_id": stored.job_id,
        "host": "127.0.0.1",
        "port": device.port,
        "image": "firmware.ota.bin",
        "bytes_sent": record.payload_size,
        "compressed": True,
        "encrypted": False,
        "verified": False,  # a host target is not verified unless asked
    }


async def test_flash_esp8266_sends_firmware_bin(
    hass: HomeAssistant, component: None, store_build: StoreBuild, start_device: StartDevice
) -> None:
    members = esp8266_members()
    stored = await store_build(members)
    device = await start_device(version=1, extended=False)
    response = await call(hass, job_id=stored.job_id, host="127.0.0.1", port=device.port)
    [record] = await device.wait_for_sessions(1)
    assert record.image == members_of(members)["firmware.bin"]
    assert response["image"] == "firmware.bin"
    assert response["bytes_sent"] == len(members_of(members)["firmware.bin"])
    assert response["compressed"] is False


async def test_flash_by_esphome_device_is_encrypted(
    hass: HomeAssistant, component: None, store_build: StoreBuild, start_device: StartDevice
) -> None:
    """Address and key come from the esphome entry; the device only takes encrypted updates."""
    stored = await store_build(esp32_big())
    device = await start_device(noise_psk=PSK)
    device_id = esphome_device(hass)
    response = await call(hass, job_id=stored.job_id, device_id=device_id, port=device.port)
    [record] = await device.wait_for_sessions(1)
    assert record.encrypted
    assert record.image == BIG_IMAGE
    assert response["host"] == "127.0.0.1"
    assert response["encrypted"] is True


@pytest.mark.parametrize(
    ("kind", "name", "ota_type"),
    [(ImageKind.PARTITION_TABLE, "partitions.bin", 1), (ImageKind.BOOTLOADER, "bootloader.bin", 2)],
)
async def test_flash_partition_images_when_asked(
    hass: HomeAssistant,
    component: None,
    store_build: StoreBuild,
    start_device: StartDevice,
    kind: ImageKind,
    name: str,
    ota_type: int,
) -> None:
    stored = await store_build(esp32_members())
    device = await start_device(partition_access=True)
    response = await call(
        hass, job_id=stored.job_id, host="127.0.0.1", port=device.port, image=kind.value
    )
    [record] = await device.wait_for_sessions(1)
    assert record.ota_type == ota_type
    assert record.image == members_of(esp32_members())[name]
    assert response["image"] == name


@pytest.mark.parametrize(
    ("members", "port"), [(esp32_members, 3232), (esp8266_members, 8266)], ids=["esp32", "esp8266"]
)
async def test_default_port_follows_the_platform(
    hass: HomeAssistant,
    component: None,
    store_build: StoreBuild,
    members: Callable[[], list[Member]],
    port: int,
) -> None:
    stored = await store_build(members())
    seen: list[tuple[str, int]] = []

    async def fake_flash(host: str, port: int, image: Path, **kwargs: Any) -> ota.FlashResult:
        seen.append((host, port))
        return flash_result(host, port)

    with patch.object(flash, "async_flash", fake_flash):
        response = await call(hass, job_id=stored.job_id, host="kitchen.local")
    assert seen == [("kitchen.local", port)]
    assert response["port"] == port


async def test_unknown_platform_needs_a_port(
    hass: HomeAssistant, component: None, store_build: StoreBuild
) -> None:
    stored = replace(await store_build(esp32_members()), platform="nrf52")
    target = FlashTarget("127.0.0.1", None, None, None)
    with pytest.raises(ServiceValidationError) as caught:
        await flash.async_flash_build(hass, stored, target, ImageKind.APPLICATION)
    assert caught.value.translation_key == "ota_port_required"


# --- progress ----------------------------------------------------------------------------


async def test_flash_events(
    hass: HomeAssistant, component: None, store_build: StoreBuild, start_device: StartDevice
) -> None:
    stored = await store_build(esp32_big())
    device = await start_device(password=PASSWORD)
    events = async_capture_events(hass, EVENT_FLASH)
    await call(hass, job_id=stored.job_id, host="127.0.0.1", port=device.port, password=PASSWORD)
    await hass.async_block_till_done()
    statuses = [event.data["status"] for event in events]
    progress = [event.data["progress"] for event in events]
    assert statuses[0] == "started"
    assert statuses[-1] == "completed"
    assert set(statuses[1:-1]) == {"uploading"}
    assert len(statuses) > 4  # five blocks: several whole-percent steps
    assert progress == sorted(progress)
    assert len(set(progress[1:-1])) == len(progress[1:-1])  # one event per percent change
    assert progress[0] == 0
    assert progress[-1] == 100
    for event in events:
        assert event.data == {
            "job_id": stored.job_id,
            "host": "127.0.0.1",
            "port": device.port,
            "progress": event.data["progress"],
            "status": event.data["status"],
        }


async def test_uploading_events_follow_whole_percents(
    hass: HomeAssistant, component: None, store_build: StoreBuild
) -> None:
    stored = await store_build(esp32_members())
    acknowledged = [0, 3, 9, 10, 11, 19, 20, 500, 999, 1000]

    async def fake_flash(host: str, port: int, image: Path, **kwargs: Any) -> ota.FlashResult:
        for sent in acknowledged:
            kwargs["progress"](sent, 1000)
        return flash_result(host, port)

    events = async_capture_events(hass, EVENT_FLASH)
    with patch.object(flash, "async_flash", fake_flash):
        await call(hass, job_id=stored.job_id, host="127.0.0.1", port=3232)
    await hass.async_block_till_done()
    reported = [(event.data["status"], event.data["progress"]) for event in events]
    assert reported == [
        ("started", 0),
        ("uploading", 0),
        ("uploading", 1),
        ("uploading", 2),
        ("uploading", 50),
        ("uploading", 99),
        ("uploading", 100),
        ("completed", 100),
    ]


async def test_cancelled_flash_reports_failure_and_frees_the_device(
    hass: HomeAssistant, component: None, store_build: StoreBuild, start_device: StartDevice
) -> None:
    stored = await store_build(esp32_members())
    device = await start_device()
    entered = asyncio.Event()

    async def hanging(*_args: Any, **_kwargs: Any) -> ota.FlashResult:
        entered.set()
        await asyncio.Event().wait()
        raise AssertionError("never resumed")

    events = async_capture_events(hass, EVENT_FLASH)
    with patch.object(flash, "async_flash", hanging):
        task = asyncio.create_task(
            call(hass, job_id=stored.job_id, host="127.0.0.1", port=device.port)
        )
        await entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    await hass.async_block_till_done()
    assert [event.data["status"] for event in events] == ["started", "failed"]
    await call(hass, job_id=stored.job_id, host="127.0.0.1", port=device.port)
    assert len(await device.wait_for_sessions(1)) == 1


async def test_retried_upload_reports_progress_from_zero_again(
    hass: HomeAssistant, component: None, store_build: StoreBuild, start_device: StartDevice
) -> None:
    stored = await store_build(esp32_big())
    device = await start_device(drop_after_bytes=3 * 8192, faulty_sessions=1)
    events = async_capture_events(hass, EVENT_FLASH)
    await call(hass, job_id=stored.job_id, host="127.0.0.1", port=device.port)
    await hass.async_block_till_done()
    records = await device.wait_for_sessions(2)
    assert records[1].image == BIG_IMAGE
    progress = [event.data["progress"] for event in events]
    restart = progress.index(0, 2)  # the second attempt's first block
    assert progress[restart - 1] > 0
    assert events[-1].data["status"] == "completed"


# --- one flash per device ----------------------------------------------------------------


async def test_second_flash_to_the_same_device_is_refused(
    hass: HomeAssistant, component: None, store_build: StoreBuild, start_device: StartDevice
) -> None:
    stored = await store_build(esp32_members())
    device = await start_device()
    other = await start_device()
    device_id = esphome_device(hass, psk="")
    entered, gate = asyncio.Event(), asyncio.Event()
    real = flash.async_flash

    async def gated(host: str, port: int, *args: Any, **kwargs: Any) -> ota.FlashResult:
        if port == device.port:
            entered.set()
            await gate.wait()
        return await real(host, port, *args, **kwargs)

    with patch.object(flash, "async_flash", gated):
        first = asyncio.create_task(
            call(hass, job_id=stored.job_id, host="127.0.0.1", port=device.port)
        )
        await entered.wait()
        for target in ({"host": "127.0.0.1"}, {"device_id": device_id}):
            with pytest.raises(HomeAssistantError) as caught:
                await call(hass, job_id=stored.job_id, port=device.port, **target)
            assert type(caught.value) is HomeAssistantError
            assert caught.value.translation_key == "flash_in_progress"
        # Another device is not held up.
        await call(hass, job_id=stored.job_id, host="127.0.0.1", port=other.port)
        gate.set()
        response = await first
    assert response["port"] == device.port
    assert len(await device.wait_for_sessions(1)) == 1
    # The lock is released: the device can be flashed again.
    await call(hass, job_id=stored.job_id, host="127.0.0.1", port=device.port)
    assert len(await device.wait_for_sessions(2)) == 2


# --- failures ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """A device set up to fail, the call that meets it, and what the caller must see."""

    device: dict[str, Any]
    call: dict[str, Any]
    key: str
    sessions: int = 1
    placeholders: dict[str, str] = field(default_factory=dict)


FAILURES = {
    "wrong_password": Failure(
        {"password": PASSWORD}, {"password": WRONG_PASSWORD}, "ota_invalid_auth"
    ),
    "password_required": Failure({"password": PASSWORD}, {}, "ota_password_required"),
    # Each result code has its own message (ota_device_<reason>).
    "device_error_prepare": Failure(
        {"error_stage": Stage.PREPARE, "error_code": 0x81},
        {},
        "ota_device_prepare_failed",
        placeholders={"code": "0x81", "reason": "prepare_failed"},
    ),
    "device_error_md5": Failure(
        {"error_stage": Stage.END, "error_code": 0x8B},
        {},
        "ota_device_md5_mismatch",
        placeholders={"code": "0x8B", "reason": "md5_mismatch"},
    ),
    "encryption_required_without_key": Failure(
        {"noise_psk": PSK}, {}, "ota_encryption_required", placeholders={"code": "0x94"}
    ),
    "key_rejected": Failure(
        {"noise_psk": PSK}, {"encryption_key": OTHER_KEY_B64}, "ota_encryption_key_rejected"
    ),
    "no_encryption_offered": Failure(
        {"password": PASSWORD},
        {"encryption_key": PSK_B64, "password": PASSWORD},
        "ota_encryption_unavailable",
    ),
    "unsupported_image_type": Failure({}, {"image": "partition_table"}, "ota_unsupported_type"),
    "dropped_mid_image": Failure({"drop_after_bytes": 2 * 8192}, {}, "ota_network_error", 3),
    "dropped_after_whole_image": Failure(
        {"drop_after_bytes": len(BIG_IMAGE)}, {}, "ota_may_be_committing"
    ),
}


@pytest.mark.parametrize("failure", FAILURES.values(), ids=list(FAILURES))
async def test_flash_failures(
    hass: HomeAssistant,
    component: None,
    store_build: StoreBuild,
    start_device: StartDevice,
    caplog: pytest.LogCaptureFixture,
    failure: Failure,
) -> None:
    caplog.set_level(logging.DEBUG, logger="custom_components.esphome_remote_build")
    stored = await store_build(esp32_big())
    device = await start_device(**failure.device)
    events = async_capture_events(hass, EVENT_FLASH)
    with pytest.raises(HomeAssistantError) as caught:
        await call(hass, job_id=stored.job_id, host="127.0.0.1", port=device.port, **failure.call)
    await hass.async_block_till_done()
    error = caught.value
    assert type(error) is HomeAssistantError
    assert error.translation_domain == DOMAIN
    assert error.translation_key == failure.key
    placeholders = error.translation_placeholders or {}
    assert placeholders.items() >= failure.placeholders.items()
    assert placeholders["job_id"] == stored.job_id
    assert placeholders["port"] == str(device.port)
    assert "{" not in str(error)  # every placeholder of the message was given
    assert [event.data["status"] for event in events][-1] == "failed"
    records = await device.wait_for_sessions(failure.sessions)
    assert len(device.sessions) == failure.sessions
    assert not any(record.completed for record in records)
    assert_no_secrets(str(error), placeholders, [event.data for event in events], caplog.text)
    if failure.key == "ota_encryption_unavailable":
        # Fail closed: nothing but the preamble reached the device, no auth, no image.
        [record] = records
        assert record.received == MAGIC + bytes([record.client_features])
        assert record.auth_ok is None
        assert record.payload == b""


async def test_unreachable_device(
    hass: HomeAssistant, component: None, store_build: StoreBuild
) -> None:
    stored = await store_build(esp32_members())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(HomeAssistantError) as caught:
        await call(hass, job_id=stored.job_id, host="127.0.0.1", port=port)
    assert caught.value.translation_key == "ota_network_error"


def _device(hass: HomeAssistant, domain: str) -> str:
    entry = MockConfigEntry(domain=domain, data={CONF_HOST: "127.0.0.1"})
    entry.add_to_hass(hass)
    return (
        dr.async_get(hass)
        .async_get_or_create(
            config_entry_id=entry.entry_id, identifiers={(domain, "x")}, name="Thing"
        )
        .id
    )


INVALID_CALLS: dict[str, tuple[Callable[[HomeAssistant], dict[str, Any]], str]] = {
    "unknown_job": (lambda _: {"job_id": "nojob", "host": "127.0.0.1"}, "build_not_found"),
    "bad_job_id": (lambda _: {"job_id": "../x", "host": "127.0.0.1"}, "invalid_job_id"),
    "no_such_image": (
        lambda _: {"job_id": "porch", "host": "127.0.0.1", "image": "bootloader"},
        "image_not_in_build",
    ),
    "host_and_device": (
        lambda hass: {"job_id": "job-1", "host": "127.0.0.1", "device_id": esphome_device(hass)},
        "flash_target",
    ),
    "no_target": (lambda _: {"job_id": "job-1", "port": 3232}, "flash_target"),
    "empty_host": (lambda _: {"job_id": "job-1", "host": ""}, "flash_target"),
    "unknown_device": (lambda _: {"job_id": "job-1", "device_id": "nope"}, "device_not_found"),
    "not_an_esphome_device": (
        lambda hass: {"job_id": "job-1", "device_id": _device(hass, "other")},
        "not_esphome_device",
    ),
    "key_not_base64": (
        lambda _: {"job_id": "job-1", "host": "127.0.0.1", "encryption_key": "not*base64"},
        "invalid_encryption_key",
    ),
    "key_too_short": (
        lambda _: {"job_id": "job-1", "host": "127.0.0.1", "encryption_key": PSK_B64[:20]},
        "invalid_encryption_key",
    ),
    "device_key_broken": (
        lambda hass: {"job_id": "job-1", "device_id": esphome_device(hass, psk="c2hvcnQ=")},
        "invalid_encryption_key",
    ),
}


@pytest.mark.parametrize(("data", "key"), INVALID_CALLS.values(), ids=list(INVALID_CALLS))
async def test_invalid_calls(
    hass: HomeAssistant,
    component: None,
    store_build: StoreBuild,
    data: Callable[[HomeAssistant], dict[str, Any]],
    key: str,
) -> None:
    await store_build(esp32_members(), "job-1")
    await store_build(esp8266_members(), "porch")
    events = async_capture_events(hass, EVENT_FLASH)
    with pytest.raises(ServiceValidationError) as caught:
        await call(hass, **data(hass))
    assert caught.value.translation_domain == DOMAIN
    assert caught.value.translation_key == key
    assert "{" not in str(caught.value)
    await hass.async_block_till_done()
    assert events == []


@pytest.mark.parametrize(
    ("error", "key"),
    [
        (OTAPasswordRequiredError("none"), "ota_password_required"),
        (OTAAuthenticationError("wrong", code=0x82), "ota_invalid_auth"),
        (OTAEncryptionRequiredError("key", code=0x94), "ota_encryption_required"),
        (OTAEncryptionUnavailableError("closed"), "ota_encryption_unavailable"),
        (OTAEncryptionKeyError("mac"), "ota_encryption_key_rejected"),
        (OTAEncryptionError("other"), "ota_encryption_failed"),
        (OTAMaybeCommittedError("sent"), "ota_may_be_committing"),
        (OTAUnsupportedError("no access"), "ota_unsupported_type"),
        (
            OTADeviceError("flash", code=0x83, reason="flash_write_failed"),
            "ota_device_flash_write_failed",
        ),
        (OTAProtocolError("stray"), "ota_protocol_error"),
        (OTATimeoutError("silent"), "ota_timeout"),
        (OTAResolveError("nxdomain"), "ota_cannot_resolve"),
        (OTANetworkError("reset"), "ota_network_error"),
        (OTAImageError("empty"), "ota_image_error"),
        (OTAError("other"), "ota_failed"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else None,
)
def test_translate_ota_error(error: OTAError, key: str) -> None:
    """The flash glue's one call: the class names the key, the values are the flash's."""
    translated = translate(error, job_id="job-1", host="kitchen.local", port="3232")
    assert type(translated) is HomeAssistantError
    assert translated.translation_domain == DOMAIN
    assert translated.translation_key == key
    # The library's own text is for the log: no placeholder carries it any more.
    assert translated.translation_placeholders == {
        "job_id": "job-1",
        "host": "kitchen.local",
        "port": "3232",
        "code": "" if error.code is None else f"0x{error.code:02X}",
        "reason": error.reason,
    }
    assert key in STRINGS["exceptions"]


def test_selectors_are_translated() -> None:
    described = yaml.safe_load((PACKAGE / "services.yaml").read_text())
    target = described["submit_build"]["fields"]["flash"]["selector"]["object"]
    assert set(target["fields"]) == set(STRINGS["selector"]["flash_target"]["fields"])
    assert set(target["fields"]) <= set(described["flash"]["fields"])
    image = described["flash"]["fields"]["image"]["selector"]["select"]
    assert image["options"] == [kind.value for kind in ImageKind]
    assert set(STRINGS["selector"]["image"]["options"]) == set(image["options"])


# --- submit_build with a flash target ----------------------------------------------------


async def test_submit_build_and_flash(
    hass: HomeAssistant,
    loaded: MockConfigEntry,
    paired: ReceiverDouble,
    artifacts: bytes,
    esphome_dir: Path,
    start_device: StartDevice,
) -> None:
    """One call: build (waiting is implied), download, verify, store, flash."""
    paired.set_artifacts(artifacts)
    device = await start_device(password=PASSWORD, compression=True)
    response = await call(
        hass,
        "submit_build",
        config_entry_id=loaded.entry_id,
        configuration="esp32-demo.yaml",
        flash={"host": "127.0.0.1", "port": device.port, "password": PASSWORD},
    )
    [record] = await device.wait_for_sessions(1)
    assert record.image == members_of(esp32_members("kitchen"))["firmware.ota.bin"]
    assert response["status"] == "completed"
    assert response["device_name"] == "kitchen"
    result = response["flash"]
    assert result["job_id"] == response["job_id"]
    assert result["image"] == "firmware.ota.bin"
    assert result["bytes_sent"] == record.payload_size
    assert_no_secrets(response)
    await hass.async_block_till_done()
    assert hass.states.get(LAST_JOB).attributes["flash_status"] == "completed"


async def test_submit_build_checks_the_flash_target_first(
    hass: HomeAssistant,
    loaded: MockConfigEntry,
    rd: ReceiverDouble,
    esphome_dir: Path,
) -> None:
    with pytest.raises(ServiceValidationError) as caught:
        await call(
            hass,
            "submit_build",
            config_entry_id=loaded.entry_id,
            configuration="esp32-demo.yaml",
            flash={"host": "127.0.0.1", "encryption_key": "short"},
        )
    assert caught.value.translation_key == "invalid_encryption_key"
    assert not rd.jobs  # nothing was built
