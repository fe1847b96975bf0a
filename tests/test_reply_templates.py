"""SMS reply texts (``templates/_replies.txt.j2`` and its translations): every block renders in every locale,
uses only the variables it is given, says what it should and fits the SMS segment budget."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from babel.messages.pofile import read_po
from jinja2 import nodes

from channels.segments import count_segments
from hub.render import Renderer
from tests.locale_data import ALL, LOCALES

TEMPLATES = Path(__file__).parents[1] / "templates"
BLOCKS = (
    "stop_confirm",
    "start_confirm",
    "help",
    "reschedule_confirm",
    "reschedule_invalid",
    "reschedule_closed",
    "instructions_confirm",
    "rating_thanks",
    "rating_invalid",
    "not_understood",
    "unknown_number",
    "confirm_thanks",
    "confirm_invalid",
    "confirm_closed",
)
KINDS = ("leave_at_door", "neighbour", "safe_place", "note")

# Spanish and French replies may take two segments; English and German ones must fit in one,
# except the full list of options in `not_understood`.
TWO_SEGMENT_LOCALES = tuple(code for code in LOCALES if ALL[code]["replies_two_segments"])
TWO_SEGMENT_BLOCKS = ("not_understood",)

SENDER = {"name": "Springfield Parcel Express", "help_url": "https://parcelhub.example/help"}
SENDER_NO_URL = {"name": "Parcelhub", "help_url": None}
LINK = "https://hub.example/t/AbCdEf123456"

# Keywords the inbound parser accepts, exactly as `not_understood` must spell them.
INSTRUCTION_KEYWORDS = {code: data["instruction_keywords"] for code, data in ALL.items()}

# Customer data the hub passes in, as plain GSM-7 text ("gsm") and with characters that switch
# the whole SMS to UCS-2 ("ucs2"): accented data must not push a reply past two segments.
DATA: dict[str, dict[str, dict[str, str]]] = {
    charset: {code: data["replies"][charset] for code, data in ALL.items()} for charset in ("gsm", "ucs2")
}

TYPOGRAPHIC = "\u2018\u2019\u201c\u201d\u2013\u2014\u00ab\u00bb\u2026"


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(TEMPLATES)


def reply(renderer: Renderer, locale: str | None, block: str, **variables: Any) -> str:
    """Render one reply block with ``sender`` plus exactly the given variables."""
    context: Mapping[str, Any] = {"sender": SENDER, **variables}
    return renderer.render_block(locale, "_replies", block, context)


def cases(locale: str, charset: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(block, case id, variables) for every block and every branch it has."""
    data = DATA[charset][locale]
    yield "stop_confirm", "", {}
    yield "start_confirm", "", {}
    yield "help", "url", {}
    yield "help", "no-url", {"sender": SENDER_NO_URL}
    yield "reschedule_confirm", "", {"slot": data["slot"]}
    for count in (1, 3, 7, 12):
        yield "reschedule_invalid", f"count={count}", {"count": count}
    yield "reschedule_closed", "link", {"link": LINK}
    yield "reschedule_closed", "no-link", {"link": None}
    notes = {"leave_at_door": "", "neighbour": data["neighbour"], "safe_place": data["place"], "note": data["note"]}
    for kind, always in itertools.product(KINDS, (False, True)):
        for note in dict.fromkeys((notes[kind], "")):
            case = f"{kind}-{'note' if note else 'empty'}{'-always' if always else ''}"
            yield "instructions_confirm", case, {"kind": kind, "note": note, "always": always}
    for rating, with_comment in itertools.product(range(1, 6), (False, True)):
        case = f"{rating}{'-comment' if with_comment else ''}"
        yield "rating_thanks", case, {"rating": rating, "with_comment": with_comment}
    yield "rating_invalid", "", {}
    for slots, rating, instructions in itertools.product((0, 1, 3, 10), (False, True), (False, True)):
        case = f"slots={slots}-rating={rating}-instructions={instructions}"
        yield "not_understood", case, {"slots": slots, "rating": rating, "instructions": instructions}
    yield "unknown_number", "", {}
    yield "confirm_thanks", "window", {"window": data["slot"]}
    yield "confirm_thanks", "no-window", {"window": None}
    for slots in (0, 1, 3, 12):
        yield "confirm_invalid", f"slots={slots}", {"slots": slots}
    yield "confirm_closed", "link", {"link": LINK}
    yield "confirm_closed", "no-link", {"link": None}


ALL_CASES = [
    pytest.param(locale, block, variables, id=f"{locale}-{charset}-{block}{'-' + case if case else ''}")
    for locale, charset in itertools.product(LOCALES, DATA)
    for block, case, variables in cases(locale, charset)
]


# --- structure -------------------------------------------------------------------------------


