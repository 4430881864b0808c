"""The one way actions fail: a translated Home Assistant error.

One rule for every library failure: its class names its translation key (``err.key``),
the caller adds the values a message may quote (job id, host, port …), and whether it is
the caller's fault (a ``ServiceValidationError``) follows from the key.  The library's own
English text goes to the log, never into the message a user reads.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
import logging
from typing import Final

from homeassistant.exceptions import HomeAssistantError, ServiceValidationError

from .artifacts import ArtifactsError
from .const import DOMAIN
from .ota import OTAError
from .peerlink import PeerLinkError
from .store_errors import StoreError

_LOGGER = logging.getLogger(__name__)

#: Every exception family the libraries raise; each class carries its ``key``.
LIBRARY_ERRORS: Final = (PeerLinkError, ArtifactsError, StoreError, OTAError)
type LibraryError = PeerLinkError | ArtifactsError | StoreError | OTAError

#: Keys that mean the caller asked for something impossible, not that the world failed.
CALLER_FAULT_KEYS: Final = frozenset(
    {
        "unknown_job",
        "job_not_completed",
        "invalid_job_id",
        "bundle_failed",
        "build_of_other_server",
        "invalid_encryption_key",
        "clean_not_supported",
    }
)


def service_error(key: str, *, validation: bool = False, **placeholders: str) -> HomeAssistantError:
    """Build the translated error; ``validation`` marks the caller's fault, not the world's."""
    cls = ServiceValidationError if validation else HomeAssistantError
    return cls(
        translation_domain=DOMAIN, translation_key=key, translation_placeholders=placeholders
    )


def translate(err: LibraryError, **values: str) -> HomeAssistantError:
    """Turn a library exception into the translated error a caller sees.

    ``reason`` (the peer's or the device's short code) and ``code`` (an OTA result byte)
    are values too, offered to every message that wants to quote them.
    """
    _LOGGER.debug("%s failed (%s): %s", values.get("job_id", "request"), err.key, err)
    code = getattr(err, "code", None)
    placeholders = {
        "reason": str(getattr(err, "reason", "") or ""),
        "code": f"0x{code:02X}" if isinstance(code, int) else "",
        **values,
    }
    return service_error(err.key, validation=err.key in CALLER_FAULT_KEYS, **placeholders)


@contextmanager
def translated_errors(**values: str) -> Iterator[None]:
    """Let library failures inside the block leave as translated errors."""
    try:
        yield
    except LIBRARY_ERRORS as err:
        raise translate(err, **values) from err
