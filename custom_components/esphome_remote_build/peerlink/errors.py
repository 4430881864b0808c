"""Exceptions of the peer-link client.

One hierarchy so callers (the Home Assistant layer) can map whole families to user-facing
errors: *cannot reach* vs *the server refused us* vs *the data we got is bad*.

Two separate facts travel with every exception: ``key``, a property of its class, names
the kind of failure and is the translation key a user-facing layer looks up (one rule, no
tables); ``reason`` is the short code the *peer* (or the protocol) gave for it, a value
that a message may quote but never a sentence.
"""

from __future__ import annotations

from typing import ClassVar


class PeerLinkError(Exception):
    """Base class of every peer-link failure."""

    key: ClassVar[str] = "peer_link_failed"

    reason: str = "error"


class CannotConnectError(PeerLinkError):
    """The server could not be reached, or the connection broke during the handshake."""

    key = "cannot_connect"

    reason = "cannot_connect"


class ProtocolError(PeerLinkError):
    """The server sent something the protocol does not allow (bad frame, bad JSON, …)."""

    key = "protocol_error"

    reason = "protocol_error"


class PinMismatchError(PeerLinkError):
    """The server presented a static key whose pin is not the one we trust.

    Raised after msg2 and before msg3, so nothing secret was sent to the impostor.
    """

    key = "server_key_changed"

    reason = "pin_mismatch"

    def __init__(self, expected: str, seen: str) -> None:
        super().__init__(f"server pin {seen} does not match the paired pin {expected}")
        self.expected = expected
        self.seen = seen


class SelfLoopbackError(PeerLinkError):
    """The responder presented our own static key: we dialled ourselves."""

    key = "self_loopback"

    reason = "self_loopback"


class IntentRejectedError(PeerLinkError):
    """The server answered an intent with a refusal.

    ``terminal`` says whether retrying can help: a revoked pairing never heals by itself.
    """

    key = "request_rejected"

    reason = "rejected"
    terminal = False

    def __init__(self, reason: str, message: str | None = None) -> None:
        super().__init__(message or f"server refused the request: {reason}")
        self.reason = reason


class NotPairedError(IntentRejectedError):
    """The server has no approved pairing for us (``no_approved_peer`` / ``pin_mismatch``)."""

    key = "not_paired"

    terminal = True


class PendingApprovalError(IntentRejectedError):
    """The server knows us but its admin has not approved the pairing yet."""

    key = "pending_approval"


class NoPairingWindowError(IntentRejectedError):
    """Pairing is closed on the server, or the pairing key was wrong (indistinguishable)."""

    key = "no_pairing_window"

    def __init__(self) -> None:
        super().__init__(
            "no_pairing_window",
            "the server's pairing window is closed or the pairing key is wrong",
        )


class PairingRejectedError(IntentRejectedError):
    """The server refused the pairing (declined, removed, key changed)."""

    key = "pairing_rejected"

    terminal = True


class NotConnectedError(PeerLinkError):
    """The operation needs a live session and there is none right now."""

    key = "not_connected"

    reason = "not_connected"


class SessionLostError(PeerLinkError):
    """The session ended while the operation was waiting for the server."""

    key = "session_lost"

    reason = "session_lost"


class SubmitRejectedError(PeerLinkError):
    """The server refused a job submission (``submit_job_ack{accepted:false}``)."""

    key = "submit_rejected"

    def __init__(self, reason: str) -> None:
        super().__init__(f"server refused the job: {reason}")
        self.reason = reason


class SubmitTimeoutError(PeerLinkError):
    """No ``submit_job_ack`` arrived in time."""

    key = "submit_timeout"

    reason = "submit_timeout"


class BuildEnvResetUnsupportedError(PeerLinkError):
    """The server did not say it accepts ``reset_build_env``; nothing was sent (§5.6)."""

    key = "clean_not_supported"

    reason = "reset_build_env_unsupported"


class BuildEnvResetRejectedError(PeerLinkError):
    """The server refused a build-environment reset (``reset_build_env_ack{accepted:false}``)."""

    key = "clean_rejected"

    def __init__(self, reason: str) -> None:
        super().__init__(f"server refused to reset its build environment: {reason}")
        self.reason = reason


class BuildEnvResetBusyError(BuildEnvResetRejectedError):
    """The server is building, receiving or sending something: no reset now (``busy``)."""

    key = "clean_busy"


def reset_rejected(reason: str) -> BuildEnvResetRejectedError:
    """Turn a refused ``reset_build_env_ack`` into its typed error."""
    if reason == "busy":
        return BuildEnvResetBusyError(reason)
    return BuildEnvResetRejectedError(reason)


class DownloadError(PeerLinkError):
    """Downloading a job's artifacts failed; nothing was kept."""

    key = "download_failed"

    reason = "download_failed"

    def __init__(self, reason: str, detail: str = "") -> None:
        text = f"artifact download failed: {reason}"
        super().__init__(f"{text} ({detail})" if detail else text)
        self.reason = reason
        self.detail = detail


class DownloadRejectedError(DownloadError):
    """The server refused to stream the artifacts (``artifacts_end{accepted:false}``)."""

    key = "download_rejected"


class UnknownJobError(DownloadRejectedError):
    """The server has no such job for us (never ours, or superseded by a newer build)."""

    key = "unknown_job"


class JobNotCompletedError(DownloadRejectedError):
    """The job has not completed successfully, so there is nothing to download."""

    key = "job_not_completed"


class DownloadBusyError(DownloadRejectedError):
    """The server (or this client) is already streaming a download on this session."""

    key = "download_busy"


class DownloadIntegrityError(DownloadError):
    """The stream broke the protocol's rules or did not match its declared hash/size."""

    key = "download_integrity"


class DownloadTimeoutError(DownloadError):
    """The download took too long overall, or the server went quiet between chunks."""

    key = "download_timeout"


class DownloadWriteError(DownloadError):
    """The artifacts could not be written here (disk full, read-only, no permission).

    A fault on our side, not the server's: the session is fine and retrying helps only
    once the disk is.  Nothing was kept.
    """

    key = "download_write_failed"

    reason = "write_failed"

    def __init__(self, detail: str = "") -> None:
        super().__init__("write_failed", detail)


class InvalidJobIdError(PeerLinkError):
    """A job id that no job of ours can have; refused before anything is sent.

    The server takes any string, so a bad id would otherwise travel: a long one makes a
    frame the server drops the session for.
    """

    key = "invalid_job_id"

    reason = "invalid_job_id"

    def __init__(self, job_id: str) -> None:
        shown = job_id if len(job_id) <= 80 else f"{job_id[:77]}..."
        super().__init__(f"invalid job id {shown!r}")
        self.job_id = job_id


class InvalidPairingKeyError(PeerLinkError):
    """The pairing key the user typed cannot be one; refused before anything is sent."""

    key = "invalid_pairing_key"

    reason = "invalid_pairing_key"


class NoPeerLinkError(CannotConnectError):
    """An HTTP server answered at the address, but it does not speak the peer link.

    A Device Builder older than the peer link, ESPHome's old dashboard, or the dashboard's
    web port instead of the build server's: retrying there cannot help, pointing the
    client at a (newer) build server does.
    """

    key = "server_too_old"


class BuildGoneError(DownloadRejectedError):
    """The server knows the job but no longer has (or cannot pack) its build files.

    Swept after its time-to-live, or the server could not pack what its compiler wrote
    (older Device Builders with ESPHome 2026.10's ESP8266 builds): building again helps.
    """

    key = "build_gone"
