"""Set-up, the link's life-cycle, the shared identity, entities and diagnostics."""

from __future__ import annotations

import logging
from pathlib import Path
import shutil
import stat
from unittest.mock import patch

from homeassistant.config_entries import SOURCE_REAUTH, ConfigEntryState
from homeassistant.const import (
    CONF_PORT,
    EVENT_HOMEASSISTANT_STOP,
)
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr, issue_registry as ir, storage
from homeassistant.helpers.aiohttp_client import async_get_clientsession
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.esphome_remote_build import link as link_module
from custom_components.esphome_remote_build.const import CONF_PIN, DATA_STORE, DOMAIN
from custom_components.esphome_remote_build.link import (
    IDENTITY_STORAGE_KEY,
    async_get_identity,
)
from custom_components.esphome_remote_build.peerlink import (
    Connected,
    Disconnected,
    Identity,
    NotPairedError,
    PeerLinkClient,
    SubmitRejectedError,
)
from tests.support.receiver_double import (
    ReceiverDouble,
    new_private_key,
)

from .conftest import Recorder, client_of, link_of, make_entry, wait_stopped


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
    link = link_of(loaded)
    assert link.connected
    assert link.store is hass.data[DATA_STORE]
    assert link.server_pin == rd.pin
    assert link.server_info is not None
    assert link.server_info.pin_sha256 == rd.pin
    assert rd.peers[identity.dashboard_id].friendly_name == hass.config.location_name
    device = dr.async_get(hass).async_get_device_by_identifier((DOMAIN, rd.pin), loaded.entry_id)
    assert device is not None
    assert device.sw_version == "2026.10.0"
    assert device.name == "build-box"

    session = rd.session(identity.dashboard_id)
    assert await hass.config_entries.async_unload(loaded.entry_id)
    await session.wait_closed()
    assert rd.connections[-1].terminate_received == "client_stopped"
    assert not link.running
    assert not link.connected


async def test_failed_unload_keeps_the_link(
    hass: HomeAssistant, loaded: MockConfigEntry, rd: ReceiverDouble
) -> None:
    """If a platform refuses to unload, the entry stays as it is, link and all."""
    link = link_of(loaded)
    with patch.object(hass.config_entries, "async_unload_platforms", return_value=False):
        assert not await hass.config_entries.async_unload(loaded.entry_id)
    assert link.running
    assert link.connected
    await link.async_stop()


async def test_a_device_removed_meanwhile_is_left_alone(
    hass: HomeAssistant, loaded: MockConfigEntry, rd: ReceiverDouble
) -> None:
    """A session that opens after the server's device was removed does not fail."""
    registry = dr.async_get(hass)
    device = registry.async_get_device_by_identifier((DOMAIN, rd.pin), loaded.entry_id)
    assert device is not None
    registry.async_remove_device(device.id)
    link = link_of(loaded)
    assert link.server_info is not None
    client_of(loaded)._emit(Connected(link.server_info))
    await hass.async_block_till_done()
    assert registry.async_get_device_by_identifier((DOMAIN, rd.pin), loaded.entry_id) is None
    assert link.connected


async def test_home_assistant_stop_stops_the_link(
    hass: HomeAssistant, loaded: MockConfigEntry
) -> None:
    hass.bus.async_fire(EVENT_HOMEASSISTANT_STOP)
    await hass.async_block_till_done()
    assert not link_of(loaded).running


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
    client = client_of(entry)
    recorder = Recorder()
    client.subscribe(recorder)
    for attempt in (1, 2, 3):
        link_of(entry).reconnect_now()
        await recorder.wait_count(Disconnected, attempt)
    await hass.async_block_till_done()
    assert not link_of(entry).connected
    assert link_of(entry).running  # it keeps trying
    assert caplog.text.count("is unavailable") == 1

    async with ReceiverDouble(static_private=key, port=entry.data[CONF_PORT]) as back:
        back.add_peer(identity.dashboard_id, identity.pin_sha256)
        link_of(entry).reconnect_now()
        await client.wait_connected(5)
        await hass.async_block_till_done()
        assert link_of(entry).connected
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


