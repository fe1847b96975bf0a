"""Message templates: every locale x milestone renders, stays within SMS limits and escapes HTML."""

from __future__ import annotations

import copy
import html
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from jinja2.exceptions import SecurityError

from channels.segments import count_segments
from hub.context import Formatter
from hub.render import Renderer, RenderError
from hub.vocabulary import MILESTONES
from tests.locale_data import ALL, LOCALES

TEMPLATES = Path(__file__).parents[1] / "templates"

PARTS = ("sms", "push_title", "push_body", "email_subject", "email_text", "email_html")
SLOT_MILESTONES = ("out_for_delivery", "delivery_failed", "exception")

MAX_SMS_SEGMENTS = 2
# Two concatenated UCS-2 segments hold 2 x 67 code units. The SMS of languages marked `ucs2_budget`
# (tests/locale_data) must fit this even when their fixed text is GSM-7: accented data (a pickup
# point, "sáb", "août") switches the whole message to UCS-2.
UCS2_TWO_SEGMENTS = 134
UCS2_LOCALES = tuple(code for code in LOCALES if ALL[code]["ucs2_budget"])
# Milestones whose SMS measures its own text and lists only what fits two segments of the encoding
# it ends up in (the `scheduled` question): the fixed UCS-2 bound above does not apply to them.
FITTED = ("scheduled",)

LINK = "https://hub.example/t/AbCdEf123456"
UNSUBSCRIBE = "https://hub.example/u/AbCdEf123456"
# driver.contact: the masked relay number that reaches the driver, the only driver number a message may show.
CONTACT = "+15005550100"
# The longest number in the relay pool of tests/test_relay.py: the tight Spanish and French SMS must hold it too.
LONG_CONTACT = "+4915700000100"

# Strings the hub preformats in the customer's locale and time zone: the long variants.
LOCALIZED: dict[str, dict[str, Any]] = {code: data["localized"] for code, data in ALL.items()}


def full_context(locale: str, milestone: str, merchant: str = "Acme Shoes & Boots") -> dict[str, Any]:
    """Everything optional is present and long-ish."""
    loc = LOCALIZED[locale]
    return {
        "sender": {"name": "Parcelhub", "help_url": "https://parcelhub.example/help"},
        "customer": {"name": "Ana-Lucía Ferreira", "first_name": "Ana-Lucía"},
        "delivery": {
            "id": "dlv_01HZX4K9P2QW",
            "tracking_code": "PH7Q4K92XM31DE",
            "merchant": merchant,
            "address": loc["address"],
            "eta": dict(loc["eta"]),
        },
        "driver": {"first_name": "Maximilian", "contact": CONTACT},
        "event": {"type": milestone, "occurred_at": loc["occurred_at"]},
        "data": {
            "minutes": 12,
            "reason": loc["reason"],
            "kind": "delay",
            "next_attempt": loc["next_attempt"],
            "pod": {
                "recipient": loc["recipient"],
                "place": loc["place"],
                "photo_url": "https://hub.example/pod/AbCdEf123456.jpg",
                "signature": True,
            },
            "pickup": {**loc["pickup"], "code": "739214"},
        },
        "slots": [{"n": n, "label": label} for n, label in enumerate(loc["slots"], start=1)],
        "link": LINK,
        "unsubscribe_url": UNSUBSCRIBE,
        "lang": locale,
    }


def sparse_context(locale: str, milestone: str, merchant: str = "Acme Shoes & Boots") -> dict[str, Any]:
    """Every key present, every optional value missing."""
    return {
        "sender": {"name": "Parcelhub", "help_url": None},
        "customer": {"name": "", "first_name": ""},
        "delivery": {
            "id": "dlv_01HZX4K9P2QW",
            "tracking_code": "PH7Q4K92XM31DE",
            "merchant": merchant,
            "address": "",
            "eta": None,
        },
        "driver": None,
        "event": {"type": milestone, "occurred_at": LOCALIZED[locale]["occurred_at"]},
        "data": {"minutes": None, "reason": "", "kind": "", "next_attempt": None, "pod": None, "pickup": None},
        "slots": [],
        "link": None,
        "unsubscribe_url": None,
        "lang": locale,
    }


