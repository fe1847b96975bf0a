"""Customer contacts and preferences: models, validation and the Redis-backed store."""

from __future__ import annotations

from .model import CHANNELS, Contact, Instructions, Preferences, QuietHours
from .store import CONTACT_FIELDS, CustomerRecord, CustomerStore
from .validation import check_email, check_phone, check_timezone, normalize_locale

__all__ = [
    "CHANNELS",
    "CONTACT_FIELDS",
    "Contact",
    "CustomerRecord",
    "CustomerStore",
    "Instructions",
    "Preferences",
    "QuietHours",
    "check_email",
    "check_phone",
    "check_timezone",
    "normalize_locale",
]
