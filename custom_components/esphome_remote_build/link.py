"""The per-entry runtime: one peer-link client, its events turned into Home Assistant state.

The client reconnects by itself in the background, so setting an entry up never waits for
the server.  What a person must act on (the server revoked us, its key changed, another
installation uses our identity) becomes a repair issue; the first two also start reauth.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
import logging
from pathlib import Path
import secrets

from homeassistant.config_entries import ConfigEntry
from homeassistant.const import CONF_HOST, CONF_PORT
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import device_registry as dr, issue_registry as ir
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.singleton import singleton
from homeassistant.helpers.storage import Store
from homeassistant.util.hass_dict import HassKey

from .const import CONF_PIN, CONNECT_WAIT, DOMAIN, EVENT_JOB, FlashStatus
from .peerlink import (
    Connected,
    Disconnected,
    Identity,
    JobOutput,
    JobStateChanged,
    NotConnectedError,
    NotPairedError,
    PeerLinkClient,
    PeerLinkEvent,
    PinMismatchError,
)
from .store import BuildStore

_LOGGER = logging.getLogger(__name__)

OUTPUT_TAIL_LINES = 3
KEEP_JOBS = 100  # jobs whose configuration and output tail we remember

IDENTITY_STORAGE_KEY = f"{DOMAIN}.identity"
IDENTITY_STORAGE_VERSION = 1
_IDENTITY: HassKey[Identity] = HassKey(f"{DOMAIN}_identity")


@singleton(_IDENTITY, async_=True)
async def async_get_identity(hass: HomeAssistant) -> Identity:
    """Load this installation's identity, creating it on first use.

    One key and ``dashboard_id`` for the whole installation: every server binds the pair
    when it approves us, so all entries share them.  The private ``Store`` file is written
    with mode 0600.  An unreadable file is replaced by a fresh identity (new key *and* new
    id, so servers that knew the old pair do not refuse the new key).
    """
    store: Store[dict[str, str]] = Store(
        hass, IDENTITY_STORAGE_VERSION, IDENTITY_STORAGE_KEY, private=True
    )
    data = await store.async_load()
    if data is not None:
        try:
            return Identity.from_dict(data)
        except (KeyError, TypeError, ValueError):
            _LOGGER.warning("The stored peer-link identity is unusable; creating a new one")
    identity = Identity.generate()
    await store.async_save(identity.to_dict())
    return identity


@dataclass
class RemoteBuildData:
    """What a loaded entry keeps at runtime."""

    link: RemoteBuildLink
    store: BuildStore


type RemoteBuildConfigEntry = ConfigEntry[RemoteBuildData]


@dataclass(frozen=True, slots=True)
class FlashProgress:
    """Where the latest flash of one of this server's builds stands."""

    job_id: str
    progress: int
    status: FlashStatus


