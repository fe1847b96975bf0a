"""SMS segment counting at its edges: empty, exactly full, the GSM-7 extension table, UCS-2 and
characters outside the BMP (surrogate pairs)."""

from __future__ import annotations

import pytest

from channels.segments import SegmentInfo, count_segments


def test_empty_text_is_one_gsm7_segment_of_no_units() -> None:
    assert count_segments("") == SegmentInfo("GSM-7", 0, 1)


@pytest.mark.parametrize(
    ("length", "segments"),
    [(1, 1), (160, 1), (161, 2), (306, 2), (307, 3), (459, 3), (460, 4)],
)
def test_gsm7_fits_160_alone_and_153_per_part(length: int, segments: int) -> None:
    assert count_segments("a" * length) == SegmentInfo("GSM-7", length, segments)


@pytest.mark.parametrize(
    ("length", "segments"),
    [(1, 1), (70, 1), (71, 2), (134, 2), (135, 3), (201, 3), (202, 4)],
)
def test_ucs2_fits_70_alone_and_67_per_part(length: int, segments: int) -> None:
    assert count_segments("ж" * length) == SegmentInfo("UCS-2", length, segments)


def test_extension_table_characters_cost_two_septets() -> None:
    assert count_segments("€" * 80) == SegmentInfo("GSM-7", 160, 1)
    assert count_segments("a" + "€" * 80) == SegmentInfo("GSM-7", 161, 2)
    assert count_segments("^{}\\[~]|€\f") == SegmentInfo("GSM-7", 20, 1)


def test_one_character_outside_gsm7_makes_the_whole_text_ucs2() -> None:
    text = "a" * 69 + "ç"  # lower-case c cedilla is not in the GSM-7 alphabet (only Ç is)
    assert count_segments(text) == SegmentInfo("UCS-2", 70, 1)
    assert count_segments(text + "€") == SegmentInfo("UCS-2", 71, 2)  # no escape cost in UCS-2


def test_characters_outside_the_bmp_take_two_code_units() -> None:
    assert count_segments("📦") == SegmentInfo("UCS-2", 2, 1)
    assert count_segments("📦" * 35) == SegmentInfo("UCS-2", 70, 1)
    assert count_segments("a" + "📦" * 35) == SegmentInfo("UCS-2", 71, 2)


def test_accented_letters_are_gsm7_only_when_the_alphabet_has_them() -> None:
    assert count_segments("Grüße aus Málaga? ¿Qué? Ñandú, Øre, Δ").encoding == "UCS-2"  # á, ú are not GSM-7
    assert count_segments("Grüße, Øre, Δ, ¿Ñ? £5 ¥ è é ù ì ò à").encoding == "GSM-7"
