"""Property-based checks of the hub's input parsers: valid input in every accepted spelling is read
back, anything else is refused with the parser's own validation error, never a crash.

Complements ``tests/test_properties.py`` (replies, signatures and events never crash) and the
quiet-hours property in ``tests/test_policy.py`` (six zones, uniform instants, quarter hours):
here the input is generated from the documented forms (phone numbers of every region in several
spellings, keywords in four languages, every IANA zone, any minute, the days clocks change) and
the answers are checked, not just the absence of exceptions.
"""

from __future__ import annotations

import asyncio
import functools
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import cast
from unittest import mock
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, available_timezones

import phonenumbers
import pytest
from aiohttp import web
from aiohttp.streams import StreamReader
from aiohttp.test_utils import make_mocked_request
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from twilio.request_validator import RequestValidator

from hub.config import Settings
from hub.config_policy import PolicySettings, QuietWindow
from hub.errors import ApiError
from hub.policy import quiet_until, quiet_window
from hub.replies import parse_reply
from hub.signing import sign, signature_header, verify
from hub.twilio_hooks import signed_form
from preferences.model import Contact, Preferences, QuietHours
from preferences.validation import check_phone, check_timezone

# -- phone numbers ------------------------------------------------------------------------------

REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)
PHONE_TYPES = (phonenumbers.PhoneNumberType.FIXED_LINE, phonenumbers.PhoneNumberType.MOBILE)
E164 = re.compile(r"\+[1-9][0-9]{1,14}")
Fmt = phonenumbers.PhoneNumberFormat


def _international_with_parentheses(n: phonenumbers.PhoneNumber) -> str:
    """``+49 30 123456`` -> ``+49 (30) 123456``: the first group in parentheses."""
    parts = phonenumbers.format_number(n, Fmt.INTERNATIONAL).split(" ")
    return f"{parts[0]} ({parts[1]}) {' '.join(parts[2:])}" if len(parts) > 2 else " ".join(parts)


# How a number is written, given the number, its region and the region of the one reading it:
# (the text, the region passed to the parser).
SPELLINGS: dict[str, Callable[[phonenumbers.PhoneNumber, str, str], tuple[str, str]]] = {
    "e164": lambda n, own, other: (phonenumbers.format_number(n, Fmt.E164), other),
    "international": lambda n, own, other: (phonenumbers.format_number(n, Fmt.INTERNATIONAL), other),
    "international, dashes": lambda n, own, other: (
        phonenumbers.format_number(n, Fmt.INTERNATIONAL).replace(" ", "-"),
        other,
    ),
    "international, dots": lambda n, own, other: (
        phonenumbers.format_number(n, Fmt.INTERNATIONAL).replace(" ", "."),
        other,
    ),
    "international, parentheses": lambda n, own, other: (_international_with_parentheses(n), other),
    "international, padded": lambda n, own, other: (f" \t{phonenumbers.format_number(n, Fmt.INTERNATIONAL)}\n", other),
    "rfc3966": lambda n, own, other: (phonenumbers.format_number(n, Fmt.RFC3966), other),
    "national": lambda n, own, other: (phonenumbers.format_number(n, Fmt.NATIONAL), own),
    "national, digits only": lambda n, own, other: (
        re.sub(r"[\s()./-]", "", phonenumbers.format_number(n, Fmt.NATIONAL)),
        own,
    ),
    "dialled from abroad": lambda n, own, other: (phonenumbers.format_out_of_country_calling_number(n, other), other),
}


@st.composite
def example_phones(draw: st.DrawFn) -> tuple[phonenumbers.PhoneNumber, str]:
    """A valid fixed-line or mobile number of any region, from phonenumbers' own examples."""
    region = draw(st.sampled_from(REGIONS))
    number = phonenumbers.example_number_for_type(region, draw(st.sampled_from(PHONE_TYPES)))
    if number is None:
        number = phonenumbers.example_number(region)
    assert number is not None, f"phonenumbers has no example number for {region}"
    return number, region


