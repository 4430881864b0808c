"""The per-entry runtime: the one door from Home Assistant to a build server.

Platforms, actions and the config flow ask the link, never its peer-link client: it
says whether the server is connected and how full its queue is, submits configurations
(optionally for another ESPHome version), cleans the server's build environment, waits for
and cancels jobs, downloads a job into the build store, keeps each of its jobs' output in
a build log, and turns the client's events into Home Assistant state.  The client
reconnects by itself in the background, so setting an entry up never waits for the
server.  What a person must act on is said once: a revoked pairing starts
reauthentication; a changed server key or a second installation with our identity
becomes a repair issue.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
import logging
from pathlib import Path

from homeassistant.config_entries import ConfigEntry
from homeassistant.const import CONF_HOST, CONF_PORT
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import device_registry as dr, issue_registry as ir
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.singleton import singleton
from homeassistant.helpers.storage import Store
from homeassistant.util.hass_dict import HassKey

from .artifacts import write_config_bundle
from .build_logs import BuildLogs, strip_colours
from .const import (
    CONF_KEEP_LAST,
    CONF_PIN,
    CONNECT_WAIT,
    DEFAULT_KEEP_LAST,
    DOMAIN,
    DOWNLOAD_GAP_TIMEOUT,
    DOWNLOAD_TIMEOUT,
    EVENT_JOB,
    FlashStatus,
)
from .peerlink import (
    Connected,
    Disconnected,
    DownloadResult,
    Identity,
    JobOutput,
    JobStateChanged,
    JobStatus,
    NotConnectedError,
    NotPairedError,
    PeerLinkClient,
    PeerLinkEvent,
    PinMismatchError,
    QueueStatus,
    ServerInfo,
    new_job_id,
)
from .store import BuildStore
from .stored_build import StoredBuild

_LOGGER = logging.getLogger(__name__)

OUTPUT_TAIL_LINES = 3
KEEP_JOBS = 100  # jobs whose configuration and output tail we remember
#: The subject of a clean's build log (failed logs are kept per subject).
CLEAN_SUBJECT = "action: clean build environment"

IDENTITY_STORAGE_KEY = f"{DOMAIN}.identity"
IDENTITY_STORAGE_VERSION = 1
_IDENTITY: HassKey[Identity] = HassKey(f"{DOMAIN}_identity")

# Why a session ended, in words for the log (the codes are the client's and the server's).
_DISCONNECT_WORDS: dict[str, str] = {
    "peer_hung_up": "the server closed the connection",
    "transport_error": "the connection broke",
    "cannot_connect": "the server cannot be reached",
    "heartbeat_timeout": "the server stopped answering",
    "protocol_error": "the server sent something the protocol does not allow",
    "superseded": "another session with our identity replaced this one",
    "client_stopped": "Home Assistant closed the link",
    "server_shutdown": "the server is shutting down",
    "pin_mismatch": "the server presented a different key",
    "no_approved_peer": "the server no longer accepts this Home Assistant",
    "pending": "the server's admin has not approved this Home Assistant yet",
}


def describe_disconnect(reason: str) -> str:
    """Say in words why a session ended; unknown codes are quoted as they are."""
    return _DISCONNECT_WORDS.get(reason, f"the session ended ({reason})")


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


type RemoteBuildConfigEntry = ConfigEntry[RemoteBuildData]


@dataclass(frozen=True, slots=True)
class _OurJob:
    """A job this link started: a build of a configuration, or a clean (``None``)."""

    configuration: str | None
    esphome_version: str | None = None


@dataclass(frozen=True, slots=True)
class FlashProgress:
    """Where the latest flash of one of this server's builds stands."""

    job_id: str
    progress: int
    status: FlashStatus