def bare_context(locale: str, milestone: str) -> dict[str, Any]:
    """The sparse context (no customer name) with merchant and tracking code "", as hub/context.py passes them."""
    context = sparse_context(locale, milestone, merchant="")
    context["delivery"]["tracking_code"] = ""
    return context


CONTEXTS = {"full": full_context, "sparse": sparse_context, "bare": bare_context}


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(TEMPLATES)


def _id(value: object) -> str:
    return str(value)


@pytest.mark.parametrize("shape", sorted(CONTEXTS), ids=_id)
@pytest.mark.parametrize("milestone", MILESTONES, ids=_id)
@pytest.mark.parametrize("locale", LOCALES, ids=_id)
def test_every_part_renders_non_empty(renderer: Renderer, locale: str, milestone: str, shape: str) -> None:
    rendered = renderer.render(milestone, locale, CONTEXTS[shape](locale, milestone))

    assert rendered.locale == locale
    for part in PARTS:
        assert getattr(rendered, part).strip(), f"{part} is empty"
    assert "<html" in rendered.email_html
    assert f'lang="{locale}"' in rendered.email_html


@pytest.mark.parametrize("milestone", MILESTONES, ids=_id)
@pytest.mark.parametrize("locale", LOCALES, ids=_id)
def test_only_the_parts_asked_for_are_rendered_and_they_are_the_same(
    renderer: Renderer, locale: str, milestone: str
) -> None:
    """A message renders only its channels' parts (hub.compose): each part is what a full render
    gives, and the others are left empty, the HTML layout too."""
    context = full_context(locale, milestone)
    whole = renderer.render(milestone, locale, context)
    for asked in (("sms",), ("push_title", "push_body"), ("email_subject", "email_text", "email_html")):
        some = renderer.render(milestone, locale, context, asked)
        for part in PARTS:
            assert getattr(some, part) == (getattr(whole, part) if part in asked else ""), part


@pytest.mark.parametrize("shape", sorted(CONTEXTS), ids=_id)
@pytest.mark.parametrize("milestone", MILESTONES, ids=_id)
@pytest.mark.parametrize("locale", LOCALES, ids=_id)
def test_sms_fits_two_segments(renderer: Renderer, locale: str, milestone: str, shape: str) -> None:
    sms = renderer.render(milestone, locale, CONTEXTS[shape](locale, milestone)).sms

    info = count_segments(sms)
    assert info.segments <= MAX_SMS_SEGMENTS, f"{info}: {sms}"
    if locale in UCS2_LOCALES and milestone not in FITTED:
        assert len(sms) <= UCS2_TWO_SEGMENTS, f"{len(sms)} chars: {sms}"


@pytest.mark.parametrize("milestone", MILESTONES, ids=_id)
@pytest.mark.parametrize("locale", [code for code in LOCALES if ALL[code]["gsm7"]], ids=_id)
def test_sms_fixed_text_stays_gsm7(renderer: Renderer, locale: str, milestone: str) -> None:
    context = full_context(locale, milestone)  # the customer's name is the only non-GSM value
    context["data"]["pod"]["place"] = "Garage"

    sms = renderer.render(milestone, locale, context).sms

    assert count_segments(sms).encoding == "GSM-7", sms


@pytest.mark.parametrize("milestone", MILESTONES, ids=_id)
@pytest.mark.parametrize("locale", LOCALES, ids=_id)
def test_html_is_autoescaped(renderer: Renderer, locale: str, milestone: str) -> None:
    html = renderer.render(milestone, locale, full_context(locale, milestone, "<b>Evil & Co</b>")).email_html

    assert "&lt;b&gt;Evil &amp; Co&lt;/b&gt;" in html
    assert "<b>Evil" not in html


