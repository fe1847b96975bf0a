"""``Sandbox``: the provider fakes (Twilio, FCM, SMTP) wired to one ledger and one fault table.

Typical use::

    sb = Sandbox(twilio_account_sid="AC...", twilio_auth_token="...", fcm_project_id="hub-sandbox")
    sb.add_routes(app, prefix="/sandbox")          # before the aiohttp app starts
    smtp_port = await sb.start_smtp("127.0.0.1", 0)
    ...
    await sb.close()

Routes added under the prefix, besides the provider APIs (see ``twilio_fake``, ``twilio_webhooks``,
``whatsapp_fake`` and ``fcm_fake``) and the phones page (``page``):

``GET {prefix}/messages``     ledger entries, newest last; ``?to=``, ``?channel=``, ``?limit=``
``DELETE {prefix}/messages``  clear the ledger (204)
``GET {prefix}/faults``       ``{provider: {"mode", "remaining", "triggered"}}``
``POST {prefix}/faults``      ``{"provider", "mode", "count"?}``; ``mode: null`` heals
``DELETE {prefix}/faults``    heal every provider (204)

Everything runs in the event loop that serves the app and calls ``start_smtp``; ``close()``
stops the SMTP sink, releases requests held by ``"timeout"`` faults, cancels pending status
callbacks and closes the outbound HTTP session.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from ._formats import json_error
from ._outbound import Outbound
from .faults import Faults
from .fcm_fake import FcmFake
from .ledger import CHANNELS, Ledger
from .page import SandboxPage
from .smtp_sink import SmtpSink
from .twilio_fake import TwilioFake
from .twilio_webhooks import API_VERSION, TwilioWebhooks
from .whatsapp_fake import WhatsAppInbound

__all__ = ["Sandbox"]

logger = logging.getLogger(__name__)


class Sandbox:
    """Provider fakes for the notification hub's sandbox mode and tests."""

    def __init__(
        self,
        *,
        twilio_account_sid: str = "ACsandbox0000000000000000000000000",
        twilio_auth_token: str = "sandbox-auth-token",
        fcm_project_id: str = "hub-sandbox",
        status_callbacks: bool = True,
        callback_delay: float = 0.05,
        invalid_numbers: frozenset[str] = frozenset(),
        unregistered_tokens: frozenset[str] = frozenset(),
        failing_numbers: Mapping[str, int] | None = None,
        hub_url: str | None = None,
        smtp_hostname: str = "sandbox.localhost",
        fault_timeout: float = 30.0,
    ) -> None:
        self.ledger = Ledger()
        self.faults = Faults(timeout_seconds=fault_timeout)
        self._outbound = Outbound()
        self.twilio_webhooks = TwilioWebhooks(
            account_sid=twilio_account_sid,
            auth_token=twilio_auth_token,
            ledger=self.ledger,
            outbound=self._outbound,
        )
        self.twilio_webhooks.hub_url = hub_url
        self.twilio = TwilioFake(
            account_sid=twilio_account_sid,
            auth_token=twilio_auth_token,
            ledger=self.ledger,
            faults=self.faults,
            outbound=self._outbound,
            webhooks=self.twilio_webhooks,
            status_callbacks=status_callbacks,
            callback_delay=callback_delay,
            invalid_numbers=frozenset(invalid_numbers),
            failing_numbers=failing_numbers,
        )
        self.fcm = FcmFake(
            project_id=fcm_project_id,
            ledger=self.ledger,
            faults=self.faults,
            unregistered_tokens=frozenset(unregistered_tokens),
        )
        self.smtp = SmtpSink(ledger=self.ledger, faults=self.faults, hostname=smtp_hostname)
        self.prefix: str | None = None
        self.sms_number: str | None = None  # the hub's SMS number, for replies sent from the page
        self.whatsapp_number: str | None = None  # the hub's WhatsApp number (POST .../whatsapp/inbound)
        self.proxy_numbers: tuple[str, ...] = ()  # relay numbers the page offers to call
        self.last_calls: dict[str, str] = {}  # caller -> what the last simulated call did
        # Address -> who it is ("Ana Weber", "driver Sam"), for the page; set by `hub dev`.
        self.directory: Callable[[], Awaitable[dict[str, str]]] | None = None
        self._closed = False

    # -- configuration --------------------------------------------------------------------

    @property
    def hub_url(self) -> str | None:
        """Origin of the hub that receives simulated inbound SMS (``/webhooks/twilio/sms``)."""
        return self.twilio_webhooks.hub_url

    @hub_url.setter
    def hub_url(self, value: str | None) -> None:
        self.twilio_webhooks.hub_url = value

    def twilio_base_url(self, origin: str) -> str:
        """What replaces ``https://api.twilio.com`` for a sandbox served at ``origin``."""
        return f"{origin.rstrip('/')}{self._mounted_prefix()}/twilio"

    def fcm_send_url(self, origin: str) -> str:
        """The ``messages:send`` URL for firebase-admin, for a sandbox served at ``origin``."""
        base = f"{origin.rstrip('/')}{self._mounted_prefix()}"
        return f"{base}/fcm/v1/projects/{self.fcm.project_id}/messages:send"

    def _mounted_prefix(self) -> str:
        if self.prefix is None:
            raise RuntimeError("add_routes() has not been called")
        return self.prefix

    # -- lifecycle ------------------------------------------------------------------------

    def add_routes(self, app: web.Application, prefix: str = "/sandbox") -> None:
        """Mount every sandbox route on ``app`` (before it starts) under ``prefix``."""
        prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.prefix = prefix
        app.router.add_get(f"{prefix}/messages", self._handle_list)
        app.router.add_delete(f"{prefix}/messages", self._handle_clear)
        app.router.add_get(f"{prefix}/faults", self._handle_get_faults)
        app.router.add_post(f"{prefix}/faults", self._handle_set_faults)
        app.router.add_delete(f"{prefix}/faults", self._handle_clear_faults)
        self.twilio.add_routes(app, prefix)
        self.twilio_webhooks.add_routes(app, prefix)
        WhatsAppInbound(self).add_routes(app, prefix)
        self.fcm.add_routes(app, prefix)
        SandboxPage(self, prefix).add_routes(app)
        app.on_shutdown.append(self._on_app_shutdown)
        logger.info("sandbox mounted at %s (twilio API %s)", prefix or "/", API_VERSION)

    async def start_smtp(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Start the SMTP sink in the running event loop; return the bound port."""
        return await self.smtp.start(host, port)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.faults.close()
        await self.smtp.close()
        await self._outbound.close()
        logger.info("sandbox closed")

    async def _on_app_shutdown(self, app: web.Application) -> None:
        # Graceful shutdown waits for in-flight handlers: let "timeout" faults go first.
        self.faults.release()

    # -- ledger and fault routes ----------------------------------------------------------

    async def _handle_list(self, request: web.Request) -> web.Response:
        query = request.query
        channel = query.get("channel") or None
        if channel is not None and channel not in CHANNELS:
            return json_error(400, f"channel must be one of {', '.join(CHANNELS)}")
        limit: int | None = None
        if query.get("limit"):
            try:
                limit = int(query["limit"])
            except ValueError:
                return json_error(400, "limit must be an integer")
            if limit < 0:
                return json_error(400, "limit must not be negative")
        entries = self.ledger.entries(to=query.get("to") or None, channel=channel, limit=limit)
        return web.json_response([entry.to_dict() for entry in entries])

    async def _handle_clear(self, request: web.Request) -> web.Response:
        self.ledger.clear()
        return web.Response(status=204)

    async def _handle_get_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self.faults.snapshot())

    async def _handle_set_faults(self, request: web.Request) -> web.Response:
        try:
            payload: Any = await request.json()
        except ValueError:
            return json_error(400, "body must be JSON")
        if not isinstance(payload, dict) or not isinstance(payload.get("provider"), str):
            return json_error(400, 'expected {"provider": ..., "mode": ..., "count": ...}')
        mode = payload.get("mode")
        count = payload.get("count")
        if mode is not None and not isinstance(mode, str | int):
            return json_error(400, "mode must be a string or null")
        if count is not None and not isinstance(count, int):
            return json_error(400, "count must be an integer or null")
        try:
            self.faults.set(payload["provider"], mode, count)
        except ValueError as exc:
            return json_error(400, str(exc))
        return web.json_response(self.faults.snapshot())

    async def _handle_clear_faults(self, request: web.Request) -> web.Response:
        self.faults.clear()
        return web.Response(status=204)
