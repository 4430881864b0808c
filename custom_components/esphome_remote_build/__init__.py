"""ESPHome Remote Build: compile ESPHome firmware on a paired Device Builder build server."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from homeassistant.const import EVENT_HOMEASSISTANT_STOP, Platform
from homeassistant.core import Event, HomeAssistant
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers.typing import ConfigType

from .build_logs import BuildLogs, remove_log
from .configurations import ConfigurationChoices
from .const import BUILDS_FOLDER, DATA_LOGS, DATA_STORE, DOMAIN, LOGS_FOLDER
from .link import RemoteBuildConfigEntry, RemoteBuildData, RemoteBuildLink, async_get_identity
from .services import async_setup_services
from .store import BuildStore

PLATFORMS = [Platform.BINARY_SENSOR, Platform.SENSOR, Platform.UPDATE]

CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Create the build store and logs, register the actions (they exist with no entry)."""
    root = Path(hass.config.path(DOMAIN))
    # A deleted build takes its log along; a log without a build is kept for a while.
    store = BuildStore(root / BUILDS_FOLDER, on_delete=partial(remove_log, root / LOGS_FOLDER))
    hass.data[DATA_STORE] = store
    hass.data[DATA_LOGS] = BuildLogs(root / LOGS_FOLDER, is_stored=store.holds)
    async_setup_services(hass)
    ConfigurationChoices(hass).async_start()
    return True


async def async_setup_entry(hass: HomeAssistant, entry: RemoteBuildConfigEntry) -> bool:
    """Start the link to one build server; it connects in the background."""
    link = RemoteBuildLink(
        hass, entry, await async_get_identity(hass), hass.data[DATA_STORE], hass.data[DATA_LOGS]
    )
    entry.runtime_data = RemoteBuildData(link=link)
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    await link.async_start()

    async def _async_stop(_event: Event) -> None:
        await link.async_stop()

    entry.async_on_unload(hass.bus.async_listen_once(EVENT_HOMEASSISTANT_STOP, _async_stop))
    return True


async def async_unload_entry(hass: HomeAssistant, entry: RemoteBuildConfigEntry) -> bool:
    """Stop the link and remove the entities."""
    unloaded = await hass.config_entries.async_unload_platforms(entry, PLATFORMS)
    if unloaded:
        await entry.runtime_data.link.async_stop()
    return unloaded
