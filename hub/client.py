"""A small async client for upstream systems: post events to the hub, check its webhooks.

    async with HubClient("https://hub.example.com", api_key) as hub:
        answer = await hub.post_event(event)          # {"event_id": ..., "status": "accepted"}
        answers = await hub.post_events(events)       # {"results": [...], "summary": {...}}

Connection errors, timeouts, 429 and 5xx answers are retried with exponential backoff (with
jitter), waiting at least as long as the hub's ``Retry-After`` says. The request body is built
once, so every try carries the same ``event_id``s: the hub accepts an event once per source and
answers ``"duplicate"`` to a retry of one it already has (its answer to the first try may have
been lost). An event without an ``event_id`` is given one before the first try.

``verify_webhook(secret, body, header)`` checks the ``Hub-Signature`` of a webhook the hub sent
(see docs/webhooks.md); it is ``hub.signing.verify``, the recipe the hub signs with.

Exceptions::

    HubClientError
     ├── HubRequestError    the hub refused the request (4xx): status, code, message, fields, body
     └── HubUnavailable     no answer after every try: attempts, the last status or cause
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import time
import uuid
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import aiohttp

from .signing import verify

__all__ = ["HubClient", "HubClientError", "HubRequestError", "HubUnavailable", "verify_webhook"]

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class HubClientError(Exception):
    """Base of the client's errors."""


class HubRequestError(HubClientError):
    """The hub answered 4xx: the request itself is wrong (retrying would not help)."""

    def __init__(self, status: int, code: str, message: str, fields: dict[str, str], body: Any) -> None:
        details = "; ".join(f"{k}: {v}" for k, v in fields.items())
        super().__init__(f"{status} {code}: {message}" + (f" ({details})" if details else ""))
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields
        self.body = body


class HubUnavailable(HubClientError):
    """Every try failed with a connection error, a timeout, 429 or 5xx."""

    def __init__(self, attempts: int, status: int | None, reason: str) -> None:
        super().__init__(f"the hub did not take the request after {attempts} tries: {reason}")
        self.attempts = attempts
        self.status = status
        self.reason = reason


def new_event_id() -> str:
    return f"evt-{uuid.uuid4().hex}"


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def verify_webhook(secret: str, body: bytes | str, header: str | None, tolerance: int = 300) -> bool:
    """True if ``header`` (the ``Hub-Signature`` value) signs the raw ``body`` with ``secret`` and
    is at most ``tolerance`` seconds old. Pass the body exactly as received, before any parsing."""
    if not header:
        return False
    raw = body.encode() if isinstance(body, str) else body
    return verify(secret, header, raw, tolerance=tolerance)


class HubClient:
    """Posts events to a hub. Use as ``async with``, or call ``close()`` when done."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        max_attempts: int = 6,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        max_retry_after: float = 120.0,
        timeout: float = 30.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.base_url = base_url.rstrip("/")
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        self._session = session
        self._own_session = session is None

    async def __aenter__(self) -> HubClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None and self._own_session:
            await self._session.close()
        self._session = None

    async def post_event(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """POST /v1/events. Returns the hub's answer: ``{"event_id", "status"}`` with status
        ``accepted`` or ``duplicate``."""
        return await self._post("/v1/events", _with_id(event))

    async def post_events(self, events: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """POST /v1/events/batch (at most the hub's ``api.batch_limit``, 1,000 by default).

        Returns ``{"results": [...], "summary": {...}}``, also when only some events were taken
        (207: look at each result's ``status``); raises ``HubRequestError`` when none was (422)."""
        if not events:
            raise ValueError("the batch is empty")
        return await self._post("/v1/events/batch", {"events": [_with_id(e) for e in events]})

    async def _post(self, path: str, payload: Any) -> dict[str, Any]:
        body = json.dumps(payload, separators=(",", ":"), default=str).encode()  # once: same ids every try
        if self._session is None:
            self._session = aiohttp.ClientSession()
        url = self.base_url + path
        status: int | None = None
        reason = ""
        for attempt in range(1, self.max_attempts + 1):
            wait: float | None = None
            try:
                async with self._session.post(url, data=body, headers=self._headers, timeout=self.timeout) as resp:
                    status = resp.status
                    text = await resp.text()
                    if status < 400:
                        answer: dict[str, Any] = json.loads(text) if text else {}
                        return answer
                    if status not in RETRY_STATUSES:
                        raise _request_error(status, text)
                    reason = f"HTTP {status}: {text[:200]}"
                    wait = retry_after_seconds(resp.headers.get("Retry-After"))
            except (TimeoutError, aiohttp.ClientConnectionError) as e:
                status = None
                reason = f"{type(e).__name__}: {e}"
            if attempt == self.max_attempts:
                break
            await asyncio.sleep(self._delay(attempt, wait))
        raise HubUnavailable(self.max_attempts, status, reason)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        backoff = min(self.max_backoff, self.backoff * 2.0 ** (attempt - 1)) * random.uniform(0.5, 1.0)
        if retry_after is None:
            return backoff
        return max(backoff, min(retry_after, self.max_retry_after))


def _with_id(event: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(event)
    if not out.get("event_id"):
        out["event_id"] = new_event_id()
    return out


def _request_error(status: int, text: str) -> HubRequestError:
    try:
        body: Any = json.loads(text)
    except ValueError:
        body = text
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return HubRequestError(
            status,
            str(error.get("code", "error")),
            str(error.get("message", "")),
            {str(k): str(v) for k, v in (error.get("fields") or {}).items()},
            body,
        )
    if isinstance(body, dict) and isinstance(body.get("results"), list):  # a batch none of whose events was taken
        fields: dict[str, str] = {}
        for result in body["results"]:
            problem = result.get("error") or {}
            for name, message in (problem.get("fields") or {"": problem.get("message", "")}).items():
                fields[f"{result.get('index')}.{name}".rstrip(".")] = str(message)
        return HubRequestError(status, "batch_rejected", "no event of the batch was accepted", fields, body)
    return HubRequestError(status, "http_error", text[:500], {}, body)
