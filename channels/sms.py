"""SMS through Twilio's Messages API with twilio-python's async client.

``TwilioSms`` is created once per worker; it reuses one aiohttp session. ``base_url`` replaces
``https://api.twilio.com`` (the sandbox serves the same API on loopback); in production it is
left at Twilio's own origin.

A create whose answer is lost (a timeout or a dropped connection once the request was out) is
``in_doubt``: Twilio may have made the message. ``reconcile`` then looks for it in Twilio's
message list (``GET .../Messages.json?To=...&From=...``): the hub's own message is an
outbound-api message to the number, from the hub's sender, created no earlier than the send,
with the same body (compared on its letters and digits, so Twilio's Smart Encoding of quotes
and dashes does not hide it). Found: accepted with its SID. The whole list read and no such
message: Twilio has none, and sending again is safe. Anything else (the list unreadable, longer
than ``RECONCILE_PAGES`` pages): still in doubt. No ``DateSent`` filter is used, because a
message Twilio has queued but not yet sent has no sent date and such a filter would hide it.
"""

from __future__ import annotations

import base64
import contextvars
import logging
import unicodedata
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import aiohttp
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from .base import InDoubtPolicy, Outbound, SendResult
from .twilio_errors import INVALID_NUMBER_ERRORS, PERMANENT_SMS_ERRORS

__all__ = ["PERMANENT_SMS_ERRORS", "RECONCILE_PAGES", "RECONCILE_PAGE_SIZE", "TwilioSms", "skeleton"]

TWILIO_ORIGIN = "https://api.twilio.com"
# A reconciliation reads at most this many pages of the number's messages before giving up
# (the message stays in doubt).
RECONCILE_PAGES = 5
RECONCILE_PAGE_SIZE = 200

# Headers of the last response in this task: TwilioRestException carries no headers, and a 429's
# Retry-After lives there. A context variable is per task, so concurrent sends do not mix.
_last_headers: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "twilio_headers", default=MappingProxyType({})
)

# twilio-python logs request URLs and bodies (phone numbers) at INFO; keep them out of our logs.
logging.getLogger("twilio").setLevel(logging.WARNING)


class _OriginHttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]  # twilio ships no type hints
    """twilio's own aiohttp client, sending to ``origin`` instead of api.twilio.com."""

    def __init__(self, origin: str, timeout: float) -> None:
        super().__init__(timeout=timeout)
        self._origin = origin.rstrip("/")

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        if url.startswith(TWILIO_ORIGIN):
            url = self._origin + url[len(TWILIO_ORIGIN) :]
        headers = dict(headers or {})
        if auth is not None:
            # Same Basic credentials twilio sends, as a header (aiohttp deprecates BasicAuth).
            headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        response = await self.session.request(
            method=method.upper(),
            url=url,
            params=params,
            data=data,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout or self.timeout),
            allow_redirects=allow_redirects,
        )
        async with response:
            _last_headers.set(response.headers)
            return Response(response.status, await response.text(), response.headers)