async def test_revoked_pairing_starts_reauth_only(
    hass: HomeAssistant,
    rd: ReceiverDouble,
    identity: Identity,
    entry: MockConfigEntry,
) -> None:
    # Never approved (or removed by the server's admin): the server refuses the session.
    assert await hass.config_entries.async_setup(entry.entry_id)
    await wait_stopped(entry)
    await hass.async_block_till_done()
    link = link_of(entry)
    assert link.stopped_reason == "no_approved_peer"
    assert isinstance(link.last_error, NotPairedError)
    # Pairing again is the fix and the reauth notice says so: one message, no repair
    # issue (a "pairing_revoked" issue used to be raised as well).
    assert len(reauth_flows(hass)) == 1
    assert issue(hass, entry) is None

    # The admin approves us again and the entry is reloaded: it connects.
    rd.add_peer(identity.dashboard_id, identity.pin_sha256)
    assert await hass.config_entries.async_reload(entry.entry_id)
    await client_of(entry).wait_connected(5)
    await hass.async_block_till_done()
    assert issue(hass, entry) is None


async def test_changed_server_key_raises_an_issue_only(
    hass: HomeAssistant, paired: ReceiverDouble
) -> None:
    entry = make_entry(paired, **{CONF_PIN: "ab" * 32})
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await wait_stopped(entry)
    await hass.async_block_till_done()
    assert link_of(entry).stopped_reason == "pin_mismatch"
    found = issue(hass, entry)
    assert found is not None
    assert found.translation_key == "server_key_changed"
    assert found.translation_placeholders == {"name": "build-box"}
    assert found.severity is ir.IssueSeverity.ERROR
    assert not found.is_fixable
    # Pairing again with whoever answers now is no fix: no reauth (there used to be one).
    assert reauth_flows(hass) == []


async def test_superseded_session_raises_an_issue_without_reauth(
    hass: HomeAssistant, loaded: MockConfigEntry, rd: ReceiverDouble, identity: Identity
) -> None:
    recorder = Recorder()
    client_of(loaded).subscribe(recorder)
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
    # The reason code stays in the log; the issue's text names the server only.
    assert found.translation_placeholders == {"name": "build-box"}
    assert reauth_flows(hass) == []


async def test_refused_submission_is_forgotten(
    hass: HomeAssistant, loaded: MockConfigEntry, esphome_dir: Path
) -> None:
    """A job the server refused is not remembered, and its bundle is gone."""
    lent: list[Path] = []

    def empty_bundle(config_dir: Path, configuration: str, dest: Path) -> None:
        lent.append(dest)
        dest.write_bytes(b"")  # the double refuses an empty upload

    link = link_of(loaded)
    with (
        patch.object(link_module, "write_config_bundle", empty_bundle),
        pytest.raises(SubmitRejectedError),
    ):
        await link.async_submit(esphome_dir, "esp32-demo.yaml")
    assert link._jobs == {}
    [bundle] = lent
    assert bundle.parent.parent == link.store.root
    assert not bundle.exists()


async def test_submitted_bundle_is_private_and_removed(
    hass: HomeAssistant, loaded: MockConfigEntry, rd: ReceiverDouble, esphome_dir: Path
) -> None:
    """The bundle holds secrets: it is written in the store's private scratch folder."""
    real = link_module.write_config_bundle
    modes: list[int] = []
    lent: list[Path] = []

    def spy(config_dir: Path, configuration: str, dest: Path) -> None:
        lent.append(dest)
        real(config_dir, configuration, dest)
        modes.append(stat.S_IMODE(dest.parent.stat().st_mode))

    link = link_of(loaded)
    with patch.object(link_module, "write_config_bundle", spy):
        job_id = await link.async_submit(esphome_dir, "esp32-demo.yaml")
    assert link.configuration_of(job_id) == "esp32-demo.yaml"
    assert modes == [0o700]
    assert not lent[0].exists()
    assert rd.job(job_id).header["configuration_filename"] == "esp32-demo.yaml"


async def test_remembered_jobs_stay_bounded(
    hass: HomeAssistant, loaded: MockConfigEntry, rd: ReceiverDouble, esphome_dir: Path
) -> None:
    link = link_of(loaded)
    for n in range(3):
        shutil.copy(esphome_dir / "esp8266-demo.yaml", esphome_dir / f"dev{n}.yaml")
    with patch.object(link_module, "KEEP_JOBS", 2):
        ids = [await link.async_submit(esphome_dir, f"dev{n}.yaml") for n in range(3)]
    assert link.configuration_of(ids[0]) is None  # the oldest was forgotten
    assert [link.configuration_of(i) for i in ids[1:]] == ["dev1.yaml", "dev2.yaml"]
