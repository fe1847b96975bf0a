"""The `scheduled` question's templates in every language: the numbered answers, as many other
times as fit two SMS segments of the encoding the text ends up in, and never fewer than one."""

from __future__ import annotations

from typing import Any

import pytest

from channels.segments import count_segments
from hub.render import Renderer
from tests.locale_data import LOCALES
from tests.test_templates import LINK, TEMPLATES, full_context, sparse_context

MAX_SMS_SEGMENTS = 2
# A shop whose name switches any SMS to UCS-2 (134 code units in two segments), and one whose
# name has characters outside the BMP (two UCS-2 units each).
UCS2_SHOP = "Łódź Książki & Zabawki"
ASTRAL_SHOP = "Tea \U0001f375 House \U0001f375\U0001f375"


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(TEMPLATES)


def _context(locale: str, shape: str, merchant: str = "Acme Shoes & Boots") -> dict[str, Any]:
    build = full_context if shape == "full" else sparse_context
    context = build(locale, "scheduled", merchant)
    if shape == "sparse":  # a window and times, nothing else
        full = full_context(locale, "scheduled", merchant)
        context["delivery"]["eta"], context["slots"] = full["delivery"]["eta"], full["slots"]
    return context


@pytest.mark.parametrize("merchant", ["Acme Shoes & Boots", UCS2_SHOP, ASTRAL_SHOP], ids=["gsm", "ucs2", "astral"])
@pytest.mark.parametrize("shape", ["full", "sparse"])
@pytest.mark.parametrize("locale", LOCALES)
def test_the_sms_asks_with_at_least_one_other_time_within_two_segments(
    renderer: Renderer, locale: str, shape: str, merchant: str
) -> None:
    context = _context(locale, shape, merchant)

    sms = renderer.render("scheduled", locale, context).sms

    assert count_segments(sms).segments <= MAX_SMS_SEGMENTS, f"{count_segments(sms)}: {sms}"
    for n in ("1", "2", "3"):
        assert n in sms, sms
    first = context["slots"][0]["label"]
    assert f"4 {first}" in sms, sms  # the other times are numbered from 4
    shown = [slot for slot in context["slots"] if slot["label"] in sms]
    assert [s["n"] for s in shown] == list(range(1, len(shown) + 1)), sms  # the first ones, in order
    if shape == "full":
        assert sms.endswith(LINK), sms


@pytest.mark.parametrize("locale", LOCALES)
def test_english_and_the_roomy_languages_list_every_time(renderer: Renderer, locale: str) -> None:
    context = full_context(locale, "scheduled")
    context["link"] = None

    sms = renderer.render("scheduled", locale, context).sms

    if count_segments(sms).encoding == "GSM-7":  # 306 septets hold all three
        assert all(f"{slot['n'] + 3} {slot['label']}" in sms for slot in context["slots"]), sms


@pytest.mark.parametrize("locale", LOCALES)
def test_the_email_numbers_every_answer_and_every_time(renderer: Renderer, locale: str) -> None:
    context = full_context(locale, "scheduled")

    rendered = renderer.render("scheduled", locale, context)

    for slot in context["slots"]:
        assert f"{slot['n'] + 3} {slot['label']}" in rendered.email_text
        assert slot["label"] in rendered.email_html
    assert LINK in rendered.email_text and LINK in rendered.email_html
    assert rendered.push_title and rendered.push_body
