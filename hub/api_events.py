"""``POST /v1/events`` and ``POST /v1/events/batch``: milestone events in (hub.intake queues them).

One event answers 202 (accepted or duplicate), 409 for an ``event_id`` used with another payload
and 422 with the fields at fault. A batch answers per item: 202 when every item is accepted or a
duplicate, 422 when none is, 207 in between; an ``event_id`` twice in one batch is a duplicate
when the payloads agree and a conflict when they differ.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from . import metrics
from .appkeys import SETTINGS, STORE
from .auth import authenticate
from .errors import ApiError
from .intake import accept_events, count_invalid
from .params import json_response, read_json
from .schema import Event, EventInvalid, parse_event

__all__ = ["add_routes"]


async def post_event(request: web.Request) -> web.Response:
    key = await authenticate(request, "events")
    payload = await read_json(request)
    try:
        event = parse_event(payload, request.app[SETTINGS].default_region)
    except EventInvalid as e:
        count_invalid(key.source, payload)
        raise ApiError(422, "validation_failed", "the event is invalid", e.fields) from e
    [status] = await accept_events(request.app[STORE], key.source, [event])
    if status == "conflict":
        raise ApiError(
            409, "event_id_conflict", f"event_id {event.event_id!r} was already used with a different payload"
        )
    return json_response({"event_id": event.event_id, "status": status}, status=202)


async def _batch_items(request: web.Request) -> list[Any]:
    """The batch's items: a JSON array or ``{"events": [...]}``, not empty, within the limit."""
    limit = request.app[SETTINGS].api.batch_limit
    payload = await read_json(request)
    items = payload.get("events") if isinstance(payload, dict) else payload
    if not isinstance(items, list):
        raise ApiError(400, "invalid_batch", 'send a JSON array of events or {"events": [...]}')
    if len(items) > limit:
        raise ApiError(413, "batch_too_large", f"{len(items)} events in one batch; the limit is {limit}")
    if not items:
        raise ApiError(400, "invalid_batch", "the batch is empty")
    return items


def _repeat(index: int, event: Event, source: str, first_digest: str) -> dict[str, Any]:
    """The result of an ``event_id`` seen before in the same batch."""
    if first_digest != event.digest():
        metrics.EVENTS_REJECTED.labels(metrics.event_type(event.type), source, "conflict").inc()
        return {
            "index": index,
            "event_id": event.event_id,
            "status": "conflict",
            "error": {
                "code": "event_id_conflict",
                "message": "event_id used twice in this batch with different payloads",
            },
        }
    metrics.EVENTS_DUPLICATE.labels(metrics.event_type(event.type), source).inc()
    return {"index": index, "event_id": event.event_id, "status": "duplicate"}


def _check_items(items: list[Any], source: str, region: str) -> tuple[list[dict[str, Any]], list[tuple[int, Event]]]:
    """One result per item (``pending`` for those to accept) and the valid, first-seen events."""
    results: list[dict[str, Any]] = []
    valid: list[tuple[int, Event]] = []
    seen: dict[str, str] = {}
    for index, item in enumerate(items):
        try:
            event = parse_event(item, region)
        except EventInvalid as e:
            count_invalid(source, item)
            event_id = item.get("event_id") if isinstance(item, dict) else None
            results.append(
                {
                    "index": index,
                    "event_id": event_id,
                    "status": "rejected",
                    "error": {"code": "validation_failed", "message": "the event is invalid", "fields": e.fields},
                }
            )
            continue
        if event.event_id in seen:
            results.append(_repeat(index, event, source, seen[event.event_id]))
            continue
        seen[event.event_id] = event.digest()
        results.append({"index": index, "event_id": event.event_id, "status": "pending"})
        valid.append((index, event))
    return results, valid


async def post_batch(request: web.Request) -> web.Response:
    key = await authenticate(request, "events")
    items = await _batch_items(request)
    results, valid = _check_items(items, key.source, request.app[SETTINGS].default_region)
    if valid:
        statuses = await accept_events(request.app[STORE], key.source, [e for _, e in valid])
        for (index, event), status in zip(valid, statuses, strict=True):
            entry = results[index]
            entry["status"] = status
            if status == "conflict":
                entry["error"] = {
                    "code": "event_id_conflict",
                    "message": f"event_id {event.event_id!r} was already used with a different payload",
                }
    ok = sum(r["status"] in ("accepted", "duplicate") for r in results)
    summary = {
        "accepted": sum(r["status"] == "accepted" for r in results),
        "duplicate": sum(r["status"] == "duplicate" for r in results),
        "rejected": len(results) - ok,
    }
    code = 202 if ok == len(results) else (422 if ok == 0 else 207)
    return json_response({"results": results, "summary": summary}, status=code)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/events", post_event)
    app.router.add_post("/v1/events/batch", post_batch)