@pytest.mark.parametrize("milestone", MILESTONES, ids=_id)
@pytest.mark.parametrize("locale", LOCALES, ids=_id)
def test_text_parts_are_not_escaped(renderer: Renderer, locale: str, milestone: str) -> None:
    rendered = renderer.render(milestone, locale, full_context(locale, milestone, "Tom's & Co"))

    assert "Tom's & Co" in rendered.sms or "Tom's & Co" in rendered.email_text
    for part in ("sms", "push_title", "push_body", "email_subject", "email_text"):
        text = getattr(rendered, part)
        assert "&amp;" not in text
        assert "&#39;" not in text


@pytest.mark.parametrize("locale", LOCALES, ids=_id)
def test_links_are_shown_when_given_and_absent_values_leave_no_trace(renderer: Renderer, locale: str) -> None:
    for milestone in MILESTONES:
        full = renderer.render(milestone, locale, full_context(locale, milestone))
        assert LINK in full.email_text, milestone
        assert LINK in full.email_html, milestone
        assert UNSUBSCRIBE in full.email_text, milestone
        assert UNSUBSCRIBE in full.email_html, milestone

        sparse = renderer.render(milestone, locale, sparse_context(locale, milestone))
        for part in PARTS:
            assert "None" not in getattr(sparse, part), f"{milestone}.{part}"


# Traces of an empty value: "Good news:  has shipped", "Tracking code .", "Hello ,", "from ()", 'from ""',
# "Hi None". Quotes: " ' \u201c \u201e \u00ab \u2018 \u2039 opening, " ' \u201d \u201c \u00bb \u2019 \u203a closing.
GAPS = re.compile(
    r"  |\s[.,]|:[.,]|\(\s*\)"
    r"|[\"'\u201c\u201e\u00ab\u2018\u2039]\s*[\"'\u201d\u201c\u00bb\u2019\u203a]"
    r"|\b(None|undefined)\b"
)
INLINE_TAGS = re.compile(r"</?(a|strong|b|em|span)\b[^>]*>", re.IGNORECASE)
# The Spanish greeting ("Hola:", "Hola, Ana:") ends with a colon and stands alone.
GREETING = re.compile(r"Hola(, [^:]+)?:")


def _visible_text(markup: str) -> str:
    """The text a reader sees in an HTML e-mail: a line break for every block tag, inline tags dropped."""
    markup = re.sub(r"<(style|script)\b.*?</\1>", "", markup, flags=re.DOTALL | re.IGNORECASE)
    markup = INLINE_TAGS.sub("", markup)
    markup = re.sub(r"<[^>]*>", "\n", markup)
    return "\n".join(line.strip() for line in html.unescape(markup).splitlines())


def _gaps(text: str, *, markup: bool = False) -> list[str]:
    """What in one rendered part betrays an empty value; ``[]`` when it reads cleanly.

    A line may end with a colon only when a list follows on the next line (or it is a greeting).
    """
    if markup:
        text = _visible_text(text)
    elif "\n\n\n" in text:
        return ["two blank lines in a row"]
    found = []
    lines = text.splitlines()
    for n, line in enumerate(lines):
        stripped = line.strip()
        found += [f"{match.group()!r} in {stripped!r}" for match in GAPS.finditer(stripped)]
        if line != line.rstrip():
            found.append(f"trailing space in {line!r}")
        following = lines[n + 1].strip() if n + 1 < len(lines) else ""
        if stripped.endswith(":") and not following and not GREETING.fullmatch(stripped):
            found.append(f"nothing after {stripped!r}")
    return found


