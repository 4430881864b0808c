"""The emulator as a separate process, the way the demo script starts it."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
from pathlib import Path
import signal
import sys

from custom_components.esphome_remote_build.ota import async_flash

REPO = Path(__file__).resolve().parents[2]


async def test_emulator_runs_as_a_module(
    socket_enabled: None, image: bytes, psk: bytes, tmp_path: Path
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.ota_emulator",
        "--port",
        "0",
        "--compression",
        "--noise-psk",
        base64.b64encode(psk).decode(),
        "--save-dir",
        str(tmp_path),
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(30):
            listening = json.loads(await process.stdout.readline())
            assert listening["event"] == "listening"
            result = await async_flash(
                "127.0.0.1", listening["port"], image, noise_psk=psk, retry_delay=0
            )
            session = json.loads(await process.stdout.readline())
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            returncode = await process.wait()

    assert returncode == 0
    assert result.encrypted
    assert result.compressed
    assert session["completed"]
    assert session["md5_ok"]
    assert session["encrypted"]
    assert session["image_sha256"] == hashlib.sha256(image).hexdigest()
    assert (tmp_path / "session-0.bin").read_bytes() == image
