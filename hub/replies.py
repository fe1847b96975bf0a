"""Parse a customer's SMS reply into what it asks for. Pure functions, no I/O.

Understood, case- and whitespace-insensitively, in English, German, Spanish and French:

- compliance keywords (the whole message): STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT ->
  ``stop``; START, UNSTOP, YES -> ``start``; HELP, INFO -> ``help``;
- a number, alone or as "2.", "2)", "option 2", "Nr. 2", "opción 2", "choix 2", or a number
  word ("two", "zwei", "dos", "deux"), optionally followed by a comment -> ``number``;
- instructions: DOOR / TÜR / PUERTA / PORTE; NEIGHBOUR <detail> / NACHBAR / VECINO / VOISIN;
  SAFE <place> / ABLAGE / SITIO / LIEU; with ALWAYS / IMMER / SIEMPRE / TOUJOURS anywhere to
  keep the instruction for future deliveries -> ``instructions``;
- anything else -> ``text`` (the conversation decides whether free text is an instruction).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

__all__ = ["Reply", "parse_reply"]

Kind = Literal["stop", "start", "help", "number", "instructions", "text", "empty"]

STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
START_WORDS = frozenset({"START", "UNSTOP", "YES"})
HELP_WORDS = frozenset({"HELP", "INFO"})

# Keywords are compared without accents and in upper case (TÜR, TUR and TUER are all "door").
DOOR = frozenset({"DOOR", "TUR", "TUER", "PUERTA", "PORTE"})
NEIGHBOUR = frozenset({"NEIGHBOUR", "NEIGHBOR", "NACHBAR", "NACHBARN", "VECINO", "VECINA", "VOISIN", "VOISINE"})
SAFE = frozenset({"SAFE", "ABLAGE", "ABLAGEORT", "SITIO", "LIEU"})
ALWAYS = frozenset({"ALWAYS", "IMMER", "SIEMPRE", "TOUJOURS"})

NUMBER_WORDS = {
    "ONE": 1, "TWO": 2, "THREE": 3, "FOUR": 4, "FIVE": 5, "SIX": 6, "SEVEN": 7, "EIGHT": 8, "NINE": 9,
    "EINS": 1, "ZWEI": 2, "DREI": 3, "VIER": 4, "FUNF": 5, "FUENF": 5, "SECHS": 6, "SIEBEN": 7, "ACHT": 8, "NEUN": 9,
    "UNO": 1, "DOS": 2, "TRES": 3, "CUATRO": 4, "CINCO": 5, "SEIS": 6, "SIETE": 7, "OCHO": 8, "NUEVE": 9,
    "UN": 1, "UNE": 1, "DEUX": 2, "TROIS": 3, "QUATRE": 4, "CINQ": 5, "SEPT": 7, "HUIT": 8, "NEUF": 9,
}  # fmt: skip
_PREFIX = r"(?:option|opcion|choix|choice|nummer|numero|number|nr|no|num|n|#)\.?\s*"
_NUMBER = re.compile(rf"^(?:{_PREFIX})?(\d{{1,2}})\s*[.)!:,-]?(?:\s+(?P<rest>.*))?$", re.IGNORECASE | re.DOTALL)
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


def parse_reply(body: str) -> Reply:
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
    match = _NUMBER.match(folded)
    if match:
        # The comment is cut from the original text (folding can change its length: ß -> SS).
        digits = re.search(r"\d{1,2}", text)
        comment = text[digits.end() :].lstrip(" .)!:,-").strip() if digits and match.group("rest") else ""
        return Reply("number", number=int(match.group(1)), comment=comment, text=text)
    words = text.split()
    first = _fold(_TRAILING.sub("", words[0]))
    if first in NUMBER_WORDS and (len(words) == 1 or first not in ("UN", "UNE")):
        return Reply("number", number=NUMBER_WORDS[first], comment=" ".join(words[1:]), text=text)

    always = any(_fold(_TRAILING.sub("", w)) in ALWAYS for w in words)
    kept = [w for w in words if _fold(_TRAILING.sub("", w)) not in ALWAYS]
    head = _fold(_TRAILING.sub("", kept[0])) if kept else ""
    detail = " ".join(kept[1:]).strip(" :,-")
    if head in DOOR:
        return Reply("instructions", instruction="leave_at_door", note=detail, always=always, text=text)
    if head in NEIGHBOUR:
        return Reply("instructions", instruction="neighbour", note=detail, always=always, text=text)
    if head in SAFE:
        return Reply("instructions", instruction="safe_place", note=detail, always=always, text=text)
    return Reply("text", note=text, always=always, text=text)