PHONEISH = st.text(
    st.sampled_from([*"+0123456789 ()-./#*x;=:tel ext", *"\u0660\u0663\uff10\uff19\u00a0"])
    # Any other character, lone surrogates included (JSON can carry them).
    | st.characters()
    | st.characters(categories=["Cs"]),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(example_phones(), st.sampled_from(sorted(SPELLINGS)), st.sampled_from(REGIONS))
def test_valid_numbers_of_every_region_normalise_to_one_e164_however_they_are_written(
    phone: tuple[phonenumbers.PhoneNumber, str], spelling: str, reader_region: str
) -> None:
    number, region = phone
    expected = phonenumbers.format_number(number, Fmt.E164)
    text, parse_region = SPELLINGS[spelling](number, region, reader_region)
    assert check_phone(text, parse_region) == expected, (text, parse_region)
    contact = Contact.model_validate({"phone": text}, context={"region": parse_region})
    assert contact.phone == expected


@settings(max_examples=300, deadline=None)
@given(PHONEISH, st.sampled_from(REGIONS), st.sampled_from(REGIONS))
def test_any_text_as_a_phone_number_is_refused_with_a_value_error_or_becomes_a_stable_e164(
    text: str, region: str, other_region: str
) -> None:
    try:
        normalised = check_phone(text, region)
    except ValueError as e:
        assert str(e)  # the message becomes the API's field error
    else:
        assert E164.fullmatch(normalised), normalised
        assert phonenumbers.is_valid_number(phonenumbers.parse(normalised, None))
        # Normalising is idempotent, whatever region reads the result.
        assert check_phone(normalised, other_region) == normalised
    try:
        contact = Contact.model_validate({"phone": text}, context={"region": region})
    except ValidationError as e:
        assert [err["loc"] for err in e.errors()] == [("phone",)]
    else:
        assert contact.phone is not None and check_phone(contact.phone, other_region) == contact.phone


@settings(max_examples=150, deadline=None)
@given(example_phones(), st.sampled_from(REGIONS))
def test_normalising_a_valid_number_twice_changes_nothing(
    phone: tuple[phonenumbers.PhoneNumber, str], other_region: str
) -> None:
    number, region = phone
    once = check_phone(phonenumbers.format_number(number, Fmt.NATIONAL), region)
    assert check_phone(once, other_region) == once
    assert check_phone(check_phone(once, region), other_region) == once


# -- SMS replies --------------------------------------------------------------------------------

# The documented keywords and words (hub/replies.py's docstring), spelled here independently.
COMPLIANCE = {
    "stop": ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"],
    "start": ["START", "UNSTOP", "YES"],
    "help": ["HELP", "INFO"],
}
NUMBER_WORDS = {
    1: ["one", "eins", "uno", "un", "une"],
    2: ["two", "zwei", "dos", "deux"],
    3: ["three", "drei", "tres", "trois"],
    4: ["four", "vier", "cuatro", "quatre"],
    5: ["five", "fünf", "fuenf", "funf", "cinco", "cinq"],
    6: ["six", "sechs", "seis"],
    7: ["seven", "sieben", "siete", "sept"],
    8: ["eight", "acht", "ocho", "huit"],
    9: ["nine", "neun", "nueve", "neuf"],
}
ALONE_ONLY = {"un", "une"}  # French "un"/"une" with more words is an article, not a number
SLOT_PREFIXES = [
    "option", "opción", "opcion", "choix", "choice", "nummer", "número", "numéro", "numero", "number",
    "nr", "nr.", "no", "no.", "num", "n", "#",
]  # fmt: skip
INSTRUCTIONS = {
    "leave_at_door": ["door", "tür", "tuer", "tur", "puerta", "porte"],
    "neighbour": ["neighbour", "neighbor", "nachbar", "nachbarn", "vecino", "vecina", "voisin", "voisine"],
    "safe_place": ["safe", "ablage", "ablageort", "sitio", "lieu"],
}
ALWAYS_WORDS = ["always", "immer", "siempre", "toujours"]
KINDS = {"stop", "start", "help", "number", "instructions", "text", "empty"}

SPACE = st.lists(st.sampled_from([" ", "\t", "\n", "\r\n", "\u00a0", "\u2003", "\u3000"]), max_size=3).map("".join)
TRAILING_PUNCTUATION = st.text(st.sampled_from(list(".!?,;: ")), max_size=3)


def _fold(word: str) -> str:
    """Upper case without accents, as the parser compares words."""
    return "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c)).upper()


@st.composite
def any_case(draw: st.DrawFn, word: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(word), max_size=len(word)))
    return "".join(c.upper() if up else c.lower() for c, up in zip(word, flips, strict=True))


