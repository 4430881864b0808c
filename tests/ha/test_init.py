"""Set-up, the link's life-cycle, the shared identity, entities and diagnostics."""

from __future__ import annotations

import json
import logging
from pathlib import Path
import stat
from unittest.mock import patch

from homeassistant.config_entries import SOURCE_REAUTH, ConfigEntryState
from homeassistant.const import (
    CONF_PORT,
    EVENT_HOMEASSISTANT_STOP,
    STATE_OFF,
    STATE_ON,
    STATE_UNAVAILABLE,
)
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr, issue_registry as ir, storage
from homeassistant.helpers.aiohttp_client import async_get_clientsession
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_capture_events

from custom_components.esphome_remote_build import link as link_module
from custom_components.esphome_remote_build.const import CONF_PIN, DOMAIN, EVENT_JOB
from custom_components.esphome_remote_build.diagnostics import (
    async_get_config_entry_diagnostics,
)
from custom_components.esphome_remote_build.link import (
    IDENTITY_STORAGE_KEY,
    async_get_identity,
)
from custom_components.esphome_remote_build.peerlink import (
    Disconnected,
    Identity,
    PeerLinkClient,
    SubmitRejectedError,
)
from tests.support.receiver_double import (
    JobScript,
    JobStatus as RdStatus,
    ReceiverDouble,
    new_private_key,
)

from .conftest import Recorder, make_entry, wait_stopped

CONNECTION = "binary_sensor.build_box_connection"
QUEUE = "sensor.build_box_queue_depth"
LAST_JOB = "sensor.build_box_last_job"


async def test_identity_is_created_once(hass: HomeAssistant, hass_storage: dict) -> None:
    first = await async_get_identity(hass)
    assert await async_get_identity(hass) is first
    stored = hass_storage[IDENTITY_STORAGE_KEY]
    assert Identity.from_dict(stored["data"]) == first


async def test_identity_file_is_private(hass: HomeAssistant) -> None:
    # The test harness keeps storage in memory; run the real file write it replaced.
    written: list[tuple[storage.Store, dict]] = []

    async def capture(store: storage.Store, data: dict) -> None:
        written.append((store, data))

    with patch.object(storage.Store, "_async_write_data", capture):
        await async_get_identity(hass)
    [(store, data)] = written
    await hass.async_add_executor_job(store._write_data, data)
    path = Path(hass.config.path(".storage", IDENTITY_STORAGE_KEY))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_identity_is_loaded_from_storage(hass: HomeAssistant, hass_storage: dict) -> None:
    known = Identity.generate()
    hass_storage[IDENTITY_STORAGE_KEY] = {
        "version": 1,
        "key": IDENTITY_STORAGE_KEY,
        "data": known.to_dict(),
    }
    assert await async_get_identity(hass) == known


async def test_unusable_identity_is_replaced(
    hass: HomeAssistant, hass_storage: dict, caplog: pytest.LogCaptureFixture
) -> None:
    hass_storage[IDENTITY_STORAGE_KEY] = {
        "version": 1,
        "key": IDENTITY_STORAGE_KEY,
        "data": {"private_key": "zz", "dashboard_id": "x"},
    }
    identity = await async_get_identity(hass)
    assert hass_storage[IDENTITY_STORAGE_KEY]["data"] == identity.to_dict()
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("custom_components")]
    assert any("unusable" in message for message in ours)
    assert not any(identity.private_key.hex() in message for message in ours)


async def test_setup_connects_and_unload_says_goodbye(
    hass: HomeAssistant, loaded: MockConfigEntry, rd: ReceiverDouble, identity: Identity
) -> None:
    assert loaded.state is ConfigEntryState.LOADED
    assert hass.states.get(CONNECTION).state == STATE_ON
    assert hass.states.get(QUEUE).state == "0"
    assert rd.peers[identity.dashboard_id].friendly_name == hass.config.location_name
    device = dr.async_get(hass).async_get_device_by_identifier((DOMAIN, rd.pin), loaded.entry_id)
    assert device is not None
    assert device.sw_version == "2026.10.0"
    assert device.name == "build-box"

    session = rd.session(identity.dashboard_id)
    client = loaded.runtime_data.link.client
    assert await hass.config_entries.async_unload(loaded.entry_id)
    await session.wait_closed()
    assert rd.connections[-1].terminate_received == "client_stopped"
    assert not client.running


