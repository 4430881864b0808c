"""The long-lived ``peer_link`` session: connect, keep alive, reconnect, dispatch.

``PeerLinkClient`` owns one background task that keeps a session open with back-off
(1 s doubling to 10 s, reset after a session that opened), runs the heartbeat, turns
server frames into typed events for subscribers, and serves the request/response flows
keyed by ``job_id``: uploads and their acks, and one artifacts download at a time.
Terminal refusals (revoked pairing, changed server key) stop the loop: a person has to
re-pair, retrying cannot help.  Nothing else stops it: whatever goes wrong inside a
session — even a bug — ends that session, is reported, and the loop reconnects.

Liveness: we ping every 30 s, like both ends of the reference, and any frame at all
counts as an answer (§5.3: nobody checks pong nonces).  The reference waits for 90 s of
silence; we also give up on a ping that nothing followed within 15 s, so a frozen (not
closed) server is noticed within 45 s.  A live server answers a ping at once — its
receive loop replies inline and its slow work (compiling, packing) runs off the loop —
and is sending its own pings every 30 s, so 15 s of silence right after our ping is
not a busy server.

Back-off: 1 s doubling to 10 s.  The reference caps at 30 s; but an attempt against a
server that is down costs one refused TCP connect, and the cap is how long a restarted
server may wait for us.  Anyone who needs the link (``wait_connected``) or learns that
the server is back (``reconnect_now``, e.g. from zeroconf) cuts the wait short anyway.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
import contextlib
import logging
from pathlib import Path
import time
from typing import Any

import aiohttp

from . import frames
from .channel import Channel, open_channel
from .download import ArtifactAssembler
from .errors import (
    BuildEnvResetUnsupportedError,
    CannotConnectError,
    DownloadError,
    DownloadTimeoutError,
    IntentRejectedError,
    InvalidJobIdError,
    NotConnectedError,
    NotPairedError,
    PeerLinkError,
    PendingApprovalError,
    PinMismatchError,
    ProtocolError,
    SessionLostError,
    SubmitTimeoutError,
    reset_rejected,
)
from .esphome_version import is_valid_esphome_version
from .frames import (
    APP_FRAME_MAX_BYTES,
    TERMINAL_REJECTS,
    Intent,
    IntentResponse,
    MessageType,
    ResetBuildEnvAckFrame,
    TerminateReason,
)
from .identity import Identity
from .job_id import is_valid_job_id, new_job_id
from .models import (
    Connected,
    Disconnected,
    DownloadResult,
    JobOutput,
    JobStateChanged,
    PeerLinkEvent,
    QueueStatus,
    ServerInfo,
)
from .submit import ACK_TIMEOUT, JobSubmitter

_LOGGER = logging.getLogger(__name__)

HEARTBEAT_INTERVAL = 30.0
PONG_TIMEOUT = 15.0
DEAD_AFTER = 90.0
BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 10.0
DOWNLOAD_TIMEOUT = 900.0
CHUNK_GAP_TIMEOUT = 60.0
KEEP_JOB_STATES = 100
GOODBYE_TIMEOUT = 2.0

# Close reasons of our own making (the server's terminate reasons are passed on verbatim).
INTERNAL_ERROR = "internal_error"
STALLED_DOWNLOAD = "stalled_download"
# Sessions we ended ourselves to get a working one: the server is fine, so no back-off.
_RECONNECT_AT_ONCE = frozenset({STALLED_DOWNLOAD})


class PeerLinkClient:
    """One paired build server, kept connected for as long as the client runs."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        host: str,
        port: int,
        identity: Identity,
        expected_pin: str,
        *,
        friendly_name: str = "Home Assistant",
        stop_on_superseded: bool = True,
        heartbeat_interval: float = HEARTBEAT_INTERVAL,
        pong_timeout: float = PONG_TIMEOUT,
        dead_after: float = DEAD_AFTER,
        backoff_initial: float = BACKOFF_INITIAL,
        backoff_max: float = BACKOFF_MAX,
        ack_timeout: float = ACK_TIMEOUT,
    ) -> None:
        self._http = session
        self.host = host
        self.port = port
        self._identity = identity
        self._expected_pin = expected_pin
        self._friendly_name = friendly_name
        self._stop_on_superseded = stop_on_superseded
        self._heartbeat_interval = heartbeat_interval
        self._pong_timeout = pong_timeout
        self._dead_after = dead_after
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._subscribers: list[Callable[[PeerLinkEvent], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._channel: Channel | None = None
        self._connected_event = asyncio.Event()
        self._wake = asyncio.Event()
        self._ack_timeout = ack_timeout
        self._submitter = JobSubmitter(ack_timeout)
        self._reset_acks: dict[str, asyncio.Future[ResetBuildEnvAckFrame]] = {}
        # The stream the server is sending (or may still send): kept after a local failure
        # until its artifacts_end, so a retry never mistakes the old stream's tail for its own.
        self._stream: ArtifactAssembler | None = None
        self._stream_ended = asyncio.Event()
        self._stream_watch: asyncio.Task[None] | None = None
        self._download_lock = asyncio.Lock()
        # Resolved with a close reason to end the live session from outside its tasks.
        self._session_end: asyncio.Future[str] | None = None
        self._job_waiters: dict[str, list[asyncio.Future[JobStateChanged]]] = {}
        self.server_info: ServerInfo | None = None
        self.queue: QueueStatus | None = None
        self.jobs: dict[str, JobStateChanged] = {}
        self.last_error: PeerLinkError | None = None
        self.stopped_reason: str | None = None
        self._stopping = False
        self._handlers = self._frame_handlers()

    # --- life-cycle -----------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Tell whether a session is open right now."""
        return self._channel is not None

    @property
    def running(self) -> bool:
        """Tell whether the reconnect loop is alive (not stopped, not orphaned)."""
        return self._task is not None and not self._task.done()

    def subscribe(self, callback: Callable[[PeerLinkEvent], None]) -> Callable[[], None]:
        """Register for events; returns the function that unsubscribes."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    async def start(self) -> None:
        """Start the reconnect loop in the background."""
        if self.running:
            return
        self.stopped_reason = None
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name=f"peerlink {self.host}:{self.port}")

    async def stop(self) -> None:
        """Say goodbye to the server and stop; safe to call twice."""
        task, self._task = self._task, None
        self._stopping = True
        if self._stream_watch is not None:
            self._stream_watch.cancel()
        channel = self._channel
        if channel is not None:
            with contextlib.suppress(PeerLinkError, TimeoutError):
                async with asyncio.timeout(GOODBYE_TIMEOUT):
                    await channel.send(
                        {"type": MessageType.TERMINATE, "reason": TerminateReason.CLIENT_STOPPED}
                    )
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if channel is not None:
            await channel.close()
            self._after_session(TerminateReason.CLIENT_STOPPED, terminal=False, error=None)

    def reconnect_now(self) -> None:
        """Cut the current back-off short (e.g. the server was rediscovered).

        A call during a connection attempt is kept: the attempt's back-off is skipped.
        """
        self._wake.set()

    async def wait_connected(self, timeout: float) -> None:
        """Wait until a session is open or raise :class:`NotConnectedError`.

        Someone needs the link now, so a pending back-off is cut short: a server that came
        back is used at once, not after the rest of a 10 s wait.
        """
        if self._channel is None:
            self.reconnect_now()
        try:
            async with asyncio.timeout(timeout):
                await self._connected_event.wait()
        except TimeoutError as err:
            raise NotConnectedError("the build server is not connected") from err

    def _emit(self, event: PeerLinkEvent) -> None:
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:
                _LOGGER.exception("peer-link event subscriber failed")

    async def _run(self) -> None:
        """Keep a session open until stopped or refused for good.

        The loop must never end silently: an unexpected exception from a session (a bug,
        a frame nothing foresaw) is logged once with its traceback and handled like a
        lost connection — ``Disconnected``, waiters failed — then the loop reconnects.
        Its back-off is not reset, so a failure that repeats on every session is retried
        at the slow end of the back-off, not in a tight loop.
        """
        backoff = self._backoff_initial
        while True:
            # Cleared before the attempt, not after: a wake-up during it still counts.
            self._wake.clear()
            try:
                reason = await self._serve(await self._open())
            except (NotPairedError, PinMismatchError) as err:
                self._after_session(err.reason, terminal=True, error=err)
                return
            except PeerLinkError as err:
                self._after_session(err.reason, terminal=False, error=err)
            except Exception as err:
                _LOGGER.exception(
                    "unexpected error in the peer link to %s:%s; reconnecting",
                    self.host,
                    self.port,
                )
                failure = PeerLinkError(f"unexpected error: {err!r}")
                failure.reason = INTERNAL_ERROR
                self._after_session(INTERNAL_ERROR, terminal=False, error=failure)
            else:
                if self._stopping:
                    return  # stop() reports the end of this session
                terminal = self._is_terminal_close(reason)
                self._after_session(reason, terminal=terminal, error=None)
                if terminal:
                    return
                backoff = self._backoff_initial
                if reason in _RECONNECT_AT_ONCE:
                    continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(backoff):
                    await self._wake.wait()
            backoff = min(backoff * 2, self._backoff_max)

    def _is_terminal_close(self, reason: str) -> bool:
        return reason == TerminateReason.SUPERSEDED and self._stop_on_superseded

    def _after_session(self, reason: str, *, terminal: bool, error: PeerLinkError | None) -> None:
        was_connected = self._channel is not None
        self._session_closed(SessionLostError(f"session ended: {reason}"))
        self.last_error = error
        if terminal:
            self.stopped_reason = reason
        if was_connected or terminal or error is not None:
            self._emit(Disconnected(reason, terminal, error))

    async def _open(self) -> Channel:
        payload: dict[str, object] = {
            "dashboard_id": self._identity.dashboard_id,
            "friendly_name": self._friendly_name,
            "ha_addon": False,
        }
        channel, response = await open_channel(
            self._http,
            self.host,
            self.port,
            self._identity,
            Intent.PEER_LINK,
            payload,
            self._expected_pin,
            max_msg_size=APP_FRAME_MAX_BYTES,
        )
        verdict = response["intent_response"]
        if verdict is not IntentResponse.OK:
            await channel.close()
            reason = response["reason"] or verdict.value
            if verdict is IntentResponse.PENDING:
                raise PendingApprovalError(reason, "the server has not approved us yet")
            if reason in TERMINAL_REJECTS:
                raise NotPairedError(reason, f"the build server no longer accepts us ({reason})")
            raise IntentRejectedError(reason)
        self.server_info = ServerInfo.from_response(
            self.host, self.port, channel.remote_pin, response
        )
        self._channel = channel
        self._connected_event.set()
        self.last_error = None
        self._emit(Connected(self.server_info))
        return channel

    def _session_closed(self, error: PeerLinkError) -> None:
        """Fail everything that waited on this session; the next one starts clean."""
        self._channel = None
        self._connected_event.clear()
        self._submitter.fail_all(error)
        for ack in self._reset_acks.values():
            if not ack.done():
                ack.set_exception(error)
        if self._stream is not None:
            self._stream.fail(DownloadError("session_lost", str(error)))
            self._end_stream()
        for waiters in self._job_waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(SessionLostError(str(error)))
        self._job_waiters.clear()

    # --- one session ------------------------------------------------------------------

    async def _serve(self, channel: Channel) -> str:
        """Run reader and heartbeat until one ends (or we end it); return the close reason.

        Exceptions other than :class:`PeerLinkError` leave to ``_run``, after the channel
        is closed.
        """
        last_rx = [time.monotonic()]
        # Created before the first await, so no one can find a session without it.
        end: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._session_end = end
        reader = asyncio.create_task(self._read_loop(channel, last_rx))
        heartbeat = asyncio.create_task(self._heartbeat_loop(channel, last_rx))
        try:
            done, _ = await asyncio.wait(
                {reader, heartbeat, end}, return_when=asyncio.FIRST_COMPLETED
            )
            first = end if end in done else next(iter(done))
            try:
                reason = first.result()
            except PeerLinkError as err:
                reason = err.reason
            if first is end:  # our decision: the server should hear why
                await self._say_goodbye(channel, reason)
            return reason
        finally:
            self._session_end = None
            end.cancel()
            reader.cancel()
            heartbeat.cancel()
            await asyncio.gather(reader, heartbeat, return_exceptions=True)
            # A reader cancelled mid-receive (the heartbeat's verdict) makes aiohttp drop the
            # connection at once, not wait 10 s for a frozen server's close handshake.
            await channel.close()

    def _drop_session(self, reason: str) -> None:
        """End the live session from outside it (no-op when there is none)."""
        end = self._session_end
        if end is not None and not end.done():
            _LOGGER.debug("dropping the session with %s: %s", self.host, reason)
            end.set_result(reason)

    @staticmethod
    async def _say_goodbye(channel: Channel, reason: str) -> None:
        """Send ``terminate`` if the server can still take it; never raises."""
        with contextlib.suppress(PeerLinkError, TimeoutError):
            async with asyncio.timeout(GOODBYE_TIMEOUT):
                await channel.send({"type": MessageType.TERMINATE, "reason": reason})

    async def _heartbeat_loop(self, channel: Channel, last_rx: list[float]) -> str:
        """Ping every interval; return when the server stopped answering.

        Dead when no frame at all followed a ping within ``pong_timeout`` (a pong is just
        the frame a live server surely sends), or — the reference's rule — after
        ``dead_after`` without any frame.  While an upload is under way only the second
        rule applies: our ping waits behind the bundle in the socket buffers, and on a
        slow line that alone can take longer than ``pong_timeout``.
        """
        nonce = 0
        next_ping = time.monotonic() + self._heartbeat_interval
        unanswered: float | None = None  # when the oldest ping nothing has followed went out
        while True:
            now = time.monotonic()
            if unanswered is not None and (last_rx[0] >= unanswered or self._submitter.busy):
                unanswered = None  # answered, or stuck behind our own upload: 90 s rule
            if unanswered is not None and now - unanswered >= self._pong_timeout:
                _LOGGER.debug("%s did not answer a ping within %.0f s", self.host, now - unanswered)
                return TerminateReason.HEARTBEAT_TIMEOUT.value
            if now - last_rx[0] > self._dead_after:
                _LOGGER.debug("no frame from %s for %.0f s", self.host, self._dead_after)
                return TerminateReason.HEARTBEAT_TIMEOUT.value
            if now >= next_ping:
                nonce += 1
                if unanswered is None:
                    unanswered = now
                next_ping = now + self._heartbeat_interval
                await channel.send({"type": MessageType.PING, "nonce": nonce})
            wake = next_ping
            if unanswered is not None:
                wake = min(wake, unanswered + self._pong_timeout)
            await asyncio.sleep(max(0.0, wake - time.monotonic()))

    async def _read_loop(self, channel: Channel, last_rx: list[float]) -> str:
        while True:
            try:
                frame = await channel.receive()
            except ProtocolError:
                _LOGGER.debug("malformed frame from %s", self.host, exc_info=True)
                return "transport_error"
            except CannotConnectError:
                return "peer_hung_up"
            last_rx[0] = time.monotonic()
            kind = frame.get("type")
            if kind == MessageType.TERMINATE:
                reason = frame.get("reason")
                return reason[:64] if isinstance(reason, str) and reason else "terminated"
            if kind == MessageType.PING:
                try:
                    nonce = frames.parse_ping(frame)
                except ProtocolError as err:  # echoing it verbatim could fail to encode
                    _LOGGER.debug("dropped malformed ping: %s", err)
                    continue
                await channel.send({"type": MessageType.PONG, "nonce": nonce})
                continue
            try:
                await self._dispatch(kind, frame)
            except ProtocolError as err:
                # A malformed *known* frame is dropped, not fatal (as the reference does).
                _LOGGER.debug("dropped malformed %s frame: %s", kind, err)

    async def _dispatch(self, kind: object, frame: dict[str, Any]) -> None:
        handler = self._handlers.get(kind) if isinstance(kind, str) else None
        if handler is not None:  # unknown types are ignored: the protocol grows additively
            await handler(frame)

    def _frame_handlers(self) -> dict[str, Callable[[dict[str, Any]], Awaitable[None]]]:
        return {
            MessageType.QUEUE_STATUS: self._on_queue_status,
            MessageType.JOB_STATE_CHANGED: self._on_job_state,
            MessageType.JOB_OUTPUT: self._on_job_output,
            MessageType.SUBMIT_JOB_ACK: self._on_submit_ack,
            MessageType.RESET_BUILD_ENV_ACK: self._on_reset_ack,
            MessageType.ARTIFACTS_START: self._on_artifacts_start,
            MessageType.ARTIFACTS_CHUNK: self._on_artifacts_chunk,
            MessageType.ARTIFACTS_END: self._on_artifacts_end,
        }

    async def _on_queue_status(self, frame: dict[str, Any]) -> None:
        q = frames.parse_queue_status(frame)
        self.queue = QueueStatus(q["idle"], q["running"], q["queue_depth"])
        self._emit(self.queue)

    async def _on_job_state(self, frame: dict[str, Any]) -> None:
        s = frames.parse_job_state_changed(frame)
        event = JobStateChanged(s["job_id"], s["status"], s["error_message"], s["failure_reason"])
        self.jobs.pop(event.job_id, None)  # re-insert: the dict stays in recency order
        self.jobs[event.job_id] = event
        if len(self.jobs) > KEEP_JOB_STATES:  # a long-lived session must not grow forever
            del self.jobs[next(iter(self.jobs))]
        self._emit(event)
        if event.status.is_terminal:
            for waiter in self._job_waiters.pop(event.job_id, []):
                if not waiter.done():
                    waiter.set_result(event)

    async def _on_job_output(self, frame: dict[str, Any]) -> None:
        o = frames.parse_job_output(frame)
        self._emit(JobOutput(o["job_id"], o["stream"], o["line"]))

    async def _on_submit_ack(self, frame: dict[str, Any]) -> None:
        self._submitter.on_ack(frames.parse_submit_job_ack(frame))

    async def _on_reset_ack(self, frame: dict[str, Any]) -> None:
        ack = frames.parse_reset_build_env_ack(frame)
        waiter = self._reset_acks.get(ack["job_id"])
        if waiter is not None and not waiter.done():
            waiter.set_result(ack)

    async def _on_artifacts_start(self, frame: dict[str, Any]) -> None:
        start = frames.parse_artifacts_start(frame)
        if (asm := self._stream_for(start["job_id"])) is not None:
            asm.on_start(start)

    async def _on_artifacts_chunk(self, frame: dict[str, Any]) -> None:
        chunk = frames.parse_artifacts_chunk(frame)
        if (asm := self._stream_for(chunk["job_id"])) is not None:
            await asm.on_chunk(chunk)

    async def _on_artifacts_end(self, frame: dict[str, Any]) -> None:
        end = frames.parse_artifacts_end(frame)
        if (asm := self._stream_for(end["job_id"])) is not None:
            self._end_stream()
            await asm.on_end(end)

    def _stream_for(self, job_id: str) -> ArtifactAssembler | None:
        asm = self._stream
        return asm if asm is not None and asm.job_id == job_id else None

    def _end_stream(self) -> None:
        self._stream = None
        self._stream_ended.set()

    # --- requests -------------------------------------------------------------------

    def _require_channel(self) -> Channel:
        if self._channel is None:
            raise NotConnectedError("the build server is not connected")
        return self._channel

    @staticmethod
    def _check_job_id(job_id: str) -> None:
        """Refuse an id no job of ours can have, before anything is sent.

        The server takes any string, so nothing else would stop it: a 70 000-character id
        makes a frame the server ends the session for, and an id outside the store's
        alphabet can never be stored anyway.
        """
        if not is_valid_job_id(job_id):
            raise InvalidJobIdError(job_id)

    async def submit_job(
        self,
        bundle: Path,
        configuration_filename: str,
        *,
        device_name: str | None = None,
        job_id: str | None = None,
        esphome_version: str | None = None,
    ) -> str:
        """Upload a config bundle as a new job and return its id once the server accepted it.

        ``esphome_version`` asks for a build with that ESPHome version (shaped like one, or
        ``ValueError``); the server installs it first, and a version it cannot install
        ends the job ``failed`` with ``failure_reason`` ``provision`` (§5.5).  The server's
        own version (or ``None``) builds as is, and then the field is left out.
        """
        if job_id is not None:
            self._check_job_id(job_id)
        if esphome_version is not None and not is_valid_esphome_version(esphome_version):
            raise ValueError(f"not an ESPHome version: {esphome_version[:40]!r}")
        channel = self._require_channel()
        if self.server_info is not None and esphome_version == self.server_info.esphome_version:
            esphome_version = None
        job_id = job_id or new_job_id()
        await self._submitter.submit(
            channel, bundle, configuration_filename, job_id, device_name, esphome_version
        )
        return job_id

    async def reset_build_env(self, *, job_id: str | None = None) -> str:
        """Ask the server to wipe its build environment; return the job id once accepted.

        The reset runs as a job under that id: its progress arrives as job state changes
        and output lines, like a build (§5.6), and ``wait_for_job`` waits for its end.
        Only a server that announced ``reset_build_env_supported`` is asked
        (:class:`BuildEnvResetUnsupportedError` otherwise, nothing sent).  A refusal is
        :class:`BuildEnvResetBusyError` (something runs) or
        :class:`BuildEnvResetRejectedError`; no answer in time is
        :class:`SubmitTimeoutError`.
        """
        if job_id is not None:
            self._check_job_id(job_id)
        channel = self._require_channel()
        if self.server_info is None or not self.server_info.reset_build_env_supported:
            raise BuildEnvResetUnsupportedError("the server does not offer reset_build_env")
        job_id = job_id or new_job_id()
        ack: asyncio.Future[ResetBuildEnvAckFrame] = asyncio.get_running_loop().create_future()
        self._reset_acks[job_id] = ack  # before sending: the server's answers can be immediate
        try:
            await channel.send({"type": MessageType.RESET_BUILD_ENV, "job_id": job_id})
            async with asyncio.timeout(self._ack_timeout):
                verdict = await ack
        except TimeoutError as err:
            raise SubmitTimeoutError("no answer to the reset request") from err
        finally:
            if self._reset_acks.get(job_id) is ack:
                del self._reset_acks[job_id]
        if not verdict["accepted"]:
            raise reset_rejected(verdict["reason"])
        return job_id

    async def cancel_job(self, job_id: str) -> None:
        """Ask the server to cancel a job; the confirmation arrives as a state change."""
        self._check_job_id(job_id)
        await self._require_channel().send({"type": MessageType.CANCEL_JOB, "job_id": job_id})

    async def wait_for_job(self, job_id: str, timeout: float) -> JobStateChanged:
        """Wait until a job reaches a terminal status (or the session is lost)."""
        self._check_job_id(job_id)
        known = self.jobs.get(job_id)
        if known is not None and known.status.is_terminal:
            return known
        self._require_channel()
        waiter: asyncio.Future[JobStateChanged] = asyncio.get_running_loop().create_future()
        self._job_waiters.setdefault(job_id, []).append(waiter)
        try:
            async with asyncio.timeout(timeout):
                return await waiter
        finally:
            waiters = self._job_waiters.get(job_id, [])
            if waiter in waiters:
                waiters.remove(waiter)

    async def download_artifacts(
        self,
        job_id: str,
        dest: Path,
        *,
        timeout: float = DOWNLOAD_TIMEOUT,
        chunk_timeout: float = CHUNK_GAP_TIMEOUT,
    ) -> DownloadResult:
        """Stream a completed job's artifacts tarball to ``dest``, verified.

        One download per session at a time (the server allows no more): a call made
        while another streams waits its turn, its own ``timeout`` counting from when it
        starts.  On any failure ``dest`` is untouched and no temporary file remains.  A
        stream given up while the server still sends it is watched: if it stops moving
        for ``chunk_timeout`` it will never end, and the session is replaced (see
        ``_drain_or_drop``).
        """
        self._check_job_id(job_id)
        async with self._download_lock:
            await self._wait_stream_drained(chunk_timeout)
            channel = self._require_channel()
            asm = ArtifactAssembler(job_id, dest)
            self._stream = asm  # registered before sending: the reply can be immediate
            self._stream_ended.clear()
            try:
                await channel.send({"type": MessageType.DOWNLOAD_ARTIFACTS, "job_id": job_id})
                await self._await_download(asm, timeout, chunk_timeout)
                return asm.result.result()
            finally:
                asm.abandon()  # no-op after success; otherwise no trace stays on disk
                if self._stream is asm:  # given up, but the server is still sending it
                    self._watch_abandoned(asm, chunk_timeout)

    def _watch_abandoned(self, asm: ArtifactAssembler, gap: float) -> None:
        """Drop the session in the background if the abandoned stream never ends.

        So the link heals by itself, before anyone asks for the next download.
        """
        if self._stream_watch is not None:
            self._stream_watch.cancel()
        self._stream_watch = asyncio.create_task(
            self._drain_or_drop(asm, gap), name=f"peerlink {self.host} abandoned download"
        )

    async def _drain_or_drop(self, asm: ArtifactAssembler, gap: float) -> None:
        """Wait for the abandoned stream ``asm`` to end; drop the session if it stalls.

        The server keeps streaming a download we gave up, and takes no other until it
        ends (§5.7).  A tail that does not move for ``gap`` never will, and only the end
        of the session cancels it on the server: so we end the session (``terminate``,
        then close) and ``_run`` opens the next one at once.  Returns when the stream is
        gone, either way.
        """
        since = time.monotonic()  # a stream given up for stalling gets a fresh gap
        while self._stream is asm:
            idle = time.monotonic() - max(asm.last_activity, since)
            if idle >= gap:
                _LOGGER.debug("abandoned download of %s stalled; replacing the session", asm.job_id)
                self._drop_session(STALLED_DOWNLOAD)
                # The stream ends with the session: a goodbye and a close, both bounded.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(GOODBYE_TIMEOUT + 1):
                        await self._stream_ended.wait()
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(gap - idle):
                    await self._stream_ended.wait()

    async def _wait_stream_drained(self, gap: float) -> None:
        """Let the tail of an abandoned stream pass before asking for another one.

        If the tail stalls, the session is replaced; the new one (opened at once) serves
        the request, so a caller never sees the old stream's slot as busy.
        """
        asm = self._stream
        if asm is None:
            return
        await self._drain_or_drop(asm, gap)
        if self._channel is None and self.running:
            await self.wait_connected(gap)

    @staticmethod
    async def _await_download(asm: ArtifactAssembler, timeout: float, gap: float) -> None:
        """Wait for the outcome; fail if the stream stalls for ``gap`` or runs too long.

        The watchdog wakes once per ``gap`` at most, never per chunk.
        """
        deadline = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            wait = min(asm.last_activity + gap, deadline) - now
            if wait > 0:
                await asyncio.wait({asm.result}, timeout=wait)
            if asm.result.done():
                return
            now = time.monotonic()
            if now >= deadline:
                raise DownloadTimeoutError("timeout", f"not finished after {timeout:.0f} s")
            if now - asm.last_activity >= gap:
                raise DownloadTimeoutError("chunk_timeout", f"no data for {gap:.0f} s")


__all__ = ["PeerLinkClient"]