def words(min_size: int = 0) -> st.SearchStrategy[list[str]]:
    """Free-text words (letters, digits, symbols, inner punctuation) that are no keyword."""
    word = st.text(st.characters(categories=["L", "N", "S", "P"]), min_size=1, max_size=8).filter(
        lambda w: w[0] not in " .)!:,-" and w[-1] not in " :,-" and _fold(w.rstrip(".!?,;:")) not in _ALWAYS_FOLDED
    )
    return st.lists(word, min_size=min_size, max_size=5)


_ALWAYS_FOLDED = {w.upper() for w in ALWAYS_WORDS}


@settings(max_examples=200)
@given(st.data(), st.sampled_from(sorted(COMPLIANCE)), SPACE, TRAILING_PUNCTUATION, SPACE)
def test_compliance_keywords_are_read_whatever_the_case_surrounding_space_and_trailing_punctuation(
    data: st.DataObject, kind: str, before: str, punctuation: str, after: str
) -> None:
    keyword = data.draw(st.sampled_from(COMPLIANCE[kind]).flatmap(any_case))
    body = f"{before}{keyword}{punctuation}{after}"
    reply = parse_reply(body)
    assert (reply.kind, reply.text) == (kind, " ".join(body.split()))


@settings(max_examples=150)
@given(st.data(), st.sampled_from(sorted(COMPLIANCE)), words(min_size=1))
def test_a_compliance_keyword_followed_by_more_words_is_not_a_command(
    data: st.DataObject, kind: str, more: list[str]
) -> None:
    keyword = data.draw(st.sampled_from(COMPLIANCE[kind]).flatmap(any_case))
    assert parse_reply(f"{keyword} {' '.join(more)}").kind not in COMPLIANCE


@st.composite
def slot_numbers(draw: st.DrawFn) -> tuple[int, str]:
    """A number 0-99 written as the parser documents: bare, with a prefix, punctuation, padding."""
    n = draw(st.integers(0, 99))
    digits = draw(st.sampled_from([str(n), f"{n:02d}"]))
    prefix = draw(st.one_of(st.just(""), st.sampled_from(SLOT_PREFIXES).flatmap(any_case)))
    gap = draw(st.sampled_from(["", " ", "  "])) if prefix else ""
    suffix = draw(st.sampled_from(["", ".", ")", "!", ":", ",", "-"]))
    return n, f"{draw(SPACE)}{prefix}{gap}{digits}{suffix}{draw(SPACE)}"


@settings(max_examples=200)
@given(slot_numbers())
def test_slot_numbers_in_every_documented_form_read_back(slot: tuple[int, str]) -> None:
    n, body = slot
    reply = parse_reply(body)
    assert (reply.kind, reply.number, reply.comment) == ("number", n, ""), body


@settings(max_examples=150)
@given(st.data(), st.sampled_from(sorted(NUMBER_WORDS)), st.sampled_from(["", ".", "!", ","]), SPACE)
def test_number_words_in_four_languages_read_back_in_any_case(
    data: st.DataObject, n: int, punctuation: str, space: str
) -> None:
    word = data.draw(st.sampled_from(NUMBER_WORDS[n]).flatmap(any_case))
    reply = parse_reply(f"{space}{word}{punctuation}{space}")
    assert (reply.kind, reply.number) == ("number", n), word


@st.composite
def ratings(draw: st.DrawFn) -> tuple[int, str, str]:
    """A 1-5 rating with a free-text comment, as digits, "Nr. 4" or a number word."""
    n = draw(st.integers(1, 5))
    comment = " ".join(draw(words(min_size=1)))
    form = draw(st.sampled_from(["digits", "prefix", "word"]))
    if form == "word":
        word = draw(st.sampled_from([w for w in NUMBER_WORDS[n] if w not in ALONE_ONLY]).flatmap(any_case))
        # Set apart by punctuation: a number word running into a sentence is text (below).
        head = word + draw(st.sampled_from([",", ".", "!"])) + " "
    else:
        prefix = draw(st.sampled_from(["Nr. ", "option ", "opción ", "choix ", "#"])) if form == "prefix" else ""
        head = prefix + str(n) + draw(st.sampled_from([" ", "  ", " - ", "- ", ". ", ") ", ": ", ", ", "! ", "\n"]))
    return n, comment, f"{draw(SPACE)}{head}{comment}{draw(SPACE)}"


