"""Italian test data (see tests/locale_data/__init__.py for what each entry means)."""

from __future__ import annotations

from typing import Any

LOCALE: dict[str, Any] = {
    "own_name": "Italiano",
    "gsm7": True,
    "ucs2_budget": False,
    "replies_two_segments": False,
    "localized": {
        "address": "Via dei Tigli 27, scala B, interno 5, 20121 Milano",
        "eta": {"date": "mar 24 nov", "start": "10:00", "end": "12:00", "window": "mar 24 nov 10:00-12:00"},
        "occurred_at": "mar 24 nov 09:41",
        "slots": ("mer 9-12", "mer 14-18", "gio 9-12"),
        "next_attempt": "mer 25 nov 10:00-14:00",
        "reason": "Destinatario assente al momento della consegna",
        "recipient": "R. Keller (vicino di casa)",
        "place": "Garage, a sinistra del portone",
        "pickup": {
            "name": "Tabaccheria di Piazza Duomo",
            "address": "Piazza del Duomo 4, 20122 Milano",
            "hours": "lun-sab 8:00-20:00",
            "until": "ven 4 dic",
        },
    },
    "replies": {
        "gsm": {
            "slot": "mar 24 nov 9-12",
            "neighbour": "Sig.ra Li, interno 12",
            "place": "garage, dietro i bidoni",
            "note": "Suonare due volte, il campanello funziona male",
        },
        "ucs2": {
            "slot": "mar 24 nov 9\u201312",
            "neighbour": "Sig.ra Li, n\u00b0 12",
            "place": "garage \u2013 codice 4711",
            "note": "\u00c8 rotto il campanello, bussare forte",
        },
    },
    "instruction_keywords": ("PORTA", "VICINO <nome/numero>", "POSTO <luogo>", "SEMPRE"),
    "slot_reply": "Risponda 1 per",
    "rating": "risponda 1-5",
    "call_phrases": ("chiamare o scrivere",),
    "not_understood_plural": (
        "Risponda 1 per scegliere il nuovo orario,",
        "Risponda 1-3 per scegliere un nuovo orario,",
    ),
}
