"""German test data (see tests/locale_data/__init__.py for what each entry means)."""

from __future__ import annotations

from typing import Any

LOCALE: dict[str, Any] = {
    "own_name": "Deutsch",
    "gsm7": True,
    "ucs2_budget": False,
    "replies_two_segments": False,
    "localized": {
        "address": "Lindenstraße 27, 3. OG, 10969 Berlin",
        "eta": {"date": "Di., 24. Nov.", "start": "10:00", "end": "12:00", "window": "Di., 24. Nov. 10:00-12:00"},
        "occurred_at": "Di., 24. Nov., 09:41",
        "slots": ("Mi 9-12", "Mi 14-18", "Do 9-12"),
        "next_attempt": "Mi., 25. Nov. 10:00-14:00",
        "reason": "Niemand angetroffen, keine Abstellgenehmigung",
        "recipient": "R. Keller (Nachbar)",
        "place": "Garage links neben der Haustür",
        "pickup": {
            "name": "Kiosk am Bahnhofsplatz",
            "address": "Bahnhofsplatz 4, 10969 Berlin",
            "hours": "Mo-Sa 8:00-20:00",
            "until": "Fr., 4. Dez.",
        },
    },
    "replies": {
        "gsm": {
            "slot": "Di., 24. Nov. 9-12",
            "neighbour": "Frau Li, Nr. 12",
            "place": "Garage hinter der Mülltonne",
            "note": "Bitte zweimal klingeln, die Klingel ist kaputt",
        },
        "ucs2": {
            "slot": "Di., 24. Nov. 9\u201312",
            "neighbour": "Frau Şahin, Nr. 12",
            "place": "Garage \u2013 Code 4711",
            "note": "Bitte zweimal klingeln \u2013 Klingel kaputt",
        },
    },
    "instruction_keywords": ("TÜR", "NACHBAR <Name/Nr.>", "ABLAGE <Ort>", "IMMER"),
    "slot_reply": "Antworten Sie 1 für",
    "rating": "antworten sie 1-5",
    "call_phrases": ("anruf oder sms",),
    "not_understood_plural": ("Antworten Sie 1 für den neuen Termin,", "Antworten Sie 1-3 für einen neuen Termin,"),
}
