"""The config flow against the receiver double: every step, branch and error."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from ipaddress import ip_address
import socket
from typing import Any
from unittest.mock import patch

from homeassistant.config_entries import (
    SOURCE_IGNORE,
    SOURCE_USER,
    SOURCE_ZEROCONF,
    ConfigEntryState,
)
from homeassistant.const import CONF_HOST, CONF_PORT
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import AbortFlow, FlowResult, FlowResultType
from homeassistant.helpers.service_info.zeroconf import ZeroconfServiceInfo
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.esphome_remote_build.config_flow import (
    RemoteBuildConfigFlow,
    normalize_pairing_key,
)
from custom_components.esphome_remote_build.const import (
    CONF_KEEP_LAST,
    CONF_PAIRING_KEY,
    CONF_PIN,
    DOMAIN,
)
from custom_components.esphome_remote_build.peerlink import (
    Disconnected,
    Identity,
    format_pin_hex,
    pin_emoji,
    pin_emoji_names,
)
from tests.support.receiver_double import HandshakeFault, ReceiverDouble

from .conftest import Recorder, client_of, link_of, make_entry

pytestmark = pytest.mark.usefixtures("flow_translations_checked")


def free_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def start_user_flow(hass: HomeAssistant, host: str, port: int) -> FlowResult:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "user"
    return await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_HOST: host, CONF_PORT: port}
    )


async def pair(hass: HomeAssistant, result: FlowResult, **user_input: Any) -> FlowResult:
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "pair"
    return await hass.config_entries.flow.async_configure(result["flow_id"], user_input)


async def assert_created(
    hass: HomeAssistant, result: FlowResult, rd: ReceiverDouble, title: str = "build-box"
) -> None:
    """The flow created the entry, and the entry's link connects with the stored pin."""
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == title
    assert result["data"] == {CONF_HOST: rd.host, CONF_PORT: rd.port, CONF_PIN: rd.pin}
    entry = result["result"]
    assert entry.unique_id == rd.pin
    await hass.async_block_till_done()
    await client_of(entry).wait_connected(5)


async def test_user_flow_approved_at_once(
    hass: HomeAssistant, paired: ReceiverDouble, identity: Identity
) -> None:
    result = await start_user_flow(hass, "  127.0.0.1 ", paired.port)
    assert result["step_id"] == "pair"
    placeholders = result["description_placeholders"]
    assert placeholders == {
        "name": "build-box",
        "version": "2026.10.0",
        "server_emoji": pin_emoji(paired.pin),
        "server_emoji_names": pin_emoji_names(paired.pin),
        "server_pin": format_pin_hex(paired.pin),
        "our_emoji": pin_emoji(identity.pin_sha256),
        "our_emoji_names": pin_emoji_names(identity.pin_sha256),
        "our_pin": format_pin_hex(identity.pin_sha256),
    }

    result = await pair(hass, result)

    await assert_created(hass, result, paired)
    request = paired.connections_for("pair_request")[-1].msg3_payload
    assert request is not None
    assert request["dashboard_id"] == identity.dashboard_id
    assert request["friendly_name"] == hass.config.location_name
    assert "pairing_key" not in request


async def test_title_falls_back_to_host(hass: HomeAssistant, identity: Identity) -> None:
    async with ReceiverDouble(friendly_name="") as rd:
        rd.add_peer(identity.dashboard_id, identity.pin_sha256)
        result = await pair(hass, await start_user_flow(hass, rd.host, rd.port))
        assert result["type"] is FlowResultType.CREATE_ENTRY
        assert result["title"] == rd.host
        await hass.config_entries.async_unload(result["result"].entry_id)


async def test_titles_stay_unique(hass: HomeAssistant, identity: Identity) -> None:
    """A second server with a taken name is told apart by its address."""
    MockConfigEntry(
        domain=DOMAIN, source=SOURCE_IGNORE, title="build-box", unique_id="cd" * 32
    ).add_to_hass(hass)  # an ignored server's title does not count
    async with ReceiverDouble(friendly_name="build-box") as first:
        first.add_peer(identity.dashboard_id, identity.pin_sha256)
        result = await pair(hass, await start_user_flow(hass, first.host, first.port))
        await assert_created(hass, result, first)
        async with ReceiverDouble(friendly_name="build-box") as second:
            second.add_peer(identity.dashboard_id, identity.pin_sha256)
            result = await pair(hass, await start_user_flow(hass, second.host, second.port))
            await assert_created(
                hass, result, second, title=f"build-box ({second.host}:{second.port})"
            )
            for entry in hass.config_entries.async_entries(DOMAIN):
                await hass.config_entries.async_unload(entry.entry_id)


