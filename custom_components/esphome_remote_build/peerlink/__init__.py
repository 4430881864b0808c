"""HA-free client for the ESPHome Device Builder's encrypted peer link.

What Home Assistant needs to pair with a build server and use it: the installation's
identity, the one-shot intents of pairing, and a long-lived session that submits builds
and downloads their artifacts.  Nothing here imports Home Assistant.
"""

from __future__ import annotations

from .client import PeerLinkClient
from .errors import (
    CannotConnectError,
    DownloadBusyError,
    DownloadError,
    DownloadIntegrityError,
    DownloadRejectedError,
    DownloadTimeoutError,
    DownloadWriteError,
    IntentRejectedError,
    InvalidJobIdError,
    InvalidPairingKeyError,
    JobNotCompletedError,
    NoPairingWindowError,
    NoPeerLinkError,
    NotConnectedError,
    NotPairedError,
    PairingRejectedError,
    PeerLinkError,
    PendingApprovalError,
    PinMismatchError,
    ProtocolError,
    SelfLoopbackError,
    SessionLostError,
    SubmitRejectedError,
    SubmitTimeoutError,
    UnknownJobError,
)
from .frames import JobStatus
from .identity import (
    Identity,
    format_pin_hex,
    is_valid_pin,
    pin_emoji,
    pin_emoji_names,
    pin_sha256_for_pubkey,
)
from .job_id import JOB_ID_PATTERN, is_valid_job_id, new_job_id
from .models import (
    Connected,
    Disconnected,
    DownloadResult,
    JobOutput,
    JobStateChanged,
    PairOutcome,
    PeerLinkEvent,
    QueueStatus,
    ServerInfo,
)
from .oneshot import pair_request, pair_status, preview

__all__ = [
    "JOB_ID_PATTERN",
    "CannotConnectError",
    "Connected",
    "Disconnected",
    "DownloadBusyError",
    "DownloadError",
    "DownloadIntegrityError",
    "DownloadRejectedError",
    "DownloadResult",
    "DownloadTimeoutError",
    "DownloadWriteError",
    "Identity",
    "IntentRejectedError",
    "InvalidJobIdError",
    "InvalidPairingKeyError",
    "JobNotCompletedError",
    "JobOutput",
    "JobStateChanged",
    "JobStatus",
    "NoPairingWindowError",
    "NoPeerLinkError",
    "NotConnectedError",
    "NotPairedError",
    "PairOutcome",
    "PairingRejectedError",
    "PeerLinkClient",
    "PeerLinkError",
    "PeerLinkEvent",
    "PendingApprovalError",
    "PinMismatchError",
    "ProtocolError",
    "QueueStatus",
    "SelfLoopbackError",
    "ServerInfo",
    "SessionLostError",
    "SubmitRejectedError",
    "SubmitTimeoutError",
    "UnknownJobError",
    "format_pin_hex",
    "is_valid_job_id",
    "is_valid_pin",
    "new_job_id",
    "pair_request",
    "pair_status",
    "pin_emoji",
    "pin_emoji_names",
    "pin_sha256_for_pubkey",
    "preview",
]
