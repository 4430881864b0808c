"""Exceptions of the peer-link client.

One hierarchy so callers (the Home Assistant layer) can map whole families to user-facing
errors: *cannot reach* vs *the server refused us* vs *the data we got is bad*.  Every
exception carries a stable ``reason`` string; the HA layer turns it into a translation key.
"""

from __future__ import annotations


class PeerLinkError(Exception):
    """Base class of every peer-link failure."""

    reason: str = "error"


class CannotConnectError(PeerLinkError):
    """The server could not be reached, or the connection broke during the handshake."""

    reason = "cannot_connect"


class ProtocolError(PeerLinkError):
    """The server sent something the protocol does not allow (bad frame, bad JSON, …)."""

    reason = "protocol_error"


class PinMismatchError(PeerLinkError):
    """The server presented a static key whose pin is not the one we trust.

    Raised after msg2 and before msg3, so nothing secret was sent to the impostor.
    """

    reason = "pin_mismatch"

    def __init__(self, expected: str, seen: str) -> None:
        super().__init__(f"server pin {seen} does not match the paired pin {expected}")
        self.expected = expected
        self.seen = seen


class SelfLoopbackError(PeerLinkError):
    """The responder presented our own static key: we dialled ourselves."""

    reason = "self_loopback"


class IntentRejectedError(PeerLinkError):
    """The server answered an intent with a refusal.

    ``terminal`` says whether retrying can help: a revoked pairing never heals by itself.
    """

    reason = "rejected"
    terminal = False

    def __init__(self, reason: str, message: str | None = None) -> None:
        super().__init__(message or f"server refused the request: {reason}")
        self.reason = reason


class NotPairedError(IntentRejectedError):
    """The server has no approved pairing for us (``no_approved_peer`` / ``pin_mismatch``)."""

    terminal = True


class PendingApprovalError(IntentRejectedError):
    """The server knows us but its admin has not approved the pairing yet."""


class NoPairingWindowError(IntentRejectedError):
    """Pairing is closed on the server, or the pairing key was wrong (indistinguishable)."""

    def __init__(self) -> None:
        super().__init__(
            "no_pairing_window",
            "the server's pairing window is closed or the pairing key is wrong",
        )


class PairingRejectedError(IntentRejectedError):
    """The server refused the pairing (declined, removed, key changed)."""

    terminal = True


class NotConnectedError(PeerLinkError):
    """The operation needs a live session and there is none right now."""

    reason = "not_connected"


class SessionLostError(PeerLinkError):
    """The session ended while the operation was waiting for the server."""

    reason = "session_lost"


class SubmitRejectedError(PeerLinkError):
    """The server refused a job submission (``submit_job_ack{accepted:false}``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"server refused the job: {reason}")
        self.reason = reason


class SubmitTimeoutError(PeerLinkError):
    """No ``submit_job_ack`` arrived in time."""

    reason = "submit_timeout"


class DownloadError(PeerLinkError):
    """Downloading a job's artifacts failed; nothing was kept."""

    reason = "download_failed"

    def __init__(self, reason: str, detail: str = "") -> None:
        text = f"artifact download failed: {reason}"
        super().__init__(f"{text} ({detail})" if detail else text)
        self.reason = reason
        self.detail = detail


class DownloadRejectedError(DownloadError):
    """The server refused to stream the artifacts (``artifacts_end{accepted:false}``)."""


class UnknownJobError(DownloadRejectedError):
    """The server has no such job for us (never ours, or superseded by a newer build)."""


class JobNotCompletedError(DownloadRejectedError):
    """The job has not completed successfully, so there is nothing to download."""


class DownloadBusyError(DownloadRejectedError):
    """The server (or this client) is already streaming a download on this session."""


class DownloadIntegrityError(DownloadError):
    """The stream broke the protocol's rules or did not match its declared hash/size."""


class DownloadTimeoutError(DownloadError):
    """The download took too long overall, or the server went quiet between chunks."""
