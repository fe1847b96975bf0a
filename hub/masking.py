"""The one place that hides personal data in logs and masked API views.

The API's masked views, the log lines of the hub and of the sandbox's provider fakes, and the
reasons stored with a failed message all go through these helpers, so a number or an address
is hidden the same way wherever it shows.
"""

from __future__ import annotations

import re

__all__ = ["mask", "mask_email", "mask_numbers", "mask_phone", "mask_token"]


def mask_phone(value: str | None) -> str | None:
    """``+4915112345678`` -> ``+49*******5678``; ``whatsapp:+4915112345678`` ->
    ``whatsapp:+49*******5678``.

    A long number keeps its country code and last four digits. A short one (eight characters or
    fewer: a test number, a typo) keeps only its last two, and one of four or fewer nothing, so
    the mask always hides most of it.
    """
    if not value:
        return value
    channel, sep, number = value.rpartition(":")
    if sep:  # a channel address: the channel is not personal, the number is
        return f"{channel}:{mask_phone(number) or ''}"
    if len(number) <= 8:
        keep = 2 if len(number) > 4 else 0
        return "*" * (len(number) - keep) + number[len(number) - keep :]
    head = number[:3] if number.startswith("+") else ""
    return head + "*" * (len(number) - len(head) - 4) + number[-4:]


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
    if channel in ("sms", "whatsapp"):
        return mask_phone(value)
    if channel == "email":
        return mask_email(value)
    return mask_token(value)
