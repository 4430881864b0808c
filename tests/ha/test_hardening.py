"""What a neighbour on the LAN, a careless caller or an odd filesystem must not achieve.

Each test here failed on the code before its fix: a spoofed announcement moved the entry
to an impostor, a huge job id reached the server, a read-only store could not flash what
it held, and one server's request was answered with another server's build.
"""

from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path
from typing import Any
from unittest.mock import patch

from homeassistant.config_entries import SOURCE_ZEROCONF
from homeassistant.const import CONF_HOST, CONF_PORT
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.esphome_remote_build.const import DATA_STORE, DOMAIN
from custom_components.esphome_remote_build.peerlink import Identity
from custom_components.esphome_remote_build.store import BuildStore
from tests.store.helpers import snapshot
from tests.support.receiver_double import Artifacts, ReceiverDouble

from .conftest import SetUp, call_service, make_entry
from .test_config_flow import discovery

HUGE_JOB_ID = "a" * 70_000


async def test_spoofed_announcement_does_not_move_the_entry(
    hass: HomeAssistant, loaded: MockConfigEntry, rd: ReceiverDouble
) -> None:
    """Anyone can announce the paired pin; only an address that shows the key is taken."""
    async with ReceiverDouble(friendly_name="impostor") as impostor:
        spoof = discovery(impostor, pin_sha256=rd.pin)
        result = await hass.config_entries.flow.async_init(
            DOMAIN, context={"source": SOURCE_ZEROCONF}, data=spoof
        )
        await hass.async_block_till_done()
        assert result["type"] is FlowResultType.ABORT
        assert result["reason"] == "already_configured"
        assert impostor.connections_for("preview")  # it was looked at, not trusted
        assert impostor.connections_for("peer_link") == []
    assert (loaded.data[CONF_HOST], loaded.data[CONF_PORT]) == (rd.host, rd.port)
    assert loaded.runtime_data.link.connected
    assert hass.config_entries.flow.async_progress_by_handler(DOMAIN) == []


async def test_unreachable_announced_address_is_ignored(
    hass: HomeAssistant, loaded: MockConfigEntry, rd: ReceiverDouble
) -> None:
    async with ReceiverDouble() as gone:
        spoof = discovery(gone, pin_sha256=rd.pin)
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_ZEROCONF}, data=spoof
    )
    assert result["reason"] == "already_configured"
    assert (loaded.data[CONF_HOST], loaded.data[CONF_PORT]) == (rd.host, rd.port)


@pytest.mark.parametrize(
    ("service", "data"),
    [
        ("cancel_build", {}),
        ("download_artifacts", {}),
        ("flash", {"host": "127.0.0.1", "port": 1}),
        ("delete_artifacts", {}),
    ],
)
async def test_every_action_checks_job_ids_before_sending(
    hass: HomeAssistant,
    loaded: MockConfigEntry,
    rd: ReceiverDouble,
    service: str,
    data: dict[str, Any],
) -> None:
    session = rd.session()
    received_before = len(session.record.received)
    if service in {"cancel_build", "download_artifacts"}:
        data = {**data, "config_entry_id": loaded.entry_id}
    with pytest.raises(ServiceValidationError) as caught:
        await call_service(hass, service, job_id=HUGE_JOB_ID, **data)
    assert caught.value.translation_key == "invalid_job_id"
    message = str(caught.value)
    assert len(message) < 300  # the id is quoted cut short, once
    assert message.count("a" * 64 + "…") == 1
    assert "a" * 65 not in message
    assert len(session.record.received) == received_before  # nothing reached the server
    assert loaded.runtime_data.link.connected
    assert rd.session() is session


