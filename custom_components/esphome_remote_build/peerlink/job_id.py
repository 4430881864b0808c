"""Job ids: made here, checked everywhere one enters from outside.

The offloader names its jobs (``submit_job`` carries the id) and the server takes any
string.  We make ids of 12 random hex characters and accept, from users and stored
builds, ids of the one shape below: safe as a single path component, short enough that
no frame carrying one comes near the server's size limits.
"""

from __future__ import annotations

import re
import secrets
from typing import Final

JOB_ID_PATTERN: Final = r"^[A-Za-z0-9_-]{1,64}$"
_JOB_ID_RE: Final = re.compile(JOB_ID_PATTERN)


def new_job_id() -> str:
    """Return a fresh, unguessable job id."""
    return secrets.token_hex(6)


def is_valid_job_id(job_id: str) -> bool:
    """Tell whether ``job_id`` has the one shape a job id may have."""
    return _JOB_ID_RE.fullmatch(job_id) is not None