async def test_home_assistant_stop_stops_the_link(
    hass: HomeAssistant, loaded: MockConfigEntry
) -> None:
    hass.bus.async_fire(EVENT_HOMEASSISTANT_STOP)
    await hass.async_block_till_done()
    assert not loaded.runtime_data.link.client.running


async def test_setup_does_not_wait_for_the_server(
    hass: HomeAssistant, identity: Identity, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="custom_components.esphome_remote_build")
    key = new_private_key()
    async with ReceiverDouble(static_private=key) as server:
        entry = make_entry(server)  # the server is gone before the entry is set up
    entry.add_to_hass(hass)

    assert await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.LOADED
    client = entry.runtime_data.link.client
    recorder = Recorder()
    client.subscribe(recorder)
    for attempt in (1, 2, 3):
        client.reconnect_now()
        await recorder.wait_count(Disconnected, attempt)
    await hass.async_block_till_done()
    assert hass.states.get(CONNECTION).state == STATE_OFF
    assert hass.states.get(QUEUE).state == STATE_UNAVAILABLE
    assert caplog.text.count("is unavailable") == 1

    async with ReceiverDouble(static_private=key, port=entry.data[CONF_PORT]) as back:
        back.add_peer(identity.dashboard_id, identity.pin_sha256)
        client.reconnect_now()
        await client.wait_connected(5)
        await hass.async_block_till_done()
        assert hass.states.get(CONNECTION).state == STATE_ON
        assert caplog.text.count("is connected again") == 1
        assert caplog.text.count("is unavailable") == 1
        assert await hass.config_entries.async_unload(entry.entry_id)


def issue(hass: HomeAssistant, entry: MockConfigEntry) -> ir.IssueEntry | None:
    return ir.async_get(hass).async_get_issue(DOMAIN, f"pairing_{entry.entry_id}")


def reauth_flows(hass: HomeAssistant) -> list[str]:
    return [
        flow["flow_id"]
        for flow in hass.config_entries.flow.async_progress_by_handler(DOMAIN)
        if flow["context"]["source"] == SOURCE_REAUTH
    ]


async def test_revoked_pairing_starts_reauth_and_raises_an_issue(
    hass: HomeAssistant,
    rd: ReceiverDouble,
    identity: Identity,
    entry: MockConfigEntry,
) -> None:
    # Never approved (or removed by the server's admin): the server refuses the session.
    assert await hass.config_entries.async_setup(entry.entry_id)
    await wait_stopped(entry)
    await hass.async_block_till_done()
    found = issue(hass, entry)
    assert found is not None
    assert found.translation_key == "pairing_revoked"
    assert found.translation_placeholders == {"name": "build-box", "reason": "no_approved_peer"}
    assert len(reauth_flows(hass)) == 1

    # The admin approves us again and the entry is reloaded: the issue goes away.
    rd.add_peer(identity.dashboard_id, identity.pin_sha256)
    assert await hass.config_entries.async_reload(entry.entry_id)
    await entry.runtime_data.link.client.wait_connected(5)
    await hass.async_block_till_done()
    assert issue(hass, entry) is None


async def test_changed_server_key_raises_an_issue(
    hass: HomeAssistant, paired: ReceiverDouble
) -> None:
    entry = make_entry(paired, **{CONF_PIN: "ab" * 32})
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await wait_stopped(entry)
    await hass.async_block_till_done()
    found = issue(hass, entry)
    assert found is not None
    assert found.translation_key == "server_key_changed"
    assert len(reauth_flows(hass)) == 1