def test_pairing_needs_a_previewed_server(hass: HomeAssistant) -> None:
    """No step pairs with a server it did not look at first; if one did, it aborts."""
    flow = RemoteBuildConfigFlow()
    flow.hass = hass
    with pytest.raises(AbortFlow) as caught:
        flow._server()
    assert caught.value.reason == "cannot_connect"


async def test_headless_server_with_pairing_key(hass: HomeAssistant) -> None:
    async with ReceiverDouble(friendly_name="build-box", requires_pairing_key=True) as rd:
        result = await start_user_flow(hass, rd.host, rd.port)
        # A headless server refuses a missing key and a wrong one alike; the form says
        # which is likely (both used to read no_pairing_window).
        result = await pair(hass, result)
        assert result["type"] is FlowResultType.FORM
        assert result["errors"] == {"base": "pairing_key_required"}
        result = await pair(hass, result, **{CONF_PAIRING_KEY: "ZZZZ-ZZZZ-ZZZZ-ZZZZ"})
        assert result["type"] is FlowResultType.FORM
        assert result["errors"] == {"base": "wrong_pairing_key"}
        sent = [c.msg3_payload for c in rd.connections_for("pair_request")]
        assert [(p or {}).get("pairing_key") for p in sent] == [None, "ZZZZ-ZZZZ-ZZZZ-ZZZZ"]

        assert rd.pairing_key is not None
        # Case and surrounding spaces are forgiven; the key is sent as the server prints it.
        typed = f"  {rd.pairing_key.lower()} "
        result = await pair(hass, result, **{CONF_PAIRING_KEY: typed})
        await assert_created(hass, result, rd)
        request = rd.connections_for("pair_request")[-1].msg3_payload
        assert request is not None
        assert request["pairing_key"] == rd.pairing_key
        await hass.config_entries.async_unload(result["result"].entry_id)


@pytest.mark.parametrize(
    "key",
    [
        "x" * 65,
        "wrong-key",
        "ABCD-EFGH-JKLM",
        "ABCD-EFGH-JKLM-NPQRS",
        "ABCDEFGHJKLMNPQR",
        "ABCD EFGH JKLM NPQR",
        "ABCD-EFGH-JKLM-NPQ!",
        "ÄBCD-EFGH-JKLM-NPQR",
    ],
)
async def test_invalid_pairing_key_is_not_sent(
    hass: HomeAssistant, rd: ReceiverDouble, key: str
) -> None:
    result = await start_user_flow(hass, rd.host, rd.port)
    result = await pair(hass, result, pairing_key=key)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "pair"
    assert result["errors"] == {CONF_PAIRING_KEY: "invalid_pairing_key"}
    assert rd.connections_for("pair_request") == []  # nothing was sent
    # The form keeps what was typed, and shows the fingerprints again.
    assert result["description_placeholders"]["server_pin"] == format_pin_hex(rd.pin)


@pytest.mark.parametrize(
    ("typed", "key"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("abcd-efgh-jkmn-pqrs", "ABCD-EFGH-JKMN-PQRS"),
        (" ABCD-2345-WXYZ-0000\n", "ABCD-2345-WXYZ-0000"),
    ],
)
def test_normalize_pairing_key(typed: str | None, key: str | None) -> None:
    assert normalize_pairing_key(typed) == key


@pytest.mark.parametrize("key", [None, "ABCD-EFGH-JKMN-PQRS"])
async def test_no_pairing_window(hass: HomeAssistant, rd: ReceiverDouble, key: str | None) -> None:
    """A dashboard server with its window closed: the key (if any) is not the problem."""
    result = await start_user_flow(hass, rd.host, rd.port)
    result = await pair(hass, result, **({CONF_PAIRING_KEY: key} if key else {}))
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "no_pairing_window"}


async def test_pair_request_cannot_connect(hass: HomeAssistant, rd: ReceiverDouble) -> None:
    result = await start_user_flow(hass, rd.host, rd.port)
    rd.faults.handshake = HandshakeFault.CLOSE_AFTER_MSG1
    result = await pair(hass, result)
    assert result["errors"] == {"base": "cannot_connect"}


