"""Reason codes: a failure's or an exception's reason is said in the customer's language when
upstream (or an adapter) names a code, and the free text is passed through only without one."""

from __future__ import annotations

from pathlib import Path

import pytest

from channels.segments import count_segments
from hub.i18n import reason_texts
from hub.render import Renderer
from hub.vocabulary import REASON_CODES
from tests.conftest import Hub
from tests.events import make_event
from tests.locale_data import ALL, LOCALES
from tests.test_templates import CONTEXTS, MAX_SMS_SEGMENTS, UCS2_LOCALES, UCS2_TWO_SEGMENTS

TEMPLATES = Path(__file__).parents[1] / "templates"
MILESTONES_WITH_REASON = ("delivery_failed", "exception", "returned")


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(TEMPLATES)


def test_every_code_has_a_wording_in_every_language() -> None:
    texts = reason_texts(TEMPLATES)
    assert sorted(texts) == sorted(LOCALES)
    for lang, table in texts.items():
        assert set(table) == set(REASON_CODES), lang
        assert all(text.strip() for text in table.values()), lang
        if lang != "en":
            # Translated, not English passed through (a short word may coincide: one at most).
            same = [code for code in REASON_CODES if table[code] == texts["en"][code]]
            assert len(same) <= 1, f"{lang}: {same}"


@pytest.mark.parametrize("shape", ("full", "sparse"))
@pytest.mark.parametrize("milestone", ("delivery_failed", "exception"))
@pytest.mark.parametrize("locale", LOCALES)
def test_every_code_fits_the_sms_budget(renderer: Renderer, locale: str, milestone: str, shape: str) -> None:
    texts = reason_texts(TEMPLATES)[locale]
    for code in REASON_CODES:
        context = CONTEXTS[shape](locale, milestone)
        context["data"]["reason"] = texts[code]
        rendered = renderer.render(milestone, locale, context)
        sms = rendered.sms
        # The e-mail always says it; a tight SMS may leave the reason out to stay within budget.
        assert texts[code] in rendered.email_text, (code, rendered.email_text)
        assert count_segments(sms).segments <= MAX_SMS_SEGMENTS, f"{code}: {sms}"
        if locale in UCS2_LOCALES:
            assert len(sms) <= UCS2_TWO_SEGMENTS, f"{code}: {len(sms)} chars: {sms}"


async def test_a_coded_reason_reaches_the_customer_in_their_language(hub: Hub) -> None:
    lang = "es"
    event = make_event(
        "delivery_failed",
        customer__locale=lang,
        data={"reason_code": "nobody_home", "reason": "Driver note: rang twice, nobody came"},
    )
    assert (await hub.post_event(event)).status == 202
    await hub.run_worker()

    wording = reason_texts(TEMPLATES)[lang]["nobody_home"]
    [sms] = hub.messages(channel="sms")
    [mail] = hub.messages(channel="email")
    assert wording in sms["text"] and wording in mail["text"]
    assert "rang twice" not in sms["text"] + mail["text"]
    # Upstream keeps both: the code and the driver's own words.
    resp = await hub.request("GET", "/v1/deliveries/D-1001")
    assert "rang twice" in await resp.text()


@pytest.mark.parametrize("lang", LOCALES)
async def test_each_customer_hears_in_their_own_language(hub: Hub, lang: str) -> None:
    event = make_event(
        "delivery_failed",
        customer__locale=lang,
        customer__email=f"{lang}@example.com",
        data={"reason_code": "access_problem"},
    )
    assert (await hub.post_event(event)).status == 202
    await hub.run_worker()
    [mail] = hub.messages(channel="email")
    assert f'lang="{lang}"' in (mail["html"] or "")
    assert reason_texts(TEMPLATES)[lang]["access_problem"] in mail["text"]


async def test_free_text_is_passed_through_without_a_code(hub: Hub) -> None:
    event = make_event("delivery_failed", data={"reason": "Hund im Garten"})
    assert (await hub.post_event(event)).status == 202
    await hub.run_worker()
    [sms] = hub.messages(channel="sms")
    assert "Hund im Garten" in sms["text"]


async def test_an_unknown_code_is_refused_with_its_field(hub: Hub) -> None:
    resp = await hub.post_event(make_event("delivery_failed", data={"reason_code": "aliens"}))
    assert resp.status == 422
    body = await resp.json()
    assert "data.reason_code" in str(body), body


def test_locale_data_names_each_language_once() -> None:
    assert set(ALL) == set(LOCALES)
