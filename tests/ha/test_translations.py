"""Every key the code uses is translated; the user-visible files agree with each other."""

from __future__ import annotations

import json
from pathlib import Path
import re

from homeassistant.core import HomeAssistant
from homeassistant.helpers.service import async_get_all_descriptions
from homeassistant.setup import async_setup_component

from custom_components.esphome_remote_build import services
from custom_components.esphome_remote_build.const import DOMAIN

PACKAGE = Path(services.__file__).parent
STRINGS = json.loads((PACKAGE / "strings.json").read_text())


def source(module: str) -> str:
    return (PACKAGE / module).read_text()


def test_translations_match_strings() -> None:
    english = json.loads((PACKAGE / "translations" / "en.json").read_text())
    assert english == STRINGS


def test_every_error_key_is_translated() -> None:
    keys = {key for _, key, _ in services._FAILURES}
    keys |= set(re.findall(r'_error\(\s*"([a-z_]+)"', source("services.py")))
    assert keys <= set(STRINGS["exceptions"])


def test_every_flow_key_is_translated() -> None:
    code = source("config_flow.py")
    aborts = set(re.findall(r'reason="([a-z_]+)"', code))
    aborts |= set(re.findall(r'_approval_error(?:, self\._reject_reason)? = "([a-z_]+)"', code))
    errors = set(re.findall(r'errors\[[^\]]+\] = "([a-z_]+)"', code))
    errors |= set(re.findall(r'return "([a-z_]+)"', code))
    steps = set(re.findall(r'(?<!next_)step_id="([a-z_]+)"', code)) - {"init"}
    config = STRINGS["config"]
    assert aborts <= set(config["abort"])
    assert errors <= set(config["error"])
    assert steps - {"wait_approval"} <= set(config["step"])
    assert "wait_approval" in config["progress"]


def test_every_issue_key_is_translated() -> None:
    keys = set(re.findall(r'translation_key = "([a-z_]+)"', source("link.py")))
    assert keys == set(STRINGS["issues"])


async def test_services_are_described(hass: HomeAssistant) -> None:
    assert await async_setup_component(hass, DOMAIN, {})
    descriptions = (await async_get_all_descriptions(hass))[DOMAIN]
    assert set(descriptions) == set(STRINGS["services"])
    for name, description in descriptions.items():
        assert set(description["fields"]) == set(STRINGS["services"][name]["fields"])
    icons = json.loads((PACKAGE / "icons.json").read_text())
    assert set(icons["services"]) == set(STRINGS["services"])
