"""Diagnostics of a build server, as a snapshot: what helps to debug, nothing secret.

The identity, the server's key and the pairing key are fixed, so the snapshot is stable
and the test can look for each secret in it.  Ports are random (loopback): the snapshot
records their type only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from unittest.mock import patch

from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
from syrupy.assertion import SnapshotAssertion
from syrupy.filters import props
from syrupy.matchers import path_type

from custom_components.esphome_remote_build import link as link_module
from custom_components.esphome_remote_build.const import CONF_PIN
from custom_components.esphome_remote_build.diagnostics import (
    async_get_config_entry_diagnostics,
)
from custom_components.esphome_remote_build.link import IDENTITY_STORAGE_KEY
from custom_components.esphome_remote_build.peerlink import Identity
from tests.store.helpers import esp8266_members
from tests.support.receiver_double import Artifacts, JobScript, JobStatus, ReceiverDouble

from .conftest import StoreBuild, call_service, client_of, link_of, make_entry, wait_stopped
from .test_config_flow import pair, start_user_flow

IDENTITY = Identity(bytes(range(32)), "diagnostics-dashboard-id-0123456789")
SERVER_KEY = bytes(range(100, 132))
PAIRING_KEY = "WXYZ-2345-ABCD-6789"
SNAPSHOT_FILE = Path(__file__).parent / "snapshots" / "test_diagnostics.ambr"

# Random per run (creation times, the entry id, loopback ports): the snapshot holds
# their type only, or nothing.
EXCLUDE = props("created_at", "modified_at", "entry_id")
MATCHER = path_type({"entry.data.port": (int,), "server_info.port": (int,)})


@pytest.fixture(autouse=True)
def fixed_identity(hass_storage: dict[str, Any]) -> Identity:
    """This Home Assistant's identity, the same in every run."""
    hass_storage[IDENTITY_STORAGE_KEY] = {
        "version": 1,
        "key": IDENTITY_STORAGE_KEY,
        "data": IDENTITY.to_dict(),
    }
    return IDENTITY


def assert_no_secrets(diagnostics: dict[str, Any]) -> None:
    text = json.dumps(diagnostics, default=str)
    for secret in (
        IDENTITY.private_key.hex(),
        IDENTITY.dashboard_id,
        PAIRING_KEY,
        PAIRING_KEY.replace("-", ""),
        "127.0.0.1",
    ):
        assert secret not in text


async def test_diagnostics(
    hass: HomeAssistant,
    esphome_dir: Path,
    artifacts: bytes,
    store_build: StoreBuild,
    snapshot: SnapshotAssertion,
) -> None:
    """A server paired with a key, one failed job, one stored build (and another's)."""
    async with ReceiverDouble(
        static_private=SERVER_KEY, requires_pairing_key=True, pairing_key=PAIRING_KEY
    ) as rd:
        result = await pair(
            hass, await start_user_flow(hass, rd.host, rd.port), pairing_key=PAIRING_KEY
        )
        entry: MockConfigEntry = result["result"]
        await hass.async_block_till_done()
        await client_of(entry).wait_connected(5)
        link = link_of(entry)

        rd.job_script = JobScript(outcome=JobStatus.FAILED, error_message="compile error")
        with patch.object(link_module, "new_job_id", return_value="0123456789ab"):
            job_id = await link.async_submit(esphome_dir, "esp32-demo.yaml")
        await link.async_wait_for_job(job_id, 5)

        rd.add_job(IDENTITY.dashboard_id, "stored-job", artifacts=Artifacts(artifacts))
        await call_service(
            hass, "download_artifacts", config_entry_id=entry.entry_id, job_id="stored-job"
        )
        # Another server's build in the same store is not this server's business.
        await store_build(esp8266_members(), job_id="foreign-job", server_pin="cd" * 32)

        diagnostics = await async_get_config_entry_diagnostics(hass, entry)
        await hass.config_entries.async_unload(entry.entry_id)

    assert diagnostics == snapshot(exclude=EXCLUDE, matcher=MATCHER)
    assert_no_secrets(diagnostics)
    assert diagnostics["entry"]["data"]["host"] == "**REDACTED**"
    assert diagnostics["server_info"]["host"] == "**REDACTED**"
    assert [build["job_id"] for build in diagnostics["stored_builds"]] == ["stored-job"]


async def test_diagnostics_of_a_link_that_gave_up(
    hass: HomeAssistant, snapshot: SnapshotAssertion
) -> None:
    """The server shows another key: why the link stopped is what helps here."""
    async with ReceiverDouble(static_private=SERVER_KEY) as rd:
        rd.add_peer(IDENTITY.dashboard_id, IDENTITY.pin_sha256)
        entry = make_entry(rd, **{CONF_PIN: "ab" * 32})
        entry.add_to_hass(hass)
        assert await hass.config_entries.async_setup(entry.entry_id)
        await wait_stopped(entry)
        diagnostics = await async_get_config_entry_diagnostics(hass, entry)
        await hass.config_entries.async_unload(entry.entry_id)

    assert diagnostics == snapshot(exclude=EXCLUDE, matcher=MATCHER)
    assert_no_secrets(diagnostics)
    assert diagnostics["pairing"]["running"] is False
    assert diagnostics["pairing"]["stopped_reason"] == "pin_mismatch"
    assert diagnostics["connected"] is False


def test_snapshot_file_holds_no_secrets() -> None:
    """What is committed: no key, no id, no pairing key, no address."""
    text = SNAPSHOT_FILE.read_text()
    assert "# name: test_diagnostics\n" in text
    assert "# name: test_diagnostics_of_a_link_that_gave_up\n" in text
    for secret in (
        IDENTITY.private_key.hex(),
        IDENTITY.dashboard_id,
        PAIRING_KEY,
        PAIRING_KEY.replace("-", ""),
        "127.0.0.1",
    ):
        assert secret not in text
    assert text.count("'host': '**REDACTED**'") == 3  # both entries, one server_info
