"""What this integration last installed on each device, kept across restarts.

"The configuration changed since the build we installed" can only be answered with a
record of that build: its job, the fingerprint of the configuration files it was built
from (per file, so the update entity can name what changed), and the firmware identity
the device proved it runs.  No secret is recorded: the fingerprint hashes the secrets a
device uses, it does not keep them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
import logging
import secrets
from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.helpers.storage import Store

from .const import DOMAIN

_LOGGER = logging.getLogger(__name__)

STORAGE_KEY = f"{DOMAIN}.installs"
STORAGE_VERSION = 1
KEEP_BUILDS = 200


@dataclass(frozen=True, slots=True)
class InstallRecord:
    """One verified install on one device."""

    job_id: str
    configuration: str
    fingerprint: str
    esphome_version: str
    compilation_time: str
    installed_at: str
    files: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InstallRecord:
        """Read a stored record; raises ``TypeError``/``KeyError`` when it is unusable."""
        files = data.get("files", {})
        if not isinstance(files, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in files.items()
        ):
            raise TypeError("files")
        values = {
            key: data[key]
            for key in (
                "job_id",
                "configuration",
                "fingerprint",
                "esphome_version",
                "compilation_time",
                "installed_at",
            )
        }
        if not all(isinstance(value, str) for value in values.values()):
            raise TypeError("record")
        return cls(**values, files=dict(files))


class InstallRecords:
    """The records of every device, keyed by the device's MAC address (or entry id)."""

    def __init__(self, hass: HomeAssistant) -> None:
        self._store: Store[dict[str, Any]] = Store(hass, STORAGE_VERSION, STORAGE_KEY, private=True)
        self._records: dict[str, InstallRecord] = {}
        # What each of our recent builds was made from, for a later rollback to it.
        self._builds: dict[str, tuple[str, dict[str, str]]] = {}
        #: Keys the digest of the secrets a device uses, so a recorded digest cannot be used
        #: to test guesses of a password without this installation's own secret.
        self.secrets_salt = b""
        self._loaded = False

    async def async_load(self) -> None:
        """Read the records once; a damaged one is dropped (the device just looks new)."""
        if self._loaded:
            return
        data = (await self._store.async_load()) or {}
        salt = data.get("salt")
        if isinstance(salt, str) and len(salt) == 64:
            self.secrets_salt = bytes.fromhex(salt)
        else:
            self.secrets_salt = secrets.token_bytes(32)
            await self._async_save()
        for key, raw in data.get("devices", {}).items():
            try:
                self._records[key] = InstallRecord.from_dict(raw)
            except (KeyError, TypeError):
                _LOGGER.warning("Ignoring a damaged install record of %s", key)
        for job_id, raw in data.get("builds", {}).items():
            fingerprint, files = raw.get("fingerprint"), raw.get("files")
            if isinstance(fingerprint, str) and isinstance(files, dict):
                self._builds[job_id] = (fingerprint, {str(k): str(v) for k, v in files.items()})
        self._loaded = True

    def get(self, device_key: str) -> InstallRecord | None:
        """Return the last verified install on a device, if any."""
        return self._records.get(device_key)

    def built_from(self, job_id: str) -> tuple[str, dict[str, str]] | None:
        """Return the configuration fingerprint and files one of our builds was made from."""
        return self._builds.get(job_id)

    def remember_build(self, job_id: str, fingerprint: str, files: dict[str, str]) -> None:
        """Note what a build was made from (saved with the next install record)."""
        self._builds[job_id] = (fingerprint, files)
        while len(self._builds) > KEEP_BUILDS:
            del self._builds[next(iter(self._builds))]

    async def async_set(self, device_key: str, record: InstallRecord) -> None:
        """Remember a verified install."""
        self._records[device_key] = record
        await self._async_save()

    async def _async_save(self) -> None:
        await self._store.async_save(
            {
                "salt": self.secrets_salt.hex(),
                "devices": {key: asdict(value) for key, value in self._records.items()},
                "builds": {
                    job_id: {"fingerprint": fingerprint, "files": files}
                    for job_id, (fingerprint, files) in self._builds.items()
                },
            }
        )
