"""SMS through Twilio's Messages API with twilio-python's async client.

``TwilioSms`` is created once per worker; it reuses one aiohttp session. ``base_url`` replaces
``https://api.twilio.com`` (the sandbox serves the same API on loopback); in production it is
left at Twilio's own origin.
"""

from __future__ import annotations

import base64
import contextvars
import logging
from collections.abc import Mapping
from types import MappingProxyType

import aiohttp
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from .base import Outbound, SendResult

__all__ = ["PERMANENT_SMS_ERRORS", "TwilioSms"]

TWILIO_ORIGIN = "https://api.twilio.com"
# Twilio error codes that retrying cannot fix; the first group means the number itself is bad.
INVALID_NUMBER_ERRORS = {"21211", "21214", "21217", "21407", "21421", "21612", "21614", "30003", "30005", "30006"}
PERMANENT_SMS_ERRORS = INVALID_NUMBER_ERRORS | {"21408", "21606", "21610", "30004", "30007", "21602", "21604"}

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
        self._from = from_number
        self._service = messaging_service_sid
        self._status_callback = status_callback

    async def send(self, message: Outbound) -> SendResult:
        kwargs: dict[str, object] = {"to": message.to, "body": message.text}
        if message.sender:
            kwargs["from_"] = message.sender
        elif self._service:
            kwargs["messaging_service_sid"] = self._service
        else:
            kwargs["from_"] = self._from
        if message.media_urls:
            kwargs["media_url"] = list(message.media_urls)
        if self._status_callback and not message.sender:
            kwargs["status_callback"] = self._status_callback
        _last_headers.set(MappingProxyType({}))
        try:
            created = await self._client.messages.create_async(**kwargs)
        except TwilioRestException as e:
            return _classify(e, _last_headers.get())
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            return SendResult.transient(f"twilio unreachable: {type(e).__name__}")
        return SendResult.accepted(str(created.sid))

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
