"""The server's queue depth, the state of the last job we saw and of the latest flash."""

from __future__ import annotations

from typing import Any

from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .entity import RemoteBuildEntity
from .link import RemoteBuildConfigEntry
from .peerlink import JobStatus

PARALLEL_UPDATES = 0

# The last-job sensor's state before this server ran any job for us: a fact, not "unknown".
NO_JOB = "none"

QUEUE_DEPTH = SensorEntityDescription(
    key="queue_depth",
    translation_key="queue_depth",
    state_class=SensorStateClass.MEASUREMENT,
)
LAST_JOB = SensorEntityDescription(
    key="last_job",
    translation_key="last_job",
    device_class=SensorDeviceClass.ENUM,
    options=[NO_JOB, *(status.value for status in JobStatus)],
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: RemoteBuildConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the sensors of one server."""
    async_add_entities(
        [RemoteBuildQueueSensor(entry, QUEUE_DEPTH), RemoteBuildLastJobSensor(entry, LAST_JOB)]
    )


class RemoteBuildQueueSensor(RemoteBuildEntity, SensorEntity):
    """Jobs waiting on the server; unknown (unavailable) while disconnected."""

    @property
    def available(self) -> bool:
        """Only a live session knows the queue."""
        return self._link.connected

    @property
    def native_value(self) -> int | None:
        """Return the number of queued jobs."""
        queue = self._link.queue
        return queue.queue_depth if queue is not None else None


class RemoteBuildLastJobSensor(RemoteBuildEntity, SensorEntity):
    """The last job state change of our jobs; stays readable while disconnected."""

    @property
    def native_value(self) -> str:
        """Return the last job's status."""
        job = self._link.last_job
        return job.status.value if job is not None else NO_JOB

    @property
    def extra_state_attributes(self) -> dict[str, Any] | None:
        """Name the job, its configuration and why it failed, and the latest flash.

        The flash names its own job: it may be of an older build than the last job.
        """
        attributes: dict[str, Any] = {}
        if (job := self._link.last_job) is not None:
            attributes["job_id"] = job.job_id
            if configuration := self._link.configuration_of(job.job_id):
                attributes["configuration"] = configuration
            # Only a failure has a message; an empty one would read "unknown".
            if job.error_message:
                attributes["error_message"] = job.error_message
        if (flash := self._link.flash) is not None:
            attributes |= {
                "flash_job_id": flash.job_id,
                "flash_progress": flash.progress,
                "flash_status": flash.status.value,
            }
        return attributes or None
