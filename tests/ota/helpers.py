"""Helpers shared by the OTA tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Self

from custom_components.esphome_remote_build.ota import FlashResult, async_flash
from tests.support.ota_emulator import OTADeviceEmulator

type StartDevice = Callable[..., Awaitable[OTADeviceEmulator]]


async def flash(device: OTADeviceEmulator, image: bytes | Path, **kwargs: Any) -> FlashResult:
    """Our client with test-sized timeouts and no retry wait."""
    kwargs.setdefault("connect_timeout", 5.0)
    kwargs.setdefault("data_timeout", 5.0)
    kwargs.setdefault("retry_delay", 0.0)
    return await async_flash("127.0.0.1", device.port, image, **kwargs)


class ScriptedDevice:
    """A loopback peer that plays fixed steps per connection: read n bytes, then write bytes.

    For answers no real device gives (a stray byte, a broken frame, silence); the
    emulator covers everything a device does say. After the script it waits for the
    client to hang up, or hangs up itself with ``hang_up``.
    """

    def __init__(self, steps: list[tuple[int, bytes]], *, hang_up: bool = False) -> None:
        self._steps = steps
        self._hang_up = hang_up
        self.connections = 0
        self.received: list[bytes] = []
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        self._server.abort_clients()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.connections += 1
        received = bytearray()
        try:
            for size, answer in self._steps:
                received += await reader.readexactly(size)
                writer.write(answer)
                await writer.drain()
            while not self._hang_up and (data := await reader.read(65536)):
                received += data
        except (asyncio.IncompleteReadError, OSError):
            pass
        finally:
            self.received.append(bytes(received))
            writer.close()
            self._handlers.discard(task)
