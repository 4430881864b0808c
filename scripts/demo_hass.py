"""A real Home Assistant for the demo: its config dir, its process and its HTTP API.

The demo drives Home Assistant only the way a user or an automation can — through
``/api/…`` with a token made by the onboarding API — so it shows the integration working in
a real ``hass`` process, not in a test harness. ``CONFIG_DOMAINS`` is also read by
``demo_requirements.py``: the domains this ``configuration.yaml`` sets up, and
``FLOW_DOMAINS`` that the demo adds through config flows, decide which requirements must be
installed before ``hass --skip-pip`` can start offline. Progress the REST API does not push
(flash events, the device registry) comes over the WebSocket API (``HassWebSocket``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
import contextlib
from dataclasses import dataclass
import itertools
import json
from pathlib import Path
import time
from typing import Any

import aiohttp

DOMAIN = "esphome_remote_build"
LOOPBACK = "127.0.0.1"


def configuration(http_port: int) -> dict[str, Any]:
    """The demo's ``configuration.yaml``: the basics, loopback HTTP, the REST API."""
    return {
        "homeassistant": {
            "name": "ESPHome Remote Build demo",
            "latitude": 52.37,
            "longitude": 4.89,
            "elevation": 0,
            "unit_system": "metric",
            "time_zone": "UTC",
            "country": "NL",
            "currency": "EUR",
        },
        "http": {"server_host": LOOPBACK, "server_port": http_port},
        "api": None,
        "onboarding": None,
        "logger": {"default": "warning", "logs": {f"custom_components.{DOMAIN}": "debug"}},
    }


CONFIG_DOMAINS = frozenset(configuration(0))
#: Core integrations the demo sets up through their config flows (the emulated device).
FLOW_DOMAINS = frozenset({"esphome"})


def yaml_text(document: dict[str, Any]) -> str:
    """One top-level key per line, each value in JSON flow style (JSON is valid YAML)."""
    return "".join(
        f"{key}:\n" if value is None else f"{key}: {json.dumps(value)}\n"
        for key, value in document.items()
    )


def write_config_dir(config_dir: Path, http_port: int, integration: Path) -> None:
    """Write ``configuration.yaml`` and link the integration into ``custom_components``."""
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "configuration.yaml").write_text(
        yaml_text(configuration(http_port)), encoding="utf-8"
    )
    custom = config_dir / "custom_components"
    custom.mkdir(exist_ok=True)
    (custom / DOMAIN).symlink_to(integration, target_is_directory=True)


class HassApiError(Exception):
    """Home Assistant answered a request with an error (status and body attached)."""


@dataclass(frozen=True)
class FlowStep:
    """One answer of the config-flow API."""

    raw: dict[str, Any]

    @property
    def type(self) -> str:
        return str(self.raw.get("type"))

    @property
    def step_id(self) -> str | None:
        step = self.raw.get("step_id")
        return None if step is None else str(step)

    @property
    def flow_id(self) -> str:
        return str(self.raw["flow_id"])

    @property
    def placeholders(self) -> dict[str, str]:
        return dict(self.raw.get("description_placeholders") or {})

    @property
    def errors(self) -> dict[str, str]:
        return dict(self.raw.get("errors") or {})


