"""Exceptions of the artifacts package.

One small hierarchy so the Home Assistant layer can map whole families to user-facing
errors: *the build server sent something we will not touch* (unsafe), *the build output is
unusable* (invalid), *the local configuration cannot be bundled* (bundle), and plain local
I/O trouble (the base class).  ``key``, a property of the class, is the translation key
a user-facing layer looks up; the message is for logs.
"""

from __future__ import annotations

from typing import ClassVar


class ArtifactsError(Exception):
    """Base class; raised as-is for local I/O failures (disk full, unreadable file)."""

    key: ClassVar[str] = "artifacts_failed"

    reason: str = "artifacts_error"


class InvalidArtifactsError(ArtifactsError):
    """The artifacts tarball is corrupt or does not describe a usable build.

    Examples: broken gzip/tar data, malformed ``storage.json``/``idedata.json``, a missing
    firmware image, two members with the same basename, an unparsable flash offset.
    """

    key = "invalid_artifacts"

    reason = "invalid_artifacts"


class ArtifactsMismatchError(InvalidArtifactsError):
    """The tarball is not the one whose SHA-256 the download verified and reported."""

    key = "artifacts_mismatch"

    reason = "artifacts_mismatch"


class UnsafeTarballError(InvalidArtifactsError):
    """The tarball contains something that must never be unpacked.

    Links, directories, devices, path tricks, oversized or too many members.  A subclass of
    :class:`InvalidArtifactsError` because an unsafe tarball is also an unusable one; the
    separate type lets callers log it louder (it hints at a hostile or broken server).
    """

    key = "unsafe_tarball"

    reason = "unsafe_tarball"


class BundleError(ArtifactsError):
    """The device configuration cannot be packed into a bundle the build server accepts.

    Examples: a missing ``!include`` target, an undefined ``!secret``, a referenced file
    outside the configuration folder, a bundle over the upload size cap.
    """

    key = "bundle_failed"

    reason = "bundle_error"
