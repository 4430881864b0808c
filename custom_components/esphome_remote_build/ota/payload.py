"""The bytes that go over the air: the image, gzip-compressed when the device can inflate it.

Reading, compressing and hashing a whole image would stall the event loop, so all of it
runs in the executor, and only once per form however many attempts the upload takes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
import gzip
import hashlib
from pathlib import Path

from .const import GZIP_LEVEL
from .errors import OTAImageError


@dataclass(frozen=True, slots=True)
class Payload:
    """What the device receives; size and MD5 are of these bytes, compressed or not."""

    data: bytes
    md5_hex: str
    compressed: bool


def _build_payload(image: bytes, compress: bool) -> Payload:
    # mtime=0 keeps the gzip stream, and so its MD5, the same for the same image
    data = gzip.compress(image, compresslevel=GZIP_LEVEL, mtime=0) if compress else image
    # MD5 is what the protocol checks the transfer with, not a security measure
    return Payload(data, hashlib.md5(data, usedforsecurity=False).hexdigest(), compress)


class ImageSource:
    """An image with its payloads built lazily (the device decides about compression)."""

    def __init__(self, image: bytes) -> None:
        self.image = image
        self._payloads: dict[bool, Payload] = {}

    async def payload(self, *, compress: bool) -> Payload:
        """Return the payload for this device, building it in the executor the first time."""
        if compress not in self._payloads:
            self._payloads[compress] = await asyncio.to_thread(_build_payload, self.image, compress)
        return self._payloads[compress]


async def load_image(image: bytes | Path) -> bytes:
    """Return the image bytes, reading a file in the executor; an empty image is refused."""
    if isinstance(image, Path):
        path = image
        try:
            image = await asyncio.to_thread(path.read_bytes)
        except OSError as err:
            raise OTAImageError(f"cannot read the image {path}: {err.strerror}") from err
    if not image:
        raise OTAImageError("the image is empty")
    return image