@settings(max_examples=200)
@given(st.integers(1, 5).flatmap(lambda n: st.sampled_from(sorted(NUMBER_WORDS[n]))), words(min_size=1))
def test_a_number_word_running_into_a_sentence_is_not_a_number(word: str, rest: list[str]) -> None:
    # "Due to work…", "Sei bitte…": with every language's words pooled, only punctuation makes a
    # number word followed by text a choice.
    assert parse_reply(" ".join([word, *rest])).kind != "number"


@settings(max_examples=200)
@given(ratings())
def test_ratings_one_to_five_with_a_free_text_comment_read_back(rating: tuple[int, str, str]) -> None:
    n, comment, body = rating
    reply = parse_reply(body)
    assert (reply.kind, reply.number, reply.comment) == ("number", n, comment), body


@settings(max_examples=200)
@given(
    st.data(),
    st.sampled_from(sorted(INSTRUCTIONS)),
    st.sampled_from(["", ":", ","]),
    words(),
    st.none() | st.integers(min_value=0),
)
def test_instructions_in_four_languages_keep_their_detail_and_the_always_flag(
    data: st.DataObject, instruction: str, colon: str, detail: list[str], always_at: int | None
) -> None:
    head = data.draw(st.sampled_from(INSTRUCTIONS[instruction]).flatmap(any_case)) + colon
    body = [head, *detail]
    if always_at is not None:
        body.insert(always_at % (len(body) + 1), data.draw(st.sampled_from(ALWAYS_WORDS).flatmap(any_case)))
    reply = parse_reply(" ".join(body))
    assert (reply.kind, reply.instruction, reply.note, reply.always) == (
        "instructions",
        instruction,
        " ".join(detail),
        always_at is not None,
    ), body


HOSTILE_TEXT = st.lists(
    st.sampled_from(
        [
            *"0123456789 .)!:,-#\t\n",
            *["stop", "STOP", "Nr", "option", "Tür", "immer", "deux", "un"],
            # Characters that fold: a superscript, circled, full-width and Arabic-Indic digits, a
            # digit with a full stop, ß, a ligature, a combining accent, a diaeresis, a no-break space.
            *["\u00b2", "\u2460", "\u248c", "\uff15", "\u0663", "\u00df", "\ufb01", "\u0301", "\u00a8", "\u00a0"],
        ]
    )
    | st.characters()
    | st.characters(categories=["Cs"]),
    max_size=60,
).map("".join)


@settings(max_examples=300)
@given(HOSTILE_TEXT)
def test_any_unicode_reply_reads_as_a_known_kind_consistent_with_its_text(body: str) -> None:
    reply = parse_reply(body)
    assert reply.kind in KINDS
    assert (reply.kind == "empty") == (not body.split())
    if reply.kind == "empty":
        return
    assert reply.text == " ".join(body.split())
    if reply.kind in COMPLIANCE:  # a keyword is the whole message
        assert len(re.sub(r"[\s.!?,;:]+$", "", reply.text).split()) == 1
    if reply.kind == "number":
        assert reply.number is not None and 0 <= reply.number <= 99
        assert reply.text.endswith(reply.comment)
    else:
        assert reply.number is None and reply.comment == ""
    assert (reply.kind == "instructions") == (reply.instruction is not None)
    if reply.kind == "text":
        assert reply.note == reply.text


# -- time zones ---------------------------------------------------------------------------------

ZONES = sorted(available_timezones())
AVAILABLE = frozenset(ZONES)
# Names near the real ones: other spellings, paths, and the files of a zoneinfo directory that are
# not zones (posix/ and right/ copies, posixrules, the tables).
ZONE_LIKE = st.one_of(
    st.sampled_from(ZONES).map(str.lower),
    st.sampled_from(ZONES).map(str.upper),
    st.tuples(
        st.sampled_from(["posix/", "right/", "/usr/share/zoneinfo/", "../", "./", "Etc/../", " ", ""]),
        st.sampled_from(ZONES),
        st.sampled_from(["", "/", "/.", "\n", " ", "\x00", ".tab"]),
    ).map("".join),
    st.sampled_from(ZONES).map(lambda z: z.replace("/", "//", 1)),
    st.sampled_from(["posixrules", "zone.tab", "zone1970.tab", "iso3166.tab", "tzdata.zi", "leapseconds", ""]),
)


