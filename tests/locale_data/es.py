"""Spanish test data (see tests/locale_data/__init__.py for what each entry means)."""

from __future__ import annotations

from typing import Any

LOCALE: dict[str, Any] = {
    "own_name": "Español",
    "gsm7": False,
    "ucs2_budget": True,
    "replies_two_segments": True,
    "localized": {
        "address": "Calle del Olivo 27, 3º B, 28012 Madrid",
        "eta": {"date": "sáb, 28 nov", "start": "10:00", "end": "12:00", "window": "sáb, 28 nov 10:00-12:00"},
        "occurred_at": "sáb, 28 nov 9:41",
        "slots": ("lun 9-12", "lun 14-18", "mar 9-12"),
        "next_attempt": "lun, 30 nov 10:00-14:00",
        "reason": "No había nadie en el domicilio",
        "recipient": "R. Keller (vecino)",
        "place": "Conserjería del edificio",
        "pickup": {
            "name": "Estanco La Plaza",
            "address": "Plaza Mayor 4, 28012 Madrid",
            "hours": "lun-sáb 9:00-20:30",
            "until": "vie, 4 dic",
        },
    },
    "replies": {
        "gsm": {
            "slot": "mar, 24 nov 9-12",
            "neighbour": "Sra. Li, 2 B",
            "place": "conserje del portal",
            "note": "Llame dos veces, el timbre va mal",
        },
        "ucs2": {
            "slot": "sáb, 28 nov 10:00-12:00",
            "neighbour": "Sra. Li, 2º B",
            "place": "conserjería del portal",
            "note": "Llame dos veces, el timbre está roto",
        },
    },
    "instruction_keywords": ("PUERTA", "VECINO <nombre/número>", "SITIO <lugar>", "SIEMPRE"),
    "slot_reply": "Responda 1 para",
    "rating": "responda 1-5",
    "call_phrases": ("llamar o enviar un sms", "tel./sms", "repartidor +"),
    "not_understood_plural": ("Responda 1 para elegir la nueva fecha,", "Responda 1-3 para elegir otra fecha,"),
}
