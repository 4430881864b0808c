"""Benchmark worker: one artifacts download from the real Device Builder, measured in-process.

Run by ``scripts/bench.py`` in a fresh process per measurement; prints one JSON line.

``--kind ours`` is the library as Home Assistant uses it: ``PeerLinkClient`` and
``download_artifacts`` into a file (validated, hashed, written, renamed). ``--kind
baseline`` is the ceiling the server allows: the same handshake and request through the
library's ``open_channel``, then only what any client must do per frame — decrypt, parse
the JSON, base64-decode — with the decoded bytes counted and dropped (no hash, no file).

Both report the wall time from the request to the end, and the "stream" time from the
first artifacts frame to the end, which leaves out the server packing the tarball
(identical for both, and not the client's doing). The stream's start is seen the same way
for both, so neither gets a head start: a watcher polls the destination directory every
1 ms for the first file — our client creates its temporary file on ``artifacts_start``,
the baseline touches a marker at the same moment.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
from pathlib import Path
import time
from typing import Any

import aiohttp

from custom_components.esphome_remote_build.peerlink import Identity, PeerLinkClient
from custom_components.esphome_remote_build.peerlink.channel import open_channel
from custom_components.esphome_remote_build.peerlink.frames import (
    APP_FRAME_MAX_BYTES,
    Intent,
    IntentResponse,
    MessageType,
)
from scripts.bench_probe import STALL_TICK, Meter

CONNECT_TIMEOUT = 15.0
#: The watcher has seen the file long before the end; this only bounds a broken run.
WATCH_GRACE = 1.0


def _is_empty(directory: Path) -> bool:
    """One directory read of an almost empty directory: cheap enough for the loop."""
    return next(directory.iterdir(), None) is None


async def _first_entry(directory: Path) -> tuple[float, float]:
    """Return (wall, process CPU) clocks when the first file appeared in ``directory``.

    Polled every 1 ms, because the file is created inside the library with nothing to
    await on.
    """
    while _is_empty(directory):  # noqa: ASYNC110
        await asyncio.sleep(STALL_TICK)
    return time.perf_counter(), time.process_time()


async def _download_ours(
    http: aiohttp.ClientSession, args: argparse.Namespace, identity: Identity
) -> dict[str, Any]:
    client = PeerLinkClient(http, args.host, args.port, identity, args.pin, friendly_name="bench")
    await client.start()
    try:
        await client.wait_connected(CONNECT_TIMEOUT)
        dest = args.dest_dir / "artifacts.tar.gz"
        watch = asyncio.create_task(_first_entry(args.dest_dir))
        async with Meter() as meter:
            result = await client.download_artifacts(args.job_id, dest, timeout=args.timeout)
        stream_started = await asyncio.wait_for(watch, WATCH_GRACE)
    finally:
        await client.stop()
    if dest.stat().st_size != result.total_bytes:
        raise RuntimeError("the file on disk does not have the downloaded size")
    return {
        "bytes": result.total_bytes,
        "sha256": result.sha256,
        "stream_started": stream_started,
        "meter": meter,
    }


async def _download_baseline(
    http: aiohttp.ClientSession, args: argparse.Namespace, identity: Identity
) -> dict[str, Any]:
    hello = {"dashboard_id": identity.dashboard_id, "friendly_name": "bench", "ha_addon": False}
    channel, response = await open_channel(
        http,
        args.host,
        args.port,
        identity,
        Intent.PEER_LINK,
        hello,
        args.pin,
        max_msg_size=APP_FRAME_MAX_BYTES,
    )
    try:
        if response["intent_response"] is not IntentResponse.OK:
            raise RuntimeError(f"session refused: {response}")
        watch = asyncio.create_task(_first_entry(args.dest_dir))
        received, declared, sha256 = 0, -1, ""
        async with asyncio.timeout(args.timeout), Meter() as meter:
            await channel.send({"type": MessageType.DOWNLOAD_ARTIFACTS, "job_id": args.job_id})
            while True:
                message = await channel.ws.receive()
                if message.type is not aiohttp.WSMsgType.BINARY:
                    raise RuntimeError(f"session ended mid-download: {message.type!r}")
                frame = json.loads(channel.noise.decrypt(message.data))
                kind = frame.get("type")
                if kind == MessageType.ARTIFACTS_CHUNK:
                    received += len(base64.b64decode(frame["data_b64"]))
                elif kind == MessageType.ARTIFACTS_START:
                    (args.dest_dir / "started").touch()
                    declared, sha256 = frame["total_bytes"], frame["artifacts_sha256"]
                elif kind == MessageType.ARTIFACTS_END:
                    if not frame.get("accepted"):
                        raise RuntimeError(f"download refused: {frame}")
                    break
        stream_started = await asyncio.wait_for(watch, WATCH_GRACE)
    finally:
        await channel.close()
    if received != declared:
        raise RuntimeError(f"received {received} bytes of {declared}")
    return {"bytes": received, "sha256": sha256, "stream_started": stream_started, "meter": meter}


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    identity = Identity.from_dict(json.loads(args.identity.read_text(encoding="utf-8")))
    download = _download_ours if args.kind == "ours" else _download_baseline
    async with aiohttp.ClientSession() as http:
        outcome = await download(http, args, identity)
    meter: Meter = outcome.pop("meter")
    assert meter.figures is not None
    end = meter.started + meter.figures.seconds
    stream_started, stream_cpu = outcome.pop("stream_started")
    if stream_started >= end:
        raise RuntimeError("the stream's start was not seen before its end")
    return {
        "kind": args.kind,
        **outcome,
        "stream_seconds": end - stream_started,
        "stream_cpu_seconds": meter.cpu_started + meter.figures.cpu_seconds - stream_cpu,
        **meter.figures.as_dict(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kind", choices=("ours", "baseline"), required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pin", required=True)
    parser.add_argument("--identity", type=Path, required=True, help="Identity.to_dict() JSON")
    parser.add_argument("--job-id", required=True)
    parser.add_argument("--dest-dir", type=Path, required=True, help="an empty directory")
    parser.add_argument("--timeout", type=float, default=300.0)
    print(json.dumps(asyncio.run(_main(parser.parse_args()))), flush=True)


if __name__ == "__main__":
    main()
