"""French test data (see tests/locale_data/__init__.py for what each entry means)."""

from __future__ import annotations

from typing import Any

LOCALE: dict[str, Any] = {
    "own_name": "Français",
    "gsm7": True,
    "ucs2_budget": True,
    "replies_two_segments": True,
    "localized": {
        "address": "27 rue des Tilleuls, 69003 Lyon",
        "eta": {"date": "mar. 24 nov.", "start": "10:00", "end": "12:00", "window": "mar. 24 nov. 10:00-12:00"},
        "occurred_at": "mar. 24 nov. 09:41",
        "slots": ("mer 9-12", "mer 14-18", "jeu 9-12"),
        "next_attempt": "mer. 25 nov. 10:00-14:00",
        "reason": "Destinataire absent lors du passage",
        "recipient": "R. Keller (voisin)",
        "place": "Garage, à gauche de la porte",
        "pickup": {
            "name": "Tabac de la Place",
            "address": "4 place Bellecour, 69002 Lyon",
            "hours": "lun.-sam. 8:00-20:00",
            "until": "ven. 4 déc.",
        },
    },
    "replies": {
        "gsm": {
            "slot": "mar. 24 nov. 9-12",
            "neighbour": "Mme Li au 12",
            "place": "garage, derrière les poubelles",
            "note": "Sonnez deux fois, la sonnette marche mal",
        },
        "ucs2": {
            "slot": "jeu. 6 août 9-12",
            "neighbour": "Mme Li au n° 12",
            "place": "garage à côté de la boîte aux lettres",
            "note": "Frappez à la fenêtre, la sonnette est cassée",
        },
    },
    "instruction_keywords": ("PORTE", "VOISIN <nom/numéro>", "LIEU <endroit>", "TOUJOURS"),
    "slot_reply": "Répondez 1 pour",
    "rating": "répondez 1-5",
    "call_phrases": ("appeler", "tél./sms", "livreur +"),
    "not_understood_plural": (
        "Répondez 1 pour choisir le nouveau créneau,",
        "Répondez 1-3 pour choisir un autre créneau,",
    ),
}
