"""The connection sensor: on while a session is open, off (never unavailable) otherwise."""

from __future__ import annotations

from homeassistant.components.binary_sensor import BinarySensorDeviceClass
from homeassistant.const import (
    ATTR_DEVICE_CLASS,
    CONF_PORT,
    STATE_OFF,
    STATE_ON,
    EntityCategory,
)
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.esphome_remote_build.const import CONF_PIN
from custom_components.esphome_remote_build.peerlink import Disconnected, Identity
from tests.support.receiver_double import HandshakeFault, ReceiverDouble, new_private_key

from .conftest import Recorder, client_of, link_of, make_entry, wait_stopped

CONNECTION = "binary_sensor.build_box_connection"


async def test_connection_sensor(hass: HomeAssistant, loaded: MockConfigEntry) -> None:
    state = hass.states.get(CONNECTION)
    assert state.state == STATE_ON
    assert state.attributes[ATTR_DEVICE_CLASS] == BinarySensorDeviceClass.CONNECTIVITY
    entity = er.async_get(hass).async_get(CONNECTION)
    assert entity is not None
    assert entity.unique_id == f"{loaded.unique_id}_connected"
    assert entity.entity_category is EntityCategory.DIAGNOSTIC
    assert entity.translation_key == "connected"


async def test_connection_follows_the_session(
    hass: HomeAssistant, loaded: MockConfigEntry, rd: ReceiverDouble
) -> None:
    recorder = Recorder()
    client_of(loaded).subscribe(recorder)
    rd.faults.handshake = HandshakeFault.CLOSE_AFTER_MSG1  # reconnects fail for now
    await rd.session().drop()
    await recorder.wait_count(Disconnected, 1)
    await hass.async_block_till_done()
    assert hass.states.get(CONNECTION).state == STATE_OFF  # "off" is the news

    rd.faults.handshake = None
    link_of(loaded).reconnect_now()
    await client_of(loaded).wait_connected(5)
    await hass.async_block_till_done()
    assert hass.states.get(CONNECTION).state == STATE_ON


async def test_connection_off_while_the_server_is_away_at_setup(
    hass: HomeAssistant, identity: Identity
) -> None:
    key = new_private_key()
    async with ReceiverDouble(static_private=key) as server:
        entry = make_entry(server)  # the server is gone before the entry is set up
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    recorder = Recorder()
    client_of(entry).subscribe(recorder)
    link_of(entry).reconnect_now()
    await recorder.wait_count(Disconnected, 1)
    await hass.async_block_till_done()
    assert hass.states.get(CONNECTION).state == STATE_OFF

    async with ReceiverDouble(static_private=key, port=entry.data[CONF_PORT]) as back:
        back.add_peer(identity.dashboard_id, identity.pin_sha256)
        link_of(entry).reconnect_now()
        await client_of(entry).wait_connected(5)
        await hass.async_block_till_done()
        assert hass.states.get(CONNECTION).state == STATE_ON
        assert await hass.config_entries.async_unload(entry.entry_id)


async def test_connection_off_after_the_link_gave_up(
    hass: HomeAssistant, paired: ReceiverDouble
) -> None:
    entry = make_entry(paired, **{CONF_PIN: "ab" * 32})  # the server shows another key
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await wait_stopped(entry)
    await hass.async_block_till_done()
    assert hass.states.get(CONNECTION).state == STATE_OFF
