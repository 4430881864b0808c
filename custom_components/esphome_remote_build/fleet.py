"""The devices this integration can build for, and the build servers it builds on.

One :class:`Fleet` per Home Assistant: it pairs every device of the ``esphome``
integration with its YAML in ``<config>/esphome`` (by node name, file stem as fallback),
however many build servers are paired, and picks the server a build goes to.  Update
entities need exactly one owner among the server entries; the fleet names it (the first
entry that set its platform up) and hands the entities over when that entry goes away.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import partial
import logging
from pathlib import Path

from homeassistant.config_entries import (
    SIGNAL_CONFIG_ENTRY_CHANGED,
    ConfigEntry,
    ConfigEntryChange,
    ConfigEntryState,
)
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.dispatcher import async_dispatcher_connect
from homeassistant.helpers.event import async_track_time_interval
from homeassistant.util.hass_dict import HassKey

from .artifacts import DeviceConfig, list_device_configs
from .configurations import configuration_dir
from .const import DOMAIN, ESPHOME_DOMAIN
from .errors import service_error
from .esphome_devices import EsphomeDevice, esphome_devices
from .installs import InstallRecords
from .link import RemoteBuildLink

_LOGGER = logging.getLogger(__name__)

DATA_FLEET: HassKey[Fleet] = HassKey(f"{DOMAIN}_fleet")
# YAML files that come and go are noticed within this time.
CONFIG_REFRESH_INTERVAL = timedelta(minutes=1)
# ESPHome's name_add_mac_suffix appends "-" and the last three MAC bytes in hex.
MAC_SUFFIX_CHARS = 6


def _names_match(config: DeviceConfig, node_name: str) -> bool:
    """Match a YAML to a device's node name (``name-xxxxxx`` with ``name_add_mac_suffix``)."""
    if config.name == node_name:
        return True
    suffix = node_name.removeprefix(f"{config.name}-")
    return (
        config.name_add_mac_suffix
        and suffix != node_name
        and len(suffix) == MAC_SUFFIX_CHARS
        and all(char in "0123456789abcdef" for char in suffix)
    )


class Fleet:
    """Devices, their configurations, and the build servers."""

    def __init__(self, hass: HomeAssistant) -> None:
        self._hass = hass
        self.records = InstallRecords(hass)
        self._configs: dict[str, DeviceConfig] = {}
        self._listeners: list[Callable[[], None]] = []
        self._hosts: dict[str, Callable[[], Callable[[], None]]] = {}
        self._hosting: tuple[str, Callable[[], None]] | None = None
        self._unsubscribers: list[Callable[[], None]] = []

    # --- servers ----------------------------------------------------------------------

    def links(self) -> list[RemoteBuildLink]:
        """Return the links of every loaded build server entry."""
        return [
            entry.runtime_data.link
            for entry in self._hass.config_entries.async_entries(DOMAIN)
            if entry.state is ConfigEntryState.LOADED
        ]

    def pick_link(self) -> RemoteBuildLink:
        """Return the connected server with the shortest queue (its own, plus our builds)."""
        connected = [link for link in self.links() if link.connected]
        if not connected:
            raise service_error("no_server_connected")
        return min(connected, key=lambda link: link.load)

    def server_esphome_version(self) -> str | None:
        """Return the ESPHome version a build would be made with now (next server picked)."""
        links = sorted(self.links(), key=lambda link: (not link.connected, link.load))
        for link in links:
            if link.server_info is not None and link.server_info.esphome_version:
                return link.server_info.esphome_version
        return None

    # --- configurations -----------------------------------------------------------------

    def config_for(self, device: EsphomeDevice) -> DeviceConfig | None:
        """Return the YAML of a device: by node name (a file stem named like it counts too)."""
        by_name = [c for c in self._configs.values() if _names_match(c, device.name)]
        if by_name:
            return min(by_name, key=lambda c: (c.name_from_stem, c.yaml_name))
        return None

    def matches(self) -> list[tuple[EsphomeDevice, DeviceConfig]]:
        """Every device of the esphome integration that has a YAML here."""
        return [
            (device, config)
            for device in esphome_devices(self._hass)
            if device.mac is not None
            and device.device_id is not None  # registered once it first connected
            and (config := self.config_for(device)) is not None
        ]

    async def async_refresh_configs(self, _now: object = None) -> None:
        """Re-read the YAML files; tell the listeners when anything changed."""
        folder: Path = configuration_dir(self._hass)
        configs = await self._hass.async_add_executor_job(
            partial(list_device_configs, folder, secrets_salt=self.records.secrets_salt)
        )
        fresh = {config.yaml_name: config for config in configs}
        if fresh != self._configs:
            self._configs = fresh
            self._notify()

    # --- life-cycle ---------------------------------------------------------------------

    @callback
    def async_add_listener(self, update: Callable[[], None]) -> Callable[[], None]:
        """Call ``update`` when devices, configurations or servers changed."""
        self._listeners.append(update)
        return lambda: self._listeners.remove(update)

    @callback
    def _notify(self) -> None:
        for update in list(self._listeners):
            update()

    async def async_start(self) -> None:
        """Load the records and configurations; follow esphome entries and the folder."""
        await self.records.async_load()
        await self.async_refresh_configs()

        @callback
        def _entry_changed(_change: ConfigEntryChange, entry: ConfigEntry) -> None:
            if entry.domain in (ESPHOME_DOMAIN, DOMAIN):
                self._notify()

        @callback
        def _device_changed(_event: Event[dr.EventDeviceRegistryUpdatedData]) -> None:
            self._notify()

        self._unsubscribers = [
            async_dispatcher_connect(self._hass, SIGNAL_CONFIG_ENTRY_CHANGED, _entry_changed),
            self._hass.bus.async_listen(dr.EVENT_DEVICE_REGISTRY_UPDATED, _device_changed),
            async_track_time_interval(
                self._hass,
                self.async_refresh_configs,
                CONFIG_REFRESH_INTERVAL,
                cancel_on_shutdown=True,
            ),
        ]

    @callback
    def async_stop(self) -> None:
        """Stop following (the last server entry went away)."""
        while self._unsubscribers:
            self._unsubscribers.pop()()

    @callback
    def async_offer_host(
        self, entry_id: str, start: Callable[[], Callable[[], None]]
    ) -> Callable[[], None]:
        """Offer a server entry as the home of the update entities; returns the withdrawal.

        The first entry offered hosts them (``start`` adds them and returns its stop).
        When the host's entry unloads, the next entry offered takes over in place: its
        platform adds the same entities (same unique ids) without any reload.
        """
        self._hosts[entry_id] = start
        if self._hosting is None:
            self._async_host(entry_id)

        @callback
        def _withdraw() -> None:
            self._hosts.pop(entry_id, None)
            if self._hosting is not None and self._hosting[0] == entry_id:
                self._hosting[1]()
                self._hosting = None
                if self._hosts and not self._hass.is_stopping:
                    self._async_host(next(iter(self._hosts)))

        return _withdraw

    @callback
    def _async_host(self, entry_id: str) -> None:
        _LOGGER.debug("Update entities live under entry %s", entry_id)
        self._hosting = (entry_id, self._hosts[entry_id]())


async def async_get_fleet(hass: HomeAssistant) -> Fleet:
    """Return the one fleet, started on first use."""
    if (fleet := hass.data.get(DATA_FLEET)) is None:
        fleet = hass.data[DATA_FLEET] = Fleet(hass)
        await fleet.async_start()
    return fleet
