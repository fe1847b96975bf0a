"""Customer contact and preference models (validated at the HTTP edge and on import)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from hub.vocabulary import CHANNELS, MILESTONES, Channel

from .validation import check_email, check_phone, check_timezone, normalize_locale

__all__ = ["CHANNELS", "Contact", "Instructions", "Preferences", "QuietHours", "region_of"]

ChannelName = Channel
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")  # ASCII digits only (\d takes any script's)


def region_of(info: ValidationInfo) -> str:
    ctx = info.context or {}
    return str(ctx.get("region", "DE"))


def _timezone_or_none(value: str | None) -> str | None:
    return None if value is None else check_timezone(value)


# Unknown locales become None (the default applies); unknown time zones are errors.
LocaleTag = Annotated[str | None, Field(max_length=35), AfterValidator(normalize_locale)]
TimeZoneName = Annotated[str | None, Field(max_length=64), AfterValidator(_timezone_or_none)]


class _Edge(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Contact(_Edge):
    """Contact fields of a customer or driver; every field optional, ids are elsewhere."""

    name: str | None = Field(None, max_length=200)
    phone: str | None = Field(None, max_length=40)
    email: str | None = Field(None, max_length=254)
    push_tokens: list[str] | None = Field(None, max_length=10)
    locale: LocaleTag = None
    timezone: TimeZoneName = None
    whatsapp: str | None = Field(None, max_length=40)  # the WhatsApp number when it is not ``phone``

    @field_validator("phone", "whatsapp")
    @classmethod
    def _phone(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else check_phone(value, region_of(info))

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return None if value is None else check_email(value)

    @field_validator("push_tokens")
    @classmethod
    def _tokens(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        for token in value:
            if not token or len(token) > 4096 or any(c.isspace() for c in token):
                raise ValueError("push tokens must be non-empty strings without spaces, at most 4096 chars")
        return list(dict.fromkeys(value))


class QuietHours(_Edge):
    start: str
    end: str

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not _HHMM.match(value):
            raise ValueError("use 24-hour HH:MM, e.g. 21:00")
        return value


class Instructions(_Edge):
    kind: Literal["leave_at_door", "neighbour", "safe_place", "access_code", "note", "none"]
    note: str | None = Field(None, max_length=500)


class Preferences(_Edge):
    """A customer's delivery preferences; PATCH semantics (only the given fields change)."""

    channels: dict[str, list[ChannelName]] | None = None
    fallback: list[ChannelName] | None = None
    quiet_hours: QuietHours | None = None
    locale: LocaleTag = None
    timezone: TimeZoneName = None
    instructions: Instructions | None = None
    opt_out: list[ChannelName] | None = None
    # Ask me to confirm each planned delivery window (true), never ask (false); unset: the hub's
    # policy decides (confirmation.ask, hub.confirmations).
    confirm_deliveries: bool | None = None

    @field_validator("channels")
    @classmethod
    def _channels(cls, value: dict[str, list[str]] | None) -> dict[str, list[str]] | None:
        if value is None:
            return None
        for key, chans in value.items():
            if key != "default" and key not in MILESTONES:
                raise ValueError(f"unknown milestone {key!r}; use 'default' or one of {', '.join(MILESTONES)}")
            if len(set(chans)) != len(chans):
                raise ValueError(f"channels for {key!r} repeat a channel")
        return value

    @field_validator("fallback")
    @classmethod
    def _fallback(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("fallback repeats a channel")
        return value

    @model_validator(mode="before")
    @classmethod
    def _not_empty(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data:
            raise ValueError("give at least one preference to change")
        return data
