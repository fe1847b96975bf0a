"""Acting on feedback: low ratings raised upstream and kept on the operators' follow-up list,
ratings aggregated per driver and per shop with their trend.

``record_rating`` stores a rating (``Conversations.rate`` calls it, for SMS, WhatsApp and the
tracking page alike) in one step (lua_records.RECORD_FEEDBACK): the delivery's rating, the per-day
sums of its driver and its shop, and, for a rating at or below ``feedback.low_rating``, the
delivery's follow-up. A delivery has at most one follow-up:

- a low rating opens it (the caller raises ``feedback.low``);
- another low rating with a different rating or comment replaces the rating and comment, opens
  it again if it was handled, and is raised again; the same rating and comment again (another
  message saying the same) change nothing and raise nothing;
- a later rating above the threshold keeps the entry (open or handled, as it was) and records
  the new ``rating`` and ``rated_at``; ``low_rating`` and ``comment`` stay those of the low one.

Follow-ups last ``retention.message_log_days`` from their low rating. ``mark_handled`` is
idempotent: the first handler and time stay. Erasure (``forget_customer``) takes the comment and
the customer id out of the customer's follow-ups; the rating, driver, shop and times stay, as do
the per-day sums, which hold no personal data.

(The ``type: ignore[misc]``: redis-py types every async command as ``Awaitable[T] | T``.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from redis.asyncio import Redis

from . import keys, lua_records
from .config import Settings
from .masking import mask_numbers
from .stats import Stats

__all__ = [
    "FOLLOWUP_STATUSES",
    "RATING_GROUPS",
    "Recorded",
    "followups",
    "forget_customer",
    "list_followups",
    "mark_handled",
    "ratings_summary",
    "record_rating",
]

FOLLOWUP_STATUSES = ("open", "handled", "all")
RATING_GROUPS = ("driver", "merchant")
_WINDOW_DAYS = 7  # the trend compares the last seven UTC days with the seven before


@dataclass(frozen=True)
class Recorded:
    """What storing a rating did: whether it was the delivery's first, and its follow-up's fate
    (see lua_records.RECORD_FEEDBACK: none, raised, repeat, same_message, rerated)."""

    first: bool
    followup: str

    @property
    def raise_low(self) -> bool:
        """Whether ``feedback.low`` goes upstream: for a new low rating, and again for the message
        that raised it (its webhook id is the same, so that is no second delivery)."""
        return self.followup in ("raised", "same_message")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def record_rating(
    redis: Redis,
    settings: Settings,
    *,
    delivery_id: str,
    customer_id: str,
    rating: int,
    comment: str,
    driver_id: str,
    merchant_id: str,
    channel: str,
    sid: str,
    at: datetime,
) -> Recorded:
    """Store a rating given at ``at`` (aware; its UTC day is the day it counts on)."""
    at = at.astimezone(UTC)
    ttl = settings.retention.message_log_days * 86_400
    script = redis.register_script(lua_records.RECORD_FEEDBACK)
    result = await script(
        keys=[
            keys.feedback(delivery_id),
            keys.feedback_days(driver_id or "-"),
            keys.feedback_shop_days(merchant_id or "-"),
            keys.followup(delivery_id),
            keys.FOLLOWUPS_OPEN,
            keys.FOLLOWUPS_HANDLED,
            keys.followups_of(customer_id),
            keys.RATED_DRIVERS,
            keys.RATED_MERCHANTS,
        ],
        args=[
            rating,
            comment,
            driver_id,
            customer_id,
            at.isoformat(timespec="milliseconds"),
            at.date().isoformat(),
            ttl,
            merchant_id,
            settings.feedback.low_rating,
            int(at.timestamp() * 1000),
            channel,
            delivery_id,
            sid,
        ],
    )
    recorded = Recorded(first=int(result[0]) == 1, followup=_text(result[1]))
    if recorded.first:  # a re-rating is not counted again: the counters only ever go up
        stats, at_ms = Stats(redis, settings), int(at.timestamp() * 1000)
        ids: dict[str, Any] = {"merchant_id": merchant_id or None, "driver_id": driver_id or None, "at_ms": at_ms}
        await stats.count("rating.count", **ids)
        await stats.count("rating.sum", rating, **ids)
        if rating <= settings.feedback.low_rating:
            await stats.count("rating.low", **ids)
    return recorded


# -- the follow-up list ----------------------------------------------------------------------------
def _entry(raw: dict[str, str]) -> dict[str, Any]:
    comment = raw.get("comment")
    return {
        "delivery_id": raw["delivery_id"],
        "customer_id": raw.get("customer_id") or None,
        "rating": int(raw["rating"]),
        "low_rating": int(raw.get("low_rating") or raw["rating"]),
        # The customer wrote it for the operator; numbers and addresses in it stay hidden.
        "comment": mask_numbers(comment) if comment else None,
        "driver_id": raw.get("driver_id") or None,
        "merchant_id": raw.get("merchant_id") or None,
        "channel": raw.get("channel") or None,
        "at": raw.get("at"),
        "rated_at": raw.get("rated_at"),
        "status": "handled" if raw.get("handled_at") else "open",
        "handled_at": raw.get("handled_at"),
        "handled_by": raw.get("handled_by"),
    }


async def _page(redis: Redis, index: str, horizon_ms: int, limit: int) -> list[tuple[float, str]]:
    await redis.zremrangebyscore(index, "-inf", horizon_ms)
    rows = await redis.zrevrange(index, 0, limit - 1, withscores=True)
    return [(float(score), _text(member)) for member, score in rows]


async def list_followups(
    redis: Redis, settings: Settings, status: str = "open", limit: int = 100
) -> list[dict[str, Any]]:
    """Follow-ups by status (open, handled or all), newest low rating first."""
    if status not in FOLLOWUP_STATUSES:
        raise ValueError(f"status is one of {', '.join(FOLLOWUP_STATUSES)}")
    horizon = int(datetime.now(UTC).timestamp() * 1000) - settings.retention.message_log_days * 86_400_000
    indexes = {"open": [keys.FOLLOWUPS_OPEN], "handled": [keys.FOLLOWUPS_HANDLED]}.get(
        status, [keys.FOLLOWUPS_OPEN, keys.FOLLOWUPS_HANDLED]
    )
    rows: list[tuple[float, str]] = []
    for index in indexes:
        rows += await _page(redis, index, horizon, limit)
    rows.sort(key=lambda row: (-row[0], row[1]))
    entries = []
    for _, delivery_id in rows[:limit]:
        raw = await redis.hgetall(keys.followup(delivery_id))  # type: ignore[misc]
        if raw:  # gone with its TTL, its index entry not yet trimmed
            entries.append(_entry({_text(k): _text(v) for k, v in raw.items()}))
    return entries


async def followups(
    redis: Redis, settings: Settings, *, include_handled: bool = False, limit: int = 100
) -> list[dict[str, Any]]:
    """The follow-up list, newest first: ``{"delivery_id", "customer_id", "rating", "comment",
    "driver_id", "merchant_id", "at", "handled_at", "handled_by"}`` and ``low_rating`` (the rating
    that raised it), ``rated_at`` (a later rating's time), ``channel``, ``status`` (open | handled).
    Phone numbers and e-mail addresses in the comment are masked."""
    return await list_followups(redis, settings, "all" if include_handled else "open", limit)


async def mark_handled(redis: Redis, settings: Settings, delivery_id: str, by: str) -> bool:
    """Mark a follow-up handled (False: no such entry). Idempotent: marking it again answers True
    and keeps the first ``handled_at`` and ``handled_by``."""
    script = redis.register_script(lua_records.MARK_FOLLOWUP_HANDLED)
    at = datetime.now(UTC).isoformat(timespec="milliseconds")
    done = await script(keys=[keys.followup(delivery_id), keys.FOLLOWUPS_OPEN, keys.FOLLOWUPS_HANDLED], args=[by, at])
    return int(done) != 0


async def followup(redis: Redis, delivery_id: str) -> dict[str, Any] | None:
    """One follow-up, as the list shows it, or None."""
    raw = await redis.hgetall(keys.followup(delivery_id))  # type: ignore[misc]
    return _entry({_text(k): _text(v) for k, v in raw.items()}) if raw else None


async def forget_customer(redis: Redis, settings: Settings, customer_id: str) -> None:
    """Erasure: the customer's follow-ups lose their comment and customer id. The rating, driver,
    shop and times stay (facts about the delivery, not about the customer)."""
    index = keys.followups_of(customer_id)
    for delivery_id in await redis.smembers(index):  # type: ignore[misc]
        # HDEL never creates a key: a follow-up that expired meanwhile stays gone.
        await redis.hdel(keys.followup(_text(delivery_id)), "comment", "customer_id")  # type: ignore[misc]
    await redis.delete(index)


# -- ratings per driver and per shop ---------------------------------------------------------------
def _days(raw: dict[Any, Any]) -> dict[date, tuple[int, int]]:
    """``{day: (count, sum)}`` from a ``<day>:count`` / ``<day>:sum`` hash, days with ratings only."""
    found: dict[str, dict[str, int]] = {}
    for field, value in raw.items():
        day, _, what = _text(field).rpartition(":")
        found.setdefault(day, {"count": 0, "sum": 0})[what] = int(value)
    return {date.fromisoformat(d): (v["count"], v["sum"]) for d, v in found.items() if v["count"] > 0}


def _window(days: dict[date, tuple[int, int]], first: date, last: date) -> dict[str, Any]:
    count = sum(c for d, (c, _) in days.items() if first <= d <= last)
    total = sum(s for d, (_, s) in days.items() if first <= d <= last)
    return {"count": count, "average": round(total / count, 2) if count else None}


def _summary(name: str, days: dict[date, tuple[int, int]], today: date) -> dict[str, Any]:
    count = sum(c for c, _ in days.values())
    total = sum(s for _, s in days.values())
    last = _window(days, today - timedelta(days=_WINDOW_DAYS - 1), today)
    previous = _window(days, today - timedelta(days=2 * _WINDOW_DAYS - 1), today - timedelta(days=_WINDOW_DAYS))
    trend = None
    if last["average"] is not None and previous["average"] is not None:
        trend = round(last["average"] - previous["average"], 2)
    return {
        "id": name,
        "count": count,
        "average": round(total / count, 2) if count else None,
        "last_7_days": last,
        "previous_7_days": previous,
        "trend": trend,
    }


async def ratings_summary(
    redis: Redis, settings: Settings, by: str, *, now: datetime | None = None
) -> list[dict[str, Any]]:
    """Ratings per driver or per shop (``by`` "driver" | "merchant"):
    ``{"id", "count", "average", "last_7_days": {"count", "average"},
    "previous_7_days": {"count", "average"}, "trend": float | None}``, most ratings first.

    Days are UTC days; the last seven end with ``now``'s (default: the clock's). ``trend`` is the
    last seven days' average minus the seven before's, None when either has no rating."""
    if by not in RATING_GROUPS:
        raise ValueError(f"by is one of {', '.join(RATING_GROUPS)}")
    today = (now or datetime.now(UTC)).astimezone(UTC).date()
    index, key = (
        (keys.RATED_DRIVERS, keys.feedback_days) if by == "driver" else (keys.RATED_MERCHANTS, keys.feedback_shop_days)
    )
    rows = []
    for member in await redis.smembers(index):  # type: ignore[misc]
        name = _text(member)
        days = _days(await redis.hgetall(key(name)))  # type: ignore[misc]
        if days:
            rows.append(_summary(name, days, today))
    rows.sort(key=lambda row: (-row["count"], row["id"]))
    return rows
