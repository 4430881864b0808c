"""Exceptions of the build store.

``key``, a property of the class, is the translation key the actions look up; the
message is for the log.  A tarball the store refuses raises the artifacts package's own
exceptions, unwrapped: they already say what was wrong with it.
"""

from __future__ import annotations

from typing import ClassVar


class StoreError(Exception):
    """A build could not be stored, read or removed on this machine."""

    key: ClassVar[str] = "store_failed"


class CorruptBuildError(StoreError):
    """A stored build's manifest or images are damaged: it must not be flashed."""

    key = "corrupt_build"


class ForeignBuildError(StoreError):
    """The job id is stored, but the build came from another build server.

    Job ids are only unique per server: answering one server's request with another's
    build would hand the user firmware they did not ask for.
    """

    key = "build_of_other_server"

    def __init__(self, job_id: str, server_pin: str) -> None:
        super().__init__(f"stored build {job_id} came from the server with pin {server_pin}")
        self.job_id = job_id
        self.server_pin = server_pin
