"""The streaming assembler against every malformed stream, without a network."""

from __future__ import annotations

import asyncio
import base64
import errno
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from custom_components.esphome_remote_build.peerlink import (
    BuildGoneError,
    DownloadBusyError,
    DownloadError,
    DownloadIntegrityError,
    DownloadRejectedError,
    DownloadWriteError,
    JobNotCompletedError,
    UnknownJobError,
)
from custom_components.esphome_remote_build.peerlink.download import ArtifactAssembler
from custom_components.esphome_remote_build.peerlink.frames import CHUNK_BYTES

PAYLOAD = bytes(range(256)) * 300  # 76 800 bytes -> 3 chunks


def _stream(payload: bytes = PAYLOAD, **start: Any) -> list[tuple[str, dict[str, Any]]]:
    pieces = [payload[i : i + CHUNK_BYTES] for i in range(0, len(payload), CHUNK_BYTES)]
    head = {
        "job_id": "j1",
        "total_bytes": len(payload),
        "num_chunks": len(pieces),
        "artifacts_sha256": hashlib.sha256(payload).hexdigest(),
        "firmware_offset": "0x10000",
    } | start
    out: list[tuple[str, dict[str, Any]]] = [("start", head)]
    out += [
        (
            "chunk",
            {
                "job_id": "j1",
                "chunk_index": i,
                "data_b64": base64.b64encode(p).decode(),
                "is_last": i == len(pieces) - 1,
            },
        )
        for i, p in enumerate(pieces)
    ]
    out.append(("end", {"job_id": "j1", "accepted": True, "reason": "", "detail": ""}))
    return out


async def _feed(asm: ArtifactAssembler, stream: list[tuple[str, dict[str, Any]]]) -> None:
    for kind, frame in stream:
        if kind == "start":
            asm.on_start(frame)  # type: ignore[arg-type]
        elif kind == "chunk":
            await asm.on_chunk(frame)  # type: ignore[arg-type]
        else:
            await asm.on_end(frame)  # type: ignore[arg-type]


async def test_good_stream(tmp_path: Path) -> None:
    dest = tmp_path / "a.tar.gz"
    asm = ArtifactAssembler("j1", dest)
    await _feed(asm, _stream())
    result = asm.result.result()
    assert dest.read_bytes() == PAYLOAD
    assert result.sha256 == hashlib.sha256(PAYLOAD).hexdigest()
    assert result.total_bytes == len(PAYLOAD)
    assert result.firmware_offset == "0x10000"
    assert dest.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar.gz"]


def _mutate(stream: list[tuple[str, dict[str, Any]]], index: int, **changes: Any) -> None:
    stream[index] = (stream[index][0], stream[index][1] | changes)


def _case_wrong_hash(s: list) -> None:
    _mutate(s, 0, artifacts_sha256="ab" * 32)


def _case_out_of_order(s: list) -> None:
    s[1], s[2] = s[2], s[1]


def _case_duplicate_chunk(s: list) -> None:
    s.insert(2, s[1])


def _case_truncated(s: list) -> None:
    del s[3]  # last chunk never arrives, end does


def _case_early_last(s: list) -> None:
    _mutate(s, 1, is_last=True)


def _case_late_last(s: list) -> None:
    _mutate(s, 3, is_last=False)


def _case_oversized(s: list) -> None:
    _mutate(s, 0, total_bytes=len(PAYLOAD) - 10)


def _case_after_last(s: list) -> None:
    s.insert(4, ("chunk", dict(s[3][1], chunk_index=3)))


def _case_bad_base64(s: list) -> None:
    _mutate(s, 2, data_b64="!!!not base64!!!")


def _case_declared_too_big(s: list) -> None:
    _mutate(s, 0, total_bytes=256 * 1024 * 1024 + 1)


def _case_zero_size(s: list) -> None:
    _mutate(s, 0, total_bytes=0)


def _case_zero_chunks(s: list) -> None:
    _mutate(s, 0, num_chunks=0)


def _case_bad_offset(s: list) -> None:
    _mutate(s, 0, firmware_offset="65536")


def _case_bad_sha(s: list) -> None:
    _mutate(s, 0, artifacts_sha256="xyz")


def _case_missing_start(s: list) -> None:
    del s[0]


