"""Signed links placed in messages. Tokens carry opaque ids only, never personal data."""

from __future__ import annotations

import hashlib
import hmac

from itsdangerous import BadSignature, URLSafeSerializer

__all__ = ["Links"]


class Links:
    def __init__(self, secret_key: str, public_url: str) -> None:
        self._unsubscribe = URLSafeSerializer(secret_key, salt="unsubscribe")
        self.public_url = public_url.rstrip("/")
        self._receipt_key = hashlib.sha256(b"push-receipt\x1f" + secret_key.encode()).digest()

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
        return hmac.compare_digest(self.receipt_token(message_id), token)