@settings(max_examples=200)
@given(st.sampled_from(ZONES), SPACE)
def test_every_iana_zone_is_accepted_for_contacts_and_preferences(zone: str, space: str) -> None:
    assert check_timezone(zone) == zone
    assert Contact(timezone=zone).timezone == zone
    assert Preferences(timezone=f"{space}{zone}{space}").timezone == zone


@settings(max_examples=300, deadline=None)
@given(st.one_of(ZONE_LIKE, st.text(max_size=70), st.text(st.characters(categories=["Cs", "L", "P"]), max_size=20)))
def test_any_other_text_as_a_time_zone_is_refused_with_a_value_error_not_a_crash(name: str) -> None:
    try:
        accepted = check_timezone(name)
    except ValueError as e:
        assert str(e)
    else:
        assert accepted == name and name in AVAILABLE, name
    try:
        contact = Contact(timezone=name)
    except ValidationError as e:
        assert [err["loc"] for err in e.errors()] == [("timezone",)]
    else:
        assert contact.timezone in AVAILABLE


# -- quiet hours --------------------------------------------------------------------------------


def ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


STRICT_HHMM = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")
HHMM = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.integers(0, 59))
# Look-alikes: hours and minutes out of range, one digit, other digits, other separators, spaces.
HHMM_LIKE = st.one_of(
    st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 39), st.integers(0, 99)),
    st.builds(lambda h, m: f"{h}:{m}", st.integers(0, 24), st.integers(0, 60)),
    st.text(st.sampled_from([*"0123456789:.h \t\n", "\u0663", "\u0669", "\uff19", "\u00b2"]), max_size=7),
    st.text(max_size=8),
    st.tuples(SPACE, HHMM, SPACE).map("".join),
    # A valid time with one digit from another script (Arabic-Indic, full-width, Devanagari).
    st.builds(
        lambda t, i, d: t[:i] + d + t[i + 1 :],
        HHMM,
        st.sampled_from([0, 1, 3, 4]),
        st.sampled_from(["\u0660", "\u0663", "\uff10", "\uff11", "\u0966"]),
    ),
)


@settings(max_examples=300)
@given(HHMM_LIKE)
@example("1\u0663:00")  # 13:00 with an Arabic-Indic three
def test_quiet_hour_times_are_exactly_the_24_hour_hh_mm_strings(value: str) -> None:
    # Config: the value as written.
    try:
        window = QuietWindow(start=value, end="08:00")
    except ValidationError:
        assert not STRICT_HHMM.fullmatch(value), value
    else:
        assert STRICT_HHMM.fullmatch(window.start), value
    # Preferences: surrounding white space is stripped first.
    try:
        hours = QuietHours(start=value, end="08:00")
    except ValidationError:
        assert not STRICT_HHMM.fullmatch(value.strip(" \t\r\n")), value
    else:
        assert STRICT_HHMM.fullmatch(hours.start) and hours.start == value.strip(), value


CFG = PolicySettings()


@settings(max_examples=100)
@given(st.tuples(SPACE, HHMM, SPACE).map("".join), st.tuples(SPACE, HHMM, SPACE).map("".join))
def test_quiet_hours_a_customer_saves_are_the_window_the_policy_applies(start: str, end: str) -> None:
    prefs = Preferences.model_validate({"quiet_hours": {"start": start, "end": end}})
    assert quiet_window(prefs.model_dump(), None, CFG) == QuietWindow(start=start.strip(), end=end.strip())


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def _offset(t: float, tz: ZoneInfo) -> float:
    offset = datetime.fromtimestamp(t, tz).utcoffset()
    assert offset is not None
    return offset.total_seconds()


