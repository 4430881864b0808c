"""The one-shot intents: look at a server, ask to pair, wait for the admin's decision."""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from .channel import open_channel
from .errors import (
    CannotConnectError,
    InvalidPairingKeyError,
    NoPairingWindowError,
    PairingRejectedError,
    ProtocolError,
)
from .frames import (
    MAX_LABEL_CHARS,
    ONE_SHOT_MAX_BYTES,
    Intent,
    IntentResponse,
    IntentResponseFrame,
)
from .identity import Identity
from .models import PairOutcome, ServerInfo

_LOGGER = logging.getLogger(__name__)

ONE_SHOT_TIMEOUT = 10.0
PAIR_STATUS_TIMEOUT = 3600.0
PAIR_STATUS_RETRY_DELAY = 2.0
MAX_PAIRING_KEY_CHARS = 64


async def preview(
    session: aiohttp.ClientSession,
    host: str,
    port: int,
    identity: Identity,
    *,
    timeout: float = ONE_SHOT_TIMEOUT,
) -> ServerInfo:
    """Learn a server's pin, name and version without telling it anything about us."""
    async with asyncio.timeout(timeout):
        pin, response = await _one_shot(session, host, port, identity, Intent.PREVIEW, None)
    if response["intent_response"] is not IntentResponse.OK:
        raise PairingRejectedError(response["reason"] or "rejected", "server refused the preview")
    return ServerInfo.from_response(host, port, pin, response)


def _clean_label(value: str) -> str:
    value = value.strip()[:MAX_LABEL_CHARS]
    return value if value.isprintable() else ""


async def pair_request(
    session: aiohttp.ClientSession,
    host: str,
    port: int,
    identity: Identity,
    expected_pin: str,
    *,
    label: str,
    friendly_name: str,
    pairing_key: str | None = None,
    timeout: float = ONE_SHOT_TIMEOUT,
) -> PairOutcome:
    """Ask the server to pair with us; the pairing key only leaves after the pin check."""
    payload: dict[str, object] = {
        "label": _clean_label(label),
        "dashboard_id": identity.dashboard_id,
        "friendly_name": _clean_label(friendly_name),
        "ha_addon": False,
        "label_auto": False,
    }
    key = (pairing_key or "").strip()
    if key:
        if len(key) > MAX_PAIRING_KEY_CHARS or not key.isprintable():
            raise InvalidPairingKeyError(
                "the pairing key is too long or contains control characters"
            )
        payload["pairing_key"] = key
    async with asyncio.timeout(timeout):
        _, response = await _one_shot(
            session, host, port, identity, Intent.PAIR_REQUEST, payload, expected_pin
        )
    match response["intent_response"]:
        case IntentResponse.APPROVED:
            return PairOutcome.APPROVED
        case IntentResponse.PENDING:
            return PairOutcome.PENDING
        case IntentResponse.NO_PAIRING_WINDOW:
            raise NoPairingWindowError
        case IntentResponse.REJECTED:
            raise PairingRejectedError(response["reason"] or "rejected")
        case _:
            raise ProtocolError(f"unexpected answer to a pairing request: {response}")


async def pair_status(
    session: aiohttp.ClientSession,
    host: str,
    port: int,
    identity: Identity,
    expected_pin: str,
    *,
    timeout: float = PAIR_STATUS_TIMEOUT,
    retry_delay: float = PAIR_STATUS_RETRY_DELAY,
) -> None:
    """Long-poll until the server's admin approves us; raise if they decline.

    The server says nothing at all while it waits, so transport errors are retried within
    the overall budget.
    """
    payload: dict[str, object] = {"dashboard_id": identity.dashboard_id}
    async with asyncio.timeout(timeout):
        while True:
            try:
                _, response = await _one_shot(
                    session,
                    host,
                    port,
                    identity,
                    Intent.PAIR_STATUS,
                    payload,
                    expected_pin,
                    response_timeout=None,
                )
            except CannotConnectError as err:
                _LOGGER.debug("pair_status long-poll interrupted (%s); retrying", err)
                await asyncio.sleep(retry_delay)
                continue
            verdict = response["intent_response"]
            if verdict is IntentResponse.APPROVED:
                return
            if verdict is IntentResponse.REJECTED:
                raise PairingRejectedError(response["reason"] or "rejected")
            await asyncio.sleep(retry_delay)


async def _one_shot(
    session: aiohttp.ClientSession,
    host: str,
    port: int,
    identity: Identity,
    intent: Intent,
    payload: dict[str, object] | None,
    expected_pin: str | None = None,
    *,
    response_timeout: float | None = ONE_SHOT_TIMEOUT,
) -> tuple[str, IntentResponseFrame]:
    """Run one intent round trip; the server closes the socket after answering."""
    channel, response = await open_channel(
        session,
        host,
        port,
        identity,
        intent,
        payload,
        expected_pin,
        max_msg_size=ONE_SHOT_MAX_BYTES,
        response_timeout=response_timeout,
    )
    await channel.close()
    return channel.remote_pin, response
