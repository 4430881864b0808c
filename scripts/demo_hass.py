"""A real Home Assistant for the demo: its config dir, its process and its HTTP API.

The demo drives Home Assistant only the way a user or an automation can — through
``/api/…`` with a token made by the onboarding API — so it shows the integration working in
a real ``hass`` process, not in a test harness. ``CONFIG_DOMAINS`` is also read by
``demo_requirements.py``: the domains this ``configuration.yaml`` sets up decide which
requirements must be installed before ``hass --skip-pip`` can start offline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
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

    async def entry_state(self, entry_id: str) -> str | None:
        entries = await self._request("GET", f"/api/config/config_entries/entry?domain={DOMAIN}")
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