def check_quiet_until(now: float, zone: str, start: str, end: str, fraction: float) -> None:
    """What ``quiet_until`` promises, checked against the wall clock in ``zone``."""
    tz = ZoneInfo(zone)
    lo, hi = _minutes(start), _minutes(end)

    def quiet_at(t: float) -> bool:
        local = datetime.fromtimestamp(t, tz)
        wall = local.hour * 60 + local.minute
        if lo == hi:
            return False
        return lo <= wall < hi if lo < hi else (wall >= lo or wall < hi)

    ends = quiet_until(now, zone, QuietWindow(start=start, end=end))
    case = f"{zone}, {start}-{end}, now {datetime.fromtimestamp(now, tz).isoformat()}, ends " + (
        "None" if ends is None else datetime.fromtimestamp(ends, tz).isoformat()
    )
    if ends is None:
        assert not quiet_at(now), f"None, yet now is inside the window: {case}"
        return
    assert quiet_at(now), f"an end, yet now is outside the window: {case}"
    assert ends > now, case
    assert not quiet_at(ends), f"the window's end is still inside it: {case}"
    # Quiet all the way to the end (a second before it, and anywhere between), unless the clock
    # was set back out of the window on the way: the end is when the wall clock reads the end
    # time, so a fall-back night that leaves a window like 02:30-05:00 at 03:00 summer time for
    # 02:00 winter time keeps it closed until 05:00 (later than needed, never too early).
    for t in (max(now, ends - 1), max(now, min(now + (ends - now) * fraction, ends - 1))):
        assert quiet_at(t) or _offset(t, tz) < _offset(now, tz), f"{case}: not quiet at {t}"
    # At most a day of wall-clock time, plus however far the clock was set back in between (an
    # hour on an ordinary fall-back night)...
    set_back = max(0.0, _offset(now, tz) - _offset(ends, tz))
    within_a_day = ends - now <= 24 * 3600 + set_back
    # ...unless the clock jumped over all of the time outside the window (quiet 02:01-02:00 on a
    # spring-forward night): then the window ends the next day.
    outside = (lo - hi) % 1440 * 60
    jumped_over = _offset(ends, tz) - _offset(now, tz) >= outside and ends - now <= 48 * 3600
    assert within_a_day or jumped_over, case
    assert ends - now <= 25 * 3600 or set_back > 3600 or jumped_over, case


WINDOWS = st.one_of(st.tuples(HHMM, HHMM), HHMM.map(lambda t: (t, t)))  # zero-length ones too
FRACTION = st.floats(0, 1, exclude_max=True)


FIRST, LAST = ts("2000-01-01T00:00:00+00:00"), ts("2037-12-31T00:00:00+00:00")
INSTANTS = st.one_of(st.integers(int(FIRST), int(LAST)), st.floats(FIRST, LAST))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(ZONES), INSTANTS, WINDOWS, FRACTION)
def test_quiet_hours_end_after_now_outside_the_window_within_a_day_in_every_zone(
    zone: str, now: float, window: tuple[str, str], fraction: float
) -> None:
    check_quiet_until(now, zone, *window, fraction)


# Zones whose clocks change: at 02:00, 01:00 and midnight; by half an hour (Lord Howe), two hours
# (Troll), backwards in winter (Dublin) and around Ramadan (Casablanca).
DST_ZONES = [
    "Europe/Berlin", "Europe/London", "Europe/Dublin", "America/Los_Angeles", "America/New_York",
    "America/Havana", "America/Santiago", "America/Nuuk", "Australia/Sydney", "Australia/Lord_Howe",
    "Pacific/Chatham", "Antarctica/Troll", "Africa/Casablanca", "Asia/Jerusalem",
]  # fmt: skip


@functools.cache
def clock_changes(zone: str) -> tuple[int, ...]:
    """The instants in 2026 and 2027 at which ``zone``'s UTC offset changes."""
    tz = ZoneInfo(zone)
    changes: list[int] = []
    t, stop = int(ts("2026-01-01T00:00:00+00:00")), int(ts("2028-01-01T00:00:00+00:00"))
    while t < stop:
        if _offset(t, tz) != _offset(t + 86_400, tz):
            lo, hi = t, t + 86_400
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if _offset(mid, tz) == _offset(lo, tz) else (lo, mid)
            changes.append(hi)
        t += 86_400
    return tuple(changes)


@st.composite
def clock_change_cases(draw: st.DrawFn) -> tuple[str, float, str, str]:
    """An instant within a day of a clock change, with window edges near the change's wall time."""
    zone = draw(st.sampled_from([z for z in DST_ZONES if clock_changes(z)]))
    change = draw(st.sampled_from(clock_changes(zone)))
    now = change + draw(st.one_of(st.integers(-26 * 3600, 26 * 3600), st.integers(-120, 120)))
    tz = ZoneInfo(zone)
    walls = [datetime.fromtimestamp(change - 1, tz), datetime.fromtimestamp(change, tz)]

    def near_change() -> str:
        wall = draw(st.sampled_from(walls)) + timedelta(minutes=draw(st.integers(-90, 90)))
        return wall.strftime("%H:%M")

    start = near_change() if draw(st.booleans()) else draw(HHMM)
    end = near_change() if draw(st.booleans()) else draw(HHMM)
    return zone, float(now), start, end


