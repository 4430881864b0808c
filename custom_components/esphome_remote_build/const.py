"""Names and defaults shared by the Home Assistant side of the integration.

The user-facing names (domain, event, option and field names) are part of the contract in
docs/design.md: automations and scripts depend on them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Final

from homeassistant.util.hass_dict import HassKey

if TYPE_CHECKING:
    from .build_logs import BuildLogs
    from .store import BuildStore

DOMAIN: Final = "esphome_remote_build"

#: The one build store of this installation (builds of every server live in it).
DATA_STORE: HassKey[BuildStore] = HassKey(f"{DOMAIN}_store")
#: The build logs of this installation (every server's jobs write theirs there).
DATA_LOGS: HassKey[BuildLogs] = HassKey(f"{DOMAIN}_logs")

CONF_PIN: Final = "pin_sha256"
CONF_PAIRING_KEY: Final = "pairing_key"
CONF_KEEP_LAST: Final = "keep_last"

DEFAULT_PORT: Final = 6055
DEFAULT_KEEP_LAST: Final = 3
KEEP_LAST_MIN: Final = 1
KEEP_LAST_MAX: Final = 50

# mDNS TXT keys of a Device Builder that has its build-server listener bound (PROTOCOL §7).
TXT_PIN: Final = "pin_sha256"
TXT_PORT: Final = "remote_build_port"
TXT_FRIENDLY_NAME: Final = "friendly_name"

EVENT_JOB: Final = f"{DOMAIN}_job"
EVENT_FLASH: Final = f"{DOMAIN}_flash"


class FlashStatus(StrEnum):
    """The ``status`` of a flash event, and of the last-job sensor's flash attributes."""

    STARTED = "started"
    UPLOADING = "uploading"
    COMPLETED = "completed"
    FAILED = "failed"
    VERIFYING = "verifying"
    VERIFIED = "verified"
    NOT_VERIFIED = "not_verified"


# Home Assistant's ``esphome`` integration keeps a device's address and API encryption key
# in its config entry under these keys (``homeassistant.components.esphome.const``).  They
# are repeated here because importing that package needs aioesphomeapi, which this
# integration does not require.
ESPHOME_DOMAIN: Final = "esphome"
ESPHOME_CONF_NOISE_PSK: Final = "noise_psk"
ESPHOME_CONF_DEVICE_NAME: Final = "device_name"

# How long the config flow waits for the server's admin to approve us.
APPROVAL_TIMEOUT: Final = 300.0
# How long a service call waits for a session that is (re)connecting.
CONNECT_WAIT: Final = 10.0
# How long `submit_build` with `wait: true` waits for the build to end.
BUILD_WAIT_TIMEOUT: Final = 1800.0
# How long `clean_build_environment` with `wait: true` waits for the clean to end.
CLEAN_WAIT_TIMEOUT: Final = 1800.0
# An artifacts download: overall budget, and the longest silence between frames (the
# server packs a big build before its first frame).
DOWNLOAD_TIMEOUT: Final = 900.0
DOWNLOAD_GAP_TIMEOUT: Final = 120.0

# The folder where the ESPHome add-on keeps device configurations.
ESPHOME_CONFIG_FOLDER: Final = "esphome"
BUILDS_FOLDER: Final = "builds"
LOGS_FOLDER: Final = "logs"
