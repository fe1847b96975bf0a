"""SMS segment counting (GSM 03.38 7-bit default alphabet vs UCS-2).

A message that uses only the GSM-7 basic set (plus its extension table, where each character
costs two septets) fits 160 septets in one segment or 153 per segment when concatenated. Any
other character switches the whole message to UCS-2: 70 code units in one segment, 67 when
concatenated. Characters outside the BMP take two UCS-2 code units.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SegmentInfo", "count_segments"]

_GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENDED = set("^{}\\[~]|€\f")


@dataclass(frozen=True)
class SegmentInfo:
    encoding: str  # "GSM-7" or "UCS-2"
    units: int  # septets (GSM-7) or 16-bit code units (UCS-2)
    segments: int


def count_segments(text: str) -> SegmentInfo:
    """Return the encoding, length in encoding units and number of SMS segments for ``text``."""
    septets = 0
    for ch in text:
        if ch in _GSM7_BASIC:
            septets += 1
        elif ch in _GSM7_EXTENDED:
            septets += 2
        else:
            units = sum(2 if ord(c) > 0xFFFF else 1 for c in text)
            return SegmentInfo("UCS-2", units, _segments(units, 70, 67))
    return SegmentInfo("GSM-7", septets, _segments(septets, 160, 153))


def _segments(units: int, single: int, multi: int) -> int:
    if units == 0:
        return 0
    if units <= single:
        return 1
    return -(-units // multi)
