"""ESPHome versions a build may ask for (``submit_job.target_esphome_version``, §5.5).

The server installs the version it is asked for with ``pip`` and silently ignores a value
that is not a PEP 440 version of at most 64 characters (the build then runs "as is"), so
a typo would build with the wrong ESPHome without a word.  We accept exactly the shapes
ESPHome's own versions take, each of them a PEP 440 version: a release ``2026.10.0``, a
pre-release ``2026.10.0b1`` / ``2026.10.0rc1`` / ``2026.10.0a1``, a development version
``2026.10.0-dev`` (optionally with a number, ``2026.10.0-dev20261015``, or in PEP 440's own
spelling ``2026.10.0.dev3``).
"""

from __future__ import annotations

import re
from typing import Final

ESPHOME_VERSION_MAX_CHARS: Final = 32
_ESPHOME_VERSION_RE: Final = re.compile(
    r"\d{1,4}\.\d{1,2}\.\d{1,3}(?:(?:a|b|rc)\d{1,3}|-dev\d{0,8}|\.dev\d{1,8})?", re.ASCII
)


def is_valid_esphome_version(version: str) -> bool:
    """Tell whether ``version`` is shaped like an ESPHome version (and not too long)."""
    return (
        len(version) <= ESPHOME_VERSION_MAX_CHARS
        and _ESPHOME_VERSION_RE.fullmatch(version) is not None
    )