class RemoteBuildLink:
    """One paired build server as Home Assistant sees it."""

    def __init__(self, hass: HomeAssistant, entry: ConfigEntry, identity: Identity) -> None:
        self._hass = hass
        self._entry = entry
        self.client = PeerLinkClient(
            async_get_clientsession(hass),
            entry.data[CONF_HOST],
            entry.data[CONF_PORT],
            identity,
            entry.data[CONF_PIN],
            friendly_name=hass.config.location_name,
        )
        self.last_job: JobStateChanged | None = None
        self.flash: FlashProgress | None = None
        # One artifact download per server at a time (the server allows no more).
        self.download_lock = asyncio.Lock()
        self._configurations: dict[str, str] = {}
        self._output: dict[str, deque[str]] = {}
        self._listeners: list[Callable[[], None]] = []
        self._unsubscribe: Callable[[], None] | None = None
        self._unavailable_logged = False

    @property
    def _issue_id(self) -> str:
        return f"pairing_{self._entry.entry_id}"

    async def async_start(self) -> None:
        """Start connecting in the background."""
        self._unsubscribe = self.client.subscribe(self._on_event)
        await self.client.start()

    async def async_stop(self) -> None:
        """Say goodbye to the server and stop reconnecting."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        await self.client.stop()

    async def async_wait_connected(self) -> None:
        """Give a reconnecting session a moment; fail at once if the link gave up."""
        if not self.client.running:
            raise NotConnectedError(f"the link stopped: {self.client.stopped_reason}")
        await self.client.wait_connected(CONNECT_WAIT)

    @callback
    def async_add_listener(self, update: Callable[[], None]) -> Callable[[], None]:
        """Call ``update`` whenever the link's state changed; returns the remover."""
        self._listeners.append(update)
        return lambda: self._listeners.remove(update)

    async def async_submit(self, bundle: Path, configuration: str) -> str:
        """Submit a bundle as a new job and return its id.

        The id is chosen and remembered before the upload: the server's first state
        change can arrive before the upload call returns, and its event should already
        name the configuration.
        """
        job_id = secrets.token_hex(6)
        self._configurations[job_id] = configuration
        if len(self._configurations) > KEEP_JOBS:  # an entry lives for months: stay bounded
            oldest = next(iter(self._configurations))
            del self._configurations[oldest]
            self._output.pop(oldest, None)
        try:
            return await self.client.submit_job(bundle, configuration, job_id=job_id)
        except BaseException:
            del self._configurations[job_id]
            raise

    def configuration_of(self, job_id: str) -> str | None:
        """Return the configuration of a job submitted since this entry was loaded."""
        return self._configurations.get(job_id)

    @callback
    def async_set_flash(self, flash: FlashProgress) -> None:
        """Show a flash of one of this server's builds on the entities."""
        self.flash = flash
        self._notify()

    @callback
    def _notify(self) -> None:
        for update in list(self._listeners):
            update()

    @callback
    def _on_event(self, event: PeerLinkEvent) -> None:
        match event:
            case Connected():
                self._on_connected(event)
            case Disconnected():
                self._on_disconnected(event)
            case JobStateChanged():
                self._on_job(event)
            case JobOutput():
                self._on_output(event)
                return  # output lines change no entity state
            case _:
                pass  # queue updates only refresh entities
        self._notify()

    def _on_output(self, event: JobOutput) -> None:
        """Keep the last lines of our jobs' output.

        They explain a failure the server reports without an error message (a compile error).
        """
        if event.job_id in self._configurations and (line := event.line.strip()):
            self._output.setdefault(event.job_id, deque(maxlen=OUTPUT_TAIL_LINES)).append(line)

    def failure_reason(self, job: JobStateChanged) -> str:
        """Explain a failed job: the server's message, else the tail of its output."""
        if job.error_message:
            return job.error_message
        return " | ".join(self._output.get(job.job_id, ())) or "no reason given"

    def _on_connected(self, event: Connected) -> None:
        if self._unavailable_logged:
            _LOGGER.info("Build server %s is connected again", self._entry.title)
            self._unavailable_logged = False
        ir.async_delete_issue(self._hass, DOMAIN, self._issue_id)
        registry = dr.async_get(self._hass)
        device = registry.async_get_device_by_identifier(
            (DOMAIN, self._entry.data[CONF_PIN]), self._entry.entry_id
        )
        if device is not None:
            registry.async_update_device(
                device.id, sw_version=event.server_info.esphome_version or None
            )

    def _on_disconnected(self, event: Disconnected) -> None:
        if not self._unavailable_logged:
            _LOGGER.info("Build server %s is unavailable: %s", self._entry.title, event.reason)
            self._unavailable_logged = True
        if not event.terminal:
            return
        if isinstance(event.error, PinMismatchError):
            translation_key = "server_key_changed"
        elif isinstance(event.error, NotPairedError):
            translation_key = "pairing_revoked"
        else:
            translation_key = "identity_in_use"
        if translation_key != "identity_in_use":
            self._entry.async_start_reauth(self._hass)
        ir.async_create_issue(
            self._hass,
            DOMAIN,
            self._issue_id,
            is_fixable=False,
            severity=ir.IssueSeverity.ERROR,
            translation_key=translation_key,
            translation_placeholders={"name": self._entry.title, "reason": event.reason},
        )

    def _on_job(self, event: JobStateChanged) -> None:
        self.last_job = event
        self._hass.bus.async_fire(
            EVENT_JOB,
            {
                "config_entry_id": self._entry.entry_id,
                "job_id": event.job_id,
                "status": event.status.value,
                "error_message": event.error_message,
                "configuration": self.configuration_of(event.job_id),
            },
        )