@pytest.mark.parametrize("milestone", MILESTONES, ids=_id)
@pytest.mark.parametrize("locale", LOCALES, ids=_id)
def test_empty_merchant_tracking_code_and_name_leave_no_gaps(renderer: Renderer, locale: str, milestone: str) -> None:
    rendered = renderer.render(milestone, locale, bare_context(locale, milestone))

    for part in PARTS:
        text = getattr(rendered, part)
        assert _gaps(text, markup=part == "email_html") == [], f"{part}: {text}"
    info = count_segments(rendered.sms)
    assert info.segments <= MAX_SMS_SEGMENTS, f"{info}: {rendered.sms}"
    if locale in UCS2_LOCALES and milestone not in FITTED:
        assert len(rendered.sms) <= UCS2_TWO_SEGMENTS, f"{len(rendered.sms)} chars: {rendered.sms}"


@pytest.mark.parametrize("empty", ["nothing", "merchant", "tracking_code"], ids=_id)
@pytest.mark.parametrize("shape", ["full", "sparse"], ids=_id)
@pytest.mark.parametrize("locale", LOCALES, ids=_id)
def test_no_gaps_when_only_one_field_is_empty(renderer: Renderer, locale: str, shape: str, empty: str) -> None:
    for milestone in MILESTONES:
        context = CONTEXTS[shape](locale, milestone)
        context["slots"] = []  # numbered slot lines are indented on purpose
        if empty != "nothing":
            context["delivery"][empty] = ""
        rendered = renderer.render(milestone, locale, context)
        for part in PARTS:
            text = getattr(rendered, part)
            assert _gaps(text, markup=part == "email_html") == [], f"{milestone}.{part}: {text}"
        assert count_segments(rendered.sms).segments <= MAX_SMS_SEGMENTS, rendered.sms
        if locale in UCS2_LOCALES and milestone not in FITTED:
            assert len(rendered.sms) <= UCS2_TWO_SEGMENTS, rendered.sms


def test_gap_check_catches_empty_values() -> None:
    assert _gaps("Good news:  has shipped your order.")
    assert _gaps("Your order has shipped. Tracking code .")
    assert _gaps("Hello ,")
    assert _gaps("Tracking code: \nDelivery address: Main St 1")
    assert _gaps("Thanks.\n\nTracking code:\n\nThe Parcelhub team")
    assert _gaps("Tracking code:")
    assert _gaps('Your parcel from "" is on its way.')
    assert _gaps("Votre colis \u00ab \u00bb est en route.")
    assert _gaps("Your parcel () is on its way.")
    assert _gaps("Hi None,")
    assert _gaps("Thanks.\n\n\nThe Parcelhub team")
    assert _gaps("<p>Tracking code: <strong></strong></p>\n<p>Bye</p>", markup=True)
    assert _gaps("<p>Good news: <strong></strong> has shipped it.</p>", markup=True)
    assert _gaps("Hola:\n\nSu paquete de Acme ha sido entregado.\nLo sentimos: no hay m\u00e1s.") == []
    assert _gaps("Hola, Ana:\n\nReply with its number:\n1 for Wed 9-12") == []


@pytest.mark.parametrize("locale", LOCALES, ids=_id)
def test_sms_includes_tracking_link_when_given(renderer: Renderer, locale: str) -> None:
    missing = [
        milestone
        for milestone in MILESTONES
        if LINK not in renderer.render(milestone, locale, full_context(locale, milestone)).sms
    ]
    assert missing == []


def test_every_milestone_has_one_text_and_one_html_template() -> None:
    # Every milestone is shared (templates/<milestone>.*.j2, translated by the catalogs); the
    # shipped templates hold no per-language copies (templates/<lang>/ is for a deployer's own).
    for milestone in MILESTONES:
        for name in (f"{milestone}.txt.j2", f"{milestone}.html.j2"):
            assert (TEMPLATES / name).is_file(), name
    # Files starting with "_" (such as _replies.txt.j2) are shared pieces, not milestones.
    names = {p.name.split(".")[0] for p in TEMPLATES.glob("*.j2") if not p.name.startswith("_")}
    assert names == set(MILESTONES)
    assert not any((TEMPLATES / locale).exists() for locale in LOCALES)


