"""Per-language test data: one module per language the templates speak (``en`` plus one per
catalog in templates/locales), so adding a language adds a file here and touches no test.

Each module defines ``LOCALE``, a dict with:

- ``own_name``: the language's name in itself, as the tracking page's language menu shows it.
- ``gsm7``: the fixed text of every SMS and reply stays GSM-7 when the data is plain.
- ``ucs2_budget``: a full SMS must fit two UCS-2 segments (134 code units), because accented data
  (an address, a pickup point) can switch it to UCS-2 or the language's own letters always do.
- ``replies_two_segments``: replies may take two segments (else one, except ``not_understood``).
- ``localized``: the strings the hub preformats in this locale (address, ETA, dates, slots, a
  failure reason, proof of delivery, a pickup point), the long variants.
- ``replies``: reply data as plain text (``gsm``) and with characters outside GSM-7 (``ucs2``).
- ``instruction_keywords``: the four instruction keywords exactly as ``not_understood`` spells them.
- ``slot_reply``: how the SMS introduces the first numbered slot ("Reply 1 for").
- ``rating``: how a delivered message asks for a rating, lower case ("reply 1-5").
- ``call_phrases``: what introduces the driver's number, lower case; none may show without one.
- ``not_understood_plural``: ``not_understood`` with one slot and with three (plural forms).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

ALL: dict[str, dict[str, Any]] = {
    info.name: importlib.import_module(f"{__name__}.{info.name}").LOCALE for info in pkgutil.iter_modules(__path__)
}
# English first (the source language), then the others in order.
LOCALES: tuple[str, ...] = ("en", *sorted(code for code in ALL if code != "en"))
