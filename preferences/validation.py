"""Contact validation shared by events, the customer API and imports.

Each check returns the normalized value or raises ``ValueError`` with a message meant for the
API's field errors (pydantic turns it into one).
"""

from __future__ import annotations

from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import phonenumbers
from babel import Locale, UnknownLocaleError
from email_validator import EmailNotValidError, validate_email

__all__ = ["check_email", "check_phone", "check_timezone", "normalize_locale", "phone_region"]


def check_phone(value: str, region: str) -> str:
    """Parse with phonenumbers (``region`` for national formats) and return E.164."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("phone number is empty")
    try:
        parsed = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException as e:
        raise ValueError(f"not a phone number ({e._msg})") from e
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError(f"not a valid phone number for region {phonenumbers.region_code_for_number(parsed) or region}")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def check_email(value: str) -> str:
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError as e:
        raise ValueError(f"not a valid e-mail address: {e}") from e
    return str(result.normalized)


@cache
def _zone_names() -> frozenset[str]:
    """The zones zoneinfo lists. It also loads the posix/ and right/ copies and posixrules, which
    are no zone names (and reads right/ ones wrongly: right/Europe/Berlin keeps summer time)."""
    return frozenset(available_timezones())


def check_timezone(value: str) -> str:
    if not isinstance(value, str) or not value or value.startswith(("/", ".")) or ".." in value:
        raise ValueError("not an IANA time zone name")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError(f"unknown IANA time zone {value!r}") from e
    if value not in _zone_names():
        raise ValueError(f"unknown IANA time zone {value!r}")
    return value


def normalize_locale(value: str | None) -> str | None:
    """``de_at`` -> ``de-AT``. Unknown or malformed locales give None (the default applies)."""
    if not value or not isinstance(value, str) or len(value) > 35:
        return None
    try:
        loc = Locale.parse(value.replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        return None
    return f"{loc.language}-{loc.territory}" if loc.territory else loc.language


def phone_region(phone: str | None) -> str | None:
    """ISO country code of an E.164 number (``DE`` for ``+49…``), or None when it has none."""
    if not phone:
        return None
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(phone, None)) or None
    except phonenumbers.NumberParseException:
        return None