def test_file_holds_only_the_expected_blocks(renderer: Renderer) -> None:
    path = "_replies.txt.j2"
    source = (TEMPLATES / path).read_text(encoding="utf-8")
    tree = renderer.env("en").parse(source, path)

    names = []
    for node in tree.body:
        if isinstance(node, nodes.Block):
            names.append(node.name)
            continue
        # Between blocks only whitespace is allowed: no top-level imports, sets or text.
        assert isinstance(node, nodes.Output), f"top-level {type(node).__name__} in {path}"
        for child in node.nodes:
            assert isinstance(child, nodes.TemplateData) and not child.data.strip(), f"top-level text in {path}"
    assert sorted(names) == sorted(BLOCKS)


@pytest.mark.parametrize("locale", LOCALES)
def test_no_typographic_punctuation(locale: str) -> None:
    # A curly apostrophe or an en dash turns the whole SMS into UCS-2.
    source = (TEMPLATES / "_replies.txt.j2").read_text(encoding="utf-8")
    assert not set(source) & set(TYPOGRAPHIC)
    if locale != "en":
        with (TEMPLATES / "locales" / f"{locale}.po").open("rb") as f:
            catalog = read_po(f)
        for message in catalog:
            if any(path == "_replies.txt.j2" for path, _ in message.locations):
                texts = message.string if isinstance(message.string, tuple) else (message.string,)
                assert not set("".join(texts)) & set(TYPOGRAPHIC), message.id


# --- every block, every branch --------------------------------------------------------------


@pytest.mark.parametrize(("locale", "block", "variables"), ALL_CASES)
def test_reply_renders_within_segment_budget(
    renderer: Renderer, locale: str, block: str, variables: dict[str, Any]
) -> None:
    text = reply(renderer, locale, block, **variables)

    assert text
    assert text == " ".join(text.split())
    assert "{" not in text and "None" not in text
    info = count_segments(text)
    two_segments = locale in TWO_SEGMENT_LOCALES or block in TWO_SEGMENT_BLOCKS or info.encoding == "UCS-2"
    assert info.segments <= (2 if two_segments else 1), f"{info.units} {info.encoding} units: {text}"


@pytest.mark.parametrize("locale", [code for code in LOCALES if ALL[code]["gsm7"]])
def test_fixed_text_is_gsm7(renderer: Renderer, locale: str) -> None:
    # With plain data, nothing in these languages' replies needs UCS-2.
    for block, _, variables in cases(locale, "gsm"):
        text = reply(renderer, locale, block, **variables)
        assert count_segments(text).encoding == "GSM-7", text


def test_spanish_needs_ucs2_only_for_numero(renderer: Renderer) -> None:
    # "número" (in the VECINO keyword and in long slot lists) is the only non-GSM word.
    for block, _, variables in cases("es", "gsm"):
        text = reply(renderer, "es", block, **variables)
        if count_segments(text).encoding == "UCS-2":
            assert "número" in text, text


# --- content -------------------------------------------------------------------------------


@pytest.mark.parametrize("locale", LOCALES)
def test_opt_out_and_opt_in_name_the_keywords(renderer: Renderer, locale: str) -> None:
    stop = reply(renderer, locale, "stop_confirm")
    start = reply(renderer, locale, "start_confirm")

    assert "START" in stop and SENDER["name"] in stop
    assert "STOP" in start and SENDER["name"] in start


@pytest.mark.parametrize("locale", LOCALES)
def test_help_names_sender_opt_out_and_help_url(renderer: Renderer, locale: str) -> None:
    with_url = reply(renderer, locale, "help")
    without_url = reply(renderer, locale, "help", sender=SENDER_NO_URL)

    assert SENDER["name"] in with_url and SENDER["help_url"] in with_url and "STOP" in with_url
    assert SENDER_NO_URL["name"] in without_url and "STOP" in without_url
    assert "http" not in without_url


@pytest.mark.parametrize("locale", LOCALES)
def test_unknown_number_names_sender_and_help(renderer: Renderer, locale: str) -> None:
    text = reply(renderer, locale, "unknown_number")
    assert SENDER["name"] in text and "HELP" in text


@pytest.mark.parametrize("charset", sorted(DATA))
@pytest.mark.parametrize("locale", LOCALES)
def test_reschedule_confirm_shows_slot(renderer: Renderer, locale: str, charset: str) -> None:
    slot = DATA[charset][locale]["slot"]
    text = reply(renderer, locale, "reschedule_confirm", slot=slot)
    assert slot in text
    assert ".." not in text


@pytest.mark.parametrize("locale", LOCALES)
def test_reschedule_confirm_does_not_double_full_stop(renderer: Renderer, locale: str) -> None:
    assert ".." not in reply(renderer, locale, "reschedule_confirm", slot="Di., 24. Nov.")


@pytest.mark.parametrize("count", (2, 3, 7, 12))
@pytest.mark.parametrize("locale", LOCALES)
def test_reschedule_invalid_shows_count(renderer: Renderer, locale: str, count: int) -> None:
    text = reply(renderer, locale, "reschedule_invalid", count=count)
    assert str(count) in text
    assert "1" in text