def test_renderer_discovers_all_locales(renderer: Renderer) -> None:
    assert renderer.locales == sorted(LOCALES)
    for locale in LOCALES:
        assert renderer.milestones(locale) == sorted(MILESTONES)


@pytest.mark.parametrize(
    ("requested", "expected"),
    [("de-AT", "de"), ("de_CH", "de"), ("fr-CA", "fr"), ("es-MX", "es"), ("sv-SE", "en"), (None, "en")],
    ids=_id,
)
def test_unknown_regional_locale_falls_back_to_language_then_english(
    renderer: Renderer, requested: str | None, expected: str
) -> None:
    assert renderer.render("shipped", requested, full_context(expected, "shipped")).locale == expected


SLOT_REPLY = {code: data["slot_reply"] for code, data in ALL.items()}


@pytest.mark.parametrize("milestone", SLOT_MILESTONES, ids=_id)
@pytest.mark.parametrize("locale", LOCALES, ids=_id)
def test_sms_offers_numbered_slots(renderer: Renderer, locale: str, milestone: str) -> None:
    context = full_context(locale, milestone)
    first, last = context["slots"][0], context["slots"][-1]

    rendered = renderer.render(milestone, locale, context)

    assert "1" in rendered.sms
    assert f"{SLOT_REPLY[locale]} {first['label']}" in rendered.sms
    assert f"{last['n']} " in rendered.sms and last["label"] in rendered.sms
    for slot in context["slots"]:
        assert slot["label"] in rendered.email_text
        assert slot["label"] in rendered.email_html


@pytest.mark.parametrize("milestone", SLOT_MILESTONES, ids=_id)
@pytest.mark.parametrize("locale", LOCALES, ids=_id)
def test_no_reply_prompt_without_slots(renderer: Renderer, locale: str, milestone: str) -> None:
    context = full_context(locale, milestone)
    context["slots"] = []

    sms = renderer.render(milestone, locale, context).sms

    assert SLOT_REPLY[locale] not in sms


RATING = {code: data["rating"] for code, data in ALL.items()}


@pytest.mark.parametrize("locale", LOCALES, ids=_id)
def test_delivered_invites_a_rating_and_says_where_it_was_left(renderer: Renderer, locale: str) -> None:
    context = full_context(locale, "delivered")
    pod = context["data"]["pod"]

    rendered = renderer.render("delivered", locale, context)

    for part in ("sms", "push_body", "email_text", "email_html"):
        assert RATING[locale] in getattr(rendered, part).lower(), part
    for part in ("sms", "email_text"):
        assert pod["recipient"] in getattr(rendered, part), part
        assert pod["place"] in getattr(rendered, part), part
    assert pod["photo_url"] in rendered.email_html


@pytest.mark.parametrize("milestone", ("out_for_delivery", "arriving_soon"), ids=_id)
@pytest.mark.parametrize("locale", LOCALES, ids=_id)
def test_driver_is_named_when_known(renderer: Renderer, locale: str, milestone: str) -> None:
    context = full_context(locale, milestone)
    # With three reschedule options the Spanish and French SMS have no room left for the name.
    context["slots"] = []

    rendered = renderer.render(milestone, locale, context)

    assert "Maximilian" in rendered.sms
    assert "Maximilian" in rendered.push_body
    assert "Maximilian" in rendered.email_text


DRIVER_MILESTONES = ("out_for_delivery", "arriving_soon")
CONTACT_PARTS = ("sms", "push_body", "email_text", "email_html")
# What introduces the driver's number, SMS short forms included; none of it may show without a number.
CALL_PHRASES = {code: data["call_phrases"] for code, data in ALL.items()}


def _with_driver(locale: str, milestone: str, shape: str, contact: str | None) -> dict[str, Any]:
    context = CONTEXTS[shape](locale, milestone)
    context["driver"] = {"first_name": "Maximilian", "contact": contact}
    return context


