"""Pairing with a build server: find it, show its fingerprint, ask its admin, keep the pin.

The server's pin (SHA-256 of its static key) is the entry's identity: it is what the user
compares with the server's screen, the ``unique_id``, and what every later connection
insists on.  Reauth and reconfigure therefore only accept a server showing the same pin.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
import logging
import re
from typing import Any

from homeassistant.config_entries import (
    SOURCE_REAUTH,
    ConfigEntryState,
    ConfigFlow,
    ConfigFlowResult,
    OptionsFlow,
)
from homeassistant.const import CONF_HOST, CONF_PORT
from homeassistant.core import callback
from homeassistant.data_entry_flow import AbortFlow
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.selector import (
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
)
from homeassistant.helpers.service_info.zeroconf import ZeroconfServiceInfo
import probatio

from .const import (
    APPROVAL_TIMEOUT,
    CONF_KEEP_LAST,
    CONF_PAIRING_KEY,
    CONF_PIN,
    DEFAULT_KEEP_LAST,
    DEFAULT_PORT,
    DOMAIN,
    KEEP_LAST_MAX,
    KEEP_LAST_MIN,
    TXT_FRIENDLY_NAME,
    TXT_PIN,
    TXT_PORT,
)
from .link import RemoteBuildConfigEntry, async_get_identity
from .peerlink import (
    Identity,
    NoPairingWindowError,
    PairingRejectedError,
    PairOutcome,
    PeerLinkError,
    PinMismatchError,
    ServerInfo,
    format_pin_hex,
    is_valid_pin,
    pair_request,
    pair_status,
    pin_emoji,
    pin_emoji_names,
    preview,
)

ADDRESS_SCHEMA = probatio.Schema(
    {
        probatio.Required(CONF_HOST): cv.string,
        probatio.Required(CONF_PORT, default=DEFAULT_PORT): cv.port,
    }
)
# What a failed look at a server means for the user (a form error key).
_PREVIEW_ERRORS: dict[str, str] = {
    "self_loopback": "self_loopback",
    "pairing_rejected": "not_build_server",
    "request_rejected": "not_build_server",
    "server_too_old": "server_too_old",
    "invalid_pairing_key": "invalid_pairing_key",
}

PAIR_SCHEMA = probatio.Schema({probatio.Optional(CONF_PAIRING_KEY): cv.string})

# A headless server prints its one-time key as four groups of four letters or digits.
_PAIRING_KEY_RE = re.compile(r"^[A-Z0-9]{4}(-[A-Z0-9]{4}){3}$")

_LOGGER = logging.getLogger(__name__)


def normalize_pairing_key(value: str | None) -> str | None:
    """Return the key as the server prints it, ``None`` for none, or raise ``ValueError``.

    Case and surrounding spaces are forgiven; anything else that is not a key's shape is
    refused here, before the key (a secret) or anything else is sent.
    """
    key = (value or "").strip().upper()
    if not key:
        return None
    if not _PAIRING_KEY_RE.fullmatch(key):
        raise ValueError("not a pairing key")
    return key


def _txt_port(value: object) -> int | None:
    """Parse the TXT port defensively: a decimal 1-65535, anything else is ignored."""
    if not isinstance(value, str) or not value.isdecimal():
        return None
    port = int(value)
    return port if 0 < port < 65536 else None


def _pin_placeholders(prefix: str, pin: str) -> dict[str, str]:
    return {
        f"{prefix}_emoji": pin_emoji(pin),
        f"{prefix}_emoji_names": pin_emoji_names(pin),
        f"{prefix}_pin": format_pin_hex(pin),
    }


class RemoteBuildConfigFlow(ConfigFlow, domain=DOMAIN):
    """Pair Home Assistant with one ESPHome Device Builder build server."""

    VERSION = 1

    def __init__(self) -> None:
        self._host = ""
        self._port = DEFAULT_PORT
        self._info: ServerInfo | None = None
        self._approval: asyncio.Task[None] | None = None
        self._approval_error: str | None = None
        self._reject_reason = ""

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: RemoteBuildConfigEntry) -> RemoteBuildOptionsFlow:
        """Let the user tune retention."""
        return RemoteBuildOptionsFlow()

    # --- finding the server ---------------------------------------------------------

    async def _async_preview(self, host: str, port: int) -> str | None:
        """Look at the server; return a form error key, or None with ``_info`` set."""
        try:
            info = await preview(
                async_get_clientsession(self.hass), host, port, await async_get_identity(self.hass)
            )
        except PeerLinkError as err:
            return _PREVIEW_ERRORS.get(err.key, "cannot_connect")
        self._host, self._port, self._info = host, port, info
        return None

    def _server(self) -> ServerInfo:
        """Return the previewed server; every path to pairing previews it first."""
        if self._info is None:
            raise AbortFlow("cannot_connect")
        return self._info

    def _unique_title(self, name: str) -> str:
        """Name the entry after the server, with its address when another has that name."""
        titles = {entry.title for entry in self._async_current_entries(include_ignore=False)}
        return name if name not in titles else f"{name} ({self._host}:{self._port})"

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Ask for the server's address."""
        errors: dict[str, str] = {}
        if user_input is not None:
            host, port = user_input[CONF_HOST].strip(), user_input[CONF_PORT]
            if (error := await self._async_preview(host, port)) is None:
                await self.async_set_unique_id(self._server().pin_sha256)
                self._abort_if_unique_id_configured(updates={CONF_HOST: host, CONF_PORT: port})
                return await self.async_step_pair()
            errors["base"] = error
        return self.async_show_form(
            step_id="user",
            data_schema=self.add_suggested_values_to_schema(ADDRESS_SCHEMA, user_input),
            errors=errors,
        )

    async def async_step_zeroconf(self, discovery_info: ZeroconfServiceInfo) -> ConfigFlowResult:
        """Offer a discovered Device Builder if its build-server listener is bound."""
        properties = discovery_info.properties
        pin = properties.get(TXT_PIN)
        port = _txt_port(properties.get(TXT_PORT))
        if not isinstance(pin, str) or not is_valid_pin(pin) or port is None:
            return self.async_abort(reason="not_build_server")
        host = discovery_info.host
        await self.async_set_unique_id(pin)
        if (
            known := self.hass.config_entries.async_entry_for_domain_unique_id(DOMAIN, pin)
        ) is not None:
            return await self._async_rediscovered(known, host, port)
        self._host, self._port = host, port
        self.context["title_placeholders"] = {"name": properties.get(TXT_FRIENDLY_NAME) or host}
        return await self.async_step_zeroconf_confirm()

    async def _async_rediscovered(
        self, entry: RemoteBuildConfigEntry, host: str, port: int
    ) -> ConfigFlowResult:
        """Follow a paired server to a new address, but only once it proved who it is.

        Its pin is public: anyone on the network can announce it with their own address.
        So a new address is previewed first and kept only if it presents the paired key;
        otherwise the announcement is ignored and the entry keeps its address.
        """
        if (entry.data[CONF_HOST], entry.data[CONF_PORT]) == (host, port):
            if entry.state is ConfigEntryState.LOADED:
                entry.runtime_data.link.reconnect_now()  # it just announced itself
            return self.async_abort(reason="already_configured")
        error = await self._async_preview(host, port)
        if error is not None or self._server().pin_sha256 != entry.unique_id:
            _LOGGER.debug(
                "Ignoring an announcement of %s at %s:%s: that address does not show the "
                "paired key",
                entry.title,
                host,
                port,
            )
            return self.async_abort(reason="already_configured")
        return self.async_update_reload_and_abort(
            entry, data_updates={CONF_HOST: host, CONF_PORT: port}, reason="already_configured"
        )

    async def async_step_zeroconf_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Let the user start pairing with the discovered server."""
        errors: dict[str, str] = {}
        if user_input is not None:
            if (error := await self._async_preview(self._host, self._port)) is None:
                if self._server().pin_sha256 != self.unique_id:
                    return self.async_abort(reason="pin_changed")
                return await self.async_step_pair()
            errors["base"] = error
        self._set_confirm_only()
        return self.async_show_form(
            step_id="zeroconf_confirm",
            errors=errors,
            description_placeholders={
                **self.context["title_placeholders"],
                "host": self._host,
                "port": str(self._port),
            },
        )

    # --- pairing --------------------------------------------------------------------

    async def _async_pair_placeholders(self) -> dict[str, str]:
        info = self._server()
        identity = await async_get_identity(self.hass)
        return {
            "name": info.friendly_name or info.host,
            "version": info.esphome_version,
            **_pin_placeholders("server", info.pin_sha256),
            **_pin_placeholders("our", identity.pin_sha256),
        }

    async def async_step_pair(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Show both fingerprints; on submit ask the server to pair with us."""
        identity = await async_get_identity(self.hass)
        errors: dict[str, str] = {}
        if user_input is not None:
            try:
                key = normalize_pairing_key(user_input.get(CONF_PAIRING_KEY))
            except ValueError:
                errors[CONF_PAIRING_KEY] = "invalid_pairing_key"
                key = None
            if not errors:
                return await self._async_request_pairing(identity, key, errors)
        return self.async_show_form(
            step_id="pair",
            data_schema=self.add_suggested_values_to_schema(PAIR_SCHEMA, user_input),
            errors=errors,
            description_placeholders=await self._async_pair_placeholders(),
        )

    async def _async_request_pairing(
        self, identity: Identity, key: str | None, errors: dict[str, str]
    ) -> ConfigFlowResult:
        """Send the pairing request; on a refusal that can be mended show the form again."""
        info = self._server()
        try:
            outcome = await pair_request(
                async_get_clientsession(self.hass),
                self._host,
                self._port,
                identity,
                info.pin_sha256,
                label=self.hass.config.location_name,
                friendly_name=self.hass.config.location_name,
                pairing_key=key,
            )
        except NoPairingWindowError:
            # The server says the same for a closed window and a wrong key: say what is
            # likely for this kind of server.
            if not info.requires_pairing_key:
                errors["base"] = "no_pairing_window"
            else:
                errors["base"] = "wrong_pairing_key" if key else "pairing_key_required"
        except PinMismatchError:
            return self.async_abort(reason="pin_changed")
        except PairingRejectedError as err:
            return self.async_abort(
                reason="pairing_rejected", description_placeholders={"reason": err.reason}
            )
        except PeerLinkError as err:
            errors["base"] = _PREVIEW_ERRORS.get(err.key, "cannot_connect")
        else:
            if outcome is PairOutcome.APPROVED:
                return self._async_finish()
            return await self.async_step_wait_approval()
        return self.async_show_form(
            step_id="pair",
            data_schema=PAIR_SCHEMA,
            errors=errors,
            description_placeholders=await self._async_pair_placeholders(),
        )

    async def _async_wait_for_approval(self) -> None:
        """Long-poll the server; remember why it failed instead of raising."""
        try:
            await pair_status(
                async_get_clientsession(self.hass),
                self._host,
                self._port,
                await async_get_identity(self.hass),
                self._server().pin_sha256,
                timeout=APPROVAL_TIMEOUT,
            )
        except TimeoutError:
            self._approval_error = "approval_timeout"
        except PinMismatchError:
            self._approval_error = "pin_changed"
        except PairingRejectedError as err:
            self._approval_error, self._reject_reason = "pairing_rejected", err.reason
        except PeerLinkError:
            self._approval_error = "cannot_connect"

    async def async_step_wait_approval(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Wait while the server's admin looks at our pairing request."""
        if self._approval is None:
            self._approval = self.hass.async_create_task(self._async_wait_for_approval())
        if not self._approval.done():
            return self.async_show_progress(
                step_id="wait_approval",
                progress_action="wait_approval",
                progress_task=self._approval,
                description_placeholders=await self._async_pair_placeholders(),
            )
        self._approval = None
        if self._approval_error is None:
            return self.async_show_progress_done(next_step_id="finish")
        return self.async_show_progress_done(next_step_id="approval_failed")

    async def async_step_finish(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Store the approved pairing."""
        return self._async_finish()

    async def async_step_approval_failed(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Explain why the pairing did not complete."""
        return self.async_abort(
            reason=self._approval_error or "cannot_connect",
            description_placeholders={"reason": self._reject_reason},
        )

    def _async_finish(self) -> ConfigFlowResult:
        info = self._server()
        data = {CONF_HOST: self._host, CONF_PORT: self._port, CONF_PIN: info.pin_sha256}
        if self.source == SOURCE_REAUTH:
            return self.async_update_reload_and_abort(
                self._get_reauth_entry(), data_updates=data, reason="reauth_successful"
            )
        return self.async_create_entry(
            title=self._unique_title(info.friendly_name or self._host), data=data
        )

    # --- an existing pairing ----------------------------------------------------------

    async def async_step_reauth(self, entry_data: Mapping[str, Any]) -> ConfigFlowResult:
        """Pair again with the same server, which no longer accepts us."""
        self._host, self._port = entry_data[CONF_HOST], entry_data[CONF_PORT]
        return await self.async_step_reauth_confirm()

    async def async_step_reauth_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Check the server still shows the paired pin, then pair again."""
        errors: dict[str, str] = {}
        if user_input is not None:
            if (error := await self._async_preview(self._host, self._port)) is None:
                await self.async_set_unique_id(self._server().pin_sha256, raise_on_progress=False)
                self._abort_if_unique_id_mismatch(reason="pin_mismatch")
                return await self.async_step_pair()
            errors["base"] = error
        return self.async_show_form(
            step_id="reauth_confirm",
            errors=errors,
            description_placeholders={"host": self._host, "port": str(self._port)},
        )

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Move a paired server to a new address; it must show the same pin there."""
        entry = self._get_reconfigure_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            host, port = user_input[CONF_HOST].strip(), user_input[CONF_PORT]
            if (error := await self._async_preview(host, port)) is None:
                await self.async_set_unique_id(self._server().pin_sha256, raise_on_progress=False)
                self._abort_if_unique_id_mismatch(reason="pin_mismatch")
                return self.async_update_reload_and_abort(
                    entry,
                    data_updates={CONF_HOST: host, CONF_PORT: port},
                    reason="reconfigure_successful",
                )
            errors["base"] = error
        return self.async_show_form(
            step_id="reconfigure",
            data_schema=self.add_suggested_values_to_schema(
                ADDRESS_SCHEMA, user_input or dict(entry.data)
            ),
            errors=errors,
        )


class RemoteBuildOptionsFlow(OptionsFlow):
    """Retention of stored builds."""

    config_entry: RemoteBuildConfigEntry

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Ask how many builds per device to keep."""
        if user_input is not None:
            return self.async_create_entry(data={CONF_KEEP_LAST: int(user_input[CONF_KEEP_LAST])})
        current = self.config_entry.options.get(CONF_KEEP_LAST, DEFAULT_KEEP_LAST)
        schema = probatio.Schema(
            {
                probatio.Required(CONF_KEEP_LAST, default=current): NumberSelector(
                    NumberSelectorConfig(
                        min=KEEP_LAST_MIN, max=KEEP_LAST_MAX, step=1, mode=NumberSelectorMode.BOX
                    )
                )
            }
        )
        return self.async_show_form(step_id="init", data_schema=schema)
