"""API keys created at run time (`hub keys create|list|revoke`), kept hashed in Redis.

Keys from config (``api.keys``, ``HUB_API_KEY``, ``HUB_ADMIN_API_KEY``) are checked first;
``KeyRing.find`` looks up the rest by their SHA-256 digest, in one Redis round trip.

Redis keys (built in ``hub.keys``):

- ``hub:apikey:{sha256}``  hash: id, source, scopes (space-separated), prefix (the key's first
  8 characters, for recognising it), created_at, revoked_at (set once revoked). No TTL: a revoked
  key's record stays, so ``hub keys list`` shows when it was revoked.
- ``hub:apikeys``          hash: key id -> SHA-256 digest (listing and revoking by id). No TTL.

The key itself is shown once, by ``create``, and never stored.

Exceptions::

    ValueError
     └── InvalidKeySpec      bad source or scope (the CLI answers with exit code 2)
    LookupError
     └── UnknownKeyId        no key with that id
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import ValidationError
from redis.asyncio import Redis

from . import keys, lua_records
from .config import hash_key
from .config_sections import ApiKey

__all__ = ["SCOPES", "CreatedKey", "InvalidKeySpec", "KeyRing", "StoredKey", "UnknownKeyId"]

SCOPES = ("events", "read", "erase", "admin")
"""events: post events, manage customers; read: the GET views; erase: erase customers (``DELETE
/v1/customers/{id}``, destructive and irreversible, so never part of an everyday key); admin:
unmasked views, replays."""
DEFAULT_SCOPES = ("events", "read")
KEY_PREFIX = "hub_"


class InvalidKeySpec(ValueError):
    """The source name or a scope is not acceptable."""


class UnknownKeyId(LookupError):
    """No stored API key has this id."""


@dataclass(frozen=True)
class StoredKey:
    """What ``hub keys list`` shows about a key: never the key itself."""

    id: str
    source: str
    scopes: tuple[str, ...]
    prefix: str
    created_at: str
    revoked_at: str | None


@dataclass(frozen=True)
class CreatedKey:
    """A new key: ``secret`` is the only copy of the key there will ever be."""

    secret: str
    key: StoredKey


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def check_scopes(scopes: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The scopes, de-duplicated in order; ``InvalidKeySpec`` names any unknown one."""
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise InvalidKeySpec(f"unknown scope {unknown[0]!r}; a scope is one of {', '.join(SCOPES)}")
    return tuple(dict.fromkeys(scopes)) or DEFAULT_SCOPES


class KeyRing:
    """The API keys stored in Redis."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def find(self, digest: str) -> ApiKey | None:
        """The live (not revoked) key whose SHA-256 hex digest is ``digest``, or None."""
        raw: dict[str, str] = await self.redis.hgetall(keys.api_key(digest))
        if not raw or raw.get("revoked_at") or not raw.get("source"):
            return None
        return ApiKey(source=raw["source"], sha256=digest, scopes=tuple(raw.get("scopes", "").split()))

    async def create(self, source: str, scopes: list[str] | tuple[str, ...] = DEFAULT_SCOPES) -> CreatedKey:
        """Make a key for ``source`` with ``scopes``; store only its digest."""
        chosen = check_scopes(scopes)
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        digest = hash_key(secret)
        try:
            ApiKey(source=source, sha256=digest, scopes=chosen)
        except ValidationError as e:
            raise InvalidKeySpec(
                f"invalid source {source!r}: use 1-64 letters, digits or _.- (the name of the upstream system)"
            ) from e
        stored = StoredKey(
            id="key_" + secrets.token_hex(6),
            source=source,
            scopes=chosen,
            prefix=secret[:8],
            created_at=_now(),
            revoked_at=None,
        )
        fields = {
            "id": stored.id,
            "source": source,
            "scopes": " ".join(chosen),
            "prefix": stored.prefix,
            "created_at": stored.created_at,
        }
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.api_key(digest), mapping=fields)
            pipe.hset(keys.api_key_index(), stored.id, digest)
            await pipe.execute()
        return CreatedKey(secret=secret, key=stored)

    async def list_keys(self) -> list[StoredKey]:
        """Every stored key, revoked ones too, oldest first."""
        index: dict[str, str] = await self.redis.hgetall(keys.api_key_index())
        async with self.redis.pipeline(transaction=False) as pipe:
            for digest in index.values():
                pipe.hgetall(keys.api_key(digest))
            records: list[dict[str, str]] = await pipe.execute()
        out = [
            StoredKey(
                id=r["id"],
                source=r.get("source", ""),
                scopes=tuple(r.get("scopes", "").split()),
                prefix=r.get("prefix", ""),
                created_at=r.get("created_at", ""),
                revoked_at=r.get("revoked_at") or None,
            )
            for r in records
            if r.get("id")
        ]
        return sorted(out, key=lambda k: (k.created_at, k.id))

    async def revoke(self, key_id: str) -> bool:
        """Revoke at once (the next request with it gets 401). False if it was revoked already."""
        result = await self.redis.eval(lua_records.REVOKE_API_KEY, 1, keys.api_key_index(), key_id, _now())
        if int(result) == 0:
            raise UnknownKeyId(f"no API key with id {key_id!r} (see `hub keys list`)")
        return int(result) == 1
