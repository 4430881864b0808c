"""One firmware update entity per ESPHome device that has its YAML in ``<config>/esphome``.

It sits on the ESPHome device's own page (it joins that device by MAC address), offers
an update when the build server's ESPHome is newer than the device's, or when the
device's configuration files changed since the build this integration last installed on
it, and installs by building on the least busy server, flashing over the air and waiting
for the device to prove it runs the new build.  A specific version is the job id of a
stored build of that device: installing it flashes that build again (a rollback).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from awesomeversion import AwesomeVersion, AwesomeVersionException
from homeassistant.components.update import (
    UpdateDeviceClass,
    UpdateEntity,
    UpdateEntityDescription,
    UpdateEntityFeature,
)
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import device_registry as dr, entity_registry as er
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .artifacts import DeviceConfig
from .const import DATA_STORE
from .esphome_devices import EsphomeDevice, async_subscribe_device, esphome_device
from .fleet import Fleet, async_get_fleet
from .install import async_install
from .link import RemoteBuildConfigEntry
from .stored_build import StoredBuild

PARALLEL_UPDATES = 0

FIRMWARE = UpdateEntityDescription(
    key="firmware",
    translation_key="firmware",
    device_class=UpdateDeviceClass.FIRMWARE,
    entity_category=EntityCategory.CONFIG,
)
CHANGELOG_URL = "https://esphome.io/changelog/{version}.html"
SHORT_HASH = 8


async def async_setup_entry(
    hass: HomeAssistant,
    entry: RemoteBuildConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Offer this entry as a home for the update entities (one entry holds them all)."""
    fleet = await async_get_fleet(hass)
    entry.async_on_unload(
        fleet.async_offer_host(entry.entry_id, _EntityHost(hass, fleet, async_add_entities).start)
    )


class _EntityHost:
    """Keeps one update entity per device/YAML pair under the entry that hosts them."""

    def __init__(
        self, hass: HomeAssistant, fleet: Fleet, add_entities: AddConfigEntryEntitiesCallback
    ) -> None:
        self._hass = hass
        self._fleet = fleet
        self._add_entities = add_entities
        self._entities: dict[str, RemoteBuildUpdateEntity] = {}

    @callback
    def start(self) -> Callable[[], None]:
        """Add the entities now and follow the fleet; returns the function that stops."""
        self._sync()
        return self._fleet.async_add_listener(self._sync)

    @callback
    def _sync(self) -> None:
        """Add entities for new device/YAML pairs, remove those whose pair went away."""
        current = {
            device.mac: (device, config) for device, config in self._fleet.matches() if device.mac
        }
        devices = dr.async_get(self._hass)
        new = [
            RemoteBuildUpdateEntity(
                self._fleet,
                mac,
                device,
                config,
                devices.async_get(device.device_id) if device.device_id else None,
            )
            for mac, (device, config) in current.items()
            if mac not in self._entities
        ]
        for entity in new:
            self._entities[entity.mac] = entity
        if new:
            self._add_entities(new)
        registry = er.async_get(self._hass)
        for mac in [mac for mac in self._entities if mac not in current]:
            gone = self._entities.pop(mac)
            if gone.entity_id and registry.async_get(gone.entity_id):
                registry.async_remove(gone.entity_id)
        for mac, (_device, config) in current.items():
            self._entities[mac].async_set_config(config)


def _newer(candidate: str, than: str) -> bool:
    try:
        return AwesomeVersion(candidate) > AwesomeVersion(than)
    except AwesomeVersionException:
        return False