@settings(max_examples=400, deadline=None)
@given(clock_change_cases(), FRACTION)
# Berlin springs forward at 02:00 on 29 March 2026 (02:00-02:59 do not exist) and falls back at 03:00
# on 25 October (02:15 happens twice); Los Angeles changes on 8 March and 1 November 2026.
@example(("Europe/Berlin", ts("2026-03-29T01:00:00+01:00"), "23:00", "02:30"), 0.5)
@example(("Europe/Berlin", ts("2026-03-29T01:59:59+01:00"), "02:01", "02:00"), 0.5)  # 02:00-02:01 skipped
@example(("Europe/Berlin", ts("2026-10-25T02:15:00+01:00"), "22:00", "02:30"), 0.5)
@example(("Europe/Berlin", ts("2026-10-25T02:15:00+02:00"), "02:00", "02:30"), 0.9)
@example(("America/Los_Angeles", ts("2026-03-08T01:45:00-08:00"), "01:30", "02:30"), 0.5)
@example(("America/Los_Angeles", ts("2026-11-01T01:15:00-08:00"), "01:00", "01:30"), 0.5)
@example(("America/Los_Angeles", ts("2026-11-01T01:15:00-07:00"), "21:00", "01:30"), 0.99)
def test_quiet_hours_end_correctly_on_the_days_clocks_change(
    case: tuple[str, float, str, str], fraction: float
) -> None:
    zone, now, start, end = case
    check_quiet_until(now, zone, start, end, fraction)


# -- webhook signatures -------------------------------------------------------------------------

SECRET = "whsec-" + "s" * 20
NOW = 1_800_000_000


@settings(max_examples=200)
@given(
    st.binary(max_size=100),
    st.integers(NOW - 10**6, NOW + 10**6),
    st.integers(-900, 900),
    st.integers(0, 600),
)
def test_a_hub_signature_is_accepted_exactly_within_the_tolerance_either_side(
    body: bytes, t: int, age: int, tolerance: int
) -> None:
    header = signature_header(SECRET, body, timestamp=t)
    assert verify(SECRET, header, body, tolerance=tolerance, now=t + age) is (abs(age) <= tolerance)


@settings(max_examples=100)
@given(st.binary(max_size=100), st.integers(NOW - 10**6, NOW + 10**6), st.integers(NOW - 10**6, NOW + 10**6))
def test_a_replayed_hub_signature_with_a_fresh_timestamp_is_refused(
    body: bytes, signed_at: int, replayed_at: int
) -> None:
    v1 = signature_header(SECRET, body, timestamp=signed_at).split(",v1=")[1]
    replay = f"t={replayed_at},v1={v1}"
    assert verify(SECRET, replay, body, now=replayed_at) is (replayed_at == signed_at)
    assert not verify("another-secret-value!", signature_header(SECRET, body, timestamp=signed_at), body, now=signed_at)


@settings(max_examples=200)
@given(
    st.binary(max_size=50),
    st.one_of(
        st.integers(min_value=10**10),
        st.integers(max_value=-(10**10)),
        st.integers(min_value=10**300, max_value=10**4000),  # beyond float range, within str()'s
        st.integers(min_value=-(10**4000), max_value=-(10**300)),
    ),
    st.one_of(st.none(), st.floats(1.6e9, 2.1e9), st.integers(1_600_000_000, 2_100_000_000)),
)
def test_hub_signatures_with_timestamps_of_any_size_are_refused_not_crashed(
    body: bytes, t: int, now: float | None
) -> None:
    # The MAC is right for the timestamp; only its age is wrong (by years at least).
    header = f"t={t},v1={sign(SECRET, t, body)}"
    assert verify(SECRET, header, body, now=now) is False
    assert verify(SECRET, f"t={'9' * 5000},v1=00", body, now=now) is False


PUBLIC = Settings()
PROXIED = PUBLIC.replace(**{"twilio_hooks.trust_forwarded": True})
TWILIO_PATH = "/webhooks/twilio/sms"
FORM_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
FORMS = st.dictionaries(FORM_TEXT, FORM_TEXT, max_size=5)
HOSTS = st.one_of(
    st.sampled_from(["hub.example.com", "hub.example.com:8443", "127.0.0.1:8080", "[::1]:443"]),
    st.text(max_size=30),
)