@pytest.mark.parametrize("locale", LOCALES)
def test_reschedule_invalid_with_one_choice(renderer: Renderer, locale: str) -> None:
    text = reply(renderer, locale, "reschedule_invalid", count=1)
    assert "1" in text
    assert "1-1" not in text and "1 to 1" not in text
    assert text != reply(renderer, locale, "reschedule_invalid", count=2)


@pytest.mark.parametrize("locale", LOCALES)
def test_reschedule_closed_points_to_link(renderer: Renderer, locale: str) -> None:
    with_link = reply(renderer, locale, "reschedule_closed", link=LINK)
    without_link = reply(renderer, locale, "reschedule_closed", link=None)

    assert LINK in with_link
    assert "http" not in without_link
    assert with_link.startswith(without_link.rstrip("."))


@pytest.mark.parametrize("locale", LOCALES)
def test_instructions_confirm_shows_note_and_always(renderer: Renderer, locale: str) -> None:
    data = DATA["gsm"][locale]
    notes = {"neighbour": data["neighbour"], "safe_place": data["place"], "note": data["note"]}
    texts = set()
    for kind in KINDS:
        note = notes.get(kind, "")
        once = reply(renderer, locale, "instructions_confirm", kind=kind, note=note, always=False)
        always = reply(renderer, locale, "instructions_confirm", kind=kind, note=note, always=True)
        empty = reply(renderer, locale, "instructions_confirm", kind=kind, note="", always=False)

        if note:
            assert note in once and note in always
            assert ": ." not in empty and not empty.endswith(":")
        assert always.startswith(once) and len(always) > len(once)
        assert ".." not in once
        texts.add(once)
    assert len(texts) == len(KINDS), "each kind needs its own wording"


@pytest.mark.parametrize("locale", LOCALES)
def test_instructions_confirm_note_ending_in_full_stop(renderer: Renderer, locale: str) -> None:
    text = reply(renderer, locale, "instructions_confirm", kind="note", note="Code 4711.", always=True)
    assert "Code 4711." in text and ".." not in text


@pytest.mark.parametrize("locale", LOCALES)
def test_rating_thanks_apologises_for_low_ratings(renderer: Renderer, locale: str) -> None:
    def thanks(rating: int, with_comment: bool = False) -> str:
        return reply(renderer, locale, "rating_thanks", rating=rating, with_comment=with_comment)

    assert thanks(1) != thanks(5)
    assert thanks(1) == thanks(2)  # both are low: same apology
    assert thanks(3) not in (thanks(1), thanks(5))
    assert len(thanks(1)) > len(thanks(3))
    assert thanks(4) == thanks(5)
    for rating in range(1, 6):
        assert thanks(rating, with_comment=True) != thanks(rating)


@pytest.mark.parametrize("locale", LOCALES)
def test_rating_invalid_asks_for_one_to_five(renderer: Renderer, locale: str) -> None:
    text = reply(renderer, locale, "rating_invalid")
    assert "1" in text and "5" in text


@pytest.mark.parametrize(
    ("slots", "rating", "instructions"), list(itertools.product((0, 1, 3, 10), (False, True), (False, True)))
)
@pytest.mark.parametrize("locale", LOCALES)
def test_not_understood_lists_what_can_be_replied(
    renderer: Renderer, locale: str, slots: int, rating: bool, instructions: bool
) -> None:
    text = reply(renderer, locale, "not_understood", slots=slots, rating=rating, instructions=instructions)

    assert "STOP" in text and "HELP" in text
    assert (f"1-{slots}" in text) == (slots > 1)
    if slots == 1:
        assert "1" in text
    assert ("1-5" in text) == rating
    if not slots and not rating:
        assert not any(ch.isdigit() for ch in text)
    keywords = INSTRUCTION_KEYWORDS[locale]
    for keyword in keywords:
        assert (keyword in text) == instructions, keyword
    for other, words in INSTRUCTION_KEYWORDS.items():
        if other != locale:
            assert words[1] not in text, f"{other} keyword in {locale}"


@pytest.mark.parametrize("locale", LOCALES)
def test_every_block_exists_in_every_locale(renderer: Renderer, locale: str) -> None:
    template = renderer.env(locale).get_template("_replies.txt.j2")
    assert set(template.blocks) == set(BLOCKS)


@pytest.mark.parametrize(("requested", "used"), [("de-AT", "de"), ("fr_CA", "fr"), ("sv-SE", "en"), (None, "en")])
def test_locale_falls_back_like_milestones(renderer: Renderer, requested: str | None, used: str) -> None:
    for block, _, variables in cases(used, "gsm"):
        assert reply(renderer, requested, block, **variables) == reply(renderer, used, block, **variables)