def _case_duplicate_start(s: list) -> None:
    s.insert(1, s[0])


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (_case_wrong_hash, "hash_mismatch"),
        (_case_out_of_order, "out_of_order"),
        (_case_duplicate_chunk, "out_of_order"),
        (_case_truncated, "undersized"),
        (_case_early_last, "chunk_count_mismatch"),
        (_case_late_last, "chunk_count_mismatch"),
        (_case_oversized, "oversized"),
        (_case_after_last, "post_completion"),
        (_case_bad_base64, "bad_chunk_encoding"),
        (_case_declared_too_big, "invalid_start_header"),
        (_case_zero_size, "invalid_start_header"),
        (_case_zero_chunks, "invalid_start_header"),
        (_case_bad_offset, "invalid_start_header"),
        (_case_bad_sha, "invalid_start_header"),
        (_case_missing_start, "missing_start"),
        (_case_duplicate_start, "invalid_start_header"),
    ],
)
async def test_bad_streams_leave_nothing(tmp_path: Path, mutate: Any, reason: str) -> None:
    dest = tmp_path / "a.tar.gz"
    stream = _stream()
    mutate(stream)
    asm = ArtifactAssembler("j1", dest)
    await _feed(asm, stream)
    with pytest.raises(DownloadIntegrityError) as info:
        asm.result.result()
    assert info.value.reason == reason
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("reason", "exc"),
    [
        ("unknown_job", UnknownJobError),
        ("build_dir_missing", BuildGoneError),
        ("job_not_completed", JobNotCompletedError),
        ("duplicate_download", DownloadBusyError),
        ("busy", DownloadBusyError),
        ("pack_failed", DownloadRejectedError),
        ("stream_failed", DownloadRejectedError),
        ("shutting_down", DownloadRejectedError),
    ],
)
async def test_server_refusals(tmp_path: Path, reason: str, exc: type[DownloadError]) -> None:
    asm = ArtifactAssembler("j1", tmp_path / "a")
    await asm.on_end({"job_id": "j1", "accepted": False, "reason": reason, "detail": "why"})
    with pytest.raises(exc) as info:
        asm.result.result()
    assert info.value.reason == reason
    assert info.value.detail == "why"
    assert type(info.value) is exc


async def test_refusal_mid_stream_removes_partial_file(tmp_path: Path) -> None:
    stream = _stream()
    asm = ArtifactAssembler("j1", tmp_path / "a")
    await _feed(asm, stream[:2])
    assert any(tmp_path.iterdir())  # a partial temporary file exists while streaming
    await asm.on_end({"job_id": "j1", "accepted": False, "reason": "stream_failed", "detail": ""})
    assert list(tmp_path.iterdir()) == []
    await _feed(asm, stream[2:])  # later frames are ignored once failed
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DownloadRejectedError):
        asm.result.result()


async def test_commit_failure_is_reported(tmp_path: Path) -> None:
    dest = tmp_path / "a.tar.gz"
    dest.mkdir()  # the final name is taken by a directory: the rename must fail
    (dest / "keep").write_text("x")
    asm = ArtifactAssembler("j1", dest)
    await _feed(asm, _stream())
    with pytest.raises(DownloadWriteError) as info:
        asm.result.result()
    assert info.value.reason == "write_failed"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar.gz"]
    assert (dest / "keep").read_text() == "x"


async def test_batches_are_bounded_and_complete(tmp_path: Path) -> None:
    payload = os.urandom(3 * 1024 * 1024 + 12345)  # several 1 MiB batches and a remainder
    asm = ArtifactAssembler("j1", tmp_path / "big")
    await _feed(asm, _stream(payload))
    result = asm.result.result()
    assert (tmp_path / "big").read_bytes() == payload
    assert result.sha256 == hashlib.sha256(payload).hexdigest()


async def test_write_error_fails_the_download(tmp_path: Path) -> None:
    asm = ArtifactAssembler("j1", tmp_path / "a")
    stream = _stream(os.urandom(2 * 1024 * 1024))
    asm.on_start(stream[0][1])  # type: ignore[arg-type]
    assert asm._writer is not None
    asm._writer._file.close()  # the disk goes away under the writer
    for _, frame in stream[1:-1]:
        await asm.on_chunk(frame)  # type: ignore[arg-type]
    with pytest.raises(DownloadWriteError) as info:
        asm.result.result()
    assert info.value.reason == "write_failed"
    await asyncio.sleep(0.05)  # let the worker's last write settle
    assert list(tmp_path.iterdir()) == []


async def test_abandon_mid_write_leaves_nothing(tmp_path: Path) -> None:
    asm = ArtifactAssembler("j1", tmp_path / "a")
    stream = _stream(os.urandom(3 * 1024 * 1024))
    asm.on_start(stream[0][1])  # type: ignore[arg-type]
    for _, frame in stream[1:40]:
        await asm.on_chunk(frame)  # type: ignore[arg-type]
    asm.abandon()  # a batch may still be on the worker thread
    for _ in range(100):
        if not list(tmp_path.iterdir()):
            break
        await asyncio.sleep(0.01)
    assert list(tmp_path.iterdir()) == []
    assert asm.result.cancelled()


async def test_a_temporary_file_that_cannot_be_created_fails_the_download(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_bytes(b"")  # the destination's folder is a file
    asm = ArtifactAssembler("j1", blocker / "a.tar.gz")
    await _feed(asm, _stream())  # the start fails; the rest of the stream is ignored
    with pytest.raises(DownloadWriteError) as info:
        asm.result.result()
    assert info.value.reason == "write_failed"
    assert isinstance(info.value, DownloadError)
    assert [p.name for p in tmp_path.iterdir()] == ["blocker"]


async def test_a_cleanup_that_cannot_delete_never_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    asm = ArtifactAssembler("j1", tmp_path / "a")
    stream = _stream()
    await _feed(asm, stream[:2])
    real_unlink = Path.unlink

    def refuse(self: Path, missing_ok: bool = False) -> None:
        if self.name.endswith(".part"):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", refuse)
    await asm.on_end({"job_id": "j1", "accepted": False, "reason": "stream_failed", "detail": ""})
    with pytest.raises(DownloadRejectedError):
        asm.result.result()
    asm.abandon()
    asm.discard()
    assert "Read-only file system" in caplog.text
