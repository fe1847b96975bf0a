"""The one place that hides personal data in logs and masked API views."""

from __future__ import annotations

import re

__all__ = ["mask", "mask_email", "mask_numbers", "mask_phone", "mask_token"]


def mask_phone(value: str | None) -> str | None:
    """``+4915112345678`` -> ``+49*******5678``."""
    if not value:
        return value
    keep = 4 if len(value) > 8 else 2
    head = value[:3] if value.startswith("+") else ""
    return head + "*" * max(len(value) - len(head) - keep, 1) + value[-keep:]


def mask_email(value: str | None) -> str | None:
    """``ana.weber@example.com`` -> ``a***@example.com``."""
    if not value or "@" not in value:
        return value
    local, _, domain = value.rpartition("@")
    return f"{local[:1]}***@{domain}"


def mask_token(value: str | None) -> str | None:
    if not value:
        return value
    return value[:4] + "…" if len(value) > 8 else "…"


_NUMBERS = re.compile(r"\+?\d[\d ()-]{6,}\d")
_EMAILS = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def mask_numbers(text: str) -> str:
    """Mask phone numbers and e-mail addresses inside free text (provider error messages)."""
    text = _NUMBERS.sub(lambda m: mask_phone(m.group(0).replace(" ", "")) or "", text)
    return _EMAILS.sub(lambda m: mask_email(m.group(0)) or "", text)


def mask(channel: str, value: str | None) -> str | None:
    if channel == "sms":
        return mask_phone(value)
    if channel == "email":
        return mask_email(value)
    return mask_token(value)