class RemoteBuildUpdateEntity(UpdateEntity):
    """The firmware of one ESPHome device, built remotely and verified after flashing."""

    entity_description = FIRMWARE
    _attr_has_entity_name = True
    _attr_should_poll = False
    _attr_supported_features = (
        UpdateEntityFeature.INSTALL
        | UpdateEntityFeature.PROGRESS
        | UpdateEntityFeature.SPECIFIC_VERSION
        | UpdateEntityFeature.RELEASE_NOTES
    )

    def __init__(
        self,
        fleet: Fleet,
        mac: str,
        device: EsphomeDevice,
        config: DeviceConfig,
        registered: dr.AnyDeviceEntry | None,
    ) -> None:
        self._fleet = fleet
        self.mac = mac
        self._entry_id = device.entry_id
        self._device = device
        self._config = config
        self._stored: list[StoredBuild] = []
        self._link_listeners: list[Callable[[], None]] = []
        self._attr_unique_id = f"{mac}_firmware"
        # The ESPHome device's own registry entry: the entity joins its page, no new device.
        self.device_entry = registered

    # --- what the entity shows ----------------------------------------------------------

    @property
    def available(self) -> bool:
        """An update needs a device that is online and a server that is connected.

        While an install runs the entity stays available: the device's reboot is part of it.
        """
        if self._attr_in_progress:
            return True
        return self._device.available and any(link.connected for link in self._fleet.links())

    @property
    def installed_version(self) -> str | None:
        """The device's ESPHome version, and our configuration's short hash if we built it."""
        firmware = self._device.firmware
        if firmware is None:
            return None
        record = self._fleet.records.get(self.mac)
        if record is not None and record.compilation_time == firmware.compilation_time:
            return f"{firmware.esphome_version} ({record.fingerprint[:SHORT_HASH]})"
        return firmware.esphome_version

    @property
    def latest_version(self) -> str | None:
        """What a build would give the device now: the server's ESPHome, this configuration."""
        version = self._fleet.server_esphome_version()
        if version is None:
            return None
        return f"{version} ({self._config.fingerprint[:SHORT_HASH]})"

    def version_is_newer(self, latest_version: str, installed_version: str) -> bool:
        """Offer an update for a newer ESPHome, or for changed configuration files."""
        return bool(self._reasons())

    def _changed_files(self) -> list[str] | None:
        """Files changed since the build we installed (None: we never installed one)."""
        record = self._fleet.records.get(self.mac)
        firmware = self._device.firmware
        if (
            record is None
            or firmware is None
            or record.compilation_time != firmware.compilation_time
        ):
            return None
        if record.fingerprint == self._config.fingerprint:
            return []
        paths = set(record.files) | set(self._config.files)
        changed = [p for p in paths if record.files.get(p) != self._config.files.get(p)]
        return sorted(changed) or ["secrets"]

    def _reasons(self) -> list[str]:
        reasons: list[str] = []
        server = self._fleet.server_esphome_version()
        firmware = self._device.firmware
        if server and firmware is not None and _newer(server, firmware.esphome_version):
            reasons.append(f"ESPHome {firmware.esphome_version} → {server}")
        if changed := self._changed_files():
            reasons.append(f"Configuration changed: {', '.join(changed)}")
        return reasons

    @property
    def release_summary(self) -> str | None:
        """Say why an update is offered (versions, or the changed files)."""
        return "; ".join(self._reasons()) or None

    @property
    def release_url(self) -> str | None:
        """ESPHome's changelog of the version a build would use."""
        version = self._fleet.server_esphome_version()
        return CHANGELOG_URL.format(version=version) if version else None

    async def async_release_notes(self) -> str | None:
        """Explain the update and list the stored builds a rollback can use."""
        lines = [f"- {reason}" for reason in self._reasons()] or ["- Up to date."]
        if url := self.release_url:
            lines.append(f"\n[ESPHome changelog]({url})")
        if self._stored:
            lines.append("\nStored builds (install one by its job ID to roll back):")
            lines += [
                f"- `{build.job_id}` — {build.created_at[:19].replace('T', ' ')}"
                for build in self._stored
            ]
        return "\n".join(lines)

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        """Name the YAML and the stored builds of this device (rollback targets)."""
        return {
            "configuration": self._config.yaml_name,
            "stored_builds": [build.job_id for build in self._stored],
        }

    # --- following changes --------------------------------------------------------------

    async def async_added_to_hass(self) -> None:
        """Follow the device, the fleet, and the build servers."""
        self.async_on_remove(
            async_subscribe_device(self.hass, self._entry_id, self._async_device_changed)
        )
        self.async_on_remove(self._fleet.async_add_listener(self._async_follow_links))
        self.async_on_remove(self._async_unfollow_links)
        self._async_follow_links()
        await self._async_refresh_stored()

    @callback
    def _async_follow_links(self) -> None:
        """Listen to every loaded server (they come and go with their entries)."""
        self._async_unfollow_links()
        self._link_listeners = [
            link.async_add_listener(self.async_write_ha_state) for link in self._fleet.links()
        ]
        self.async_write_ha_state()

    @callback
    def _async_unfollow_links(self) -> None:
        while self._link_listeners:
            self._link_listeners.pop()()

    @callback
    def _async_device_changed(self) -> None:
        if (device := esphome_device(self.hass, self._entry_id)) is not None:
            self._device = device
        self.async_write_ha_state()

    @callback
    def async_set_config(self, config: DeviceConfig) -> None:
        """Take the device's YAML as read again."""
        if config != self._config:
            self._config = config
            if self.hass is not None:
                self.async_write_ha_state()

    async def async_update(self) -> None:
        """Read the YAML files and the stored builds again (``homeassistant.update_entity``).

        They are also read every minute and after each install; this is the way not to wait.
        """
        await self._fleet.async_refresh_configs()
        await self._async_refresh_stored()

    async def _async_refresh_stored(self) -> None:
        builds = await self.hass.data[DATA_STORE].async_list()
        self._stored = [build for build in builds if build.device_name == self._device.name]

    # --- installing ---------------------------------------------------------------------

    @callback
    def _progress(self, percent: int | None) -> None:
        self._attr_in_progress = True
        self._attr_update_percentage = percent
        self.async_write_ha_state()

    async def async_install(
        self,
        version: str | None,
        backup: bool,
        **kwargs: Any,  # noqa: ANN401 - HA's signature
    ) -> None:
        """Build (or take the stored build ``version``), flash it, and verify it."""
        self._progress(None)
        try:
            # The files as they are now: the build uses them, so the record must too.
            await self._fleet.async_refresh_configs()
            config = self._fleet.config_for(self._device) or self._config
            await async_install(
                self.hass, self._fleet, self._device, config, self._progress, job_id=version
            )
        finally:
            self._attr_in_progress = False
            self._attr_update_percentage = None
            await self._async_refresh_stored()
