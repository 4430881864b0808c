"""Secrets never leak: pairing with a key, at DEBUG logging, then everything we expose."""

from __future__ import annotations

import json
import logging
from typing import Any

from homeassistant.core import HomeAssistant
import pytest

from custom_components.esphome_remote_build.const import DOMAIN
from custom_components.esphome_remote_build.diagnostics import (
    async_get_config_entry_diagnostics,
)
from custom_components.esphome_remote_build.link import (
    IDENTITY_STORAGE_KEY,
    async_get_identity,
)
from tests.ha.test_config_flow import pair, start_user_flow
from tests.support.receiver_double import ReceiverDouble

from .conftest import client_of

PAIRING_KEY = "ABCD-EFGH-JKMN-PQRS"


async def test_pairing_key_and_private_key_stay_secret(
    hass: HomeAssistant, caplog: pytest.LogCaptureFixture, hass_storage: dict[str, Any]
) -> None:
    caplog.set_level(logging.DEBUG)
    events: list[object] = []
    hass.bus.async_listen("*", events.append)
    async with ReceiverDouble(requires_pairing_key=True, pairing_key=PAIRING_KEY) as rd:
        result = await pair(
            hass, await start_user_flow(hass, rd.host, rd.port), pairing_key=PAIRING_KEY
        )
        entry = result["result"]
        await hass.async_block_till_done()
        await client_of(entry).wait_connected(5)
        identity = await async_get_identity(hass)
        # the key did reach the server (inside the encrypted msg3)...
        assert rd.connections_for("pair_request")[-1].msg3_payload["pairing_key"] == PAIRING_KEY
        diagnostics = json.dumps(await async_get_config_entry_diagnostics(hass, entry))
        await hass.config_entries.async_unload(entry.entry_id)

    private_hex = identity.private_key.hex()
    # The test plugin's storage mock logs what it is given to write (the real Store does
    # not); everything else, HA's own loggers included, is checked.
    log = "\n".join(
        record.getMessage()
        for record in caplog.records
        if not record.name.startswith("pytest_homeassistant_custom_component")
    )
    exposed = {
        "log": log,
        "entry": json.dumps({"data": dict(entry.data), "options": dict(entry.options)}),
        "diagnostics": diagnostics,
        "events": repr(events),
    }
    for where, text in exposed.items():
        assert PAIRING_KEY not in text, where
        assert PAIRING_KEY.replace("-", "") not in text, where
        assert private_hex not in text, where
    # ...and the only place the private key lives is HA's private storage
    assert hass_storage[IDENTITY_STORAGE_KEY]["data"]["private_key"] == private_hex
    assert DOMAIN in hass.config.components
