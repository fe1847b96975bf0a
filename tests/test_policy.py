"""The delivery policy's rules with fixed clocks: quiet hours across time zones, midnight and DST
changes, expiry, superseding, and where a customer's time zone and quiet hours come from."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.config_policy import PolicySettings, QuietWindow
from hub.policy import (
    customer_timezone,
    expires_at,
    obsoleted_by,
    quiet_due,
    quiet_until,
    quiet_window,
    spread_offset,
)

NIGHT = QuietWindow(start="21:00", end="08:00")
CFG = PolicySettings()


def ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def utc(value: float | None) -> str | None:
    return None if value is None else datetime.fromtimestamp(value, UTC).isoformat()


def test_the_same_instant_is_night_in_tokyo_and_afternoon_in_los_angeles() -> None:
    now = ts("2026-11-24T22:00:00+00:00")
    assert utc(quiet_until(now, "Asia/Tokyo", NIGHT)) == "2026-11-24T23:00:00+00:00"  # 08:00 JST
    assert quiet_until(now, "America/Los_Angeles", NIGHT) is None  # 14:00 PST


@pytest.mark.parametrize(
    ("local", "ends"),
    [
        ("2026-11-24T23:30:00+01:00", "2026-11-25T07:00:00+00:00"),  # before midnight: tomorrow 08:00
        ("2026-11-25T03:00:00+01:00", "2026-11-25T07:00:00+00:00"),  # after midnight: today 08:00
        ("2026-11-24T21:00:00+01:00", "2026-11-25T07:00:00+00:00"),  # the first quiet minute
        ("2026-11-25T07:59:00+01:00", "2026-11-25T07:00:00+00:00"),  # the last quiet minute
        ("2026-11-25T08:00:00+01:00", None),  # the window's end is not quiet
        ("2026-11-24T12:00:00+01:00", None),
    ],
)
def test_a_window_across_midnight(local: str, ends: str | None) -> None:
    assert utc(quiet_until(ts(local), "Europe/Berlin", NIGHT)) == ends


def test_a_daytime_window_and_an_empty_one() -> None:
    lunch = QuietWindow(start="12:00", end="14:00")
    assert utc(quiet_until(ts("2026-11-24T13:00:00+01:00"), "Europe/Berlin", lunch)) == "2026-11-24T13:00:00+00:00"
    assert quiet_until(ts("2026-11-24T14:30:00+01:00"), "Europe/Berlin", lunch) is None
    assert (
        quiet_until(ts("2026-11-24T23:00:00+01:00"), "Europe/Berlin", QuietWindow(start="08:00", end="08:00")) is None
    )
    assert quiet_until(ts("2026-11-24T23:00:00+01:00"), "Europe/Berlin", None) is None


def test_spring_forward_night_ends_at_local_eight_in_summer_time() -> None:
    # Berlin moves from +01:00 to +02:00 at 02:00 on 29 March 2026: the night is an hour shorter.
    start = ts("2026-03-28T23:00:00+01:00")
    assert utc(quiet_until(start, "Europe/Berlin", NIGHT)) == "2026-03-29T06:00:00+00:00"  # 08:00 CEST
    # New York springs forward on 8 March 2026.
    assert utc(quiet_until(ts("2026-03-08T01:30:00-05:00"), "America/New_York", NIGHT)) == "2026-03-08T12:00:00+00:00"


def test_fall_back_night_ends_at_local_eight_in_winter_time() -> None:
    # Berlin moves from +02:00 to +01:00 at 03:00 on 25 October 2026: the night is an hour longer.
    assert utc(quiet_until(ts("2026-10-24T23:00:00+02:00"), "Europe/Berlin", NIGHT)) == "2026-10-25T07:00:00+00:00"
    # Inside the repeated hour (02:30 happens twice) the window still ends at 08:00 CET.
    assert utc(quiet_until(ts("2026-10-25T00:30:00+00:00"), "Europe/Berlin", NIGHT)) == "2026-10-25T07:00:00+00:00"
    assert utc(quiet_until(ts("2026-10-25T01:30:00+00:00"), "Europe/Berlin", NIGHT)) == "2026-10-25T07:00:00+00:00"


def test_inside_the_repeated_hour_after_the_first_end_the_window_ends_at_the_second() -> None:
    window = QuietWindow(start="22:00", end="02:30")
    # 02:15 CET on 25 October is the second pass through that hour; 02:30 CEST already passed.
    ends = quiet_until(ts("2026-10-25T02:15:00+01:00"), "Europe/Berlin", window)
    assert utc(ends) == "2026-10-25T01:30:00+00:00"  # 02:30 CET
    assert spread_offset("m_1", 0.001) == 0  # a spread shorter than a second is none


def test_an_end_time_skipped_by_the_clock_change_ends_when_the_clock_jumps() -> None:
    window = QuietWindow(start="23:00", end="02:30")  # 02:30 does not exist on 29 March in Berlin
    ends = quiet_until(ts("2026-03-29T01:00:00+01:00"), "Europe/Berlin", window)
    assert utc(ends) == "2026-03-29T01:00:00+00:00"  # 03:00 CEST, the first instant after 02:30 local
    window = QuietWindow(start="23:00", end="02:30")  # ambiguous on 25 October: the first 02:30
    ends = quiet_until(ts("2026-10-25T01:00:00+02:00"), "Europe/Berlin", window)
    assert utc(ends) == "2026-10-25T00:30:00+00:00"


ZONES = ["Europe/Berlin", "America/Los_Angeles", "Asia/Tokyo", "Australia/Lord_Howe", "America/Santiago", "UTC"]
HHMM = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.sampled_from([0, 15, 30, 45]))


@settings(max_examples=400, deadline=None)
@given(
    now=st.integers(int(ts("2026-01-01T00:00:00+00:00")), int(ts("2027-12-31T00:00:00+00:00"))),
    zone=st.sampled_from(ZONES),
    start=HHMM,
    end=HHMM,
)
def test_quiet_hours_end_is_the_next_time_the_wall_clock_leaves_the_window(
    now: int, zone: str, start: str, end: str
) -> None:
    window = QuietWindow(start=start, end=end)
    ends = quiet_until(now, zone, window)
    tz = ZoneInfo(zone)

    def quiet_at(t: float) -> bool:
        wall = datetime.fromtimestamp(t, tz).strftime("%H:%M")
        if start == end:
            return False
        return start <= wall < end if start < end else (wall >= start or wall < end)

    assert (ends is not None) == quiet_at(now)
    if ends is not None:
        assert now < ends <= now + 26 * 3600
        assert not quiet_at(ends)  # out of the window at its end...
        assert quiet_at(ends - 60) or ends - 60 < now  # ...and still in it a minute before


def test_urgency_decides_what_breaks_quiet_hours() -> None:
    night = ts("2026-11-24T23:00:00+01:00")
    morning = ts("2026-11-25T08:00:00+01:00")
    assert quiet_due("arriving_soon", "sms", night, "Europe/Berlin", NIGHT, CFG) is None  # send
    assert quiet_due("delivery_failed", "push", night, "Europe/Berlin", NIGHT, CFG) is None  # push only
    assert quiet_due("delivery_failed", "sms", night, "Europe/Berlin", NIGHT, CFG) == morning
    assert quiet_due("shipped", "push", night, "Europe/Berlin", NIGHT, CFG) == morning  # not urgent


def test_expiry_by_time_to_live_and_by_the_end_of_the_eta_window() -> None:
    occurred = ts("2026-11-24T09:00:00+01:00")
    assert expires_at("arriving_soon", occurred, None, CFG) == occurred + 90 * 60
    window_end = ts("2026-11-24T09:30:00+01:00")
    assert expires_at("arriving_soon", occurred, window_end, CFG) == window_end
    assert expires_at("delivered", occurred, window_end, CFG) == occurred + 2880 * 60  # not window-bound
    no_ttl = PolicySettings(ttl_minutes={})
    assert expires_at("delivered", occurred, None, no_ttl) is None


def test_newer_milestones_supersede_a_waiting_message_only_where_configured() -> None:
    assert obsoleted_by("arriving_soon", ["delivered"], CFG) == "delivered"
    assert obsoleted_by("eta_changed", ["eta_changed"], CFG) == "eta_changed"  # a newer ETA
    assert obsoleted_by("order_confirmed", ["shipped", "delivered"], CFG) is None  # the receipt still matters
    assert obsoleted_by("delivered", ["in_transit"], CFG) is None


def test_time_zone_comes_from_preferences_then_contact_then_the_phone_number() -> None:
    assert customer_timezone({"timezone": "Asia/Tokyo"}, "Europe/Paris", None, CFG, "UTC") == "Asia/Tokyo"
    assert customer_timezone({}, "Europe/Paris", "+81312345678", CFG, "UTC") == "Europe/Paris"
    assert customer_timezone({}, None, "+81312345678", CFG, "UTC") == "Asia/Tokyo"  # one zone in Japan
    assert customer_timezone({}, None, "+12125550100", CFG, "UTC") == "America/New_York"  # the config's choice
    assert customer_timezone({}, None, "+61412345678", CFG, "UTC") == "Australia/Sydney"
    assert customer_timezone({}, None, None, CFG, "Europe/Berlin") == "Europe/Berlin"


def test_quiet_hours_come_from_the_customer_then_the_country_then_the_default() -> None:
    cfg = PolicySettings(quiet_hours_by_country={"fr": QuietWindow(start="20:00", end="09:00")})
    own = {"quiet_hours": {"start": "22:30", "end": "06:30"}}
    assert quiet_window(own, "+33612345678", cfg) == QuietWindow(start="22:30", end="06:30")
    assert quiet_window({}, "+33612345678", cfg) == QuietWindow(start="20:00", end="09:00")
    assert quiet_window({}, "+4915112345678", cfg) == NIGHT
    assert quiet_window({}, None, PolicySettings(quiet_hours=None)) is None


def test_held_messages_spread_over_the_minutes_after_the_window() -> None:
    offsets = {spread_offset(f"m_{i}", 20) for i in range(200)}
    assert all(0 <= o < 20 * 60 for o in offsets)
    assert len(offsets) > 100  # spread, not one spike
    assert spread_offset("m_1", 20) == spread_offset("m_1", 20)  # stable across retries
    assert spread_offset("m_1", 0) == 0
    assert timedelta(seconds=max(offsets)) < timedelta(minutes=20)
