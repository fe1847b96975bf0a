"""The reply parser: keywords, numbers and instructions in English, German, Spanish and French."""

from __future__ import annotations

import pytest

from hub.replies import ReplyWords, parse_reply


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("STOP", "stop"),
        ("stop!", "stop"),
        ("  StopAll ", "stop"),
        ("unsubscribe", "stop"),
        ("Cancel", "stop"),
        ("END", "stop"),
        ("quit.", "stop"),
        ("START", "start"),
        ("unstop", "start"),
        ("yes", "start"),
        ("HELP", "help"),
        ("Info?", "help"),
        ("", "empty"),
        ("   ", "empty"),
    ],
)
def test_compliance_keywords_are_case_and_whitespace_insensitive(text: str, kind: str) -> None:
    assert parse_reply(text).kind == kind


def test_a_keyword_inside_a_sentence_is_not_a_command() -> None:
    assert parse_reply("please stop by after 5").kind == "text"


@pytest.mark.parametrize(
    ("text", "number", "comment"),
    [
        ("2", 2, ""),
        ("2.", 2, ""),
        ("2)", 2, ""),
        ("option 2", 2, ""),
        ("Option 3", 3, ""),
        ("Nr. 2", 2, ""),
        ("Nummer 1", 1, ""),
        ("opción 2", 2, ""),
        ("opcion 2", 2, ""),
        ("número 3", 3, ""),
        ("choix 1", 1, ""),
        ("numéro 2", 2, ""),
        ("#2", 2, ""),
        ("zwei", 2, ""),
        ("dos", 2, ""),
        ("deux", 2, ""),
        ("three", 3, ""),
        ("5 great driver", 5, "great driver"),
        ("4 - sehr freundlich", 4, "sehr freundlich"),
    ],
)
def test_numbers_in_four_languages(text: str, number: int, comment: str) -> None:
    reply = parse_reply(text)
    assert (reply.kind, reply.number, reply.comment) == ("number", number, comment)


@pytest.mark.parametrize(
    ("text", "instruction", "note", "always"),
    [
        ("DOOR", "leave_at_door", "", False),
        ("Tür", "leave_at_door", "", False),
        ("puerta", "leave_at_door", "", False),
        ("PORTE toujours", "leave_at_door", "", True),
        ("NEIGHBOUR Mrs Li, no. 12", "neighbour", "Mrs Li, no. 12", False),
        ("neighbor 14", "neighbour", "14", False),
        ("Nachbar Müller immer", "neighbour", "Müller", True),
        ("vecino 3B", "neighbour", "3B", False),
        ("voisine Mme Roy", "neighbour", "Mme Roy", False),
        ("SAFE garage ALWAYS", "safe_place", "garage", True),
        ("Ablage Gartenhaus", "safe_place", "Gartenhaus", False),
        ("sitio patio", "safe_place", "patio", False),
        ("lieu abri vélo", "safe_place", "abri vélo", False),
    ],
)
def test_instructions_in_four_languages(text: str, instruction: str, note: str, always: bool) -> None:
    reply = parse_reply(text)
    assert (reply.kind, reply.instruction, reply.note, reply.always) == ("instructions", instruction, note, always)


def test_anything_else_is_free_text() -> None:
    reply = parse_reply("Leave it behind the blue bin")
    assert (reply.kind, reply.note) == ("text", "Leave it behind the blue bin")


@pytest.mark.parametrize(
    "text",
    ["Due to work I'm not home", "Sei bitte pünktlich", "zwei bitte", "Otto is my neighbour"],
)
def test_a_number_word_starting_a_sentence_is_not_a_choice(text: str) -> None:
    # The words of every language are understood at once: Italian "due", "sei", "otto" must not
    # turn an English or German sentence into option 2, 6 or 8.
    assert parse_reply(text).kind == "text"


@pytest.mark.parametrize(("text", "number", "comment"), [("Two, thanks", 2, "thanks"), ("drei!", 3, "")])
def test_a_number_word_set_apart_by_punctuation_keeps_its_comment(text: str, number: int, comment: str) -> None:
    reply = parse_reply(text)
    assert (reply.kind, reply.number, reply.comment) == ("number", number, comment)


JAPANESE = ReplyWords.of(
    {
        "leave at the door": ["DOOR", "玄関", "置き配", "ドア"],
        "neighbour": ["NEIGHBOUR", "隣", "お隣"],
        "safe place": ["SAFE", "置き場所"],
        "always": ["ALWAYS", "毎回"],
        "1": ["ONE", "一"],
        "2": ["TWO", "二"],
        "before a number": ["OPTION", "番号"],
        "articles": ["A"],
    }
)


@pytest.mark.parametrize(
    ("text", "kind", "number", "instruction", "note"),
    [
        ("\uff12", "number", 2, None, ""),  # full-width digit
        ("\uff12\u756a", "number", 2, None, ""),  # full-width 2番
        ("2番目。", "number", 2, None, ""),
        ("二番", "number", 2, None, ""),
        ("番号 1", "number", 1, None, ""),
        ("玄関。", "instructions", None, "leave_at_door", ""),
        ("置き配でお願いします", "instructions", None, "leave_at_door", ""),
        ("ドアの前", "instructions", None, "leave_at_door", ""),
        ("隣の田中さん", "instructions", None, "neighbour", "田中さん"),
        ("置き場所 物置", "instructions", None, "safe_place", "物置"),
        ("よろしくお願いします", "text", None, None, "よろしくお願いします"),
    ],
)
def test_japanese_replies_need_no_spaces(
    text: str, kind: str, number: int | None, instruction: str | None, note: str
) -> None:
    reply = parse_reply(text, JAPANESE)
    assert (reply.kind, reply.number, reply.instruction) == (kind, number, instruction)
    assert reply.note == note
