"""Portuguese test data (see tests/locale_data/__init__.py for what each entry means)."""

from __future__ import annotations

from typing import Any

LOCALE: dict[str, Any] = {
    "own_name": "Português",
    "gsm7": False,
    "ucs2_budget": True,
    "replies_two_segments": True,
    "localized": {
        "address": "Rua das Flores 27, 3.º Esq., 1200-194 Lisboa",
        "eta": {"date": "sáb. 28 nov.", "start": "10:00", "end": "12:00", "window": "sáb. 28 nov. 10:00-12:00"},
        "occurred_at": "sáb. 28 nov. 09:41",
        "slots": ("seg. 9-12", "seg. 14-18", "ter. 9-12"),
        "next_attempt": "seg. 30 nov. 10:00-14:00",
        "reason": "Ninguém em casa para receber a encomenda",
        "recipient": "R. Keller (vizinho)",
        "place": "Garagem, à esquerda da porta",
        "pickup": {
            "name": "Papelaria Central",
            "address": "Praça da Figueira 4, 1100-241 Lisboa",
            "hours": "seg.-sáb. 9:00-20:00",
            "until": "sex. 4 dez.",
        },
    },
    "replies": {
        "gsm": {
            "slot": "seg. 30 nov. 9-12",
            "neighbour": "Sra. Li, 2 Esq.",
            "place": "garagem, junto ao portao",
            "note": "Toque duas vezes, a campainha falha",
        },
        "ucs2": {
            "slot": "sáb. 28 nov. 10:00-12:00",
            "neighbour": "D. Conceição, 2.º Esq.",
            "place": "garagem, atrás do caixote do lixo",
            "note": "Toque duas vezes, a campainha não funciona",
        },
    },
    "instruction_keywords": ("PORTA", "VIZINHO <nome/número>", "LOCAL <lugar>", "SEMPRE"),
    "slot_reply": "Responda 1 para",
    "rating": "responda 1-5",
    "call_phrases": ("por chamada ou sms", "tel./sms", "motorista +"),
    "not_understood_plural": ("Responda 1 para escolher a nova data,", "Responda 1-3 para escolher uma nova data,"),
}
