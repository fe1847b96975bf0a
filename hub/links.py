"""Signed links placed in messages. Tokens carry opaque ids only, never personal data.

Tracking links (``/t/<token>``) must fit in an SMS, so the token is 12 characters: a 6-character
link id derived from the delivery and customer ids with a keyed hash, then a 6-character tag,
the start of the itsdangerous signature (HMAC-SHA256 over a salted derived key) of that id.
A forged or altered token fails the tag check without touching Redis. What the id points to
lives in Redis (``hub:link:{id}``) with the link's expiry: an expired link answers 410, and
erasing the customer deletes it (revoked, 410 too).
"""

from __future__ import annotations

import hashlib
import hmac
import string

from itsdangerous import BadSignature, Signer, URLSafeSerializer

__all__ = ["TOKEN_LENGTH", "Links"]

TOKEN_LENGTH = 12
_ALPHABET = string.digits + string.ascii_letters


def _base62(data: bytes, length: int) -> str:
    number, out = int.from_bytes(data, "big"), []
    for _ in range(length):
        number, digit = divmod(number, 62)
        out.append(_ALPHABET[digit])
    return "".join(out)


class Links:
    def __init__(self, secret_key: str, public_url: str) -> None:
        self._unsubscribe = URLSafeSerializer(secret_key, salt="unsubscribe")
        self.public_url = public_url.rstrip("/")
        self._receipt_key = hashlib.sha256(b"push-receipt\x1f" + secret_key.encode()).digest()
        self._link_key = hashlib.sha256(b"tracking-link\x1f" + secret_key.encode()).digest()
        self._track = Signer(secret_key, salt="tracking-link", digest_method=hashlib.sha256)

    def link_id(self, delivery_id: str, customer_id: str) -> str:
        """The same id for every message of a delivery to a customer: one page, one link."""
        digest = hmac.new(self._link_key, f"{delivery_id}\x1f{customer_id}".encode(), hashlib.sha256).digest()
        return _base62(digest, TOKEN_LENGTH // 2)

    def _tag(self, link_id: str) -> str:
        signature = self._track.get_signature(link_id).decode()
        return "".join(c for c in signature if c.isalnum())[: TOKEN_LENGTH // 2]

    def tracking_token(self, link_id: str) -> str:
        return link_id + self._tag(link_id)

    def tracking_url(self, link_id: str) -> str:
        return f"{self.public_url}/t/{self.tracking_token(link_id)}"

    def tracking_link_id(self, token: str) -> str | None:
        """The link id of a well-formed, untampered token; None otherwise."""
        if len(token) != TOKEN_LENGTH or not (token.isascii() and token.isalnum()):
            return None
        link_id, tag = token[: TOKEN_LENGTH // 2], token[TOKEN_LENGTH // 2 :]
        return link_id if hmac.compare_digest(self._tag(link_id), tag) else None

    def unsubscribe_url(self, customer_id: str) -> str:
        """A one-click e-mail unsubscribe link; the token carries only the customer's id."""
        return f"{self.public_url}/u/{self._unsubscribe.dumps(customer_id)}"

    def unsubscribe_customer_id(self, token: str) -> str | None:
        try:
            value = self._unsubscribe.loads(token)
        except BadSignature:
            return None
        return value if isinstance(value, str) else None

    def receipt_token(self, message_id: str) -> str:
        """Sent in a push's data; the app posts it back to confirm the push was shown."""
        return hmac.new(self._receipt_key, message_id.encode(), hashlib.sha256).hexdigest()[:32]

    def receipt_valid(self, message_id: str, token: str) -> bool:
        # Bytes: compare_digest refuses str with non-ASCII characters (a 500 found by schemathesis).
        return hmac.compare_digest(self.receipt_token(message_id).encode(), token.encode())
