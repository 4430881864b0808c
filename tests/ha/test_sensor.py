"""The sensors of a build server: queue depth and last job, pushed by the link.

Queue depth is the server's own report and unavailable without a session; the last job
is ours (status, job, configuration, failure) plus the latest flash of one of this
server's builds, and stays readable while the server is away.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from unittest.mock import patch

from homeassistant.components.sensor import ATTR_OPTIONS, SensorDeviceClass
from homeassistant.const import ATTR_DEVICE_CLASS, STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_capture_events

from custom_components.esphome_remote_build import flash, ota
from custom_components.esphome_remote_build.const import EVENT_JOB
from custom_components.esphome_remote_build.peerlink import (
    Disconnected,
    JobStateChanged,
    QueueStatus,
)
from tests.store.helpers import esp32_members
from tests.support.receiver_double import (
    HandshakeFault,
    JobScript,
    JobStatus as RdStatus,
    ReceiverDouble,
)

from .conftest import (
    Recorder,
    StartDevice,
    StoreBuild,
    call_service,
    client_of,
    link_of,
    wait_stopped,
)

QUEUE = "sensor.build_box_queue_depth"
LAST_JOB = "sensor.build_box_last_job"

#: What the last-job sensor shows besides its own attributes.
STATIC_ATTRIBUTES = {"friendly_name", ATTR_DEVICE_CLASS, ATTR_OPTIONS}


def job_attributes(hass: HomeAssistant) -> dict[str, Any]:
    state = hass.states.get(LAST_JOB)
    assert state is not None
    return {k: v for k, v in state.attributes.items() if k not in STATIC_ATTRIBUTES}


async def settle(hass: HomeAssistant, recorder: Recorder, kind: type, count: int) -> None:
    """Wait for the link's ``count``-th event of ``kind`` and its state writes."""
    await recorder.wait_count(kind, count)
    await hass.async_block_till_done()


async def drop_for_good(hass: HomeAssistant, entry: MockConfigEntry, rd: ReceiverDouble) -> None:
    """End the session; reconnects keep failing until ``rd.faults.handshake`` is reset."""
    recorder = Recorder()
    client_of(entry).subscribe(recorder)
    rd.faults.handshake = HandshakeFault.CLOSE_AFTER_MSG1
    await rd.session().drop()
    await settle(hass, recorder, Disconnected, 1)


# --- queue depth -------------------------------------------------------------------------


async def test_queue_depth_follows_the_server(
    hass: HomeAssistant, loaded: MockConfigEntry, rd: ReceiverDouble
) -> None:
    assert hass.states.get(QUEUE).state == "0"
    recorder = Recorder()
    client_of(loaded).subscribe(recorder)
    await rd.session().send_frame(
        {"type": "queue_status", "idle": False, "running": True, "queue_depth": 3}
    )
    await settle(hass, recorder, QueueStatus, 1)
    assert hass.states.get(QUEUE).state == "3"

    # Without a session nobody knows the queue: unavailable, not a stale number.
    await drop_for_good(hass, loaded, rd)
    assert hass.states.get(QUEUE).state == STATE_UNAVAILABLE

    rd.faults.handshake = None
    link_of(loaded).reconnect_now()
    await client_of(loaded).wait_connected(5)
    await settle(hass, recorder, QueueStatus, 2)  # the server reports it after the handshake
    assert hass.states.get(QUEUE).state == "0"


async def test_sensors_while_the_server_was_never_reached(
    hass: HomeAssistant, rd: ReceiverDouble, entry: MockConfigEntry
) -> None:
    """Not paired: the link gives up; the queue is unknown, no job was ever run."""
    assert await hass.config_entries.async_setup(entry.entry_id)
    await wait_stopped(entry)
    await hass.async_block_till_done()
    assert hass.states.get(QUEUE).state == STATE_UNAVAILABLE
    assert hass.states.get(LAST_JOB).state == "none"


# --- last job ----------------------------------------------------------------------------