async def test_pair_rejected(hass: HomeAssistant, rd: ReceiverDouble, identity: Identity) -> None:
    rd.add_peer(identity.dashboard_id, "cd" * 32)  # the server knows our id with another key
    result = await pair(hass, await start_user_flow(hass, rd.host, rd.port))
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "pairing_rejected"
    assert result["description_placeholders"] == {"reason": "pin_mismatch"}


async def test_pin_changed_between_preview_and_request(
    hass: HomeAssistant, paired: ReceiverDouble
) -> None:
    result = await start_user_flow(hass, paired.host, paired.port)
    paired.set_static_key()
    result = await pair(hass, result)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "pin_changed"
    assert not paired.connections_for("pair_request")[-1].msg3_received


@pytest.mark.parametrize(
    ("break_server", "error"),
    [
        (
            lambda rd, _identity: setattr(rd.faults, "handshake", HandshakeFault.GARBAGE_MSG2),
            "cannot_connect",
        ),
        (
            lambda rd, _identity: rd.faults.refuse_intent.update(
                preview=("rejected", "bad_intent")
            ),
            "not_build_server",
        ),
        (lambda rd, identity: rd.set_static_key(identity.private_key), "self_loopback"),
    ],
    ids=["garbage", "not_build_server", "self_loopback"],
)
async def test_user_preview_errors(
    hass: HomeAssistant,
    rd: ReceiverDouble,
    identity: Identity,
    break_server: Callable[[ReceiverDouble, Identity], object],
    error: str,
) -> None:
    break_server(rd, identity)
    result = await start_user_flow(hass, rd.host, rd.port)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "user"
    assert result["errors"] == {"base": error}


async def test_user_unreachable_then_fixed(hass: HomeAssistant, paired: ReceiverDouble) -> None:
    result = await start_user_flow(hass, "127.0.0.1", free_port())
    assert result["errors"] == {"base": "cannot_connect"}

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_HOST: paired.host, CONF_PORT: paired.port}
    )
    await assert_created(hass, await pair(hass, result), paired)


async def test_user_already_configured_updates_address(
    hass: HomeAssistant, rd: ReceiverDouble
) -> None:
    old = make_entry(rd, **{CONF_HOST: "192.0.2.1", CONF_PORT: 1})
    old.add_to_hass(hass)
    result = await start_user_flow(hass, rd.host, rd.port)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert old.data[CONF_HOST] == rd.host
    assert old.data[CONF_PORT] == rd.port


# --- waiting for the admin -------------------------------------------------------------


async def start_pending(hass: HomeAssistant, rd: ReceiverDouble) -> FlowResult:
    rd.open_pairing_window()
    result = await pair(hass, await start_user_flow(hass, rd.host, rd.port))
    assert result["type"] is FlowResultType.SHOW_PROGRESS
    assert result["step_id"] == "wait_approval"
    assert result["progress_action"] == "wait_approval"
    await rd.wait_for(lambda: bool(rd.connections_for("pair_status")))
    return result


async def finish(hass: HomeAssistant, result: FlowResult) -> FlowResult:
    await hass.async_block_till_done()
    return await hass.config_entries.flow.async_configure(result["flow_id"])


async def test_pending_then_approved(
    hass: HomeAssistant, rd: ReceiverDouble, identity: Identity
) -> None:
    result = await start_pending(hass, rd)
    rd.approve(identity.dashboard_id)
    await assert_created(hass, await finish(hass, result), rd)


async def test_pending_then_rejected(
    hass: HomeAssistant, rd: ReceiverDouble, identity: Identity
) -> None:
    result = await start_pending(hass, rd)
    rd.remove(identity.dashboard_id)
    result = await finish(hass, result)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "pairing_rejected"
    assert result["description_placeholders"] == {"reason": "no_approved_peer"}


async def test_pending_times_out(hass: HomeAssistant, rd: ReceiverDouble) -> None:
    with patch("custom_components.esphome_remote_build.config_flow.APPROVAL_TIMEOUT", 0.5):
        result = await start_pending(hass, rd)
        result = await finish(hass, result)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "approval_timeout"


async def test_pending_server_answers_garbage(hass: HomeAssistant, rd: ReceiverDouble) -> None:
    rd.faults.refuse_intent["pair_status"] = ("maybe", None)
    rd.open_pairing_window()
    result = await pair(hass, await start_user_flow(hass, rd.host, rd.port))
    result = await finish(hass, result)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "cannot_connect"


