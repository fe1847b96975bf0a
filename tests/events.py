"""Sample events for tests (realistic shapes, unique ids per call)."""

from __future__ import annotations

import copy
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

_counter = itertools.count(1)


def make_event(type_: str = "out_for_delivery", **changes: Any) -> dict[str, Any]:
    n = next(_counter)
    event: dict[str, Any] = {
        "event_id": f"evt-{n}",
        "type": type_,
        "occurred_at": "2026-11-24T08:05:00+01:00",
        "delivery": {
            "id": "D-1001",
            "tracking_code": "LM123456789",
            "merchant": "Acme Shoes",
            "eta": {"start": "2026-11-24T10:00:00+01:00", "end": "2026-11-24T12:00:00+01:00"},
        },
        "customer": {
            "id": "C-77",
            "name": "Ana Weber",
            "phone": "+49 151 12345678",
            "email": "ana@example.com",
            "push_tokens": ["fcm-token-1"],
            "locale": "de-DE",
            "timezone": "Europe/Berlin",
        },
        "driver": {"id": "DR-5", "name": "Sam", "phone": "+4915700000001"},
    }
    for path, value in changes.items():
        node = event
        parts = path.split("__")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        if value is _DELETE:
            node.pop(parts[-1], None)
        else:
            node[parts[-1]] = copy.deepcopy(value)
    return event


_DELETE = object()
DELETE = _DELETE


def due_now(n: int, tag: str, phone_base: int) -> list[dict[str, Any]]:
    """``n`` ``arriving_soon`` events happening now (SMS and push each), every one for its own
    delivery and customer: ``{tag}-{i}`` event ids, ``D-{tag}-{i}``, ``C-{tag}-{i}``."""
    now = datetime.now(UTC)
    return [
        make_event(
            "arriving_soon",
            occurred_at=now.isoformat(),
            delivery__eta={"start": now.isoformat(), "end": (now + timedelta(hours=2)).isoformat()},
            event_id=f"{tag}-{i}",
            delivery__id=f"D-{tag}-{i}",
            data={"minutes": 10},
            customer={"id": f"C-{tag}-{i}", "phone": f"+49151{phone_base + i}", "push_tokens": [f"tok-{tag}-{i}"]},
        )
        for i in range(n)
    ]
