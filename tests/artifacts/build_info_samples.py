"""``build_info.json`` as ESPHome 2026.10 writes it (``esphome/writer.py``), for tests.

ESPHome dumps ``{"config_hash", "build_time", "build_time_str", "esphome_version"}`` with
``indent=2`` and a trailing newline; ``build_time_str`` is ``build_time`` formatted with
``"%Y-%m-%d %H:%M:%S %z"`` in the build machine's local time.
"""

from __future__ import annotations

import json
from typing import Any

from custom_components.esphome_remote_build.artifacts import BuildInfo

#: A hash with leading zero digits, so the 8-digit mDNS form is really padded.
CONFIG_HASH = 0x00C0FFEE
BUILD_TIME = 1_790_000_000
BUILD_TIME_STR = "2026-09-21 14:13:20 +0000"
ESPHOME_VERSION = "2026.10.0"

SAMPLE: dict[str, Any] = {
    "config_hash": CONFIG_HASH,
    "build_time": BUILD_TIME,
    "build_time_str": BUILD_TIME_STR,
    "esphome_version": ESPHOME_VERSION,
}
SAMPLE_INFO = BuildInfo(
    config_hash=CONFIG_HASH,
    build_time=BUILD_TIME,
    build_time_str=BUILD_TIME_STR,
    esphome_version=ESPHOME_VERSION,
)


def build_info_json(**changes: Any) -> bytes:
    """ESPHome's file for :data:`SAMPLE`, with ``changes`` applied (``...`` drops a key)."""
    body = {**SAMPLE, **changes}
    body = {key: value for key, value in body.items() if value is not ...}
    return (json.dumps(body, indent=2) + "\n").encode()
