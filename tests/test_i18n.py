"""Translations: every catalog is complete and current, every template renders in every locale,
plural forms follow the count, and the locale fallback chain is the one the messages always had."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest
from babel import Locale
from babel.messages.pofile import read_po

from hub import i18n
from hub.render import Renderer
from hub.replies import ReplyWords, parse_reply
from hub.track_page import page_languages
from hub.vocabulary import MILESTONES
from tests.locale_data import ALL, LOCALES
from tests.test_reply_templates import BLOCKS, cases
from tests.test_templates import full_context

TEMPLATES = Path(__file__).parents[1] / "templates"
CATALOGS = sorted(p.stem for p in (TEMPLATES / "locales").glob("*.po"))


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(TEMPLATES)


def test_template_is_current() -> None:
    # Fails when a template gained or lost a string: run `python -m hub.i18n extract`.
    assert i18n.stale(TEMPLATES) == set()


@pytest.mark.parametrize("lang", CATALOGS)
def test_catalog_translates_every_string(lang: str) -> None:
    with i18n.template_path(TEMPLATES).open("rb") as f:
        template = read_po(f)
    with (TEMPLATES / "locales" / f"{lang}.po").open("rb") as f:
        catalog = read_po(f, locale=lang)
    for message in template:
        if not message.id:
            continue
        found = catalog.get(message.id, context=message.context)
        assert found is not None, f"{lang}.po misses {message.id!r}"
        assert not found.fuzzy, f"{lang}.po: {message.id!r} is fuzzy"
        texts = found.string if isinstance(found.string, tuple) else (found.string,)
        assert all(texts), f"{lang}.po: {message.id!r} is not translated"
    assert not catalog.obsolete


@pytest.mark.parametrize("locale", ["en", *CATALOGS])
@pytest.mark.parametrize("milestone", MILESTONES)
def test_every_milestone_renders_in_every_locale(renderer: Renderer, milestone: str, locale: str) -> None:
    rendered = renderer.render(milestone, locale, full_context(locale, milestone))
    assert rendered.locale == locale
    assert all(getattr(rendered, part) for part in ("sms", "push_title", "push_body", "email_subject", "email_text"))
    assert "</html>" in rendered.email_html


@pytest.mark.parametrize("locale", ["en", *CATALOGS])
def test_every_reply_renders_in_every_locale(renderer: Renderer, locale: str) -> None:
    seen = set()
    for block, _, variables in cases(locale, "gsm"):
        context = {"sender": {"name": "Parcelhub", "help_url": None}, **variables}
        assert renderer.render_block(locale, "_replies", block, context)
        seen.add(block)
    assert seen == set(BLOCKS)


def test_tracking_page_strings_in_every_language() -> None:
    strings = i18n.page_strings(TEMPLATES)
    assert sorted(strings) == sorted(LOCALES)
    english = strings["en"]
    assert english["title"] == "Your delivery"
    assert set(english["milestones"]) == set(MILESTONES)
    for lang, table in strings.items():
        assert set(table) == set(english), lang
        assert set(table["milestones"]) == set(english["milestones"]), lang
        if lang != "en":
            assert table["title"] != english["title"], lang
        assert "{merchant}" in table["from"], lang


@pytest.mark.parametrize(
    ("requested", "used"),
    [("de", "de"), ("de-AT", "de"), ("de_CH", "de"), ("fr-CA", "fr"), ("es_MX", "es"), ("sv-SE", "en"), (None, "en")],
)
def test_locale_falls_back_to_language_then_default(renderer: Renderer, requested: str | None, used: str) -> None:
    assert renderer.resolve_locale(requested) == used
    assert renderer.render("shipped", requested, full_context(used, "shipped")).locale == used


def test_default_locale_applies_to_unknown_languages() -> None:
    assert Renderer(TEMPLATES, default_locale="de").resolve_locale("sv-SE") == "de"


@pytest.mark.parametrize("locale", LOCALES)
def test_plural_forms_follow_the_count(renderer: Renderer, locale: str) -> None:
    one, three = ALL[locale]["not_understood_plural"]

    def answer(slots: int) -> str:
        context = {"sender": {"name": "P", "help_url": None}, "slots": slots, "rating": False, "instructions": False}
        return renderer.render_block(locale, "_replies", "not_understood", context)

    assert one in answer(1)
    assert three in answer(3)


@pytest.mark.parametrize("lang", CATALOGS)
def test_plural_rule_is_the_languages_own(renderer: Renderer, lang: str) -> None:
    # Each catalog's Plural-Forms chooses one form per CLDR plural category of the language
    # (Polish: one, few, many; Japanese: a single form), so a count never takes another
    # category's wording.
    form_of = renderer.catalogs.translations(lang).plural  # type: ignore[attr-defined]
    rule = Locale.parse(lang).plural_form
    chosen: dict[str, set[int]] = {}
    for n in range(200):
        chosen.setdefault(rule(n), set()).add(form_of(n))
    assert all(len(forms) == 1 for forms in chosen.values()), chosen
    assert len({form for forms in chosen.values() for form in forms}) == len(chosen)


def test_concurrent_renders_keep_their_own_language(renderer: Renderer) -> None:
    # Each locale has an environment of its own: nothing is swapped while a template renders.
    sender = {"sender": {"name": "P", "help_url": None}}
    expected = {locale: renderer.render_block(locale, "_replies", "rating_invalid", sender) for locale in LOCALES}
    assert len(set(expected.values())) == len(LOCALES)
    failures: list[str] = []

    def work(locale: str) -> None:
        for _ in range(200):
            text = renderer.render_block(
                locale, "_replies", "rating_invalid", {"sender": {"name": "P", "help_url": None}}
            )
            if text != expected[locale]:
                failures.append(locale)

    threads = [threading.Thread(target=work, args=(locale,)) for locale in expected]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_new_language_is_one_catalog(tmp_path: Path) -> None:
    # Adding a language: `python -m hub.i18n init sv`, translate, restart. Until a string is
    # translated it is shown in English.
    shutil.copytree(TEMPLATES, tmp_path / "templates")
    path = i18n.init(tmp_path / "templates", "sv")
    text = path.read_text(encoding="utf-8")
    text = text.replace(
        'msgid "Thank you for your rating!"\nmsgstr ""', 'msgid "Thank you for your rating!"\nmsgstr "Tack!"'
    )
    # Its reply words: Swedish customers may answer DÖRR (leave at the door) or TVÅ (2).
    text = text.replace(
        'msgctxt "reply words: leave at the door"\nmsgid "DOOR"\nmsgstr ""',
        'msgctxt "reply words: leave at the door"\nmsgid "DOOR"\nmsgstr "DÖRR"',
    ).replace('msgctxt "reply words: 2"\nmsgid "TWO"\nmsgstr ""', 'msgctxt "reply words: 2"\nmsgid "TWO"\nmsgstr "TVÅ"')
    path.write_text(text, encoding="utf-8")
    words = ReplyWords.of(i18n.reply_words(tmp_path / "templates"))
    assert parse_reply("Dörr, tack", words).instruction == "leave_at_door"
    assert parse_reply("två", words).number == 2
    assert parse_reply("Dörr, tack").kind == "text"  # the shipped catalogs know no Swedish
    renderer = Renderer(tmp_path / "templates")
    assert renderer.resolve_locale("sv-FI") == "sv"
    context = {"sender": {"name": "P", "help_url": None}, "rating": 3, "with_comment": False}
    assert renderer.render_block("sv", "_replies", "rating_thanks", context) == "Tack!"
    page = i18n.page_strings(tmp_path / "templates")
    assert "sv" in page
    # The tracking page offers it by its own name, with the others, English first.
    offered = page_languages(page)
    assert offered[0] == ("en", "English")
    assert ("sv", "Svenska") in offered
    assert dict(offered) == {**{code: ALL[code]["own_name"] for code in LOCALES}, "sv": "Svenska"}
    for milestone in MILESTONES:
        assert renderer.render(milestone, "sv", full_context("en", milestone)).locale == "sv"


def test_every_language_has_its_test_data() -> None:
    # A catalog without tests/locale_data/<lang>.py would escape every per-language test.
    assert sorted(LOCALES) == sorted(["en", *CATALOGS])


def test_extract_is_stable(tmp_path: Path) -> None:
    # Running the extraction on current catalogs changes nothing: no dates, no line numbers.
    shutil.copytree(TEMPLATES, tmp_path / "templates")
    before = {p.name: p.read_bytes() for p in (tmp_path / "templates" / "locales").iterdir()}
    assert i18n.main(["extract", "--templates", str(tmp_path / "templates")]) == 0
    after = {p.name: p.read_bytes() for p in (tmp_path / "templates" / "locales").iterdir()}
    assert after == before
