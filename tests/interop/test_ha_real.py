"""Home Assistant with this integration against the real ESPHome Device Builder.

The whole user path inside a real ``hass``: the config flow pairs with the printed key,
``submit_build`` with ``wait: true`` builds an ESPHome YAML from Home Assistant's
``esphome/`` folder, and the stored images must be exactly what the server's compiler
wrote (stand-in compiler, real receiver code).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
import shutil

from homeassistant import config_entries
from homeassistant.const import CONF_HOST, CONF_PORT
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import entity_registry as er
import pytest

from custom_components.esphome_remote_build.const import CONF_PAIRING_KEY, CONF_PIN, DOMAIN
from custom_components.esphome_remote_build.link import async_get_identity
from tests.support.real_builder import RealBuilder

FIXTURES = Path(__file__).parent.parent / "fixtures" / "esphome"


@pytest.fixture(autouse=True)
def _custom_integrations(enable_custom_integrations: None) -> None:
    """Let Home Assistant load the integration from custom_components/."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def _pair_through_the_flow(hass: HomeAssistant, builder: RealBuilder) -> str:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_USER}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "user"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_HOST: builder.host, CONF_PORT: builder.port}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "pair"
    placeholders = result["description_placeholders"] or {}
    assert builder.pin[:2] in " ".join(str(v) for v in placeholders.values())
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_PAIRING_KEY: builder.pairing_key}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["result"].unique_id == builder.pin
    assert result["data"][CONF_PIN] == builder.pin
    await hass.async_block_till_done()
    return result["result"].entry_id


@pytest.fixture
def hass_config_dir(hass_tmp_config_dir: str) -> str:
    """A private config folder per test: builds and the esphome folder land there."""
    return hass_tmp_config_dir


async def test_pair_build_download_store(
    hass: HomeAssistant, real_builder: RealBuilder, hass_tmp_config_dir: str
) -> None:
    assert hass.config.config_dir == hass_tmp_config_dir
    shutil.copytree(FIXTURES, Path(hass_tmp_config_dir) / "esphome")
    entry_id = await _pair_through_the_flow(hass, real_builder)
    entry = hass.config_entries.async_get_entry(entry_id)
    assert entry is not None
    await asyncio.wait_for(entry.runtime_data.link.async_wait_connected(), 10)

    response = await hass.services.async_call(
        DOMAIN,
        "submit_build",
        {"config_entry_id": entry_id, "configuration": "esp32-demo.yaml", "wait": True},
        blocking=True,
        return_response=True,
    )
    assert response is not None
    assert response["status"] == "completed"
    job_id = response["job_id"]
    assert response["device_name"] == "esp32-demo"
    assert response["firmware_offset"] == "0x10000"
    images = response["images"]
    assert [i["name"] for i in images][:4] == [
        "firmware.bin",
        "bootloader.bin",
        "partitions.bin",
        "ota_data_initial.bin",
    ]

    identity = await async_get_identity(hass)
    receipt = real_builder.build_files("esp32-demo", dashboard_id=identity.dashboard_id)
    directory = Path(response["directory"])
    assert directory == Path(hass_tmp_config_dir) / "esphome_remote_build" / "builds" / job_id
    assert directory.stat().st_mode & 0o777 == 0o700
    for image in images:
        stored = Path(image["path"])
        assert stored.parent.is_relative_to(directory)
        assert stored.stat().st_mode & 0o777 == 0o600
        built = receipt.file(image["name"])
        # what we stored == what the server's compiler wrote == what the response says
        assert _sha256(stored) == built.read_sha256() == image["sha256"]
        assert image["size"] == built.size
        if image["name"] not in ("firmware.bin", "firmware.ota.bin", "firmware.factory.bin"):
            assert image["offset"] == built.offset
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["server_pin"] == real_builder.pin
    assert manifest["job_id"] == job_id

    # a second download of a stored build answers from the store
    again = await hass.services.async_call(
        DOMAIN,
        "download_artifacts",
        {"config_entry_id": entry_id, "job_id": job_id},
        blocking=True,
        return_response=True,
    )
    assert again is not None
    assert again["images"] == images
    assert await hass.config_entries.async_unload(entry_id)


async def test_cancel_build_and_job_events(
    hass: HomeAssistant, real_builder: RealBuilder, hass_tmp_config_dir: str
) -> None:
    shutil.copytree(FIXTURES, Path(hass_tmp_config_dir) / "esphome")
    entry_id = await _pair_through_the_flow(hass, real_builder)
    entry = hass.config_entries.async_get_entry(entry_id)
    assert entry is not None
    await asyncio.wait_for(entry.runtime_data.link.async_wait_connected(), 10)
    events: list[dict[str, object]] = []
    hass.bus.async_listen(f"{DOMAIN}_job", lambda event: events.append(dict(event.data)))

    submitted = await hass.services.async_call(
        DOMAIN,
        "submit_build",
        {"config_entry_id": entry_id, "configuration": "slow-device.yaml"},
        blocking=True,
        return_response=True,
    )
    assert submitted is not None
    job_id = submitted["job_id"]
    async with asyncio.timeout(60):
        while not any(e["status"] == "running" for e in events):
            await asyncio.sleep(0.05)
    await hass.services.async_call(
        DOMAIN,
        "cancel_build",
        {"config_entry_id": entry_id, "job_id": job_id},
        blocking=True,
        return_response=True,
    )
    async with asyncio.timeout(30):
        while not any(e["status"] == "cancelled" for e in events):
            await asyncio.sleep(0.05)
    assert {e["job_id"] for e in events} == {job_id}
    assert all(e["config_entry_id"] == entry_id for e in events)
    assert all(e["configuration"] == "slow-device.yaml" for e in events)
    assert [e["status"] for e in events][-1] == "cancelled"
    registry = er.async_get(hass)
    (last_job,) = [
        e.entity_id
        for e in er.async_entries_for_config_entry(registry, entry_id)
        if e.translation_key == "last_job"
    ]
    state = hass.states.get(last_job)
    assert state is not None
    assert state.state == "cancelled"
    assert await hass.config_entries.async_unload(entry_id)
