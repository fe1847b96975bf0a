"""The operators' figures over HTTP (hub.stats):

    GET /v1/stats?from=&to=&merchant_id=&granularity=hour|day   (scope read)

JSON (``read_stats``'s shape), or CSV with ``Accept: text/csv`` or ``format=csv``: a header line,
then one ``bucket_start,fact,count`` row per bucket and fact counted in it. ``from`` and ``to``
are ISO 8601 times with an offset, or unix seconds; without them the last 24 hours (hour buckets,
the current one included) or the last 30 days (day buckets); at most 10,000 hours (about 416
days) in one read. Each refusal is a 400 naming the parameter.
"""

from __future__ import annotations

import csv
import io
import re
import time
from datetime import datetime
from typing import Any

from aiohttp import web

from .appkeys import REDIS, SETTINGS
from .auth import authenticate
from .errors import ApiError
from .merchants import MERCHANT_ID
from .params import json_response
from .stats import GRANULARITIES, read_stats

__all__ = ["add_routes", "stats_csv"]

_MERCHANT = re.compile(MERCHANT_ID)
_UNIX = re.compile(r"^\d{1,12}(\.\d{1,6})?$")
_LATEST_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z
# The default span, counted in buckets and including the current one.
_DEFAULT_BUCKETS = {"hour": 24, "day": 30}


def _time(request: web.Request, name: str) -> int | None:
    """``from``/``to`` in ms: an ISO 8601 time with its offset, or unix seconds, between 1970 and
    2100; None when absent."""
    raw = request.query.get(name, "").strip()
    if not raw:
        return None
    if _UNIX.match(raw):
        ms = int(float(raw) * 1000)
    else:
        try:
            when = datetime.fromisoformat(raw)
        except ValueError as e:
            raise ApiError(
                400, f"invalid_{name}", f"{name} must be an ISO 8601 time or unix seconds", {name: "not a time"}
            ) from e
        if when.tzinfo is None:
            raise ApiError(
                400, f"invalid_{name}", f"{name} needs a UTC offset, e.g. 2026-11-24T08:00:00Z", {name: "no offset"}
            )
        ms = int(when.timestamp() * 1000)
    if not 0 <= ms <= _LATEST_MS:
        raise ApiError(400, f"invalid_{name}", f"{name} must be between 1970 and 2100", {name: "out of range"})
    return ms


def _query(request: web.Request) -> dict[str, Any]:
    """The read's arguments from the query, or the 400 naming what is wrong."""
    granularity = request.query.get("granularity", "hour")
    if granularity not in GRANULARITIES:
        raise ApiError(
            400, "invalid_granularity", "granularity must be hour or day", {"granularity": "not hour or day"}
        )
    merchant_id = request.query.get("merchant_id") or None
    if merchant_id is not None and not _MERCHANT.match(merchant_id):
        raise ApiError(
            400,
            "invalid_merchant_id",
            "merchant_id must be 1-64 letters, digits or _.-, starting with a letter or digit",
            {"merchant_id": "not a merchant id"},
        )
    start, end = _time(request, "from"), _time(request, "to")
    step = GRANULARITIES[granularity]
    if end is None:
        end = int(time.time() * 1000)
    if start is None:
        start = (end // step - _DEFAULT_BUCKETS[granularity] + 1) * step
    if end < start:
        raise ApiError(400, "invalid_range", "to (now, when not given) is before from", {"to": "before from"})
    return {"start_ms": start, "end_ms": end, "merchant_id": merchant_id, "granularity": granularity}


def _wants_csv(request: web.Request) -> bool:
    form = request.query.get("format")
    if form is not None and form not in ("json", "csv"):
        raise ApiError(400, "invalid_format", "format must be json or csv", {"format": "not json or csv"})
    if form is not None:
        return form == "csv"
    accept = [part.split(";")[0].strip().lower() for part in request.headers.get("Accept", "").split(",")]
    return "text/csv" in accept and "application/json" not in accept


def stats_csv(result: dict[str, Any]) -> str:
    """One ``bucket_start,fact,count`` row per bucket and fact counted in it, after a header."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["bucket_start", "fact", "count"])
    for bucket in result["buckets"]:
        for fact, count in bucket["counts"].items():
            writer.writerow([bucket["start"], fact, count])
    return out.getvalue()


async def get_stats(request: web.Request) -> web.Response:
    await authenticate(request, "read")
    as_csv = _wants_csv(request)
    try:
        result = await read_stats(request.app[REDIS], request.app[SETTINGS], **_query(request))
    except ValueError as e:  # the granularity is checked already: the range covers too many hours
        raise ApiError(400, "range_too_long", str(e), {"to": "too far from from"}) from e
    if as_csv:
        return web.Response(text=stats_csv(result), content_type="text/csv", charset="utf-8")
    return json_response(result)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/stats", get_stats)
