"""API keys on requests: ``authenticate(request, scope)`` and the client address it counts by.

A key is looked up among the configured keys (``api.keys``, ``HUB_API_KEY``) and then in the
key ring (``hub keys create``); the digest is compared in constant time. Failed attempts are
counted per client address and per presented key, each in a one-minute window; past
``api.auth_failures_per_minute`` either answers 429 with Retry-After. Only failures are counted,
so no one's wrong keys ever stop a valid key.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re

from aiohttp import web
from redis.exceptions import RedisError

from . import keys
from .apikeys import KEY_PREFIX
from .appkeys import KEYRING, REDIS, SETTINGS, TRUSTED_PROXIES
from .config import hash_key
from .config_sections import ApiKey
from .errors import ApiError

__all__ = ["TooManyFailures", "authenticate", "check_key", "client_address"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TooManyFailures(ApiError):
    """A 429 for a client or a key over ``api.auth_failures_per_minute``, with its Retry-After."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(429, "too_many_failures", f"too many requests with a wrong API key; retry in {retry_after} s")
        self.retry_after = retry_after


def _ip(text: str) -> IPAddress | None:
    """An address as written in X-Forwarded-For (also ``1.2.3.4:port`` and ``[v6]:port``)."""
    text = text.strip()
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def client_address(request: web.Request) -> str:
    """The client's address: the connection's, or, when that is a trusted proxy
    (``api.trusted_proxies``), the nearest address in X-Forwarded-For that is not one; addresses a
    client wrote into the header itself, left of those the proxies appended, are never read."""
    peer = request.remote or "unknown"
    proxies = request.app[TRUSTED_PROXIES]
    address = _ip(peer)
    if not proxies or address is None or not any(address in net for net in proxies):
        return peer
    hops = ",".join(request.headers.getall("X-Forwarded-For", [])).split(",")
    for hop in reversed(hops):
        seen = _ip(hop)
        if seen is None:
            break  # the proxy wrote no address: the client is unknown, the proxy counts
        address = seen
        if not any(address in net for net in proxies):
            break
    return str(address)


def _credential_ref(token: str) -> str:
    """What a presented key is counted under: a digest (never the key), after the key's public id
    prefix for keys made by `hub keys create` (the prefix `hub keys list` shows)."""
    digest = hashlib.sha256(b"auth-failure\x1f" + token.encode()).hexdigest()[:32]
    prefix = token[:8] if token.startswith(KEY_PREFIX) and re.fullmatch(r"[A-Za-z0-9_-]{8}", token[:8]) else ""
    return f"{prefix}:{digest}" if prefix else digest


async def _refuse(request: web.Request, token: str, message: str) -> ApiError:
    """Count a failed authentication per client address and per presented key, each in a one-minute
    window; the 401, or a 429 once either is over ``api.auth_failures_per_minute``. Only failures
    are counted and only they are refused, so no one's wrong keys ever stop a valid key."""
    settings = request.app[SETTINGS]
    counters = [keys.auth_failures(f"addr:{client_address(request)}")]
    if token:
        counters.append(keys.auth_failures(f"key:{_credential_ref(token)}"))
    try:
        async with request.app[REDIS].pipeline(transaction=True) as pipe:
            for counter in counters:
                pipe.set(counter, 0, ex=60, nx=True)  # the window starts with the first failure
                pipe.incr(counter)
                pipe.ttl(counter)
            results = await pipe.execute()
    except RedisError:
        return ApiError(401, "unauthorized", message)  # nothing to count with; the answer stays right
    limit = settings.api.auth_failures_per_minute
    waits = [int(results[i + 2]) for i in range(0, len(results), 3) if int(results[i + 1]) > limit]
    if waits:
        return TooManyFailures(max(1, *waits))
    return ApiError(401, "unauthorized", message)


async def authenticate(request: web.Request, scope: str) -> ApiKey:
    """The request's API key when it is known and has ``scope``; else the 401, 403 or 429 to raise."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise await _refuse(request, "", "missing API key: send 'Authorization: Bearer <key>'")
    return await check_key(request, token, scope)


async def check_key(request: web.Request, token: str, scope: str) -> ApiKey:
    """``authenticate``'s check of a key presented some other way (the dashboard's sign-in form):
    the same lookup, and the same counting of failures against the same limit."""
    if not token:
        raise await _refuse(request, "", "missing API key")
    digest = hash_key(token)
    match = None
    for key in request.app[SETTINGS].all_keys():
        if hmac.compare_digest(key.sha256, digest):
            match = key
    if match is None:
        match = await request.app[KEYRING].find(digest)
    if match is None:
        raise await _refuse(request, token, "unknown or revoked API key")
    if scope not in match.scopes:
        raise ApiError(403, "forbidden", f"this API key lacks the {scope!r} scope")
    return match
