"""Dutch test data (see tests/locale_data/__init__.py for what each entry means)."""

from __future__ import annotations

from typing import Any

LOCALE: dict[str, Any] = {
    "own_name": "Nederlands",
    "gsm7": True,
    "ucs2_budget": False,
    "replies_two_segments": False,
    "localized": {
        "address": "Lindengracht 127-III, 1015 KH Amsterdam",
        "eta": {"date": "di 24 nov", "start": "10:00", "end": "12:00", "window": "di 24 nov 10:00-12:00"},
        "occurred_at": "di 24 nov 09:41",
        "slots": ("wo 9-12", "wo 14-18", "do 9-12"),
        "next_attempt": "wo 25 nov 10:00-14:00",
        "reason": "Niemand thuis, geen toestemming om bij de buren af te geven",
        "recipient": "R. de Vries (buurman)",
        "place": "Schuur achter het huis, naast de fietsen",
        "pickup": {
            "name": "Sigarenspeciaalzaak De Westertoren",
            "address": "Westerstraat 84, 1015 MN Amsterdam",
            "hours": "ma-za 8:00-20:00",
            "until": "vr 4 dec",
        },
    },
    "replies": {
        "gsm": {
            "slot": "di 24 nov 9-12",
            "neighbour": "mevrouw Li, nr. 12",
            "place": "schuur achter de container",
            "note": "Graag twee keer aanbellen, de bel doet het slecht",
        },
        "ucs2": {
            "slot": "di 24 nov 9\u201312",
            "neighbour": "mevrouw Şahin, nr. 12",
            "place": "schuur \u2013 code 4711",
            "note": "Twee keer aanbellen \u2013 de bel is kapot",
        },
    },
    "instruction_keywords": ("DEUR", "BUREN <naam/huisnummer>", "PLEK <waar>", "ALTIJD"),
    "slot_reply": "Antwoord 1 voor",
    "rating": "antwoord 1-5",
    "call_phrases": ("bel of sms",),
    "not_understood_plural": ("Antwoord 1 om de nieuwe tijd te kiezen,", "Antwoord 1-3 om een nieuwe tijd te kiezen,"),
}