class TwilioSms:
    name = "sms"
    in_doubt = InDoubtPolicy.RECONCILE

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        from_number: str | None,
        messaging_service_sid: str | None,
        status_callback: str | None,
        base_url: str = TWILIO_ORIGIN,
        timeout: float = 10.0,
    ) -> None:
        if not (from_number or messaging_service_sid):
            raise ValueError("twilio.from_number or twilio.messaging_service_sid is required")
        self._http = _OriginHttpClient(base_url, timeout)
        self._client = Client(account_sid, auth_token, http_client=self._http)
        # twilio imports its API's modules on first use: here, not while the first SMS waits.
        self._messages = self._client.messages
        self._from = from_number
        self._service = messaging_service_sid
        self._status_callback = status_callback

    async def send(self, message: Outbound) -> SendResult:
        kwargs: dict[str, object] = {"to": message.to, "body": message.text}
        if message.sender:
            kwargs["from_"] = message.sender
        elif message.brand_sender:
            # A shop's sender. Twilio takes From beside a messaging service (the service's
            # settings still apply) and sends from it.
            kwargs["from_"] = message.brand_sender
            if self._service:
                kwargs["messaging_service_sid"] = self._service
        elif self._service:
            kwargs["messaging_service_sid"] = self._service
        else:
            kwargs["from_"] = self._from
        if message.media_urls:
            kwargs["media_url"] = list(message.media_urls)
        if self._status_callback and not message.sender:
            kwargs["status_callback"] = self._status_callback
        return await self._create(kwargs)

    async def _create(self, kwargs: dict[str, object]) -> SendResult:
        """One ``messages.create`` call, its answer (or its loss) as a ``SendResult``."""
        _last_headers.set(MappingProxyType({}))
        try:
            created = await self._messages.create_async(**kwargs)
        except TwilioRestException as e:
            return _classify(e, _last_headers.get())
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as e:
            # No connection was made: Twilio cannot have the request.
            return SendResult.transient(f"twilio unreachable: {type(e).__name__}")
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            # The request was on its way and no answer came (a timeout, a reset, a connection
            # closed without an answer): Twilio may have created the message.
            return SendResult.in_doubt(f"twilio answer lost: {type(e).__name__}")
        return SendResult.accepted(str(created.sid))

    async def reconcile(self, message: Outbound, since: float) -> SendResult:
        """Whether Twilio has ``message`` from an earlier ``send`` (see the module docstring)."""
        sender = message.sender or message.brand_sender or (None if self._service else self._from)
        query: dict[str, Any] = {"to": message.to, "page_size": RECONCILE_PAGE_SIZE}
        if sender:
            query["from_"] = sender
        try:
            page = await self._messages.page_async(**query)
            for _ in range(RECONCILE_PAGES):
                for listed in page:
                    if self._is_copy(listed, message, sender, since):
                        return SendResult.accepted(str(listed.sid))
                page = await page.next_page_async()
                if page is None:
                    return SendResult.transient("twilio has no such message")
        except (TwilioException, TimeoutError, aiohttp.ClientError, OSError) as e:
            # An error answer (a page that failed: TwilioException) or none at all.
            return SendResult.in_doubt(f"twilio lookup failed: {type(e).__name__}")
        pages = RECONCILE_PAGES * RECONCILE_PAGE_SIZE
        return SendResult.in_doubt(f"more than {pages} messages to this number at twilio; cannot tell")

    def _is_copy(self, listed: Any, message: Outbound, sender: str | None, since: float) -> bool:
        """Whether a Message resource from Twilio's list is ``message``, sent by this hub."""
        created = listed.date_created
        return bool(
            listed.direction == "outbound-api"
            and listed.to == message.to
            and (listed.from_ == sender if sender else listed.messaging_service_sid == self._service)
            and (created is None or created.timestamp() >= since)
            and self._same_text(listed.body or "", message)
        )

    def _same_text(self, body: str, message: Outbound) -> bool:
        """Whether a listed message's body is ``message``'s text."""
        return body == message.text or skeleton(body) == skeleton(message.text)

    async def close(self) -> None:
        await self._http.close()


def _classify(error: TwilioRestException, headers: Mapping[str, str]) -> SendResult:
    code = str(error.code) if error.code is not None else None
    status = int(error.status or 0)
    reason = f"twilio {status}: {error.msg}" if error.msg else f"twilio {status}"
    if code in PERMANENT_SMS_ERRORS:
        return SendResult.permanent(reason, code=code, contact_invalid=code in INVALID_NUMBER_ERRORS)
    if status == 429 or status >= 500 or status in (408, 0):
        retry_after = None
        if "Retry-After" in headers:
            try:
                retry_after = float(headers["Retry-After"])
            except ValueError:
                retry_after = None
        return SendResult.transient(reason, code=code, retry_after=retry_after)
    return SendResult.permanent(reason, code=code)


def skeleton(text: str) -> str:
    """The letters and digits of ``text``, accents and case dropped: what Twilio's Smart Encoding
    (quotes, dashes, ellipses, spaces replaced by GSM-7 ones) leaves unchanged."""
    return "".join(c for c in unicodedata.normalize("NFKD", text) if c.isalnum()).casefold()
