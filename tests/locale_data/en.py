"""English test data (see tests/locale_data/__init__.py for what each entry means)."""

from __future__ import annotations

from typing import Any

LOCALE: dict[str, Any] = {
    "own_name": "English",
    "gsm7": True,
    "ucs2_budget": False,
    "replies_two_segments": False,
    "localized": {
        "address": "Flat 3, 27 Willow Crescent, Springfield SP1 4AB",
        "eta": {"date": "Tue, 24 Nov", "start": "10:00", "end": "12:00", "window": "Tue, 24 Nov 10:00-12:00"},
        "occurred_at": "Tue, 24 Nov 09:41",
        "slots": ("Wed 9-12", "Wed 14-18", "Thu 9-12"),
        "next_attempt": "Wed, 25 Nov 10:00-14:00",
        "reason": "No one was available to sign for it",
        "recipient": "R. Keller (neighbour)",
        "place": "Garage, left of the front door",
        "pickup": {
            "name": "Station Road Parcel Shop",
            "address": "12 Station Road, Springfield",
            "hours": "Mon-Sat 8:00-20:00",
            "until": "Fri, 4 Dec",
        },
    },
    "replies": {
        "gsm": {
            "slot": "Tue 24 Nov 9-12",
            "neighbour": "Mrs Li at no. 12",
            "place": "garage, behind the bins",
            "note": "Please ring twice, the bell is broken",
        },
        "ucs2": {
            "slot": "Tue 24 Nov 9\u201312",
            "neighbour": "Mrs Li at no. 12 \u2013 flat 3",
            "place": "garage \u2013 code 4711",
            "note": "Ring twice, the bell\u2019s broken",
        },
    },
    "instruction_keywords": ("DOOR", "NEIGHBOUR <name/number>", "SAFE <place>", "ALWAYS"),
    "slot_reply": "Reply 1 for",
    "rating": "reply 1-5",
    "call_phrases": ("call or text",),
    "not_understood_plural": ("Reply 1 to pick the new slot,", "Reply 1-3 to pick a new slot,"),
}