def _assert_no_gaps(renderer: Renderer, locale: str, milestone: str, context: dict[str, Any]) -> None:
    context = {**context, "slots": []}  # numbered slot lines are indented on purpose
    rendered = renderer.render(milestone, locale, context)
    for part in PARTS:
        text = getattr(rendered, part)
        assert _gaps(text, markup=part == "email_html") == [], f"{part}: {text}"


def _assert_sms_fits(locale: str, sms: str) -> None:
    info = count_segments(sms)
    assert info.segments <= MAX_SMS_SEGMENTS, f"{info}: {sms}"
    if locale in UCS2_LOCALES:
        assert len(sms) <= UCS2_TWO_SEGMENTS, f"{len(sms)} chars: {sms}"


@pytest.mark.parametrize("shape", sorted(CONTEXTS), ids=_id)
@pytest.mark.parametrize("milestone", DRIVER_MILESTONES, ids=_id)
@pytest.mark.parametrize("locale", LOCALES, ids=_id)
def test_driver_contact_is_offered_when_set(renderer: Renderer, locale: str, milestone: str, shape: str) -> None:
    context = _with_driver(locale, milestone, shape, CONTACT)

    rendered = renderer.render(milestone, locale, context)

    for part in CONTACT_PARTS:
        text = getattr(rendered, part)
        assert CONTACT in text, f"{part}: {text}"
        assert any(phrase in text.lower() for phrase in CALL_PHRASES[locale]), f"{part}: {text}"
    assert f'href="tel:{CONTACT}"' in rendered.email_html
    _assert_sms_fits(locale, rendered.sms)
    _assert_no_gaps(renderer, locale, milestone, context)
    for slots in (context["slots"], []):
        long_context = {**_with_driver(locale, milestone, shape, LONG_CONTACT), "slots": slots}
        sms = renderer.render(milestone, locale, long_context).sms
        assert LONG_CONTACT in sms
        _assert_sms_fits(locale, sms)


@pytest.mark.parametrize("shape", sorted(CONTEXTS), ids=_id)
@pytest.mark.parametrize("milestone", DRIVER_MILESTONES, ids=_id)
@pytest.mark.parametrize("locale", LOCALES, ids=_id)
def test_driver_without_contact_leaves_no_trace(renderer: Renderer, locale: str, milestone: str, shape: str) -> None:
    context = _with_driver(locale, milestone, shape, None)

    rendered = renderer.render(milestone, locale, context)

    assert "Maximilian" in rendered.push_body
    for part in PARTS:
        text = getattr(rendered, part)
        assert "None" not in text, f"{part}: {text}"
        assert CONTACT not in text, f"{part}: {text}"
        assert [phrase for phrase in CALL_PHRASES[locale] if phrase in text.lower()] == [], f"{part}: {text}"
    assert "tel:" not in rendered.email_html
    _assert_sms_fits(locale, rendered.sms)
    _assert_no_gaps(renderer, locale, milestone, context)


@pytest.mark.parametrize("locale", LOCALES, ids=_id)
def test_pickup_details_reach_the_customer(renderer: Renderer, locale: str) -> None:
    context = full_context(locale, "ready_for_pickup")
    pickup = context["data"]["pickup"]

    rendered = renderer.render("ready_for_pickup", locale, context)

    for value in (pickup["name"], pickup["code"], pickup["until"]):
        assert value in rendered.sms
    for value in pickup.values():
        assert value in rendered.email_text
        assert value in rendered.email_html


