"""Parse a customer's SMS reply into what it asks for. Pure functions, no I/O.

Understood, case-, accent- and whitespace-insensitively:

- compliance keywords (the whole message), in English in every language as carriers require:
  STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT -> ``stop``; START, UNSTOP, YES -> ``start``;
  HELP, INFO -> ``help``;
- a number, alone or as "2.", "2)", "２番", "option 2", "Nr. 2", "opción 2", "choix 2",
  optionally followed by a comment, or a number word ("two", "zwei", "due", "二"), followed by
  a comment only when punctuation sets it apart ("Two, thanks") -> ``number``;
- instructions: DOOR / TÜR / PUERTA / PORTE; NEIGHBOUR <detail> / NACHBAR / VECINO / VOISIN;
  SAFE <place> / ABLAGE / SITIO / LIEU; with ALWAYS / IMMER / SIEMPRE / TOUJOURS anywhere to
  keep the instruction for future deliveries -> ``instructions`` (in Japanese and Chinese, which
  write no spaces, a reply that starts with such a word: "置き配でお願いします");
- anything else -> ``text`` (the conversation decides whether free text is an instruction).

The words other than the compliance keywords come from the gettext catalogs
(``templates/_reply_words.txt.j2``, read by ``hub.i18n.reply_words``), so a language's catalog
brings its reply words with it; every language's words are understood from every customer.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

from .i18n import reply_words

__all__ = ["Reply", "ReplyWords", "parse_reply"]

Kind = Literal["stop", "start", "help", "number", "instructions", "text", "empty"]

STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
START_WORDS = frozenset({"START", "UNSTOP", "YES"})
HELP_WORDS = frozenset({"HELP", "INFO"})

# Western and CJK full stops, commas and marks ("玄関。", "2番!" in full width).
_TRAILING = re.compile(r"[\s.!?,;:\u3001\u3002\uff01\uff1f\uff0c]+$")
# A number word followed by more text counts only when punctuation sets it apart ("Two, thanks"):
# with every language's words pooled, "Due to work…" must not pick option 2 (Italian "due").
_SET_APART = re.compile(r"[.!?,;:)\-\u3001\u3002\uff01\uff1f\uff0c]$")
# Japanese counts an option with 番 or 番目 ("2番", "二番目").
_COUNTER = re.compile(r"(?:\u756a\u76ee?)$")


@dataclass(frozen=True)
class Reply:
    kind: Kind
    number: int | None = None
    comment: str = ""  # text after a number ("5 great driver" -> "great driver")
    instruction: Literal["leave_at_door", "neighbour", "safe_place"] | None = None
    note: str = ""  # the detail of an instruction, or the whole free text
    always: bool = False
    text: str = ""  # the reply as received, whitespace collapsed


def _fold(word: str) -> str:
    """Upper case without accents: "Tür" -> "TUR", "opción" -> "OPCION"."""
    decomposed = unicodedata.normalize("NFKD", word)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).upper()


@dataclass(frozen=True)
class ReplyWords:
    """The words of replies, folded (capitals, no accents): what each one means."""

    door: frozenset[str]
    neighbour: frozenset[str]
    safe: frozenset[str]
    always: frozenset[str]
    numbers: Mapping[str, int]
    only_alone: frozenset[str]  # number words that are also articles ("un"): a number only alone
    number: re.Pattern[str]  # a number, after an optional word such as "option" or "Nr."

    @classmethod
    def of(cls, words: Mapping[str, Iterable[str]]) -> ReplyWords:
        """From ``hub.i18n.reply_words``: meaning -> the words of every language."""

        def folded(meaning: str) -> frozenset[str]:
            return frozenset(_fold(w) for w in words.get(meaning, ()))

        numbers = {w: n for n in range(1, 10) for w in folded(str(n))}
        prefixes = sorted({re.escape(w.lower()) for w in folded("before a number")} | {"#"}, key=lambda w: (-len(w), w))
        return cls(
            door=folded("leave at the door"),
            neighbour=folded("neighbour"),
            safe=folded("safe place"),
            always=folded("always"),
            numbers=numbers,
            only_alone=folded("articles") & frozenset(numbers),
            number=re.compile(
                rf"^(?:(?:{'|'.join(prefixes)})\.?\s*)?(\d{{1,2}})\s*(?:\u756a\u76ee?)?[.)!:,\-\u3001\u3002\uff01]?(?:\s+(?P<rest>.*))?$",
                re.IGNORECASE | re.DOTALL,
            ),
        )

    @staticmethod
    @cache
    def shipped() -> ReplyWords:
        """The words of the templates shipped with the hub (tools and tests; the hub itself
        reads those of its configured templates directory)."""
        return ReplyWords.of(reply_words(Path(__file__).resolve().parent.parent / "templates"))


def parse_reply(body: str, vocabulary: ReplyWords | None = None) -> Reply:
    """``vocabulary``: the reply words to know (default: those of the shipped catalogs)."""
    vocabulary = vocabulary or ReplyWords.shipped()
    text = " ".join((body or "").split())
    if not text:
        return Reply("empty")
    bare = _fold(_TRAILING.sub("", text))
    if bare in STOP_WORDS:
        return Reply("stop", text=text)
    if bare in START_WORDS:
        return Reply("start", text=text)
    if bare in HELP_WORDS:
        return Reply("help", text=text)

    folded = _fold(text)
    match = vocabulary.number.match(folded)
    if match:
        # The comment is cut from the original text (folding can change its length: ß -> SS).
        digits = re.search(r"\d{1,2}", text)
        rest = text[digits.end() :] if digits and match.group("rest") else ""
        comment = _COUNTER.sub("", rest.split(" ", 1)[0]) + (" " + rest.split(" ", 1)[1] if " " in rest else "")
        return Reply("number", number=int(match.group(1)), comment=comment.lstrip(" .)!:,-").strip(), text=text)
    words = text.split()
    first = _COUNTER.sub("", _fold(_TRAILING.sub("", words[0])))
    alone = len(words) == 1 or (first not in vocabulary.only_alone and bool(_SET_APART.search(words[0])))
    if first in vocabulary.numbers and alone:
        return Reply("number", number=vocabulary.numbers[first], comment=" ".join(words[1:]), text=text)

    always = any(_fold(_TRAILING.sub("", w)) in vocabulary.always for w in words)
    kept = [w for w in words if _fold(_TRAILING.sub("", w)) not in vocabulary.always]
    detail = " ".join(kept[1:]).strip(" :,-")
    head, detail = _unspaced(_TRAILING.sub("", kept[0]), detail, vocabulary) if kept else ("", detail)
    if head in vocabulary.door:
        return Reply("instructions", instruction="leave_at_door", note=detail, always=always, text=text)
    if head in vocabulary.neighbour:
        return Reply("instructions", instruction="neighbour", note=detail, always=always, text=text)
    if head in vocabulary.safe:
        return Reply("instructions", instruction="safe_place", note=detail, always=always, text=text)
    return Reply("text", note=text, always=always, text=text)


def _unspaced(word: str, detail: str, vocabulary: ReplyWords) -> tuple[str, str]:
    """Japanese and Chinese write no spaces ("置き配でお願いします", "隣の田中さん"): a first word
    (as written) that is not a reply word but starts with one of these scripts' reply words is that
    word, and the rest of it the detail (for the door, which takes none, the rest is dropped).
    Returns the folded head and the detail."""
    head = _fold(word)
    if not head or head.isascii() or any(head in m for m in (vocabulary.door, vocabulary.neighbour, vocabulary.safe)):
        return head, detail
    for meaning in (vocabulary.door, vocabulary.neighbour, vocabulary.safe):
        for known in sorted((w for w in meaning if not w.isascii() and head.startswith(w)), key=len, reverse=True):
            cut = next(k for k in range(1, len(word) + 1) if _fold(word[:k]) == known)
            rest = word[cut:].lstrip("\u306e\u306b\u3067\u3078 ")  # particles: の に で へ
            return known, "" if meaning is vocabulary.door else " ".join(t for t in (rest, detail) if t)
    return head, detail
