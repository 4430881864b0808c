"""The one way the actions fail: a translated Home Assistant error.

Shared by the action handlers and the flash glue so every failure, whichever module
raises it, names a key of ``strings.json`` ``exceptions`` and never a raw library text
as its message.
"""

from __future__ import annotations

from homeassistant.exceptions import HomeAssistantError, ServiceValidationError

from .const import DOMAIN


def service_error(key: str, *, validation: bool = False, **placeholders: str) -> HomeAssistantError:
    """Build the translated error; ``validation`` marks the caller's fault, not the world's."""
    cls = ServiceValidationError if validation else HomeAssistantError
    return cls(
        translation_domain=DOMAIN, translation_key=key, translation_placeholders=placeholders
    )