@pytest.mark.parametrize("kind", ["delay", "damage", "address", "", "customs"], ids=lambda k: k or "blank")
@pytest.mark.parametrize("locale", LOCALES, ids=_id)
def test_exception_kinds_render_within_limits(renderer: Renderer, locale: str, kind: str) -> None:
    for build in CONTEXTS.values():
        context = build(locale, "exception")
        context["data"]["kind"] = kind
        rendered = renderer.render("exception", locale, context)
        assert count_segments(rendered.sms).segments <= MAX_SMS_SEGMENTS, rendered.sms
        if locale in UCS2_LOCALES:
            assert len(rendered.sms) <= UCS2_TWO_SEGMENTS, rendered.sms
        assert rendered.email_subject and rendered.push_body


def test_exception_wording_depends_on_kind(renderer: Renderer) -> None:
    bodies = set()
    for kind in ("delay", "damage", "address", ""):
        context = full_context("en", "exception")
        context["data"]["kind"] = kind
        bodies.add(renderer.render("exception", "en", context).email_subject)
    assert len(bodies) == 4


@pytest.mark.parametrize(
    ("filename", "block"),
    [("shipped.txt.j2", "{% block sms %}"), ("shipped.html.j2", "{% block content %}")],
    ids=["text", "html"],
)
def test_sandbox_rejects_unsafe_attribute_access(tmp_path: Path, filename: str, block: str) -> None:
    shutil.copytree(TEMPLATES, tmp_path, dirs_exist_ok=True)
    probe = tmp_path / filename
    probe.write_text(probe.read_text().replace(block, block + "{{ ''.__class__.__mro__ }}", 1))
    renderer = Renderer(tmp_path)

    with pytest.raises(RenderError, match="unsafe") as excinfo:
        renderer.render("shipped", "en", full_context("en", "shipped"))
    assert isinstance(excinfo.value.__cause__, SecurityError)


def test_rendering_leaves_the_context_untouched(renderer: Renderer) -> None:
    context = full_context("en", "delivered")
    before = copy.deepcopy(context)

    renderer.render("delivered", "en", context)

    assert context == before


@pytest.mark.parametrize("shape", ("full", "sparse"), ids=_id)
@pytest.mark.parametrize("milestone", SLOT_MILESTONES, ids=_id)
@pytest.mark.parametrize("locale", LOCALES, ids=_id)
def test_slots_as_the_hub_labels_them_fit_the_budget(
    renderer: Renderer, locale: str, milestone: str, shape: str
) -> None:
    # The labels hub.context makes (not the test data's): slots in the coming days by weekday.
    fmt = Formatter(locale, "Europe/Berlin")
    offered = "2026-11-29T18:00:00+01:00"
    days = ("2026-11-30T09:00|12:00", "2026-11-30T14:00|18:00", "2026-12-01T09:00|12:00")
    context = CONTEXTS[shape](locale, milestone)
    context["slots"] = [
        {"n": n, "label": fmt.slot(f"{day.split('|')[0]}:00+01:00", f"{day[:11]}{day.split('|')[1]}:00+01:00", offered)}
        for n, day in enumerate(days, start=1)
    ]

    sms = renderer.render(milestone, locale, context).sms

    assert all(slot["label"] in sms for slot in context["slots"]) or shape == "full", sms
    assert count_segments(sms).segments <= MAX_SMS_SEGMENTS, sms
    if locale in UCS2_LOCALES:
        assert len(sms) <= UCS2_TWO_SEGMENTS, f"{len(sms)} chars: {sms}"


def test_a_slot_a_week_away_is_labelled_with_its_date() -> None:
    fmt = Formatter("de", "Europe/Berlin")
    offered = "2026-11-29T18:00:00+01:00"
    assert fmt.slot("2026-11-30T09:00:00+01:00", "2026-11-30T12:00:00+01:00", offered) == "Mo. 9-12"
    assert fmt.slot("2026-12-07T09:00:00+01:00", "2026-12-07T12:00:00+01:00", offered) == "Mo., 7. Dez. 9-12"
    assert (
        Formatter("ja", "Asia/Tokyo").slot("2026-11-30T09:00:00+09:00", "2026-11-30T12:00:00+09:00", offered)
        == "月曜日 9-12"
    )
