"""Polish test data (see tests/locale_data/__init__.py for what each entry means)."""

from __future__ import annotations

from typing import Any

LOCALE: dict[str, Any] = {
    "own_name": "Polski",
    # ą ę ł ś ż ó ć ń ź are outside GSM-7: every Polish SMS is UCS-2.
    "gsm7": False,
    "ucs2_budget": True,
    "replies_two_segments": True,
    # Dates as babel's CLDR "MMMEd" skeleton writes them in Polish ("czw., 26 lis").
    "localized": {
        "address": "ul. Lipowa 27 m. 3, 31-015 Kraków",
        "eta": {"date": "czw., 26 lis", "start": "10:00", "end": "12:00", "window": "czw., 26 lis 10:00-12:00"},
        "occurred_at": "czw., 26 lis 09:41",
        "slots": ("śr. 9-12", "śr. 14-18", "czw. 9-12"),
        "next_attempt": "pt., 27 lis 10:00-14:00",
        "reason": "Nikogo nie zastano pod adresem",
        "recipient": "R. Keller (sąsiad)",
        "place": "Garaż, na lewo od drzwi",
        "pickup": {
            "name": "Kiosk Ruch przy Rynku",
            "address": "Rynek Główny 4, 31-042 Kraków",
            "hours": "pon.-sob. 8:00-20:00",
            "until": "pt., 4 gru",
        },
    },
    "replies": {
        "gsm": {
            "slot": "wt., 24 lis 9-12",
            "neighbour": "Pani Li, nr 12",
            "place": "garaz za smietnikiem",
            "note": "Prosze dzwonic dwa razy, dzwonek nie dziala",
        },
        "ucs2": {
            "slot": "śr., 25 lis 10:00-12:00",
            "neighbour": "Pani Wiśniewska, m. 12",
            "place": "garaż \u2013 kod 4711",
            "note": "Proszę zapukać w okno, dzwonek nie działa",
        },
    },
    "instruction_keywords": ("DRZWI", "SĄSIAD <imię/numer>", "MIEJSCE <gdzie>", "ZAWSZE"),
    "slot_reply": "Odpowiedz 1 \u2013",
    "rating": "odpowiedz 1-5",
    "call_phrases": ("kontakt z kurierem", "tel./sms", "kurier +"),
    "not_understood_plural": ("Odpowiedz 1 (nowy termin),", "Odpowiedz 1-3 (nowy termin),"),
}
