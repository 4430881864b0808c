"""The link survives a misbehaving server, a failing disk and a bad caller.

Each test drives the receiver double into one fault and checks the client's promise: the
request fails with a typed error, and the link itself stays up (or comes back by itself).
"""

from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path
import time
from typing import Any

import pytest

from custom_components.esphome_remote_build.peerlink import (
    Disconnected,
    DownloadWriteError,
    Identity,
)
from tests.peerlink.conftest import Harness
from tests.support.receiver_double import Artifacts

TARBALL = os.urandom(100_000)  # 4 chunks


def _sessions(h: Harness) -> int:
    return len(h.rd.connections_for("peer_link"))


def _completed_job(h: Harness, identity: Identity, job_id: str = "job1") -> str:
    h.rd.add_job(identity.dashboard_id, job_id, artifacts=Artifacts(TARBALL, "0x10000"))
    return job_id


# --- 2. our disk refuses the artifacts ---------------------------------------------------


def _refuse_part_files(monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    """Fail the creation of the download's temporary file (and nothing else) with ``code``."""
    real_open = os.open

    def fake_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if str(path).endswith(".part"):
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_open)


@pytest.mark.parametrize("cause", ["parent-is-a-file", "ENOSPC", "EROFS", "EACCES"])
async def test_a_local_write_error_fails_fast_and_keeps_the_session(
    session: Harness,
    identity: Identity,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cause: str,
) -> None:
    job_id = _completed_job(session, identity)
    if cause == "parent-is-a-file":
        blocker = tmp_path / "blocker"
        blocker.write_bytes(b"")
        dest = blocker / "out.tar.gz"
    else:
        _refuse_part_files(monkeypatch, getattr(errno, cause))
        dest = tmp_path / "out.tar.gz"
    started = time.monotonic()
    with pytest.raises(DownloadWriteError) as info:
        async with asyncio.timeout(5):  # far sooner than the 60 s chunk gap
            await session.client.download_artifacts(job_id, dest, chunk_timeout=60)
    assert time.monotonic() - started < 5
    assert info.value.reason == "write_failed"
    assert session.client.connected
    monkeypatch.undo()
    # The server streams the abandoned download to its end; the next one works on the
    # same session.
    await session.client.download_artifacts(job_id, tmp_path / "ok.tar.gz", chunk_timeout=5)
    assert (tmp_path / "ok.tar.gz").read_bytes() == TARBALL
    assert _sessions(session) == 1
    assert not session.of(Disconnected)
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".part")]
