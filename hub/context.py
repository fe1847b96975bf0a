"""Build the template context for one event and one customer.

Everything time-related is formatted here, in the customer's locale and time zone, so the
templates only place strings (see ``templates/`` for the variables each template may use).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date, format_skeleton, format_time

__all__ = ["Formatter", "build_context", "warm"]


@functools.lru_cache(maxsize=256)
def _babel_locale(locale: str) -> Locale:
    """One Locale per language and process: its CLDR data is read (and merged with its parents')
    on first use, then kept, instead of once per message."""
    try:
        return Locale.parse(locale.replace("-", "_"))
    except (ValueError, TypeError):
        return Locale.parse("en")


def warm(locales: Iterable[str]) -> None:
    """Read each language's date and time names now (a worker does this when it starts), not
    while the first messages in that language wait."""
    now = datetime.now(UTC)
    for locale in locales:
        Formatter(locale, "UTC").window(now.isoformat(), now.isoformat())


_Moment = datetime  # the class's own method named datetime hides the type inside it


class Formatter:
    def __init__(self, locale: str, timezone: str) -> None:
        self.locale = _babel_locale(locale)
        self.tz = ZoneInfo(timezone)

    def _local(self, value: str | datetime) -> datetime:
        dt = datetime.fromisoformat(value) if isinstance(value, str) else value
        return dt.astimezone(self.tz)

    def date(self, value: str | datetime) -> str:
        # CLDR's own short date with the weekday for each language ("Sat, Dec 5", "Sa., 5. Dez.",
        # "12月5日(土)"), not one pattern for all: word order and punctuation differ.
        return str(format_skeleton("MMMEd", self._local(value), locale=self.locale))

    def time(self, value: str | datetime) -> str:
        return str(format_time(self._local(value), "HH:mm", locale=self.locale))

    def datetime(self, value: str | datetime) -> str:
        local = self._local(value)
        return f"{self.date(local)} {self.time(local)}"

    def window(self, start: str, end: str) -> dict[str, str]:
        s, e = self._local(start), self._local(end)
        same_day = s.date() == e.date()
        label = (
            f"{self.date(s)} {self.time(s)}-{self.time(e)}" if same_day else f"{self.datetime(s)} - {self.datetime(e)}"
        )
        return {"date": self.date(s), "start": self.time(s), "end": self.time(e), "window": label}

    def slot(self, start: str, end: str, since: str | None = None) -> str:
        """ "Wed, Nov 25 9-12"; within six days after ``since`` (the news that offers it) the
        weekday alone says which day ("Wed 9-12"), which keeps an SMS with three slots short."""
        s, e = self._local(start), self._local(end)
        hours = f"{s.hour}-{e.hour}" if s.minute == e.minute == 0 else f"{self.time(s)}-{self.time(e)}"
        if since is not None and 0 <= (s.date() - self._local(since).date()).days < 7:
            return f"{self._weekday(s)} {hours}"
        return f"{self.date(s)} {hours}"

    def _weekday(self, value: _Moment) -> str:
        short = str(format_date(value, "EEE", locale=self.locale))
        # A one-letter name ("月" in Japanese is also "month") is spelled out: "月曜日".
        return short if len(short.rstrip(".")) > 1 else str(format_date(value, "EEEE", locale=self.locale))


def _first_name(name: str | None) -> str:
    return name.split()[0] if name and name.split() else ""


def _data(fmt: Formatter, data: dict[str, Any], reasons: Mapping[str, str]) -> dict[str, Any]:
    """The event's own details (``data``), formatted: a delay, a reason (a known code's wording in
    the customer's language, else the free text), a proof of delivery, a pickup point, the next
    attempt."""
    pod = data.get("pod")
    pickup = data.get("pickup")
    next_attempt = data.get("next_attempt")
    return {
        "minutes": data.get("minutes"),
        "reason": reasons.get(data.get("reason_code") or "") or data.get("reason") or "",
        "kind": data.get("kind") or "",
        "next_attempt": fmt.window(next_attempt["start"], next_attempt["end"])["window"] if next_attempt else None,
        "pod": {
            "recipient": pod.get("recipient"),
            "place": pod.get("place"),
            "photo_url": pod.get("photo_url"),
            "signature": bool(pod.get("signature")),
        }
        if pod
        else None,
        "pickup": {
            "name": pickup["name"],
            "address": pickup.get("address") or "",
            "hours": pickup.get("hours") or "",
            "code": pickup.get("code"),
            "until": fmt.datetime(pickup["until"]) if pickup.get("until") else None,
        }
        if pickup
        else None,
    }


def build_context(
    *,
    event: dict[str, Any],
    delivery: dict[str, Any],
    customer_name: str | None,
    locale: str,
    timezone: str,
    sender: dict[str, Any],
    link: str | None,
    unsubscribe_url: str | None,
    driver_contact: str | None = None,
    reasons: Mapping[str, str] | None = None,
    merchant: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``event`` is the normalized event; ``delivery`` the stored delivery (eta, driver, ...);
    ``reasons`` what each reason code says in the message's language (``hub.i18n.reason_texts``);
    ``merchant`` the registered shop's identity (``hub.merchants.Brand.context``), whose name
    every text says as ``delivery.merchant`` (else the event's own ``delivery.merchant``)."""
    fmt = Formatter(locale, timezone)
    data = event.get("data") or {}
    eta = delivery.get("eta")
    driver = delivery.get("driver") or event.get("driver")
    return {
        "sender": {"name": sender.get("name", ""), "help_url": sender.get("help_url")},
        "customer": {"name": customer_name or "", "first_name": _first_name(customer_name)},
        "delivery": {
            "id": delivery.get("id") or event["delivery"]["id"],
            "tracking_code": delivery.get("tracking_code") or "",
            "merchant": (merchant or {}).get("name") or delivery.get("merchant") or "",
            "address": delivery.get("address") or "",
            "eta": fmt.window(eta["start"], eta["end"]) if eta else None,
        },
        # contact: the proxy number that reaches the driver (masked-number relay), never the real one.
        "driver": {"first_name": _first_name(driver.get("name")), "contact": driver_contact}
        if driver and driver.get("name")
        else None,
        "event": {"type": event["type"], "occurred_at": fmt.datetime(event["occurred_at"])},
        "data": _data(fmt, data, reasons or {}),
        "slots": [
            {"n": n, "label": fmt.slot(slot["start"], slot["end"], since=event["occurred_at"])}
            for n, slot in enumerate(data.get("reschedule_slots") or [], start=1)
        ],
        "link": link,
        "unsubscribe_url": unsubscribe_url,
        "lang": locale.split("-")[0],
        "merchant": merchant,
    }
