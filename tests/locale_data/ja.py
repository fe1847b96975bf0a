"""Japanese test data (see tests/locale_data/__init__.py for what each entry means).

Every Japanese SMS is UCS-2, whatever the data. Dates are as Babel formats the hub's pattern
``EEE d MMM`` in Japanese ("火 24 11月"). The "gsm" reply data is plain Japanese text, the "ucs2"
data adds the longer slot form and typographic characters.
"""

# Japanese text is written with full-width brackets and colons, as the catalog writes it.
# ruff: noqa: RUF001

from __future__ import annotations

from typing import Any

LOCALE: dict[str, Any] = {
    "own_name": "日本語",
    "gsm7": False,
    "ucs2_budget": True,
    "replies_two_segments": True,
    "localized": {
        "address": "東京都世田谷区桜新町2丁目14-7 グランメゾン桜新町305号室",
        "eta": {"date": "火 24 11月", "start": "10:00", "end": "12:00", "window": "火 24 11月 10:00-12:00"},
        "occurred_at": "火 24 11月 09:41",
        "slots": ("水 25 11月 9-12", "水 25 11月 14-18", "木 26 11月 9-12"),
        "next_attempt": "水 25 11月 10:00-14:00",
        "reason": "ご不在のため持ち戻りました",
        "recipient": "田中様（お隣）",
        "place": "玄関前の宅配ボックス",
        "pickup": {
            "name": "ファミリーマート桜新町駅前店",
            "address": "東京都世田谷区桜新町1-21-3",
            "hours": "毎日 7:00-23:00",
            "until": "金 4 12月",
        },
    },
    "replies": {
        "gsm": {
            "slot": "水 25 11月 9-12",
            "neighbour": "田中さん 302号室",
            "place": "宅配ボックス 3番",
            "note": "インターホンが故障しているのでノックしてください",
        },
        "ucs2": {
            "slot": "水 25 11月 14:30-18:00",
            "neighbour": "隣の佐藤様（201号室）",
            "place": "ガスメーターボックスの中 \u2013 暗証番号4711",
            "note": "犬がいるので、門の外から声をかけてください",
        },
    },
    "instruction_keywords": ("玄関", "隣 <名前/部屋番号>", "置き場所 <場所>", "毎回"),
    "slot_reply": "番号でご返信ください：1",
    "rating": "1-5の数字でご返信",
    "call_phrases": ("電話",),
    "not_understood_plural": ("ご返信ください： 1（日時の選択）", "ご返信ください： 1-3（日時の選択）"),
}