async def test_pending_server_key_changes(hass: HomeAssistant, rd: ReceiverDouble) -> None:
    # The first long-poll is told to come back later; before it does, the key rotates.
    rd.faults.refuse_intent["pair_status"] = ("no_pairing_window", None)
    result = await start_pending(hass, rd)
    await rd.connections_for("pair_status")[0].closed.wait()
    rd.faults.refuse_intent.clear()
    rd.set_static_key()
    result = await finish(hass, result)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "pin_changed"


# --- zeroconf ----------------------------------------------------------------------------


def discovery(rd: ReceiverDouble, **properties: Any) -> ZeroconfServiceInfo:
    txt: dict[str, Any] = {
        "server_version": "1.26.0",
        "esphome_version": "2026.10.0",
        "friendly_name": "build-box",
        "pin_sha256": rd.pin,
        "remote_build_port": str(rd.port),
    }
    txt.update(properties)
    return ZeroconfServiceInfo(
        ip_address=ip_address(rd.host),
        ip_addresses=[ip_address(rd.host)],
        port=6052,  # the dashboard's HTTP port: never dialled
        hostname="esphome-builder-abcdefgh.local.",
        type="_esphomebuilder._tcp.local.",
        name="esphome-builder-abcdefgh._esphomebuilder._tcp.local.",
        properties={k: v for k, v in txt.items() if v is not None},
    )


async def start_zeroconf(hass: HomeAssistant, info: ZeroconfServiceInfo) -> FlowResult:
    return await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_ZEROCONF}, data=info
    )


async def test_zeroconf_new_server(hass: HomeAssistant, paired: ReceiverDouble) -> None:
    result = await start_zeroconf(hass, discovery(paired))
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "zeroconf_confirm"
    assert result["description_placeholders"] == {
        "name": "build-box",
        "host": paired.host,
        "port": str(paired.port),
    }
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    await assert_created(hass, await pair(hass, result), paired)


async def test_zeroconf_confirm_errors(hass: HomeAssistant, rd: ReceiverDouble) -> None:
    result = await start_zeroconf(hass, discovery(rd, friendly_name=None))
    assert result["description_placeholders"]["name"] == rd.host
    rd.faults.handshake = HandshakeFault.CLOSE_AFTER_MSG1
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "cannot_connect"}

    rd.faults.handshake = None
    rd.set_static_key()  # the TXT record is stale or forged: the handshake shows another key
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "pin_changed"


async def test_zeroconf_known_server_moved(hass: HomeAssistant, rd: ReceiverDouble) -> None:
    old = make_entry(rd, **{CONF_HOST: "192.0.2.1", CONF_PORT: 1})
    old.add_to_hass(hass)
    result = await start_zeroconf(hass, discovery(rd))
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert rd.connections_for("preview")  # the new address proved the paired key first
    assert old.data[CONF_HOST] == rd.host
    assert old.data[CONF_PORT] == rd.port


@pytest.mark.parametrize("answer", ["another key", "nobody"])
async def test_zeroconf_new_address_without_the_paired_key_is_ignored(
    hass: HomeAssistant, rd: ReceiverDouble, answer: str
) -> None:
    """The pin is public: an announcement alone never moves an entry (it used to)."""
    entry = make_entry(rd, **{CONF_HOST: "192.0.2.1", CONF_PORT: 1})
    entry.add_to_hass(hass)
    if answer == "nobody":
        rd.faults.handshake = HandshakeFault.CLOSE_AFTER_MSG1
    else:
        rd.set_static_key()  # whoever answers there holds another key
    result = await start_zeroconf(hass, discovery(rd, pin_sha256=entry.unique_id))
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert (entry.data[CONF_HOST], entry.data[CONF_PORT]) == ("192.0.2.1", 1)
    assert entry.state is ConfigEntryState.NOT_LOADED  # not reloaded either
    assert rd.connections_for("peer_link") == []


async def test_zeroconf_same_address_of_an_entry_not_loaded(
    hass: HomeAssistant, rd: ReceiverDouble
) -> None:
    entry = make_entry(rd)
    entry.add_to_hass(hass)
    result = await start_zeroconf(hass, discovery(rd))
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert rd.connection_count == 0  # nothing to wake, nothing to look at
    assert entry.state is ConfigEntryState.NOT_LOADED


