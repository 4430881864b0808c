"""The base of every entity: one device per build server, state pushed by the link."""

from __future__ import annotations

from homeassistant.helpers.device_registry import DeviceEntryType, DeviceInfo
from homeassistant.helpers.entity import Entity, EntityDescription

from .const import CONF_PIN, DOMAIN
from .link import RemoteBuildConfigEntry, RemoteBuildLink


class RemoteBuildEntity(Entity):
    """An entity of one build server; it re-renders whenever the link reports a change."""

    _attr_has_entity_name = True
    _attr_should_poll = False

    def __init__(self, entry: RemoteBuildConfigEntry, description: EntityDescription) -> None:
        self.entity_description = description
        self._link: RemoteBuildLink = entry.runtime_data.link
        pin = entry.data[CONF_PIN]
        self._attr_unique_id = f"{pin}_{description.key}"
        self._attr_device_info = DeviceInfo(
            identifiers={(DOMAIN, pin)},
            name=entry.title,
            manufacturer="ESPHome",
            model="Device Builder build server",
            entry_type=DeviceEntryType.SERVICE,
        )

    async def async_added_to_hass(self) -> None:
        """Follow the link's state changes."""
        self.async_on_remove(self._link.async_add_listener(self.async_write_ha_state))
