"""Plain data the client hands to its users: server facts and session events."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from .errors import PeerLinkError
from .frames import IntentResponseFrame, JobStatus


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What a build server told us about itself in an intent response."""

    host: str
    port: int
    pin_sha256: str
    friendly_name: str
    esphome_version: str
    ha_addon: bool
    requires_pairing_key: bool
    auto_provision_supported: bool
    reset_build_env_supported: bool

    @classmethod
    def from_response(
        cls, host: str, port: int, pin: str, response: IntentResponseFrame
    ) -> ServerInfo:
        """Combine the address we dialled with the validated response."""
        return cls(
            host=host,
            port=port,
            pin_sha256=pin,
            friendly_name=response["friendly_name"],
            esphome_version=response["esphome_version"],
            ha_addon=response["ha_addon"],
            requires_pairing_key=response["requires_pairing_key"],
            auto_provision_supported=response["auto_provision_supported"],
            reset_build_env_supported=response["reset_build_env_supported"],
        )


class PairOutcome(StrEnum):
    """Non-error outcomes of a pairing request."""

    APPROVED = "approved"
    PENDING = "pending"


@dataclass(frozen=True, slots=True)
class Connected:
    """A session opened; the server's facts were refreshed."""

    server_info: ServerInfo


@dataclass(frozen=True, slots=True)
class Disconnected:
    """A session ended (or could not open).

    ``terminal`` means the client stopped reconnecting and a person must act (re-pair).
    """

    reason: str
    terminal: bool
    error: PeerLinkError | None = None


@dataclass(frozen=True, slots=True)
class QueueStatus:
    """The server's build queue."""

    idle: bool
    running: bool
    queue_depth: int


@dataclass(frozen=True, slots=True)
class JobStateChanged:
    """A job of ours moved to a new status."""

    job_id: str
    status: JobStatus
    error_message: str
    failure_reason: str


@dataclass(frozen=True, slots=True)
class JobOutput:
    """One line of compiler output."""

    job_id: str
    stream: str
    line: str


type PeerLinkEvent = Connected | Disconnected | QueueStatus | JobStateChanged | JobOutput


@dataclass(frozen=True, slots=True)
class DownloadResult:
    """A verified artifacts tarball on disk."""

    job_id: str
    path: Path
    total_bytes: int
    sha256: str
    firmware_offset: str
