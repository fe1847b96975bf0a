"""Any JSON webhook -> a hub event, through a configured table of JSON pointers (RFC 6901) and
statuses (``adapters.generic.<name>``): for vendors without an adapter of their own. Pure
functions, no I/O, the same outcomes as ``hub.adapters_map``."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from .adapters_map import (
    IdKey,
    Mapped,
    Outcome,
    Skipped,
    as_text,
    as_time,
    customer_id_for,
    make_event_id,
    prune,
    safe_id,
)
from .adapters_settings import GenericMapping
from .vocabulary import MILESTONES

__all__ = ["json_pointer", "map_generic"]

_MISSING = object()


def json_pointer(document: Any, pointer: str) -> Any:
    """Resolve an RFC 6901 JSON pointer; ``_MISSING`` when any step does not exist."""
    if pointer == "":
        return document
    node = document
    for raw in pointer.split("/")[1:]:
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict):
            if token not in node:
                return _MISSING
            node = node[token]
        elif isinstance(node, list):
            if not re.fullmatch(r"0|[1-9][0-9]*", token) or int(token) >= len(node):
                return _MISSING
            node = node[int(token)]
        else:
            return _MISSING
    return node


def map_generic(name: str, body: Any, mapping: GenericMapping, ids: IdKey) -> Outcome:
    """Any JSON webhook, through the mapping's JSON pointers and status table."""
    values: dict[str, Any] = {}
    for field, pointer in mapping.fields.items():
        value = json_pointer(body, pointer)
        if value is not _MISSING and value is not None:
            values[field] = value
    status = as_text(values.get("type"), 100)
    if status is None:
        return Skipped("no status at the type pointer")
    milestone: str | None
    if status.lower() in mapping.statuses:
        milestone = mapping.statuses[status.lower()]
    elif status in MILESTONES:
        milestone = status
    else:
        return Skipped(f"status {status!r} is not mapped")
    delivery_id = safe_id(values.get("delivery.id"))
    if milestone is None:
        return Skipped(f"status {status!r} is mapped to nothing", delivery_id)
    if not delivery_id:
        return Skipped("no delivery id at the delivery.id pointer")
    source = f"generic-{name}"
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    event_id = safe_id(values.get("event_id"), 100)
    payload: dict[str, Any] = {
        "event_id": make_event_id(source, event_id or hashlib.sha256(canonical.encode()).hexdigest()[:32]),
        "type": milestone,
        "occurred_at": as_time(values.get("occurred_at")) or as_time(json_pointer(body, "/time")),
    }
    for name_, value in values.items():
        if name_ in ("event_id", "type", "occurred_at"):
            continue
        if name_ in ("delivery.eta.start", "delivery.eta.end"):
            value = as_time(value)
        elif name_ == "data.minutes":
            value = value if isinstance(value, int) and not isinstance(value, bool) else None
        elif name_ == "data.pod.signature" and isinstance(value, bool):
            pass
        else:
            value = as_text(value, 300)
        node = payload
        parts = name_.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    payload["delivery"]["id"] = delivery_id
    customer = payload.setdefault("customer", {})
    if not safe_id(customer.get("id")):
        customer["id"] = customer_id_for(source, customer.get("phone"), customer.get("email"), delivery_id, ids)
    else:
        customer["id"] = safe_id(customer["id"])
    if "driver" in payload and not payload["driver"].get("id"):
        del payload["driver"]
    if payload.get("occurred_at") is None:
        payload.pop("occurred_at")
    return Mapped(prune(payload))
