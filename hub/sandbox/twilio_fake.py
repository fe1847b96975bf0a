"""Fake of Twilio's Programmable Messaging REST API (2010-04-01) and its webhooks.

Mounted under ``{prefix}/twilio``, so that twilio-python works unchanged once its origin
``https://api.twilio.com`` is rewritten to ``http://HOST:PORT{prefix}/twilio``:

``POST {prefix}/twilio/2010-04-01/Accounts/{AccountSid}/Messages.json``
    Create a message (form fields ``To``, ``From`` or ``MessagingServiceSid``, ``Body``,
    ``MediaUrl`` (repeatable), ``StatusCallback``). HTTP Basic auth with the account SID and
    auth token. Answers ``201`` with a Message resource, or a Twilio error document
    ``{"code", "message", "more_info", "status"}`` (20003 auth, 21211 invalid ``To``, 21602
    missing body, 21603 missing sender, 21604 missing ``To``, 21617 body too long).
``GET {prefix}/twilio/2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json``
    Fetch a message with its latest status (20404 when unknown).
``GET {prefix}/twilio/2010-04-01/Accounts/{AccountSid}/Messages.json``
    List the messages created through the API, newest first, as Twilio pages them
    (``messages``, ``page``, ``page_size``, ``start``, ``end``, ``uri``, ``first_page_uri``,
    ``next_page_uri``, ``previous_page_uri``). Filters: ``To``, ``From`` (exact), and
    ``DateSent``, ``DateSent<``, ``DateSent>`` (on or before / on or after; a ``YYYY-MM-DD``
    date compares sent dates, a ``YYYY-MM-DDTHH:MM:SSZ`` time compares sent times, as
    twilio-python's ``date_sent_before`` / ``date_sent_after`` send them). A message not yet
    sent has no sent date and no ``DateSent`` filter matches it. Paging: ``PageSize`` (default
    50, at most 1000), ``Page``, ``PageToken`` (``PA``/``PB`` and a message SID, as in the
    page URIs).

When the sandbox sends status callbacks, a background task moves every accepted message to
``sent`` and then ``delivered`` (``callback_delay`` seconds apart) and, if the message had a
``StatusCallback``, POSTs Twilio's callback fields there, signed with ``X-Twilio-Signature``
(see ``twilio_webhooks``, which also simulates phones texting and calling the hub).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from multidict import MultiDictProxy

from channels.segments import count_segments

from ..masking import mask_phone
from ._formats import new_sid, rfc2822, utcnow
from ._lost import drop_connection, lose_answer
from ._outbound import Outbound
from .faults import ACCEPTING, MODES, Faults
from .ledger import Ledger, LedgerEntry
from .twilio_webhooks import API_VERSION, TwilioWebhooks
from .whatsapp_fake import PREFIX, bare, ledger_address, lifecycle, template_body

__all__ = ["SANDBOX_POOL_NUMBER", "TwilioFake"]

logger = logging.getLogger(__name__)

# Sender used when a message names only a Messaging Service (Twilio's "valid" test number).
SANDBOX_POOL_NUMBER = "+15005550006"
MAX_BODY_CHARS = 1600
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
# Faults a request that creates nothing consumes: all but those that accept a message first.
_READ_FAULTS = tuple(m for m in MODES if m not in ACCEPTING)
_DATE_FILTERS = ("DateSent", "DateSent<", "DateSent>")

_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
_CHANNEL_PREFIX = re.compile(r"^(whatsapp|messenger|rcs):")


def twilio_error(status: int, code: int, message: str, *, headers: Mapping[str, str] | None = None) -> web.Response:
    """A Twilio REST error document, as twilio-python turns into ``TwilioRestException``."""
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return web.json_response(body, status=status, headers=headers)


def _basic_credentials(header: str) -> tuple[str, str] | None:
    """(user, password) of an ``Authorization: Basic`` header, or ``None``.

    Parsed by hand: ``aiohttp.BasicAuth`` (even ``.decode``) is deprecated in aiohttp 3.14 and
    warns.
    """
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def _is_valid_address(value: str) -> bool:
    return bool(_E164.match(_CHANNEL_PREFIX.sub("", value, count=1)))


@dataclass(frozen=True)
class _Draft:
    """The fields of a create-message request that the fake looks at."""

    to: str
    sender: str | None
    service_sid: str | None
    body: str
    media_urls: tuple[str, ...]
    callback_url: str | None
    content_sid: bool
    content: str | None = None  # the ContentSid itself
    variables: str = ""  # ContentVariables (JSON)

    @classmethod
    def read(cls, form: MultiDictProxy[Any]) -> _Draft:
        return cls(
            to=str(form.get("To", "")).strip(),
            sender=str(form.get("From", "")).strip() or None,
            service_sid=str(form.get("MessagingServiceSid", "")).strip() or None,
            body=str(form.get("Body", "")),
            media_urls=tuple(str(u) for u in form.getall("MediaUrl", [])),
            callback_url=str(form.get("StatusCallback", "")).strip() or None,
            content_sid=bool(form.get("ContentSid")),
            content=str(form.get("ContentSid", "")).strip() or None,
            variables=str(form.get("ContentVariables", "")),
        )


class TwilioFake:
    """State and request handlers of the Twilio fake."""

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        ledger: Ledger,
        faults: Faults,
        outbound: Outbound,
        webhooks: TwilioWebhooks,
        status_callbacks: bool = True,
        callback_delay: float = 0.05,
        invalid_numbers: frozenset[str] = frozenset(),
        failing_numbers: Mapping[str, int] | None = None,
    ) -> None:
        self.account_sid = account_sid
        # Numbers whose messages are accepted, then reported undelivered with this error code.
        self.failing_numbers: dict[str, int] = dict(failing_numbers or {})
        self.auth_token = auth_token
        self.status_callbacks = status_callbacks
        self.callback_delay = callback_delay
        self.invalid_numbers = invalid_numbers
        self._ledger = ledger
        self._faults = faults
        self._outbound = outbound
        self._webhooks = webhooks
        self._messages: dict[str, dict[str, Any]] = {}
        self._entries: dict[str, LedgerEntry] = {}

    # -- wiring ---------------------------------------------------------------------------

    def add_routes(self, app: web.Application, prefix: str) -> None:
        base = f"{prefix}/twilio/{API_VERSION}/Accounts/{{account_sid}}"
        app.router.add_post(f"{base}/Messages.json", self.handle_create)
        app.router.add_get(f"{base}/Messages.json", self.handle_list)
        app.router.add_get(f"{base}/Messages/{{sid}}.json", self.handle_fetch)

    # -- REST API -------------------------------------------------------------------------

    def _resource_uri(self, sid: str | None = None) -> str:
        base = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages"
        return f"{base}.json" if sid is None else f"{base}/{sid}.json"

    def _check_auth(self, request: web.Request) -> web.Response | None:
        credentials = _basic_credentials(request.headers.get("Authorization", ""))
        if (
            credentials is None
            or not hmac.compare_digest(credentials[0].encode(), self.account_sid.encode())
            or not hmac.compare_digest(credentials[1].encode(), self.auth_token.encode())
        ):
            return twilio_error(401, 20003, "Authenticate", headers={"WWW-Authenticate": 'Basic realm="Twilio API"'})
        if request.match_info["account_sid"] != self.account_sid:
            return twilio_error(404, 20404, f"The requested resource {request.path} was not found")
        return None

    async def _fault(self, request: web.Request, modes: Collection[str] = _READ_FAULTS) -> web.Response | None:
        mode = self._faults.take("twilio", modes)
        if mode is None:
            return None
        if mode == "drop":
            return drop_connection(request)
        if mode == "500":
            return twilio_error(500, 20500, "An internal server error has occurred")
        if mode == "429":
            return twilio_error(429, 20429, "Too Many Requests", headers={"Retry-After": "1"})
        if mode == "timeout":
            await self._faults.stall()
            return twilio_error(504, 20504, "Gateway timeout")
        return twilio_error(503, 20503, "Service unavailable")

    async def _refuse(self, request: web.Request) -> web.Response | None:
        """The answer to a request a fault or its credentials fail, or ``None`` to serve it."""
        failed = await self._fault(request)
        return failed if failed is not None else self._check_auth(request)

    async def handle_create(self, request: web.Request) -> web.Response:
        failed = await self._refuse(request)
        if failed is not None:
            return failed
        draft = _Draft.read(await request.post())
        rejected = self._reject(draft)
        if rejected is not None:
            return rejected
        resource = self._accept(draft)
        if self.status_callbacks:
            sid = resource["sid"]
            self._outbound.spawn(self._progress(sid, draft.callback_url), name=f"twilio-status-{sid}")
        answer = web.json_response(resource, status=201, headers=self._response_headers())
        lost = self._faults.take("twilio", ACCEPTING)
        return answer if lost is None else await lose_answer(request, lost, self._faults, answer)

    def _reject(self, draft: _Draft) -> web.Response | None:
        """Twilio's error for a message it would not create, or ``None``."""
        to, sender = draft.to, draft.sender
        if not to:
            return twilio_error(400, 21604, "A 'To' phone number is required.")
        if sender is None and draft.service_sid is None:
            return twilio_error(400, 21603, "A 'From' phone number is required.")
        if not draft.body and not draft.media_urls and not draft.content_sid:
            return twilio_error(400, 21602, "Message body is required.")
        if len(draft.body) > MAX_BODY_CHARS:
            return twilio_error(400, 21617, "The concatenated message body exceeds the 1600 character limit.")
        if (to.startswith(PREFIX)) != bool(sender and sender.startswith(PREFIX)) and draft.service_sid is None:
            return twilio_error(400, 21910, "Invalid From and To pair. From and To should be of the same channel")
        if draft.content and template_body(draft.variables) is None:
            return twilio_error(400, 21656, "The ContentVariables Parameter is invalid.")
        if not _is_valid_address(to) or bare(to) in self.invalid_numbers:
            logger.info("twilio: rejecting invalid number %s", mask_phone(to))
            return twilio_error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if sender is not None and not _is_valid_address(sender) and not sender.replace(" ", "").isalnum():
            return twilio_error(400, 21212, f"The 'From' number {sender} is not a valid phone number.")
        return None

    def _accept(self, draft: _Draft) -> dict[str, Any]:
        """Create the Message resource for ``draft``, record it in the ledger, return it."""
        sid = new_sid("MM" if draft.media_urls else "SM")
        now = rfc2822(utcnow())
        body = (template_body(draft.variables) or "") if draft.content else draft.body
        account = f"/{API_VERSION}/Accounts/{self.account_sid}"
        resource: dict[str, Any] = {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": draft.sender,
            "messaging_service_sid": draft.service_sid,
            "num_media": str(len(draft.media_urls)),
            "num_segments": str(count_segments(body).segments),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued" if draft.sender is not None else "accepted",
            "subresource_uris": {
                "media": f"{account}/Messages/{sid}/Media.json",
                "feedback": f"{account}/Messages/{sid}/Feedback.json",
            },
            "to": draft.to,
            "uri": self._resource_uri(sid),
        }
        self._messages[sid] = resource
        meta = {
            "direction": "outbound-api",
            "status": resource["status"],
            "status_callback": draft.callback_url,
            "messaging_service_sid": draft.service_sid,
            "media_urls": list(draft.media_urls),
        }
        if draft.content:
            meta |= {"content_sid": draft.content, "content_variables": json.loads(draft.variables or "{}")}
        channel, to = ledger_address(draft.to)
        sender = ledger_address(draft.sender)[1]
        entry = LedgerEntry(channel=channel, to=to, from_=sender, text=body, provider_id=sid, meta=meta)
        self._entries[sid] = self._ledger.record(entry)
        logger.info("twilio: accepted %s to %s", sid, mask_phone(draft.to))
        return resource

    async def handle_list(self, request: web.Request) -> web.Response:
        failed = await self._refuse(request)
        if failed is not None:
            return failed
        query = request.query
        try:
            size = int(query.get("PageSize", DEFAULT_PAGE_SIZE))
            page = int(query.get("Page", 0))
            dates = {name: _date_filter(query[name]) for name in _DATE_FILTERS if name in query}
        except ValueError as e:
            return twilio_error(400, 20001, f"Invalid parameter: {e}")
        if not 1 <= size <= MAX_PAGE_SIZE or page < 0:
            return twilio_error(400, 20001, f"PageSize must be 1 to {MAX_PAGE_SIZE} and Page not negative")
        found = [
            m
            for m in reversed(self._messages.values())
            if query.get("To") in (None, m["to"])
            and query.get("From") in (None, m["from"])
            and all(_sent_matches(m["date_sent"], name, wanted) for name, wanted in dates.items())
        ]
        start = page * size
        token = query.get("PageToken", "")
        sids = [m["sid"] for m in found]
        if token[2:] in sids:
            at = sids.index(token[2:])
            start = at + 1 if token.startswith("PA") else max(0, at - size)
        chunk = found[start : start + size]
        filters = [(k, v) for k, v in query.items() if k in ("To", "From", *_DATE_FILTERS)]

        def page_uri(number: int, page_token: str | None = None) -> str:
            params = [*filters, ("PageSize", str(size)), ("Page", str(number))]
            if page_token:
                params.append(("PageToken", page_token))
            return f"{self._resource_uri()}?{urlencode(params)}"

        more = start + size < len(found)
        body = {
            "messages": chunk,
            "page": page,
            "page_size": size,
            "start": start,
            "end": start + max(len(chunk) - 1, 0),
            "uri": page_uri(page, token or None),
            "first_page_uri": page_uri(0),
            "next_page_uri": page_uri(page + 1, "PA" + chunk[-1]["sid"]) if chunk and more else None,
            "previous_page_uri": page_uri(page - 1, "PB" + chunk[0]["sid"]) if chunk and start > 0 else None,
        }
        return web.json_response(body, headers=self._response_headers())

    async def handle_fetch(self, request: web.Request) -> web.Response:
        failed = await self._refuse(request)
        if failed is not None:
            return failed
        resource = self._messages.get(request.match_info["sid"])
        if resource is None:
            return twilio_error(404, 20404, f"The requested resource {request.path} was not found")
        return web.json_response(resource, headers=self._response_headers())

    @staticmethod
    def _response_headers() -> dict[str, str]:
        return {"Twilio-Request-Id": new_sid("RQ"), "Twilio-Concurrent-Requests": "1"}

    # -- status lifecycle and callbacks ---------------------------------------------------

    async def _progress(self, sid: str, callback_url: str | None) -> None:
        first = self._messages.get(sid)
        error_code = self.failing_numbers.get(bare(str(first["to"]))) if first else None
        for status in lifecycle(str(first["to"]) if first else "", bool(error_code)):
            await asyncio.sleep(self.callback_delay)
            resource = self._messages.get(sid)
            if resource is None:
                return
            if status == "undelivered":
                resource["error_code"] = error_code
                resource["error_message"] = "Unknown destination handset" if error_code == 30005 else "Undelivered"
            now = rfc2822(utcnow())
            if resource["from"] is None:
                resource["from"] = SANDBOX_POOL_NUMBER
            if status == "sent":
                resource["date_sent"] = now
            resource["status"] = status
            resource["date_updated"] = now
            entry = self._entries.get(sid)
            if entry is not None:
                entry.meta["status"] = status
            if callback_url is None:
                continue
            params = {
                "MessageSid": sid,
                "SmsSid": sid,
                "AccountSid": self.account_sid,
                "From": str(resource["from"]),
                "To": str(resource["to"]),
                "MessageStatus": status,
                "SmsStatus": status,
                "ApiVersion": API_VERSION,
            }
            if status == "undelivered" and error_code:
                params["ErrorCode"] = str(error_code)
            if resource["messaging_service_sid"]:
                params["MessagingServiceSid"] = str(resource["messaging_service_sid"])
            await self._webhooks.post(callback_url, params, what=f"status callback ({status}) for {sid}")


def _date_filter(value: str) -> date | datetime:
    """A ``DateSent`` filter's value: a date, or a UTC time as twilio-python writes it."""
    if "T" in value:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    return date.fromisoformat(value)


def _sent_matches(date_sent: str | None, name: str, wanted: date | datetime) -> bool:
    """Whether a message sent at ``date_sent`` (RFC 2822, or ``None``: not sent yet) passes the
    ``DateSent`` filter ``name`` (``DateSent``, ``DateSent<``, ``DateSent>``)."""
    if date_sent is None:
        return False
    sent = parsedate_to_datetime(date_sent).astimezone(UTC)
    if isinstance(wanted, datetime):
        if name == "DateSent":
            return sent.date() == wanted.date()
        return sent <= wanted if name == "DateSent<" else sent >= wanted
    day = sent.date()
    if name == "DateSent":
        return day == wanted
    return day <= wanted if name == "DateSent<" else day >= wanted
