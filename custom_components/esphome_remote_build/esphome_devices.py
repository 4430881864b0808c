"""What Home Assistant's own ``esphome`` integration knows about a device.

Its config entries hold the address and API encryption key; its runtime data says whether
the device is connected and which firmware it reported (``esphome_version``,
``compilation_time``).  This integration does not require aioesphomeapi, so those objects
are read by attribute, defensively, in this one module: the rest of the glue sees plain
:class:`EsphomeDevice` values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from homeassistant.config_entries import (
    SIGNAL_CONFIG_ENTRY_CHANGED,
    ConfigEntry,
    ConfigEntryChange,
    ConfigEntryState,
)
from homeassistant.const import CONF_HOST
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.dispatcher import async_dispatcher_connect

from .const import ESPHOME_CONF_DEVICE_NAME, ESPHOME_CONF_NOISE_PSK, ESPHOME_DOMAIN


@dataclass(frozen=True, slots=True)
class RunningFirmware:
    """What a device said about the firmware it runs when it last connected."""

    esphome_version: str
    compilation_time: str


@dataclass(frozen=True, slots=True)
class EsphomeDevice:
    """One device of the ``esphome`` integration, as far as building for it matters."""

    entry_id: str
    device_id: str | None
    name: str
    title: str
    mac: str | None
    host: str
    noise_psk: str | None = field(repr=False)
    available: bool
    firmware: RunningFirmware | None
    deep_sleep: bool
    #: Changes whenever the device connects anew (its reported info is a new object):
    #: a device that rebooted quickly never looks unavailable, but its session changes.
    session: int | None = None


def _runtime(entry: ConfigEntry) -> Any:  # noqa: ANN401 - the esphome integration's object
    return entry.runtime_data if entry.state is ConfigEntryState.LOADED else None


def _firmware(runtime: object, registered: dr.DeviceEntry | None) -> RunningFirmware | None:
    """Prefer what the device said this session; else what the registry remembers."""
    info = getattr(runtime, "device_info", None)
    version = getattr(info, "esphome_version", None)
    compiled = getattr(info, "compilation_time", None)
    if isinstance(version, str) and version and isinstance(compiled, str):
        return RunningFirmware(version, compiled)
    # The esphome integration records "<version> (<compilation time>)" as sw_version.
    sw_version = registered.sw_version if registered is not None else None
    if sw_version:
        version, _, rest = sw_version.partition(" (")
        return RunningFirmware(version, rest.removesuffix(")"))
    return None


def _node_name(entry: ConfigEntry, runtime: object) -> str:
    name = entry.data.get(ESPHOME_CONF_DEVICE_NAME)
    if isinstance(name, str) and name:
        return name
    reported = getattr(getattr(runtime, "device_info", None), "name", None)
    return reported if isinstance(reported, str) and reported else entry.title


def device_of_entry(hass: HomeAssistant, entry: ConfigEntry) -> EsphomeDevice:
    """Describe the device behind one ``esphome`` config entry."""
    runtime = _runtime(entry)
    registry = dr.async_get(hass)
    mac = entry.unique_id.lower() if entry.unique_id else None
    registered = (
        registry.async_get_device_by_connection((dr.CONNECTION_NETWORK_MAC, mac), entry.entry_id)
        if mac
        else None
    )
    if registered is None:
        devices = dr.async_entries_for_config_entry(registry, entry.entry_id)
        registered = devices[0] if devices else None
    info = getattr(runtime, "device_info", None)
    return EsphomeDevice(
        entry_id=entry.entry_id,
        device_id=registered.id if registered is not None else None,
        name=_node_name(entry, runtime),
        title=(registered.name_by_user or registered.name or entry.title)
        if registered is not None
        else entry.title,
        mac=mac,
        host=entry.data[CONF_HOST],
        noise_psk=entry.data.get(ESPHOME_CONF_NOISE_PSK) or None,
        available=bool(getattr(runtime, "available", False)),
        firmware=_firmware(runtime, registered),
        deep_sleep=bool(getattr(info, "has_deep_sleep", False)),
        session=id(info) if info is not None else None,
    )


def esphome_devices(hass: HomeAssistant) -> list[EsphomeDevice]:
    """Every device the ``esphome`` integration has an entry for (loaded or not)."""
    return [
        device_of_entry(hass, entry)
        for entry in hass.config_entries.async_entries(ESPHOME_DOMAIN)
        if not entry.disabled_by and CONF_HOST in entry.data
    ]


def esphome_device(hass: HomeAssistant, entry_id: str) -> EsphomeDevice | None:
    """Return the device of one ``esphome`` entry, if the entry still exists."""
    entry = hass.config_entries.async_get_entry(entry_id)
    if entry is None or entry.domain != ESPHOME_DOMAIN:
        return None
    return device_of_entry(hass, entry)


@callback
def async_subscribe_device(
    hass: HomeAssistant, entry_id: str, on_change: Callable[[], None]
) -> Callable[[], None]:
    """Call ``on_change`` when the device connects, disconnects or its entry changes.

    An entry that reloads (a new encryption key, say) gets new runtime data, so the
    subscription to the device's updates is renewed whenever the entry changes.
    """
    current: list[Callable[[], None]] = []

    def _resubscribe() -> None:
        while current:
            current.pop()()
        entry = hass.config_entries.async_get_entry(entry_id)
        runtime = _runtime(entry) if entry is not None else None
        subscribe = getattr(runtime, "async_subscribe_device_updated", None)
        if callable(subscribe):
            current.append(subscribe(on_change))

    @callback
    def _on_entry_changed(_change: ConfigEntryChange, entry: ConfigEntry) -> None:
        if entry.entry_id == entry_id:
            _resubscribe()
            on_change()

    _resubscribe()
    remove_listener = async_dispatcher_connect(hass, SIGNAL_CONFIG_ENTRY_CHANGED, _on_entry_changed)

    def _unsubscribe() -> None:
        remove_listener()
        while current:
            current.pop()()

    return _unsubscribe
