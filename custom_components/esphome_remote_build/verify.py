"""Proof that a device runs the build it was just sent.

An accepted OTA upload only says the image arrived.  A device that fails to boot it rolls
back, and one that never returns looks the same as a slow one until a deadline.  So after
the upload we wait, bounded, for the device to come back and name the build itself: its
native-API ``compilation_time`` and ``esphome_version`` as Home Assistant's ``esphome``
integration reports them, and/or the ``config_hash`` of its ``_esphomelib._tcp`` mDNS
announcement, compared with the build's ``build_info.json``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from enum import StrEnum
import logging
import time
from typing import Final

from homeassistant.core import HomeAssistant

from .artifacts import BuildInfo
from .esphome_devices import RunningFirmware, esphome_device

_LOGGER = logging.getLogger(__name__)

#: How long a device may take to come back after an update, and a deep-sleep one.
VERIFY_TIMEOUT: Final = 120.0
DEEP_SLEEP_VERIFY_TIMEOUT: Final = 900.0
#: A device that reconnected with other firmware has rolled back; it gets this long to
#: prove otherwise (a reconnect that raced the reboot) before the verdict.
OTHER_FIRMWARE_GRACE: Final = 15.0
_POLL: Final = 0.25
_MDNS_TYPE: Final = "_esphomelib._tcp.local."
_MDNS_QUERY_MS: Final = 1500


class Outcome(StrEnum):
    """How a verification ended."""

    VERIFIED = "verified"
    OTHER_FIRMWARE = "other_firmware"
    NOT_BACK = "not_back"
    NO_BUILD_INFO = "no_build_info"


@dataclass(frozen=True, slots=True)
class Verification:
    """The outcome and what it rests on (values the device reported)."""

    outcome: Outcome
    evidence: dict[str, str] = field(default_factory=dict)

    @property
    def verified(self) -> bool:
        """Tell whether the device proved it runs the build."""
        return self.outcome is Outcome.VERIFIED


def _runs(firmware: RunningFirmware | None, build: BuildInfo) -> bool:
    return (
        firmware is not None
        and firmware.compilation_time == build.compilation_time
        and firmware.esphome_version == build.esphome_version
    )


async def async_announced_config_hash(hass: HomeAssistant, node_name: str) -> str | None:
    """Ask mDNS for the device's announced ``config_hash`` (None when nobody answers)."""
    try:
        from homeassistant.components import zeroconf  # noqa: PLC0415 - optional dependency
        from zeroconf.asyncio import AsyncServiceInfo  # noqa: PLC0415

        instance = await zeroconf.async_get_async_instance(hass)
        info = AsyncServiceInfo(_MDNS_TYPE, f"{node_name}.{_MDNS_TYPE}")
        if not await info.async_request(instance.zeroconf, _MDNS_QUERY_MS):
            return None
    except Exception:  # mDNS is extra evidence, never a failure of its own
        _LOGGER.debug("mDNS query for %s failed", node_name, exc_info=True)
        return None
    value = (info.properties or {}).get(b"config_hash")
    return value.decode("ascii", "replace") if isinstance(value, bytes) else None


async def async_verify_device(
    hass: HomeAssistant,
    entry_id: str | None,
    node_name: str,
    build: BuildInfo | None,
    *,
    announced_before: str | None = None,
    timeout: float | None = None,
) -> Verification:
    """Wait until the device behind an ``esphome`` entry proves it runs ``build``.

    Returns (never raises) the outcome: verified, back with other firmware, or not back
    before the deadline; a build without ``build_info.json`` cannot be verified.  Without
    an ``esphome`` entry (a device flashed by address) only its mDNS announcement counts,
    and only as a *change*: ``announced_before`` is the hash it announced before the
    upload, and a cached record of the old firmware (or a build whose configuration did
    not change) proves nothing.
    """
    if build is None:
        return Verification(Outcome.NO_BUILD_INFO)
    device = esphome_device(hass, entry_id) if entry_id is not None else None
    if timeout is None:
        deep_sleep = device is not None and device.deep_sleep
        timeout = DEEP_SLEEP_VERIFY_TIMEOUT if deep_sleep else VERIFY_TIMEOUT
    deadline = time.monotonic() + timeout
    # Until the device reconnects, what it reports is the firmware it ran before the update.
    before = device.session if device is not None and device.available else None
    seen_other: RunningFirmware | None = None
    other_since: float | None = None
    next_mdns = time.monotonic() + 1.0
    while True:
        device = esphome_device(hass, entry_id) if entry_id is not None else None
        if device is not None and device.available and device.session != before:
            if _runs(device.firmware, build):
                evidence = {
                    "esphome_version": build.esphome_version,
                    "compilation_time": build.compilation_time,
                }
                return Verification(Outcome.VERIFIED, evidence)
            seen_other = device.firmware
            other_since = other_since or time.monotonic()
        now = time.monotonic()
        if announced_before != build.config_hash_hex and now >= next_mdns:
            # A device whose API Home Assistant does not reach may still announce itself.
            next_mdns = now + 5.0
            if await async_announced_config_hash(hass, node_name) == build.config_hash_hex:
                return Verification(Outcome.VERIFIED, {"config_hash": build.config_hash_hex})
        rolled_back = other_since is not None and now - other_since >= OTHER_FIRMWARE_GRACE
        if rolled_back or now >= deadline:
            if seen_other is not None:
                return Verification(
                    Outcome.OTHER_FIRMWARE,
                    {
                        "esphome_version": seen_other.esphome_version,
                        "compilation_time": seen_other.compilation_time,
                    },
                )
            return Verification(Outcome.NOT_BACK)
        await asyncio.sleep(_POLL)