async def _signed_form_of(form: dict[str, str], headers: dict[str, str], cfg: Settings) -> dict[str, str]:
    """Run the hub's check on a real aiohttp request carrying ``form`` url-encoded."""
    payload = StreamReader(mock.Mock(), 2**16, loop=asyncio.get_running_loop())
    payload.feed_data(urlencode(form).encode())
    payload.feed_eof()
    request = make_mocked_request(
        "POST",
        TWILIO_PATH,
        headers={"Content-Type": "application/x-www-form-urlencoded", **headers},
        payload=payload,
    )
    return await signed_form(request, cfg)


def _refused(form: dict[str, str], headers: dict[str, str], cfg: Settings) -> bool:
    try:
        asyncio.run(_signed_form_of(form, headers, cfg))
    except ApiError as e:
        assert e.status == 403, e
        return True
    return False


@settings(max_examples=100, deadline=None)
@given(
    FORMS,
    st.booleans(),
    st.sampled_from(["http", "https"]),
    st.sampled_from(["hub.example.com", "hub.example.com:8443", "10.0.0.5"]),
    st.data(),
)
def test_a_twilio_signature_validates_its_own_url_and_form_and_no_altered_one(
    form: dict[str, str], proxied: bool, proto: str, host: str, data: st.DataObject
) -> None:
    cfg = PROXIED if proxied else PUBLIC
    # Forwarded headers are always sent; only a hub told to trust them signs against them.
    headers = {"X-Forwarded-Proto": proto, "X-Forwarded-Host": host}
    url = f"{proto}://{host}{TWILIO_PATH}" if proxied else PUBLIC.public_url + TWILIO_PATH
    signature = RequestValidator(cfg.twilio.auth_token).compute_signature(url, form)

    assert asyncio.run(_signed_form_of(form, {**headers, "X-Twilio-Signature": signature}, cfg)) == form
    # One character of the signature changed, added or dropped.
    i = data.draw(st.integers(0, len(signature) - 1))
    other = data.draw(st.characters(exclude_categories=["Cs", "C", "Z"]).filter(lambda c: c != signature[i]))
    for altered in (signature[:i] + other + signature[i + 1 :], signature + other, signature[:i] + signature[i + 1 :]):
        assert _refused(form, {**headers, "X-Twilio-Signature": altered}, cfg), altered
    # A parameter value changed, or the request checked against the other URL.
    if form:
        key = data.draw(st.sampled_from(sorted(form)))
        assert _refused({**form, key: form[key] + "x"}, {**headers, "X-Twilio-Signature": signature}, cfg)
    assert _refused(form, {**headers, "X-Twilio-Signature": signature}, PUBLIC if proxied else PROXIED)


@dataclass
class _HostileRequest:
    """The parts of an aiohttp request the Twilio check reads, with headers as aiohttp decodes
    them from the wire (UTF-8 with surrogateescape), which make_mocked_request cannot build."""

    headers: Mapping[str, str]
    form: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/x-www-form-urlencoded"
    scheme: str = "http"
    host: str = "127.0.0.1:8080"
    path: str = TWILIO_PATH
    path_qs: str = TWILIO_PATH

    async def post(self) -> dict[str, str]:
        return self.form


WIRE_TEXT = st.one_of(st.binary(max_size=40).map(lambda b: b.decode("utf-8", "surrogateescape")), st.text(max_size=40))


@settings(max_examples=200, deadline=None)
@given(WIRE_TEXT, st.one_of(WIRE_TEXT, HOSTS), WIRE_TEXT, FORMS, st.booleans())
def test_hostile_twilio_signature_and_proxy_headers_are_refused_not_crashed(
    signature: str, host: str, proto: str, form: dict[str, str], proxied: bool
) -> None:
    headers = {"X-Twilio-Signature": signature, "X-Forwarded-Host": host, "X-Forwarded-Proto": proto}
    request = cast(web.Request, _HostileRequest(headers=headers, form=form))
    with pytest.raises(ApiError) as refused:
        asyncio.run(signed_form(request, PROXIED if proxied else PUBLIC))
    assert refused.value.status == 403
