"""Diagnostics of one build server: pairing, session, queue, recent jobs, stored builds.

Our identity's private key never enters this dict (only our public pin does); the
pairing key is never stored; everything else that could identify us is redacted.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.core import HomeAssistant

from .const import CONF_PAIRING_KEY, CONF_PIN
from .link import RemoteBuildConfigEntry, async_get_identity

TO_REDACT = {"private_key", "dashboard_id", CONF_PAIRING_KEY}
RECENT_JOBS = 20


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: RemoteBuildConfigEntry
) -> dict[str, Any]:
    """Return what helps to debug one server's link."""
    client = entry.runtime_data.link.client
    identity = await async_get_identity(hass)
    builds = [
        {
            "job_id": build.job_id,
            "device_name": build.device_name,
            "platform": build.platform,
            "configuration": build.configuration,
            "created_at": build.created_at,
            "images": [image.name for image in build.images],
        }
        for build in await entry.runtime_data.store.async_list()
        if build.server_pin == entry.data[CONF_PIN]
    ]
    return async_redact_data(
        {
            "entry": entry.as_dict(),
            "our_pin": identity.pin_sha256,
            "pairing": {
                "running": client.running,
                "stopped_reason": client.stopped_reason,
                "last_error": repr(client.last_error) if client.last_error else None,
            },
            "connected": client.connected,
            "server_info": asdict(client.server_info) if client.server_info else None,
            "queue": asdict(client.queue) if client.queue else None,
            "jobs": [asdict(job) for job in list(client.jobs.values())[-RECENT_JOBS:]],
            "stored_builds": builds,
        },
        TO_REDACT,
    )
