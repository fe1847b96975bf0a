"""SMS segment counting (GSM 03.38 7-bit default alphabet vs UCS-2).

A message that uses only the GSM-7 basic set (plus its extension table, where each character
costs two septets: the escape and the character) fits 160 septets in one segment or 153 per
segment when concatenated. Any other character switches the whole message to UCS-2: 70 code
units in one segment, 67 when concatenated. Characters outside the BMP (most emoji) take two
UCS-2 code units, a surrogate pair.

This is the one counter: the dispatcher records what a sent SMS cost with it, the template tests
hold messages to their segment budget with it, and the sandbox's Twilio fake reports
``num_segments`` / ``NumSegments`` with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["SegmentInfo", "count_segments"]

# The GSM-7 default alphabet: one septet each.
_GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# The GSM-7 extension table: two septets each (an escape, then the character).
_GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

Encoding = Literal["GSM-7", "UCS-2"]


@dataclass(frozen=True)
class SegmentInfo:
    encoding: Encoding
    units: int  # septets (GSM-7) or 16-bit code units (UCS-2)
    segments: int


def count_segments(text: str) -> SegmentInfo:
    """The encoding, length in encoding units and number of SMS segments of ``text``.

    An empty text counts as one segment (with zero units): a message with no text still goes
    out as one SMS, which the carrier delivers and bills as one. The only ``0`` Twilio documents for
    ``num_segments`` means "not known yet" (a message sent through a Messaging Service before a
    sender is chosen), not "empty". Every caller wants the number of
    messages on the wire: the dispatcher records it as the cost of a send, the template tests
    hold it to a budget, the sandbox reports it where Twilio would.
    """
    septets = 0
    for ch in text:
        if ch in _GSM7_BASIC:
            septets += 1
        elif ch in _GSM7_EXTENSION:
            septets += 2
        else:
            units = sum(2 if ord(c) > 0xFFFF else 1 for c in text)
            return SegmentInfo("UCS-2", units, _segments(units, 70, 67))
    return SegmentInfo("GSM-7", septets, _segments(septets, 160, 153))


def _segments(units: int, single: int, multi: int) -> int:
    """Segments for ``units``: one while they fit ``single`` (empty included), else ``multi`` each."""
    if units <= single:
        return 1
    return -(-units // multi)