class HassApi:
    """The few REST calls the demo makes, as an admin user made through onboarding."""

    def __init__(self, session: aiohttp.ClientSession, port: int) -> None:
        self._session = session
        self.base = f"http://{LOOPBACK}:{port}"
        self.client_id = f"{self.base}/"
        self._token: str | None = None

    async def _request(
        self, method: str, path: str, *, json: object = None, form: dict[str, str] | None = None
    ) -> Any:  # noqa: ANN401 - decoded JSON, shaped per endpoint
        headers = {} if self._token is None else {"Authorization": f"Bearer {self._token}"}
        async with self._session.request(
            method, self.base + path, json=json, data=form, headers=headers
        ) as resp:
            body = await resp.text()
            if resp.status >= 300:
                raise HassApiError(f"{method} {path} -> HTTP {resp.status}: {body.strip()}")
            return await resp.json(content_type=None) if body else None

    async def wait_http(self, timeout: float, alive: Callable[[], bool]) -> None:
        """Wait until the HTTP server answers the onboarding API; ``alive()`` false aborts."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                await self._request("GET", "/api/onboarding")
            except (aiohttp.ClientError, HassApiError):
                if not alive():
                    raise HassApiError("Home Assistant exited during start-up") from None
                if time.monotonic() > deadline:
                    raise HassApiError(f"no HTTP answer within {timeout:.0f}s") from None
                # The listening socket appears at an unannounced moment: poll it briefly.
                await asyncio.sleep(0.2)
            else:
                return

    async def onboard(self, username: str, password: str) -> None:
        """Create the owner through onboarding and trade its auth code for a token."""
        created = await self._request(
            "POST",
            "/api/onboarding/users",
            json={
                "client_id": self.client_id,
                "name": "Demo Owner",
                "username": username,
                "password": password,
                "language": "en",
            },
        )
        token = await self._request(
            "POST",
            "/auth/token",
            form={
                "grant_type": "authorization_code",
                "code": created["auth_code"],
                "client_id": self.client_id,
            },
        )
        self._token = token["access_token"]

    async def wait_running(self, timeout: float) -> dict[str, Any]:
        """Wait until start-up finished (``state: RUNNING``); return ``/api/config``."""
        deadline = time.monotonic() + timeout
        while True:
            config: dict[str, Any] = await self._request("GET", "/api/config")
            if config.get("state") == "RUNNING":
                return config
            if time.monotonic() > deadline:
                raise HassApiError(f"still {config.get('state')} after {timeout:.0f}s")
            await asyncio.sleep(0.2)

    @property
    def token(self) -> str:
        if self._token is None:
            raise HassApiError("not onboarded yet: no access token")
        return self._token

    async def start_flow(self, handler: str) -> FlowStep:
        return FlowStep(
            await self._request(
                "POST", "/api/config/config_entries/flow", json={"handler": handler}
            )
        )

    async def flow_step(self, flow_id: str, data: dict[str, Any]) -> FlowStep:
        return FlowStep(
            await self._request("POST", f"/api/config/config_entries/flow/{flow_id}", json=data)
        )

    async def entry_state(self, entry_id: str, domain: str = DOMAIN) -> str | None:
        entries = await self._request("GET", f"/api/config/config_entries/entry?domain={domain}")
        for entry in entries:
            if entry.get("entry_id") == entry_id:
                return str(entry.get("state"))
        return None

    async def services_of(self, domain: str) -> set[str]:
        """The service names Home Assistant has registered for *domain*."""
        for item in await self._request("GET", "/api/services"):
            if item.get("domain") == domain:
                return set(item.get("services", {}))
        return set()

    async def call_service(self, service: str, data: dict[str, Any]) -> dict[str, Any]:
        """Call one of our services and return its response data."""
        answer = await self._request(
            "POST", f"/api/services/{DOMAIN}/{service}?return_response", json=data
        )
        response: dict[str, Any] = answer["service_response"]
        return response

    async def call(self, domain: str, service: str, data: dict[str, Any]) -> None:
        """Call any service (no response data); returns when the service has finished."""
        await self._request("POST", f"/api/services/{domain}/{service}", json=data)

    async def states(self) -> list[dict[str, Any]]:
        """Every entity's state object."""
        states: list[dict[str, Any]] = await self._request("GET", "/api/states")
        return states

    async def state(self, entity_id: str) -> dict[str, Any] | None:
        """An entity's state object (``state``, ``attributes``, …), ``None`` if it has none."""
        try:
            state: dict[str, Any] = await self._request("GET", f"/api/states/{entity_id}")
        except HassApiError as err:
            if "HTTP 404" in str(err):
                return None
            raise
        return state

    @contextlib.asynccontextmanager
    async def websocket(self) -> AsyncIterator[HassWebSocket]:
        """Home Assistant's WebSocket API, authenticated with the same token."""
        async with self._session.ws_connect(f"{self.base}/api/websocket") as ws:
            hello = await ws.receive_json()
            if hello.get("type") != "auth_required":
                raise HassApiError(f"unexpected WebSocket greeting {hello}")
            await ws.send_json({"type": "auth", "access_token": self.token})
            answer = await ws.receive_json()
            if answer.get("type") != "auth_ok":
                raise HassApiError(f"WebSocket authentication failed: {answer}")
            client = HassWebSocket(ws)
            reader = asyncio.create_task(client.read())
            try:
                yield client
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader


class HassWebSocket:
    """Commands and event subscriptions over one authenticated WebSocket connection."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._results: dict[int, asyncio.Future[Any]] = {}
        self._events: dict[int, asyncio.Queue[dict[str, Any]]] = {}

    async def read(self) -> None:
        """Route every message: results to their command, events to their queue."""
        async for message in self._ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(message.data)
            for item in data if isinstance(data, list) else [data]:
                if item.get("type") == "event" and (queue := self._events.get(item["id"])):
                    queue.put_nowait(item["event"])
                elif item.get("type") == "result" and (
                    future := self._results.pop(item["id"], None)
                ):
                    if item.get("success"):
                        future.set_result(item.get("result"))
                    else:
                        future.set_exception(HassApiError(f"WebSocket error: {item['error']}"))
        for future in self._results.values():
            if not future.done():
                future.set_exception(HassApiError("the WebSocket connection closed"))

    async def command(self, command: str, **fields: Any) -> Any:  # noqa: ANN401 - JSON
        """Send one command and return its result."""
        message_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._results[message_id] = future
        await self._ws.send_json({"id": message_id, "type": command, **fields})
        return await future

    async def subscribe_events(self, event_type: str) -> asyncio.Queue[dict[str, Any]]:
        """Subscribe to one event type; its events (``data``, ``time_fired``) queue up."""
        message_id = next(self._ids)
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._events[message_id] = queue
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._results[message_id] = future
        await self._ws.send_json(
            {"id": message_id, "type": "subscribe_events", "event_type": event_type}
        )
        await future
        return queue
