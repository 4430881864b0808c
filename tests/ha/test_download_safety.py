"""Every way a download can go wrong leaves the build store exactly as it was.

A good build is stored first; then each failure — refused, corrupt, truncated, hostile,
dropped, stalled, a changed server key — must leave every file of the store byte for
byte and mode for mode, remove its temporary files, and raise a translated error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import os
from pathlib import Path
import tarfile
from typing import Any
from unittest.mock import patch

from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.esphome_remote_build import link as link_module
from custom_components.esphome_remote_build.const import DOMAIN
from custom_components.esphome_remote_build.peerlink import Identity
from tests.store.helpers import Member, esp32_members, snapshot, write_tarball
from tests.support.receiver_double import Artifacts, DownloadFaults, ReceiverDouble

from .conftest import call_service, link_of

type Fault = Callable[[ReceiverDouble, Path], bytes | None]


def _hostile(tmp: Path, extra: Member) -> bytes:
    members = [*esp32_members("attacker"), extra]
    return write_tarball(tmp / "hostile.tar.gz", members, "0x10000").path.read_bytes()


def _faults(**kwargs: object) -> Fault:
    def apply(rd: ReceiverDouble, _tmp: Path) -> None:
        rd.faults.download = DownloadFaults(**kwargs)  # type: ignore[arg-type]

    return apply


def _serve(make: Callable[[Path], bytes]) -> Fault:
    return lambda _rd, tmp: make(tmp)


async def _download(hass: HomeAssistant, entry: MockConfigEntry, job_id: str) -> dict[str, Any]:
    return await call_service(
        hass, "download_artifacts", config_entry_id=entry.entry_id, job_id=job_id
    )


CASES: dict[str, tuple[Fault, str]] = {
    "wrong hash": (_faults(wrong_sha256=True), "download_integrity"),
    "truncated": (_faults(total_bytes_delta=100), "download_integrity"),
    "out of order": (_faults(chunk_index_override={0: 1}), "download_integrity"),
    "refused": (_faults(refusal=("pack_failed", "disk full")), "download_rejected"),
    "dropped mid-download": (_faults(drop_after_chunk=0), "download_failed"),
    "stalled": (_faults(stall_after_chunk=0), "download_timeout"),
    # A refused tarball is the artifacts package's own error now, not the store's.
    "symlink member": (
        _serve(lambda t: _hostile(t, Member("evil", kind=tarfile.SYMTYPE, linkname="/etc/passwd"))),
        "unsafe_tarball",
    ),
    "dot-dot member": (
        _serve(lambda t: _hostile(t, Member("../../escape.bin", b"x"))),
        "unsafe_tarball",
    ),
    "absolute member": (
        _serve(lambda t: _hostile(t, Member("/tmp/abs.bin", b"x"))),
        "unsafe_tarball",
    ),
    "hardlink member": (
        _serve(
            lambda t: _hostile(t, Member("hard", kind=tarfile.LNKTYPE, linkname="storage.json"))
        ),
        "unsafe_tarball",
    ),
    "not a tarball": (_serve(lambda _t: os.urandom(5000)), "invalid_artifacts"),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_failed_download_leaves_the_store_untouched(
    hass: HomeAssistant,
    loaded: MockConfigEntry,
    rd: ReceiverDouble,
    identity: Identity,
    artifacts: bytes,
    tmp_path: Path,
    case: str,
) -> None:
    rd.add_job(identity.dashboard_id, "good", artifacts=Artifacts(artifacts))
    await _download(hass, loaded, "good")
    root = Path(hass.config.path(DOMAIN, "builds"))
    before = {k: v for k, v in snapshot(root).items() if not k.startswith(".tmp")}
    assert "good/manifest.json" in before

    fault, key = CASES[case]
    served = fault(rd, tmp_path)
    rd.add_job(identity.dashboard_id, "bad", artifacts=Artifacts(served or artifacts))
    with (
        patch.object(link_module, "DOWNLOAD_GAP_TIMEOUT", 0.3),
        pytest.raises(HomeAssistantError) as caught,
    ):
        await _download(hass, loaded, "bad")
    assert caught.value.translation_domain == DOMAIN
    assert caught.value.translation_key == key
    message = str(caught.value)
    assert message
    assert "{" not in message  # every placeholder of the message was given
    assert "bad" in message  # it names the job
    after = snapshot(root)
    assert {k: v for k, v in after.items() if not k.startswith(".tmp")} == before
    assert [k for k, v in after.items() if k.startswith(".tmp") and v[1] is not None] == []


async def test_changed_server_key_stops_downloads_and_keeps_the_store(
    hass: HomeAssistant,
    loaded: MockConfigEntry,
    rd: ReceiverDouble,
    identity: Identity,
    artifacts: bytes,
) -> None:
    rd.add_job(identity.dashboard_id, "good", artifacts=Artifacts(artifacts))
    await _download(hass, loaded, "good")
    root = Path(hass.config.path(DOMAIN, "builds"))
    before = {k: v for k, v in snapshot(root).items() if not k.startswith(".tmp")}
    rd.add_job(identity.dashboard_id, "next", artifacts=Artifacts(artifacts))
    rd.set_static_key()  # someone else now answers at the server's address
    await rd.session().drop()
    link = link_of(loaded)
    async with asyncio.timeout(5):
        while link.running:  # reconnects once, sees the other key, and gives up
            await asyncio.sleep(0.02)
    assert link.stopped_reason == "pin_mismatch"
    with pytest.raises(HomeAssistantError) as caught:
        await _download(hass, loaded, "next")
    assert caught.value.translation_key == "not_connected"
    assert {k: v for k, v in snapshot(root).items() if not k.startswith(".tmp")} == before
    # the stored build is still served from the store while the link is down
    again = await _download(hass, loaded, "good")
    assert again["job_id"] == "good"