async def test_superseded_session_raises_an_issue_without_reauth(
    hass: HomeAssistant, loaded: MockConfigEntry, rd: ReceiverDouble, identity: Identity
) -> None:
    recorder = Recorder()
    loaded.runtime_data.link.client.subscribe(recorder)
    # Another installation restored from a backup uses the same identity.
    twin = PeerLinkClient(async_get_clientsession(hass), rd.host, rd.port, identity, rd.pin)
    await twin.start()
    try:
        await recorder.wait_count(Disconnected, 1)
        await hass.async_block_till_done()
    finally:
        await twin.stop()
    found = issue(hass, loaded)
    assert found is not None
    assert found.translation_key == "identity_in_use"
    assert found.translation_placeholders["reason"] == "superseded"
    assert reauth_flows(hass) == []


async def test_job_events_and_last_job_sensor(
    hass: HomeAssistant, loaded: MockConfigEntry, rd: ReceiverDouble, tmp_path: Path
) -> None:
    assert hass.states.get(LAST_JOB).state == "unknown"
    events = async_capture_events(hass, EVENT_JOB)
    rd.job_script = JobScript(outcome=RdStatus.FAILED, error_message="compile error", hold=True)
    bundle = tmp_path / "bundle.tar.gz"
    bundle.write_bytes(b"opaque to the protocol")
    link = loaded.runtime_data.link
    job_id = await link.async_submit(bundle, "kitchen.yaml")
    await rd.wait_job_status(job_id, RdStatus.RUNNING)
    rd.release_job(job_id)
    await link.client.wait_for_job(job_id, 5)
    await hass.async_block_till_done()

    assert [e.data["status"] for e in events] == ["queued", "running", "failed"]
    assert events[-1].data == {
        "config_entry_id": loaded.entry_id,
        "job_id": job_id,
        "status": "failed",
        "error_message": "compile error",
        "configuration": "kitchen.yaml",
    }
    state = hass.states.get(LAST_JOB)
    assert state.state == "failed"
    assert state.attributes["job_id"] == job_id
    assert state.attributes["error_message"] == "compile error"
    assert state.attributes["configuration"] == "kitchen.yaml"


async def test_refused_submission_is_forgotten(
    hass: HomeAssistant, loaded: MockConfigEntry, tmp_path: Path
) -> None:
    empty = tmp_path / "empty.tar.gz"
    empty.write_bytes(b"")
    link = loaded.runtime_data.link
    with pytest.raises(SubmitRejectedError):
        await link.async_submit(empty, "kitchen.yaml")
    assert link._configurations == {}


async def test_diagnostics_hide_secrets(
    hass: HomeAssistant, loaded: MockConfigEntry, rd: ReceiverDouble, identity: Identity
) -> None:
    diagnostics = await async_get_config_entry_diagnostics(hass, loaded)
    text = json.dumps(diagnostics)
    assert identity.private_key.hex() not in text
    assert identity.dashboard_id not in text
    assert diagnostics["connected"] is True
    assert diagnostics["our_pin"] == identity.pin_sha256
    assert diagnostics["server_info"]["pin_sha256"] == rd.pin
    assert diagnostics["queue"] == {"idle": True, "running": False, "queue_depth": 0}
    assert diagnostics["pairing"] == {"running": True, "stopped_reason": None, "last_error": None}
    assert diagnostics["stored_builds"] == []


async def test_remembered_jobs_stay_bounded(
    hass: HomeAssistant, loaded: MockConfigEntry, rd: ReceiverDouble, tmp_path: Path
) -> None:
    link = loaded.runtime_data.link
    bundle = tmp_path / "b.tar.gz"
    bundle.write_bytes(b"bundle bytes")
    with patch.object(link_module, "KEEP_JOBS", 2):
        ids = [await link.async_submit(bundle, f"dev{n}.yaml") for n in range(3)]
    assert link.configuration_of(ids[0]) is None  # the oldest was forgotten
    assert [link.configuration_of(i) for i in ids[1:]] == ["dev1.yaml", "dev2.yaml"]
