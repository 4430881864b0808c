"""submit_build offers the YAML files of <config>/esphome in its form, kept current."""

from __future__ import annotations

from pathlib import Path
import shutil
from typing import Any
from unittest.mock import patch

from homeassistant.core import HomeAssistant
from homeassistant.helpers.service import async_get_all_descriptions
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import async_fire_time_changed

from custom_components.esphome_remote_build import configurations
from custom_components.esphome_remote_build.configurations import (
    REFRESH_INTERVAL,
    list_configurations,
)
from custom_components.esphome_remote_build.const import DOMAIN

DEMOS = ["esp32-demo.yaml", "esp8266-demo.yaml", "failing-device.yaml", "slow-device.yaml"]


async def configuration_selector(hass: HomeAssistant) -> dict[str, Any]:
    descriptions = await async_get_all_descriptions(hass)
    selector: dict[str, Any] = descriptions[DOMAIN]["submit_build"]["fields"]["configuration"][
        "selector"
    ]
    return selector


async def tick(hass: HomeAssistant) -> None:
    async_fire_time_changed(hass, dt_util.utcnow() + REFRESH_INTERVAL)
    await hass.async_block_till_done(wait_background_tasks=True)


async def test_the_form_offers_the_device_yaml_files(
    hass: HomeAssistant, esphome_dir: Path
) -> None:
    published: list[dict[str, Any]] = []
    real = configurations.async_set_service_schema

    def spy(hass: HomeAssistant, domain: str, service: str, schema: dict[str, Any]) -> None:
        published.append(schema)
        real(hass, domain, service, schema)

    with patch.object(configurations, "async_set_service_schema", spy):
        assert await async_setup_component(hass, DOMAIN, {})
        await hass.async_block_till_done(wait_background_tasks=True)
        # secrets.yaml and the common/ folder are not devices; typing a name stays allowed.
        assert await configuration_selector(hass) == {
            "select": {"options": DEMOS, "custom_value": True, "mode": "dropdown", "sort": True}
        }
        assert len(published) == 1
        # The rest of the action's description is the static one.
        descriptions = await async_get_all_descriptions(hass)
        assert set(descriptions[DOMAIN]["submit_build"]["fields"]) == {
            "config_entry_id",
            "configuration",
            "wait",
            "flash",
            "esphome_version",
        }

        await tick(hass)  # nothing changed: nothing is published again
        assert len(published) == 1

        (esphome_dir / "new-device.yml").write_text("esphome:\n  name: new\n")
        (esphome_dir / ".hidden.yaml").write_text("")
        (esphome_dir / "notes.txt").write_text("")
        (esphome_dir / "folder.yaml").mkdir()
        await tick(hass)
        assert (await configuration_selector(hass))["select"]["options"] == sorted(
            [*DEMOS, "new-device.yml"]
        )
        assert len(published) == 2


async def test_no_esphome_folder_offers_nothing(hass: HomeAssistant) -> None:
    assert await async_setup_component(hass, DOMAIN, {})
    await hass.async_block_till_done(wait_background_tasks=True)
    assert (await configuration_selector(hass))["select"]["options"] == []


@pytest.mark.parametrize(
    ("names", "listed"),
    [
        (
            ["b.yaml", "a.YML", "secrets.yaml", "Secrets.yml", ".x.yaml", "x.json"],
            ["a.YML", "b.yaml"],
        ),
        ([], []),
    ],
)
def test_list_configurations(tmp_path: Path, names: list[str], listed: list[str]) -> None:
    for name in names:
        (tmp_path / name).write_text("")
    (tmp_path / "dir.yaml").mkdir()
    (tmp_path / "link.yaml").symlink_to(tmp_path / "missing.yaml")  # dangling: not a file
    assert list_configurations(tmp_path) == listed
    shutil.rmtree(tmp_path)
    assert list_configurations(tmp_path) == []
