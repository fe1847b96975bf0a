"""Delivery policy: when a planned message may go out, and when it no longer should.

Pure functions over settings, customer data and a clock (no Redis, no I/O), so every rule can
be tested with fixed times:

- ``quiet_until``: the end of the customer's quiet hours, if ``now`` falls inside them, in the
  customer's own IANA time zone. Windows may cross midnight; the end is the first instant the
  local wall clock reads the end time, which is right across DST changes (a 02:30 end on a
  spring-forward night is 03:00, an ambiguous one on a fall-back night is its first occurrence).
- ``quiet_due``: what the milestone's urgency makes of that (send, push only, or defer).
- ``expires_at``: a message's time-to-live per milestone, and the ETA window's end for the
  milestones whose news is about that window.
- ``obsoleted_by``: whether a newer event on the delivery makes a waiting message pointless.
- ``customer_timezone`` / ``quiet_window``: per-customer settings first, then per country, then
  global defaults.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as phone_timezones

from preferences.validation import phone_region

from .config_policy import PolicySettings, QuietWindow

__all__ = [
    "customer_timezone",
    "expires_at",
    "first_instant_at",
    "hourly_limit",
    "obsoleted_by",
    "quiet_due",
    "quiet_until",
    "quiet_window",
    "spread_offset",
]


def _hhmm(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def first_instant_at(day: date, at: time, tz: ZoneInfo) -> datetime:
    """The first instant (UTC) at which the wall clock in ``tz`` reads ``at`` or later on ``day``."""
    naive = datetime.combine(day, at)
    first = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == naive:
        return first  # the time exists (fold=0 picks the first of two on a fall-back night)
    # A spring-forward gap: the clock jumps over ``at``; the answer is the jump itself, which
    # lies between the readings of ``at`` with the offsets before and after the change.
    lo = int(naive.replace(tzinfo=tz, fold=1).astimezone(UTC).timestamp())
    hi = int(first.timestamp())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, tz).replace(tzinfo=None) >= naive:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


def quiet_until(now: float, tz_name: str, window: QuietWindow | None) -> float | None:
    """If ``now`` (Unix time) is inside the quiet window in ``tz_name``, when the window ends."""
    if window is None or window.start == window.end:
        return None
    tz = ZoneInfo(tz_name)
    local = datetime.fromtimestamp(now, tz)
    start, end = _hhmm(window.start), _hhmm(window.end)
    wall = local.time().replace(tzinfo=None)
    if start < end:
        if not start <= wall < end:
            return None
        day = local.date()
    else:  # crosses midnight: 21:00-08:00 is quiet from 21:00 to 23:59 and from 00:00 to 07:59
        if end <= wall < start:
            return None
        day = local.date() + timedelta(days=1) if wall >= start else local.date()
    ends = first_instant_at(day, end, tz).timestamp()
    if ends <= now:
        # The fall-back night: the end time happens twice and ``now`` lies in the repeated hour
        # after its first occurrence; the window ends at the second one.
        ends = datetime.combine(day, end).replace(tzinfo=tz, fold=1).timestamp()
    if ends <= now:
        return None
    # A skipped hour can hold all the time between the end and the next start (quiet 02:30-02:00
    # on a spring-forward night): the clock jumps from one night's window into the next one's.
    later = quiet_until(ends, tz_name, window)
    return ends if later is None else later


def quiet_due(
    milestone: str, channel: str, now: float, tz_name: str, window: QuietWindow | None, cfg: PolicySettings
) -> float | None:
    """When a message may go out under quiet hours: None for now, else the window's end."""
    end = quiet_until(now, tz_name, window)
    if end is None:
        return None
    mode = cfg.urgent.get(milestone, "defer")  # type: ignore[call-overload]
    if mode == "send" or (mode == "push_only" and channel == "push"):
        return None
    return end


def spread_offset(message_id: str, minutes: float) -> float:
    """A stable offset (seconds) in [0, minutes) per message, so a window's end is no spike."""
    if minutes <= 0:
        return 0.0
    bucket = int(hashlib.sha256(message_id.encode()).hexdigest()[:8], 16)
    return float(bucket % max(1, int(minutes * 60)))


def expires_at(milestone: str, occurred: float, eta_end: float | None, cfg: PolicySettings) -> float | None:
    """After this instant the milestone's messages are not sent (None: never expire)."""
    limits: list[float] = []
    ttl = cfg.ttl_minutes.get(milestone)  # type: ignore[call-overload]
    if ttl is not None:
        limits.append(occurred + float(ttl) * 60)
    if eta_end is not None and milestone in cfg.window_bound:
        limits.append(eta_end)
    return min(limits) if limits else None


def obsoleted_by(milestone: str, newer: Iterable[str], cfg: PolicySettings) -> str | None:
    """The first newer milestone that makes a waiting ``milestone`` message pointless, if any."""
    replaced_by = set(cfg.obsoleted_by.get(milestone, ()))  # type: ignore[call-overload]
    for other in newer:
        if other == milestone or other in replaced_by:
            return other
    return None


def customer_timezone(
    prefs: Mapping[str, Any], given: str | None, phone: str | None, cfg: PolicySettings, default: str
) -> str:
    """The customer's time zone: preferences, then the contact's own, then by the phone's country
    (config first, then the numbering plan when it names exactly one zone), then the default."""
    for name in (prefs.get("timezone"), given):
        if name:
            return str(name)
    region = phone_region(phone)
    if region and region in cfg.timezone_by_country:
        return cfg.timezone_by_country[region]
    if phone:
        try:
            zones = phone_timezones.time_zones_for_number(phonenumbers.parse(phone, None))
        except phonenumbers.NumberParseException:
            zones = ()
        if len(zones) == 1:
            try:
                ZoneInfo(zones[0])
                return str(zones[0])
            except (ZoneInfoNotFoundError, ValueError):
                pass
    return default


def quiet_window(prefs: Mapping[str, Any], phone: str | None, cfg: PolicySettings) -> QuietWindow | None:
    """The customer's quiet hours: their own, then their phone's country's, then the global ones."""
    own = prefs.get("quiet_hours")
    if isinstance(own, Mapping) and own.get("start") and own.get("end"):
        return QuietWindow(start=str(own["start"]), end=str(own["end"]))
    if cfg.quiet_hours_by_country:
        region = phone_region(phone)
        if region and region in cfg.quiet_hours_by_country:
            return cfg.quiet_hours_by_country[region]
    return cfg.quiet_hours


def hourly_limit(cfg: PolicySettings, channel: str) -> int:
    """The most messages a customer gets on ``channel`` in an hour (0: no limit)."""
    return int(cfg.per_customer_hour.get(channel, 0))  # type: ignore[call-overload]
