"""The device configurations a build can be made of: the YAML files of ``<config>/esphome``.

That folder is where the ESPHome add-on and Device Builder keep them.  A name given by a
caller travels to the build server and picks the files we bundle, so it is checked here
before anything else happens; the names that exist are offered in the action's form.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.event import async_track_time_interval
from homeassistant.helpers.service import async_set_service_schema
from homeassistant.loader import async_get_integration
from homeassistant.util.yaml import load_yaml_dict

from .artifacts import is_device_yaml_name
from .const import DOMAIN, ESPHOME_CONFIG_FOLDER
from .errors import service_error

_SECRETS_STEM = "secrets"
# New files in the folder show up in the action's form within this time.
REFRESH_INTERVAL = timedelta(minutes=1)
SUBMIT_SERVICE = "submit_build"
CONFIGURATION_FIELD = "configuration"


def configuration_dir(hass: HomeAssistant) -> Path:
    """Return ``<config>/esphome``."""
    return Path(hass.config.path(ESPHOME_CONFIG_FOLDER))


def check_configuration(config_dir: Path, name: str) -> None:
    """Refuse any name but a plain device YAML directly inside ``config_dir``.

    Blocking (resolves symlinks).  No paths, no ``..``, no link that points elsewhere,
    and never the shared ``secrets.yaml``.
    """
    shown = name if len(name) <= 64 else f"{name[:64]}…"
    if not is_device_yaml_name(name):
        raise service_error("invalid_configuration", validation=True, configuration=shown)
    try:
        real = (config_dir / name).resolve(strict=True)
    except OSError:
        raise service_error(
            "configuration_not_found", validation=True, configuration=shown
        ) from None
    if real.parent != config_dir.resolve() or real.stem.lower() == _SECRETS_STEM:
        raise service_error("configuration_outside", validation=True, configuration=shown)
    if not real.is_file():
        raise service_error("configuration_not_found", validation=True, configuration=shown)


def list_configurations(config_dir: Path) -> list[str]:
    """Return the device YAML file names in ``config_dir``, sorted (blocking)."""
    try:
        entries = list(config_dir.iterdir())
    except OSError:
        return []
    return sorted(
        entry.name for entry in entries if is_device_yaml_name(entry.name) and entry.is_file()
    )


class ConfigurationChoices:
    """Offers the folder's YAML files in ``submit_build``'s form (typing one stays allowed).

    Home Assistant's service descriptions are static files; this one field's choices are
    not, so its description is set anew whenever the folder's list changes.
    """

    def __init__(self, hass: HomeAssistant) -> None:
        self._hass = hass
        self._description: dict[str, Any] | None = None
        self._names: list[str] | None = None

    async def async_refresh(self, _now: object = None) -> None:
        """Read the folder and publish its file names if they changed."""
        names = await self._hass.async_add_executor_job(
            list_configurations, configuration_dir(self._hass)
        )
        if names == self._names:
            return
        if self._description is None:
            integration = await async_get_integration(self._hass, DOMAIN)
            services = await self._hass.async_add_executor_job(
                load_yaml_dict, str(integration.file_path / "services.yaml")
            )
            self._description = services[SUBMIT_SERVICE]
        self._description["fields"][CONFIGURATION_FIELD]["selector"] = {
            "select": {"options": names, "custom_value": True, "mode": "dropdown", "sort": True}
        }
        async_set_service_schema(self._hass, DOMAIN, SUBMIT_SERVICE, self._description)
        self._names = names

    @callback
    def async_start(self) -> None:
        """Publish the list now and keep it current while Home Assistant runs."""
        self._hass.async_create_background_task(
            self.async_refresh(), f"{DOMAIN} configuration list"
        )
        async_track_time_interval(
            self._hass, self.async_refresh, REFRESH_INTERVAL, cancel_on_shutdown=True
        )
