"""API keys created at run time (`hub keys create|list|revoke`), kept hashed in Redis.

Keys from config (``api.keys``, ``HUB_API_KEY``, ``HUB_ADMIN_API_KEY``) are checked first;
``KeyRing.find`` looks up the rest by their SHA-256 digest.
"""

from __future__ import annotations

from redis.asyncio import Redis

from .config import ApiKey

__all__ = ["KeyRing"]


class KeyRing:
    """The API keys stored in Redis."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def find(self, digest: str) -> ApiKey | None:
        """The live (not revoked) key whose SHA-256 hex digest is ``digest``, or None."""
        return None
