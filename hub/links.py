"""Signed links placed in messages. Tokens carry opaque ids only, never personal data.

Tracking links (``/t/<token>``) must fit in an SMS, so the token is 12 characters: a 6-character
link id, then a 6-character tag, the start of the itsdangerous signature (HMAC-SHA256 over a
salted derived key) of that id. A forged or altered token fails the tag check without touching
Redis. What the id points to lives in Redis (``hub:link:{id}``) with the link's expiry: an
expired link answers 410, and erasing the customer deletes it (revoked, 410 too).

Link ids are unique by allocation, not by length: six base62 characters (~36 bits) collide
somewhere among a few hundred thousand live links. ``link_ids`` gives a delivery and customer
their candidate ids in a fixed order (a keyed hash of the pair, then of the pair and a counter),
and ``HubStore.ensure_link`` takes the first candidate that is already theirs or still free,
never one that belongs to another delivery or customer. The same pair gets the same link in
every message; a pair whose first candidate was taken gets its second, and so on. The length
stays at 12 because the SMS templates have no room for more (docs/self-service.md).
"""

from __future__ import annotations

import hashlib
import hmac
import string

from itsdangerous import BadSignature, Signer, URLSafeSerializer

__all__ = ["LINK_CANDIDATES", "LINK_ID_LENGTH", "TOKEN_LENGTH", "Links"]

LINK_ID_LENGTH = 6
TAG_LENGTH = 6
TOKEN_LENGTH = LINK_ID_LENGTH + TAG_LENGTH
# Candidate ids per delivery and customer. At 300,000 live links the first is taken by another
# link about once in 190,000 new links; all eight, never in practice (ensure_link then answers
# None and the message goes out without a link).
LINK_CANDIDATES = 8
_ALPHABET = string.digits + string.ascii_letters


def _base62(data: bytes, length: int) -> str:
    number, out = int.from_bytes(data, "big"), []
    for _ in range(length):
        number, digit = divmod(number, 62)
        out.append(_ALPHABET[digit])
    return "".join(out)


class Links:
    def __init__(self, secret_key: str, public_url: str, *, id_length: int = LINK_ID_LENGTH) -> None:
        self._unsubscribe = URLSafeSerializer(secret_key, salt="unsubscribe")
        self.public_url = public_url.rstrip("/")
        self._receipt_key = hashlib.sha256(b"push-receipt\x1f" + secret_key.encode()).digest()
        self._link_key = hashlib.sha256(b"tracking-link\x1f" + secret_key.encode()).digest()
        self._track = Signer(secret_key, salt="tracking-link", digest_method=hashlib.sha256)
        self.id_length = id_length  # other than LINK_ID_LENGTH only in tests (collisions on demand)

    def link_id(self, delivery_id: str, customer_id: str, attempt: int = 0) -> str:
        """The ``attempt``-th candidate id of a delivery's link for a customer (see link_ids)."""
        message = f"{delivery_id}\x1f{customer_id}" + (f"\x1f{attempt}" if attempt else "")
        digest = hmac.new(self._link_key, message.encode(), hashlib.sha256).digest()
        return _base62(digest, self.id_length)

    def link_ids(self, delivery_id: str, customer_id: str) -> list[str]:
        """The candidate ids, in the order HubStore.ensure_link tries them: the same list for every
        message of a delivery to a customer, so it keeps one page and one link."""
        return list(dict.fromkeys(self.link_id(delivery_id, customer_id, n) for n in range(LINK_CANDIDATES)))

    def _tag(self, link_id: str) -> str:
        signature = self._track.get_signature(link_id).decode()
        return "".join(c for c in signature if c.isalnum())[:TAG_LENGTH]

    def tracking_token(self, link_id: str) -> str:
        return link_id + self._tag(link_id)

    def tracking_url(self, link_id: str) -> str:
        return f"{self.public_url}/t/{self.tracking_token(link_id)}"

    def tracking_link_id(self, token: str) -> str | None:
        """The link id of a well-formed, untampered token; None otherwise."""
        if len(token) != self.id_length + TAG_LENGTH or not (token.isascii() and token.isalnum()):
            return None
        link_id, tag = token[: self.id_length], token[self.id_length :]
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