def _read_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every write to the filesystem fail as it does on a read-only mount."""

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    for name in ("chmod", "mkdir", "rename", "unlink", "rmdir"):
        monkeypatch.setattr(Path, name, refuse)
    monkeypatch.setattr("os.chmod", refuse)
    monkeypatch.setattr("os.mkdir", refuse)


async def test_a_read_only_store_still_serves_its_builds(
    hass: HomeAssistant,
    loaded: MockConfigEntry,
    rd: ReceiverDouble,
    identity: Identity,
    artifacts: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rd.add_job(identity.dashboard_id, "kept", artifacts=Artifacts(artifacts))
    await call_service(hass, "download_artifacts", config_entry_id=loaded.entry_id, job_id="kept")
    # After a restart the store is new, and its filesystem is now mounted read-only.
    fresh = BuildStore(hass.data[DATA_STORE].root)
    hass.data[DATA_STORE] = fresh
    _read_only(monkeypatch)
    stored = await fresh.async_verify("kept")
    assert stored is not None
    assert [build.job_id for build in await fresh.async_list()] == ["kept"]
    assert await fresh.async_get("kept", server_pin=rd.pin) == stored


async def test_a_store_that_was_never_written_reads_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = BuildStore(tmp_path / "never" / "builds")
    _read_only(monkeypatch)
    assert await store.async_list() == []
    assert await store.async_get("abc") is None
    assert await store.async_verify("abc") is None


async def test_a_build_belongs_to_the_server_it_came_from(
    hass: HomeAssistant,
    loaded: MockConfigEntry,
    rd: ReceiverDouble,
    identity: Identity,
    artifacts: bytes,
    setup_entry: SetUp,
) -> None:
    rd.add_job(identity.dashboard_id, "shared-id", artifacts=Artifacts(artifacts))
    await call_service(
        hass, "download_artifacts", config_entry_id=loaded.entry_id, job_id="shared-id"
    )
    root = Path(hass.config.path(DOMAIN, "builds"))
    before = {k: v for k, v in snapshot(root).items() if not k.startswith(".tmp")}
    async with ReceiverDouble(friendly_name="other-box") as other:
        other.add_peer(identity.dashboard_id, identity.pin_sha256)
        other.add_job(identity.dashboard_id, "shared-id", artifacts=Artifacts(artifacts))
        second = make_entry(other)
        second.add_to_hass(hass)
        await setup_entry(second)
        with (
            patch.object(BuildStore, "_async_commit") as commit,
            pytest.raises(ServiceValidationError) as caught,
        ):
            await call_service(
                hass, "download_artifacts", config_entry_id=second.entry_id, job_id="shared-id"
            )
        assert caught.value.translation_key == "build_of_other_server"
        assert "other-box" in str(caught.value)
        commit.assert_not_called()
        assert other.connections_for("peer_link")
        assert await hass.config_entries.async_unload(second.entry_id)
    after = {k: v for k, v in snapshot(root).items() if not k.startswith(".tmp")}
    assert after == before


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
async def test_a_disk_that_refuses_the_download_fails_fast_and_keeps_the_link(
    hass: HomeAssistant,
    loaded: MockConfigEntry,
    rd: ReceiverDouble,
    identity: Identity,
    artifacts: bytes,
    monkeypatch: pytest.MonkeyPatch,
    code: int,
) -> None:
    """No free inodes or a read-only disk when the download starts: say so at once."""
    rd.add_job(identity.dashboard_id, "first", artifacts=Artifacts(artifacts))
    await call_service(hass, "download_artifacts", config_entry_id=loaded.entry_id, job_id="first")
    root = Path(hass.config.path(DOMAIN, "builds"))
    before = {k: v for k, v in snapshot(root).items() if not k.startswith(".tmp")}
    real_open = os.open

    def refuse_part_files(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if str(path).endswith(".part"):
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, flags, *args, **kwargs)

    rd.add_job(identity.dashboard_id, "second", artifacts=Artifacts(artifacts))
    session = rd.session()
    monkeypatch.setattr(os, "open", refuse_part_files)
    with pytest.raises(HomeAssistantError) as caught:
        async with asyncio.timeout(10):  # far below the download's 120 s gap timeout
            await call_service(
                hass, "download_artifacts", config_entry_id=loaded.entry_id, job_id="second"
            )
    monkeypatch.undo()
    assert caught.value.translation_key == "download_write_failed"
    assert "second" in str(caught.value)
    assert loaded.runtime_data.link.connected
    assert rd.session() is session  # the link stayed up: no reconnect was needed
    after = {k: v for k, v in snapshot(root).items() if not k.startswith(".tmp")}
    assert after == before
    # Once the disk has room again the same job downloads on the same session.
    await call_service(hass, "download_artifacts", config_entry_id=loaded.entry_id, job_id="second")
    assert rd.session() is session
