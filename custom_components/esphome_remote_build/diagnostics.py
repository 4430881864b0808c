"""Diagnostics of one build server: pairing, session, queue, recent jobs, stored builds.

Our identity's private key never enters this dict (only our public pin does); the
pairing key is never stored; the server's address and everything that could identify
us to a server are redacted.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.const import CONF_HOST
from homeassistant.core import HomeAssistant

from .const import CONF_PAIRING_KEY
from .link import RemoteBuildConfigEntry, async_get_identity

TO_REDACT = {"private_key", "dashboard_id", CONF_PAIRING_KEY, CONF_HOST}
RECENT_JOBS = 20


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: RemoteBuildConfigEntry
) -> dict[str, Any]:
    """Return what helps to debug one server's link."""
    link = entry.runtime_data.link
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
        for build in await link.store.async_list()
        if build.server_pin == link.server_pin
    ]
    return async_redact_data(
        {
            "entry": entry.as_dict(),
            "our_pin": identity.pin_sha256,
            "pairing": {
                "running": link.running,
                "stopped_reason": link.stopped_reason,
                "last_error": repr(link.last_error) if link.last_error else None,
            },
            "connected": link.connected,
            "server_info": asdict(link.server_info) if link.server_info else None,
            "queue": asdict(link.queue) if link.queue else None,
            "jobs": [asdict(job) for job in link.recent_jobs()[-RECENT_JOBS:]],
            "stored_builds": builds,
        },
        TO_REDACT,
    )
