"""Default OTA port per platform, for targets whose YAML does not set ``ota: port:``."""

from __future__ import annotations

from typing import Final

_PORTS: Final[dict[str, int]] = {
    "esp32": 3232,
    "esp8266": 8266,
    "rp2040": 2040,
    "bk72xx": 8892,
    "rtl87xx": 8892,
    "ln882x": 8820,
    "host": 8082,
}


def default_ota_port(platform: str) -> int:
    """Return ESPHome's default OTA port for a platform name as builds report it.

    Every ESP32 variant (``esp32s3``, ``esp32c6``, …) listens on the ESP32 port.
    Raises ``ValueError`` for a platform ESPHome's OTA component has no default for.
    """
    key = platform.strip().lower()
    if key.startswith("esp32"):
        key = "esp32"
    try:
        return _PORTS[key]
    except KeyError:
        raise ValueError(f"no default OTA port known for platform {platform!r}") from None