async def test_zeroconf_wakes_a_reconnecting_link(
    hass: HomeAssistant, paired: ReceiverDouble, entry: MockConfigEntry
) -> None:
    paired.faults.refuse_intent["peer_link"] = ("pending", "pending_not_approved")
    recorder = Recorder()
    assert await hass.config_entries.async_setup(entry.entry_id)
    client = client_of(entry)
    client.subscribe(recorder)
    await recorder.wait_count(Disconnected, 1)  # refused once: now in a 1 s back-off
    del paired.faults.refuse_intent["peer_link"]
    previews = len(paired.connections_for("preview"))
    result = await start_zeroconf(hass, discovery(paired))
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    async with asyncio.timeout(0.5):  # well before the back-off would have ended
        while not link_of(entry).connected:
            await asyncio.sleep(0.01)
    assert len(paired.connections_for("preview")) == previews  # same address: no preview


@pytest.mark.parametrize(
    "properties",
    [
        {"pin_sha256": None},
        {"remote_build_port": None},
        {"pin_sha256": "AB" * 32},
        {"pin_sha256": "ab" * 31},
        {"remote_build_port": "0"},
        {"remote_build_port": "65536"},
        {"remote_build_port": "-1"},
        {"remote_build_port": "port"},
        {"remote_build_port": ""},
    ],
)
async def test_zeroconf_not_a_build_server(
    hass: HomeAssistant, rd: ReceiverDouble, properties: dict[str, Any]
) -> None:
    result = await start_zeroconf(hass, discovery(rd, **properties))
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "not_build_server"


# --- reauth and reconfigure ------------------------------------------------------------


async def test_reauth_pairs_again(
    hass: HomeAssistant, rd: ReceiverDouble, identity: Identity
) -> None:
    entry = make_entry(rd, **{CONF_PORT: rd.port})
    entry.add_to_hass(hass)
    result = await entry.start_reauth_flow(hass)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "reauth_confirm"
    assert result["description_placeholders"] == {
        "name": "build-box",
        "host": rd.host,
        "port": str(rd.port),
    }
    rd.faults.handshake = HandshakeFault.CLOSE_AFTER_MSG1
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["errors"] == {"base": "cannot_connect"}

    rd.faults.handshake = None
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    rd.open_pairing_window()
    result = await pair(hass, result)
    assert result["type"] is FlowResultType.SHOW_PROGRESS
    await rd.wait_for(lambda: bool(rd.connections_for("pair_status")))
    rd.approve(identity.dashboard_id)
    result = await finish(hass, result)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    await hass.async_block_till_done()
    await client_of(entry).wait_connected(5)


async def test_reauth_server_shows_another_pin(hass: HomeAssistant, rd: ReceiverDouble) -> None:
    entry = make_entry(rd)
    entry.add_to_hass(hass)
    rd.set_static_key()
    result = await entry.start_reauth_flow(hass)
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "pin_mismatch"


async def test_reconfigure_moves_the_entry(hass: HomeAssistant, paired: ReceiverDouble) -> None:
    entry = make_entry(paired, **{CONF_HOST: "192.0.2.1", CONF_PORT: 1})
    entry.add_to_hass(hass)
    result = await entry.start_reconfigure_flow(hass)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "reconfigure"

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_HOST: "127.0.0.1", CONF_PORT: free_port()}
    )
    assert result["errors"] == {"base": "cannot_connect"}

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_HOST: paired.host, CONF_PORT: paired.port}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert entry.data == {CONF_HOST: paired.host, CONF_PORT: paired.port, CONF_PIN: paired.pin}
    await hass.async_block_till_done()
    await client_of(entry).wait_connected(5)


async def test_reconfigure_to_another_server(hass: HomeAssistant, rd: ReceiverDouble) -> None:
    entry = make_entry(rd)
    entry.add_to_hass(hass)
    async with ReceiverDouble() as other:
        result = await entry.start_reconfigure_flow(hass)
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_HOST: other.host, CONF_PORT: other.port}
        )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "pin_mismatch"
    assert entry.data[CONF_PORT] == rd.port


# --- options -------------------------------------------------------------------------------


async def test_options_flow(hass: HomeAssistant) -> None:
    entry = MockConfigEntry(domain=DOMAIN, unique_id="ab" * 32, data={})
    entry.add_to_hass(hass)
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "init"
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_KEEP_LAST: 7.0}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert entry.options == {CONF_KEEP_LAST: 7}
