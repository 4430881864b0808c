"""Uploading a config bundle as a job: header, 32 KiB base64 chunks, then the ack.

The bundle is read from disk in chunk-sized pieces in an executor, so neither memory nor
the event loop pays for its size.  The server may refuse early (bad header, upload target)
before every chunk is sent, so the ack is watched while sending.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from pathlib import Path
import re

from .channel import Channel
from .errors import PeerLinkError, SubmitRejectedError, SubmitTimeoutError
from .esphome_version import is_valid_esphome_version
from .frames import (
    BUNDLE_MAX_BYTES,
    CHUNK_BYTES,
    MessageType,
    SubmitJobAckFrame,
    SubmitJobFrame,
)

ACK_TIMEOUT = 60.0
_FILENAME_RE = re.compile(r"^(?!\.\.?\.(?:ya?ml)$)[^/\\\x00]+\.ya?ml$", re.IGNORECASE)


def num_chunks(total_bytes: int) -> int:
    """Count the chunks a payload of ``total_bytes`` is cut into."""
    return max(1, -(-total_bytes // CHUNK_BYTES))


def _hash_file(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


class JobSubmitter:
    """Serves ``submit_job`` for one client: one upload in flight per session."""

    def __init__(self, ack_timeout: float = ACK_TIMEOUT) -> None:
        self._ack_timeout = ack_timeout
        self._lock = asyncio.Lock()
        self._pending: dict[str, asyncio.Future[SubmitJobAckFrame]] = {}

    @property
    def busy(self) -> bool:
        """Tell whether an upload is being sent or waits for its ack.

        Our pings then queue behind up to megabytes of our own data, so the heartbeat does
        not expect a quick answer.
        """
        return self._lock.locked()

    def on_ack(self, ack: SubmitJobAckFrame) -> None:
        """Resolve the waiting upload (acks for unknown jobs are ignored)."""
        waiter = self._pending.get(ack["job_id"])
        if waiter is not None and not waiter.done():
            waiter.set_result(ack)

    def fail_all(self, error: PeerLinkError) -> None:
        """Fail every upload still waiting for an ack (the session ended)."""
        for waiter in self._pending.values():
            if not waiter.done():
                waiter.set_exception(error)

    async def submit(
        self,
        channel: Channel,
        bundle: Path,
        configuration_filename: str,
        job_id: str,
        device_name: str | None,
        target_esphome_version: str | None = None,
    ) -> None:
        """Upload ``bundle`` and return when the server accepted it.

        ``target_esphome_version`` asks the server to build with that ESPHome version
        (§5.5); ``None`` builds with the server's own.
        """
        if not _FILENAME_RE.fullmatch(configuration_filename):
            raise ValueError("configuration_filename must be a plain .yaml/.yml file name")
        if target_esphome_version is not None and not is_valid_esphome_version(
            target_esphome_version
        ):
            raise ValueError("target_esphome_version must be an ESPHome version")
        loop = asyncio.get_running_loop()
        size, digest = await loop.run_in_executor(None, _hash_file, bundle)
        if not 0 < size <= BUNDLE_MAX_BYTES:
            raise SubmitRejectedError("empty_bundle" if size == 0 else "oversized")
        header: SubmitJobFrame = {
            "type": MessageType.SUBMIT_JOB,
            "job_id": job_id,
            "configuration_filename": configuration_filename,
            "target": "compile",
            "total_bundle_bytes": size,
            "num_chunks": num_chunks(size),
            "bundle_sha256": digest,
        }
        if device_name:
            header["device_name"] = device_name
        if target_esphome_version:
            header["target_esphome_version"] = target_esphome_version
        async with self._lock:
            ack: asyncio.Future[SubmitJobAckFrame] = loop.create_future()
            self._pending[job_id] = ack
            try:
                await self._send(channel, bundle, header, ack)
                async with asyncio.timeout(self._ack_timeout):
                    verdict = await ack
            except TimeoutError as err:
                raise SubmitTimeoutError("no answer to the job submission") from err
            finally:
                del self._pending[job_id]
        if not verdict["accepted"]:
            raise SubmitRejectedError(verdict["reason"])

    @staticmethod
    async def _send(
        channel: Channel,
        bundle: Path,
        header: SubmitJobFrame,
        ack: asyncio.Future[SubmitJobAckFrame],
    ) -> None:
        job_id, count = header["job_id"], header["num_chunks"]
        await channel.send(header)
        loop = asyncio.get_running_loop()
        file = await loop.run_in_executor(None, bundle.open, "rb")
        try:
            for index in range(count):
                if ack.done():
                    return  # the server already answered (a refusal); stop sending
                data = await loop.run_in_executor(None, file.read, CHUNK_BYTES)
                await channel.send(
                    {
                        "type": MessageType.SUBMIT_JOB_CHUNK,
                        "job_id": job_id,
                        "chunk_index": index,
                        "data_b64": base64.b64encode(data).decode("ascii"),
                        "is_last": index == count - 1,
                    }
                )
        finally:
            file.close()
