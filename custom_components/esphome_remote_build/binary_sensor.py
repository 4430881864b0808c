"""Whether the encrypted session to the build server is open."""

from __future__ import annotations

from homeassistant.components.binary_sensor import (
    BinarySensorEntity,
    BinarySensorEntityDescription,
)
from homeassistant.components.binary_sensor.const import BinarySensorDeviceClass
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .entity import RemoteBuildEntity
from .link import RemoteBuildConfigEntry

PARALLEL_UPDATES = 0

CONNECTED = BinarySensorEntityDescription(
    key="connected",
    translation_key="connected",
    device_class=BinarySensorDeviceClass.CONNECTIVITY,
    entity_category=EntityCategory.DIAGNOSTIC,
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: RemoteBuildConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the connectivity sensor of one server."""
    async_add_entities([RemoteBuildConnectedSensor(entry, CONNECTED)])


class RemoteBuildConnectedSensor(RemoteBuildEntity, BinarySensorEntity):
    """On while a session is open; always available, since "off" is the news."""

    @property
    def is_on(self) -> bool:
        """Tell whether the session is open."""
        return self._link.connected
