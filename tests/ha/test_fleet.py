"""Which YAML belongs to which device, and which server a build goes to."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
import pytest

from custom_components.esphome_remote_build.artifacts import DeviceConfig
from custom_components.esphome_remote_build.esphome_devices import EsphomeDevice
from custom_components.esphome_remote_build.fleet import Fleet


def _config(yaml_name: str, name: str, **changes: object) -> DeviceConfig:
    config = DeviceConfig(
        yaml_name=yaml_name,
        name=name,
        name_from_stem=False,
        friendly_name=None,
        ota_password=None,
        api_encryption_key=None,
        files=MappingProxyType({}),
        fingerprint="0" * 64,
    )
    return replace(config, **changes)  # type: ignore[arg-type]


def _device(name: str) -> EsphomeDevice:
    return EsphomeDevice(
        entry_id="e",
        device_id="d",
        name=name,
        title=name,
        mac="aa:bb:cc:dd:ee:ff",
        host="127.0.0.1",
        noise_psk=None,
        available=True,
        firmware=None,
        deep_sleep=False,
    )


@pytest.mark.parametrize(
    ("configs", "node_name", "expected"),
    [
        pytest.param([_config("a.yaml", "kitchen")], "kitchen", "a.yaml", id="by-name"),
        pytest.param([_config("a.yaml", "porch")], "kitchen", None, id="no-match"),
        pytest.param(
            [_config("kitchen.yaml", "kitchen", name_from_stem=True), _config("z.yaml", "kitchen")],
            "kitchen",
            "z.yaml",
            id="a-real-name-beats-a-stem",
        ),
        pytest.param(
            [_config("a.yaml", "plug", name_add_mac_suffix=True)],
            "plug-a1b2c3",
            "a.yaml",
            id="mac-suffix",
        ),
        pytest.param(
            [_config("a.yaml", "plug")], "plug-a1b2c3", None, id="suffix-without-the-option"
        ),
        pytest.param(
            [_config("a.yaml", "plug", name_add_mac_suffix=True)],
            "plug-kitchen",
            None,
            id="not-a-mac-suffix",
        ),
    ],
)
def test_config_for(
    hass: HomeAssistant, configs: list[DeviceConfig], node_name: str, expected: str | None
) -> None:
    fleet = Fleet(hass)
    fleet._configs = {config.yaml_name: config for config in configs}
    found = fleet.config_for(_device(node_name))
    assert (found.yaml_name if found is not None else None) == expected


class _Link:
    def __init__(self, title: str, *, connected: bool, load: int, version: str = "") -> None:
        self.title, self.connected, self.load = title, connected, load
        self.server_info = type("Info", (), {"esphome_version": version})() if version else None


def test_the_least_busy_connected_server_builds(
    hass: HomeAssistant, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet = Fleet(hass)
    links = [
        _Link("busy", connected=True, load=3, version="2026.10.0"),
        _Link("idle-but-down", connected=False, load=0, version="2026.11.0"),
        _Link("quiet", connected=True, load=1, version="2026.10.1"),
    ]
    monkeypatch.setattr(fleet, "links", lambda: links)
    assert fleet.pick_link().title == "quiet"  # type: ignore[attr-defined]
    # The version a build would get is the version of the server that would build it.
    assert fleet.server_esphome_version() == "2026.10.1"


def test_no_connected_server_is_a_translated_error(
    hass: HomeAssistant, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet = Fleet(hass)
    monkeypatch.setattr(fleet, "links", lambda: [_Link("down", connected=False, load=0)])
    with pytest.raises(HomeAssistantError) as caught:
        fleet.pick_link()
    assert caught.value.translation_key == "no_server_connected"