async def test_last_job_before_any_job(hass: HomeAssistant, loaded: MockConfigEntry) -> None:
    state = hass.states.get(LAST_JOB)
    # A fact, not "unknown": this server ran no job for us yet (it was "unknown" before).
    assert state.state == "none"
    assert state.attributes[ATTR_DEVICE_CLASS] == SensorDeviceClass.ENUM
    assert state.attributes[ATTR_OPTIONS] == [
        "none",
        "queued",
        "running",
        "completed",
        "failed",
        "cancelled",
    ]
    assert job_attributes(hass) == {}
    entity = er.async_get(hass).async_get(LAST_JOB)
    assert entity is not None
    assert entity.unique_id == f"{loaded.unique_id}_last_job"
    assert entity.translation_key == "last_job"


async def test_job_events_and_last_job_sensor(
    hass: HomeAssistant, loaded: MockConfigEntry, rd: ReceiverDouble, esphome_dir: Path
) -> None:
    events = async_capture_events(hass, EVENT_JOB)
    recorder = Recorder()
    client_of(loaded).subscribe(recorder)
    rd.job_script = JobScript(outcome=RdStatus.FAILED, error_message="compile error", hold=True)
    link = link_of(loaded)
    job_id = await link.async_submit(esphome_dir, "esp32-demo.yaml")
    await rd.wait_job_status(job_id, RdStatus.RUNNING)
    await settle(hass, recorder, JobStateChanged, 2)
    assert hass.states.get(LAST_JOB).state == "running"
    # No failure yet: no error_message attribute (an empty one would read "unknown").
    assert job_attributes(hass) == {"job_id": job_id, "configuration": "esp32-demo.yaml"}

    rd.release_job(job_id)
    await link.async_wait_for_job(job_id, 5)
    await hass.async_block_till_done()
    assert [e.data["status"] for e in events] == ["queued", "running", "failed"]
    assert events[-1].data == {
        "config_entry_id": loaded.entry_id,
        "job_id": job_id,
        "status": "failed",
        "error_message": "compile error",
        "configuration": "esp32-demo.yaml",
    }
    assert hass.states.get(LAST_JOB).state == "failed"
    assert job_attributes(hass) == {
        "job_id": job_id,
        "configuration": "esp32-demo.yaml",
        "error_message": "compile error",
    }

    # The next job replaces all of it: a success has no error message.
    rd.job_script = JobScript()
    second = await link.async_submit(esphome_dir, "esp8266-demo.yaml")
    await link.async_wait_for_job(second, 5)
    await hass.async_block_till_done()
    assert hass.states.get(LAST_JOB).state == "completed"
    assert job_attributes(hass) == {"job_id": second, "configuration": "esp8266-demo.yaml"}


async def test_job_of_unknown_configuration(
    hass: HomeAssistant, loaded: MockConfigEntry, rd: ReceiverDouble, tmp_path: Path
) -> None:
    """A job the link did not submit (e.g. before a reload) names no configuration."""
    bundle = tmp_path / "bundle.tar.gz"
    bundle.write_bytes(b"opaque to the protocol")
    client = client_of(loaded)
    job_id = await client.submit_job(bundle, "kitchen.yaml", job_id="from-elsewhere")
    await client.wait_for_job(job_id, 5)
    await hass.async_block_till_done()
    assert hass.states.get(LAST_JOB).state == "completed"
    assert job_attributes(hass) == {"job_id": "from-elsewhere"}


async def test_last_job_stays_readable_while_disconnected(
    hass: HomeAssistant, loaded: MockConfigEntry, rd: ReceiverDouble, esphome_dir: Path
) -> None:
    link = link_of(loaded)
    job_id = await link.async_submit(esphome_dir, "esp32-demo.yaml")
    await link.async_wait_for_job(job_id, 5)
    await drop_for_good(hass, loaded, rd)
    assert hass.states.get(QUEUE).state == STATE_UNAVAILABLE
    assert hass.states.get(LAST_JOB).state == "completed"
    assert job_attributes(hass) == {"job_id": job_id, "configuration": "esp32-demo.yaml"}


# --- the latest flash --------------------------------------------------------------------