class RemoteBuildLink:
    """One paired build server as Home Assistant sees it."""

    def __init__(
        self,
        hass: HomeAssistant,
        entry: RemoteBuildConfigEntry,
        identity: Identity,
        store: BuildStore,
        logs: BuildLogs,
    ) -> None:
        self._hass = hass
        self._entry = entry
        self.store = store
        self._logs = logs
        self._client = PeerLinkClient(
            async_get_clientsession(hass),
            entry.data[CONF_HOST],
            entry.data[CONF_PORT],
            identity,
            entry.data[CONF_PIN],
            friendly_name=hass.config.location_name,
        )
        self.last_job: JobStateChanged | None = None
        self.flash: FlashProgress | None = None
        self._jobs: dict[str, _OurJob] = {}
        self._in_flight: set[str] = set()
        self._output: dict[str, deque[str]] = {}
        self._listeners: list[Callable[[], None]] = []
        self._unsubscribe: Callable[[], None] | None = None
        self._unavailable_logged = False

    # --- what the server is doing -------------------------------------------------------

    @property
    def title(self) -> str:
        """The server's name as the user knows it (the entry's title)."""
        return self._entry.title

    @property
    def server_pin(self) -> str:
        """The pin of the server's key: the entry's identity."""
        pin: str = self._entry.data[CONF_PIN]
        return pin

    @property
    def connected(self) -> bool:
        """Tell whether a session is open right now."""
        return self._client.connected

    @property
    def running(self) -> bool:
        """Tell whether the link still tries to connect (it gave up after a refusal)."""
        return self._client.running

    @property
    def stopped_reason(self) -> str | None:
        """Why the link gave up, if it did."""
        return self._client.stopped_reason

    @property
    def last_error(self) -> Exception | None:
        """The failure that ended the last attempt to connect, if any."""
        return self._client.last_error

    @property
    def queue(self) -> QueueStatus | None:
        """The server's queue as of its last report."""
        return self._client.queue

    @property
    def server_info(self) -> ServerInfo | None:
        """What the server said about itself when the session opened."""
        return self._client.server_info

    @property
    def load(self) -> int:
        """How busy the server is for one more build: its queue, plus ours not yet ended.

        Our own submissions count until their end arrives: a queue report can lag a
        submit, and two builds started at once should not both pick the same server.
        """
        queue = self._client.queue
        server = queue.queue_depth + int(queue.running) if queue is not None else 0
        return max(server, len(self._in_flight))

    def recent_jobs(self) -> list[JobStateChanged]:
        """Return the latest known state of our recent jobs, oldest first."""
        return list(self._client.jobs.values())

    def job_status(self, job_id: str) -> JobStatus | None:
        """Return the last status this session saw for ``job_id``."""
        known = self._client.jobs.get(job_id)
        return known.status if known is not None else None

    def configuration_of(self, job_id: str) -> str | None:
        """Return the configuration of a job submitted since this entry was loaded."""
        job = self._jobs.get(job_id)
        return job.configuration if job is not None else None

    def esphome_version_of(self, job_id: str) -> str | None:
        """Return the ESPHome version a build asked for (``None``: the server's own)."""
        job = self._jobs.get(job_id)
        return job.esphome_version if job is not None else None

    def failure_reason(self, job: JobStateChanged) -> str:
        """Explain a failed job: the server's message, else the tail of its output."""
        if job.error_message:
            return job.error_message
        return " | ".join(self._output.get(job.job_id, ()))

    # --- life-cycle ---------------------------------------------------------------------

    @property
    def _issue_id(self) -> str:
        return f"pairing_{self._entry.entry_id}"

    async def async_start(self) -> None:
        """Start connecting in the background."""
        self._unsubscribe = self._client.subscribe(self._on_event)
        await self._client.start()

    async def async_stop(self) -> None:
        """Say goodbye to the server and stop reconnecting; close our jobs' logs."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        await self._client.stop()
        for job_id in self._jobs:
            # What the server still sends for them is not heard any more.
            self._logs.end(job_id, "not followed to its end: the link to the server stopped")
        await self._logs.async_flush()

    @callback
    def reconnect_now(self) -> None:
        """Cut the reconnect back-off short (the server was just seen again)."""
        self._client.reconnect_now()

    async def async_wait_connected(self) -> None:
        """Give a reconnecting session a moment; fail at once if the link gave up."""
        if not self._client.running:
            raise NotConnectedError(f"the link stopped: {self._client.stopped_reason}")
        await self._client.wait_connected(CONNECT_WAIT)

    @callback
    def async_add_listener(self, update: Callable[[], None]) -> Callable[[], None]:
        """Call ``update`` whenever the link's state changed; returns the remover."""
        self._listeners.append(update)
        return lambda: self._listeners.remove(update)

    # --- jobs ---------------------------------------------------------------------------

    async def async_submit(
        self, config_dir: Path, configuration: str, *, esphome_version: str | None = None
    ) -> str:
        """Bundle a device configuration off the loop, submit it, and return the job's id.

        ``esphome_version`` (already checked: ``is_valid_esphome_version``) asks the
        server to build with that ESPHome version; ``None`` builds with its own.  The id
        is chosen and remembered, and its log started, before the upload: the server's
        first state change can arrive before the upload call returns, and its event
        should already name the configuration.  The bundle holds secrets: it lives in the
        store's private scratch folder and is removed whatever happens.
        """
        await self.async_wait_connected()
        job_id = self._start_job(
            _OurJob(configuration, esphome_version), f"configuration: {configuration}"
        )
        try:
            async with self.store.async_temporary_file("bundle.tar.gz") as bundle:
                await self._hass.async_add_executor_job(
                    write_config_bundle, config_dir, configuration, bundle
                )
                await self._client.submit_job(
                    bundle, configuration, job_id=job_id, esphome_version=esphome_version
                )
        except BaseException:
            self._forget_job(job_id)
            raise
        self._follow(job_id)
        return job_id

    async def async_clean_build_environment(self) -> str:
        """Ask the server to wipe its build environment; return the clean's job id.

        The clean is a job like a build (events, output, log, ``async_wait_for_job``);
        a server that does not offer it is refused before anything is sent.
        """
        await self.async_wait_connected()
        job_id = self._start_job(_OurJob(None), CLEAN_SUBJECT)
        try:
            await self._client.reset_build_env(job_id=job_id)
        except BaseException:
            self._forget_job(job_id)
            raise
        self._follow(job_id)
        return job_id

    def _start_job(self, job: _OurJob, subject: str) -> str:
        """Choose a job's id, remember the job and start its log (before anything is sent)."""
        job_id = new_job_id()
        self._jobs[job_id] = job
        if len(self._jobs) > KEEP_JOBS:  # an entry lives for months: stay bounded
            oldest = next(iter(self._jobs))
            del self._jobs[oldest]
            self._output.pop(oldest, None)
            self._logs.end(oldest, "no longer followed (too many newer jobs)")
        info = self.server_info
        details = {"server": self.title}
        if job.esphome_version is not None:
            details["esphome_version"] = f"{job.esphome_version} (requested)"
        elif info is not None and info.esphome_version:
            details["esphome_version"] = f"{info.esphome_version} (the server's own)"
        self._logs.start(job_id, subject, details)
        return job_id

    def _forget_job(self, job_id: str) -> None:
        """Forget a job the server never took: no memory of it, and no log."""
        self._jobs.pop(job_id, None)
        self._output.pop(job_id, None)
        self._logs.discard(job_id)

    def _follow(self, job_id: str) -> None:
        """Count an accepted job against the server's load until its end arrives."""
        if (status := self.job_status(job_id)) is None or not status.is_terminal:
            self._in_flight.add(job_id)

    async def async_log(self, job_id: str) -> Path | None:
        """Return the build log of a job with everything received so far, if there is one."""
        return await self._logs.async_log_of(job_id)

    async def async_wait_for_job(self, job_id: str, timeout: float) -> JobStateChanged:
        """Wait until a job ends (or the session is lost)."""
        return await self._client.wait_for_job(job_id, timeout)

    async def async_cancel(self, job_id: str) -> None:
        """Ask the server to cancel a job; the outcome arrives as a job event."""
        await self.async_wait_connected()
        await self._client.cancel_job(job_id)

    async def async_download(self, job_id: str) -> StoredBuild:
        """Return the stored build of one of this server's jobs, downloading it if needed.

        Then the entry's retention applies to that device's builds.
        """
        stored = await self.store.async_download(
            job_id,
            server_pin=self.server_pin,
            configuration=self.configuration_of(job_id) or "",
            fetch=partial(self._async_fetch, job_id),
        )
        await self.store.async_keep_last(
            self._entry.options.get(CONF_KEEP_LAST, DEFAULT_KEEP_LAST), stored.device_name
        )
        return stored

    async def _async_fetch(self, job_id: str, dest: Path) -> DownloadResult:
        await self.async_wait_connected()
        return await self._client.download_artifacts(
            job_id, dest, timeout=DOWNLOAD_TIMEOUT, chunk_timeout=DOWNLOAD_GAP_TIMEOUT
        )

    # --- flashes ------------------------------------------------------------------------

    @callback
    def async_set_flash(self, flash: FlashProgress) -> None:
        """Show a flash of one of this server's builds on the entities."""
        self.flash = flash
        self._notify()

    # --- events -------------------------------------------------------------------------

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
        """Write our jobs' output to their logs, and keep the last lines at hand.

        They explain a failure the server reports without an error message (a compile error).
        """
        if event.job_id not in self._jobs:
            return
        self._logs.append(event.job_id, event.line)
        if line := strip_colours(event.line).strip():
            self._output.setdefault(event.job_id, deque(maxlen=OUTPUT_TAIL_LINES)).append(line)

    def _on_connected(self, event: Connected) -> None:
        if self._unavailable_logged:
            _LOGGER.info("Build server %s is connected again", self._entry.title)
            self._unavailable_logged = False
        ir.async_delete_issue(self._hass, DOMAIN, self._issue_id)
        registry = dr.async_get(self._hass)
        device = registry.async_get_device_by_identifier(
            (DOMAIN, self.server_pin), self._entry.entry_id
        )
        if device is not None:
            registry.async_update_device(
                device.id, sw_version=event.server_info.esphome_version or None
            )

    def _on_disconnected(self, event: Disconnected) -> None:
        if not self._unavailable_logged:
            _LOGGER.info(
                "Build server %s is unavailable: %s",
                self._entry.title,
                describe_disconnect(event.reason),
            )
            self._unavailable_logged = True
        if not event.terminal:
            return
        if isinstance(event.error, NotPairedError):
            # Pairing again is the fix, and the reauth notice says so: one message, not two.
            self._entry.async_start_reauth(self._hass)
            return
        # A changed key cannot be fixed by pairing again with whoever answers now; a second
        # installation with our identity is not fixed by pairing at all.  Explain instead.
        translation_key = (
            "server_key_changed" if isinstance(event.error, PinMismatchError) else "identity_in_use"
        )
        ir.async_create_issue(
            self._hass,
            DOMAIN,
            self._issue_id,
            is_fixable=False,
            severity=ir.IssueSeverity.ERROR,
            translation_key=translation_key,
            translation_placeholders={"name": self._entry.title},
        )

    def _on_job(self, event: JobStateChanged) -> None:
        self.last_job = event
        if event.status.is_terminal:
            self._in_flight.discard(event.job_id)
            outcome = event.status.value
            if event.error_message:
                outcome += f": {event.error_message}"
            if event.failure_reason:
                outcome += f" (failure reason: {event.failure_reason})"
            self._logs.end(event.job_id, outcome)
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
