"""Parse a customer's SMS reply into what it asks for. Pure functions, no I/O.

Understood, case-, accent- and whitespace-insensitively:

- compliance keywords (the whole message), in English in every language as carriers require:
  STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT -> ``stop``; START, UNSTOP, YES -> ``start``;
  HELP, INFO -> ``help``;
- a number, alone or as "2.", "2)", "option 2", "Nr. 2", "opción 2", "choix 2", or a number
  word ("two", "zwei", "dos", "deux"), optionally followed by a comment -> ``number``;
- instructions: DOOR / TÜR / PUERTA / PORTE; NEIGHBOUR <detail> / NACHBAR / VECINO / VOISIN;
  SAFE <place> / ABLAGE / SITIO / LIEU; with ALWAYS / IMMER / SIEMPRE / TOUJOURS anywhere to
  keep the instruction for future deliveries -> ``instructions``;
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

_TRAILING = re.compile(r"[\s.!?,;:]+$")


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
                rf"^(?:(?:{'|'.join(prefixes)})\.?\s*)?(\d{{1,2}})\s*[.)!:,-]?(?:\s+(?P<rest>.*))?$",
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
        comment = text[digits.end() :].lstrip(" .)!:,-").strip() if digits and match.group("rest") else ""
        return Reply("number", number=int(match.group(1)), comment=comment, text=text)
    words = text.split()
    first = _fold(_TRAILING.sub("", words[0]))
    if first in vocabulary.numbers and (len(words) == 1 or first not in vocabulary.only_alone):
        return Reply("number", number=vocabulary.numbers[first], comment=" ".join(words[1:]), text=text)

    always = any(_fold(_TRAILING.sub("", w)) in vocabulary.always for w in words)
    kept = [w for w in words if _fold(_TRAILING.sub("", w)) not in vocabulary.always]
    head = _fold(_TRAILING.sub("", kept[0])) if kept else ""
    detail = " ".join(kept[1:]).strip(" :,-")
    if head in vocabulary.door:
        return Reply("instructions", instruction="leave_at_door", note=detail, always=always, text=text)
    if head in vocabulary.neighbour:
        return Reply("instructions", instruction="neighbour", note=detail, always=always, text=text)
    if head in vocabulary.safe:
        return Reply("instructions", instruction="safe_place", note=detail, always=always, text=text)
    return Reply("text", note=text, always=always, text=text)