async def test_last_job_sensor_shows_the_flash(
    hass: HomeAssistant,
    loaded: MockConfigEntry,
    rd: ReceiverDouble,
    store_build: StoreBuild,
    start_device: StartDevice,
    fast_ota: None,
) -> None:
    stored = await store_build(esp32_members(), server_pin=rd.pin)
    device = await start_device()
    await call_service(hass, "flash", job_id=stored.job_id, host="127.0.0.1", port=device.port)
    await hass.async_block_till_done()
    # No job ran in this session: the state stays "none", the flash is shown beside it.
    assert hass.states.get(LAST_JOB).state == "none"
    assert job_attributes(hass) == {
        "flash_job_id": stored.job_id,
        "flash_progress": 100,
        "flash_status": "completed",
    }

    port = device.port
    await device.stop()  # nothing listens there any more
    with pytest.raises(HomeAssistantError):
        await call_service(hass, "flash", job_id=stored.job_id, host="127.0.0.1", port=port)
    await hass.async_block_till_done()
    attributes = job_attributes(hass)
    assert attributes["flash_status"] == "failed"
    assert attributes["flash_progress"] == 0


async def test_flash_progress_while_uploading(
    hass: HomeAssistant, loaded: MockConfigEntry, rd: ReceiverDouble, store_build: StoreBuild
) -> None:
    stored = await store_build(esp32_members(), server_pin=rd.pin)
    halfway, finish = asyncio.Event(), asyncio.Event()

    async def fake_flash(host: str, port: int, image: Path, **kwargs: Any) -> ota.FlashResult:
        kwargs["progress"](500, 1000)
        halfway.set()
        await finish.wait()
        kwargs["progress"](1000, 1000)
        return ota.FlashResult(
            host=host,
            port=port,
            address=host,
            bytes_sent=1000,
            image_size=1000,
            duration=0.1,
            compressed=False,
            encrypted=False,
            ota_version=2,
            attempts=1,
        )

    with patch.object(flash, "async_flash", fake_flash):
        task = asyncio.create_task(
            call_service(hass, "flash", job_id=stored.job_id, host="127.0.0.1", port=3232)
        )
        await halfway.wait()
        await hass.async_block_till_done()
        assert job_attributes(hass) == {
            "flash_job_id": stored.job_id,
            "flash_progress": 50,
            "flash_status": "uploading",
        }
        finish.set()
        await task
    await hass.async_block_till_done()
    assert job_attributes(hass)["flash_status"] == "completed"


async def test_flash_and_job_attributes_side_by_side(
    hass: HomeAssistant,
    loaded: MockConfigEntry,
    rd: ReceiverDouble,
    esphome_dir: Path,
    store_build: StoreBuild,
    start_device: StartDevice,
    fast_ota: None,
) -> None:
    """The flash names its own job: it may be of an older build than the last job."""
    stored = await store_build(esp32_members(), job_id="older", server_pin=rd.pin)
    device = await start_device()
    await call_service(hass, "flash", job_id=stored.job_id, host="127.0.0.1", port=device.port)
    link = link_of(loaded)
    job_id = await link.async_submit(esphome_dir, "esp32-demo.yaml")
    await link.async_wait_for_job(job_id, 5)
    await hass.async_block_till_done()
    assert hass.states.get(LAST_JOB).state == "completed"
    assert job_attributes(hass) == {
        "job_id": job_id,
        "configuration": "esp32-demo.yaml",
        "flash_job_id": "older",
        "flash_progress": 100,
        "flash_status": "completed",
    }


async def test_build_of_another_server_leaves_the_sensor_alone(
    hass: HomeAssistant,
    loaded: MockConfigEntry,
    store_build: StoreBuild,
    start_device: StartDevice,
    fast_ota: None,
) -> None:
    stored = await store_build(esp32_members(), server_pin="cd" * 32)
    device = await start_device()
    await call_service(hass, "flash", job_id=stored.job_id, host="127.0.0.1", port=device.port)
    await hass.async_block_till_done()
    assert job_attributes(hass) == {}
