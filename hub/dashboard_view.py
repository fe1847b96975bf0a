"""What the operators' dashboard shows: the figures of a range, turned into charts and tables.

``figures`` and ``rating_figures`` are pure (counters in the shape of ``hub.stats.read_stats``,
rows of ``hub.feedback.ratings_summary`` in; charts from hub.charts and table rows out), so they
are tested with real numbers whatever is counted; ``dashboard_context`` reads those, the
follow-up list and the webhook dead letters for one page. Times are UTC: hourly buckets for the
last 24 hours, daily ones for the last 30 days, the current bucket last.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup
from redis.asyncio import Redis

from . import charts, keys
from .config import Settings
from .feedback import followups, ratings_summary
from .merchants import Merchants
from .stats import read_stats, stats_rates

__all__ = ["RANGES", "Range", "axis", "dashboard_context", "figures", "rating_figures"]

HOUR_MS, DAY_MS = 3_600_000, 86_400_000


@dataclass(frozen=True)
class Range:
    name: str
    label: str
    granularity: str
    bucket_word: str
    buckets: int
    step_ms: int


RANGES = {
    "24h": Range("24h", "Last 24 hours", "hour", "hourly", 24, HOUR_MS),
    "30d": Range("30d", "Last 30 days", "day", "daily", 30, DAY_MS),
}
STATUSES = ("accepted", "delivered", "read", "failed", "undelivered", "skipped")
REPLIES = {"reschedule": "Reschedules", "instructions": "Instructions", "confirm": "Confirmations", "stop": "STOP"}
RELAY = {"relay.session": "Sessions", "relay.call": "Calls", "relay.sms": "Texts"}
WEBHOOK = {"webhook.delivered": "Delivered", "webhook.retry": "Retries", "webhook.dead": "Dead letters"}
TOP = 15  # most shops, drivers and reasons a chart lists


def _svg(draw: Callable[..., str], *args: Any, **options: Any) -> Markup:
    """A chart as markup for the page: hub.charts escapes every text it draws."""
    return Markup(draw(*args, **options))


def axis(rng: Range, now_ms: int) -> list[int]:
    """The range's bucket starts (ms), oldest first, the one holding ``now_ms`` last."""
    last = now_ms - now_ms % rng.step_ms
    return [last - (rng.buckets - 1 - i) * rng.step_ms for i in range(rng.buckets)]


def _label(start_ms: int, rng: Range) -> str:
    when = datetime.fromtimestamp(start_ms / 1000, UTC)
    return when.strftime("%H:00") if rng.granularity == "hour" else when.strftime("%d %b")


def _bucket_ms(value: Any) -> int | None:
    """A bucket's start as read_stats gives it: milliseconds, or an ISO-8601 time."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        if value.isdigit():
            return int(value)
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp() * 1000)
    return None


def _per_bucket(stats: Mapping[str, Any], starts: Sequence[int], step_ms: int) -> list[dict[str, int]]:
    """The counts of each bucket of the axis (an absent bucket counts nothing)."""
    out: list[dict[str, int]] = [{} for _ in starts]
    for bucket in stats.get("buckets") or []:
        at = _bucket_ms(bucket.get("start"))
        if at is None or not starts or not starts[0] <= at < starts[-1] + step_ms:
            continue
        slot = out[(at - starts[0]) // step_ms]
        for fact, n in (bucket.get("counts") or {}).items():
            slot[fact] = slot.get(fact, 0) + int(n)
    return out


def _rate(good: float, bad: float) -> float | None:
    return round(100 * good / (good + bad), 1) if good + bad else None


def _channels(totals: Mapping[str, int]) -> list[str]:
    return sorted({fact.split(".")[1] for fact in totals if fact.startswith("message.") and fact.count(".") == 2})


def _messages(totals: Mapping[str, int], buckets: list[dict[str, int]], labels: list[str]) -> dict[str, Any]:
    channels = _channels(totals)
    table: list[dict[str, Any]] = [
        {"channel": c, **{s: totals.get(f"message.{c}.{s}", 0) for s in STATUSES}} for c in channels
    ]
    sent = {c: [b.get(f"message.{c}.accepted", 0) for b in buckets] for c in channels}
    rates: list[tuple[str, float]] = []
    notes: list[str] = []
    provider = stats_rates(dict(totals))["provider_delivery"]  # as GET /v1/stats reports it
    for row in table:
        rate = provider.get(row["channel"])
        row["rate"] = None if rate is None else round(100 * rate, 1)
        if row["rate"] is not None:
            rates.append((row["channel"], row["rate"]))
            notes.append(f"{row['delivered']} of {row['accepted']}")
    return {
        "messages_table": table,
        "messages_chart": _svg(charts.stacked_bars, "messages", "Messages sent by channel", labels, sent),
        "delivery_rate_chart": _svg(
            charts.hbars,
            "delivery-rate",
            "Provider delivery rate by channel",
            rates,
            unit="%",
            max_value=100,
            notes=notes,
        ),
    }


def _attempt_rows(groups: Mapping[str, Mapping[str, int]]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name, counts in groups.items():
        good, bad = counts.get("attempt.first.delivered", 0), counts.get("attempt.first.failed", 0)
        if good + bad:
            rows.append({"id": name, "delivered": good, "attempts": good + bad, "rate": _rate(good, bad)})
    return sorted(rows, key=lambda r: (-r["attempts"], r["id"]))[:TOP]


def _attempt_chart(chart_id: str, title: str, rows: list[dict[str, Any]]) -> Markup:
    items = [(r["id"], float(r["rate"])) for r in rows]
    notes = [f"{r['delivered']} of {r['attempts']}" for r in rows]
    return _svg(charts.hbars, chart_id, title, items, unit="%", max_value=100, notes=notes)


def _first_attempts(stats: Mapping[str, Any], buckets: list[dict[str, int]], labels: list[str]) -> dict[str, Any]:
    totals = stats.get("totals") or {}
    over_time = [_rate(b.get("attempt.first.delivered", 0), b.get("attempt.first.failed", 0)) for b in buckets]
    shops = _attempt_rows(stats.get("by_merchant") or {})
    drivers = _attempt_rows(stats.get("by_driver") or {})
    reasons = sorted(((f[8:], n) for f, n in totals.items() if f.startswith("failure.") and n), key=lambda r: -r[1])
    return {
        "first_attempt": _rate(totals.get("attempt.first.delivered", 0), totals.get("attempt.first.failed", 0)),
        "first_attempt_chart": _svg(
            charts.line_chart,
            "first-attempt",
            "First-attempt success",
            labels,
            {"first attempts delivered": over_time},
            unit="%",
            max_value=100,
            area=True,
        ),
        "shops_table": shops,
        "shops_chart": _attempt_chart("first-attempt-shops", "First-attempt success by shop", shops),
        "drivers_table": drivers,
        "drivers_chart": _attempt_chart("first-attempt-drivers", "First-attempt success by driver", drivers),
        "reasons": reasons[:TOP],
        "reasons_chart": _svg(
            charts.hbars, "failure-reasons", "Failure reasons", [(r, float(n)) for r, n in reasons[:TOP]]
        ),
    }


def _replies(totals: Mapping[str, int]) -> dict[str, Any]:
    counts = {f[6:]: n for f, n in totals.items() if f.startswith("reply.") and n}
    order = [i for i in REPLIES if i in counts] + sorted(
        (i for i in counts if i not in REPLIES), key=lambda i: -counts[i]
    )
    total = sum(counts.values())
    rows: list[dict[str, Any]] = [
        {"intent": i, "label": REPLIES.get(i, i), "count": counts[i], "share": round(100 * counts[i] / total, 1)}
        for i in order
    ]
    return {
        "replies_table": rows,
        "replies_total": total,
        "replies_chart": _svg(charts.share_bar, "replies", "Replies", [(r["label"], float(r["count"])) for r in rows]),
    }


def _over_time(
    chart_id: str,
    title: str,
    names: Mapping[str, str],
    totals: Mapping[str, int],
    buckets: list[dict[str, int]],
    labels: list[str],
) -> dict[str, Any]:
    series = {label: [b.get(fact, 0) for b in buckets] for fact, label in names.items()}
    return {
        "totals": [{"label": label, "count": totals.get(fact, 0)} for fact, label in names.items()],
        "chart": _svg(charts.stacked_bars, chart_id, title, labels, series),
    }


def figures(stats: Mapping[str, Any], rng: Range, starts: Sequence[int]) -> dict[str, Any]:
    """Every chart and table of the counters in ``stats`` (read_stats' shape) over ``starts``."""
    totals: Mapping[str, int] = stats.get("totals") or {}
    buckets = _per_bucket(stats, starts, rng.step_ms)
    labels = [_label(s, rng) for s in starts]
    out: dict[str, Any] = {
        **_messages(totals, buckets, labels),
        **_first_attempts(stats, buckets, labels),
        **_replies(totals),
        "relay": _over_time("relay", "Relay use", RELAY, totals, buckets, labels),
        "webhooks": _over_time("webhooks", "Webhook deliveries", WEBHOOK, totals, buckets, labels),
        "sent": sum(totals.get(f"message.{c}.accepted", 0) for c in _channels(totals)),
        "ratings_count": totals.get("rating.count", 0),
        "rating_average": round(totals["rating.sum"] / totals["rating.count"], 2)
        if totals.get("rating.count")
        else None,
    }
    return out


def _ratings(n: int) -> str:
    return f"{n} rating" if n == 1 else f"{n} ratings"


def rating_figures(by_driver: list[dict[str, Any]], by_shop: list[dict[str, Any]]) -> dict[str, Any]:
    """The ratings per driver and per shop (ratings_summary rows): tables and average charts."""

    def chart(chart_id: str, title: str, rows: list[dict[str, Any]]) -> Markup:
        rows = [r for r in rows if r.get("average") is not None][:TOP]
        items = [(str(r["id"]), float(r["average"])) for r in rows]
        notes = [_ratings(int(r.get("count") or 0)) for r in rows]
        return _svg(charts.hbars, chart_id, title, items, max_value=5, notes=notes)

    return {
        "ratings_drivers": by_driver[:TOP],
        "ratings_drivers_chart": chart("ratings-drivers", "Average rating by driver", by_driver),
        "ratings_shops": by_shop[:TOP],
        "ratings_shops_chart": chart("ratings-shops", "Average rating by shop", by_shop),
    }


async def _dead_letters(redis: Redis, shown: int) -> dict[str, Any]:
    count: int = await redis.zcard(keys.WEBHOOK_DEAD)
    latest: list[str] = await redis.zrevrange(keys.WEBHOOK_DEAD, 0, shown - 1)
    return {"count": count, "latest": latest}


async def dashboard_context(
    redis: Redis, settings: Settings, *, range_name: str, shop: str | None, now_ms: int
) -> dict[str, Any]:
    """Everything the page shows for a range and, optionally, one shop."""
    rng = RANGES[range_name]
    starts = axis(rng, now_ms)
    stats = await read_stats(
        redis, settings, start_ms=starts[0], end_ms=now_ms, merchant_id=shop, granularity=rng.granularity
    )
    cfg = settings.dashboard
    open_ = await followups(redis, settings, limit=cfg.followups_shown)
    recent = [f for f in await followups(redis, settings, include_handled=True, limit=20) if f.get("handled_at")]
    if shop:
        open_ = [f for f in open_ if f.get("merchant_id") == shop]
        recent = [f for f in recent if f.get("merchant_id") == shop]
    shops = {m["id"] for m in await Merchants(redis, settings.brands.merchants, 0).listing()}
    shops |= set(stats.get("by_merchant") or {})
    return {
        **figures(stats, rng, starts),
        **rating_figures(
            await ratings_summary(redis, settings, by="driver"), await ratings_summary(redis, settings, by="merchant")
        ),
        "ranges": [{"name": r.name, "label": r.label, "current": r.name == range_name} for r in RANGES.values()],
        "range": rng,
        "shop": shop,
        "shops": sorted(shops | ({shop} if shop else set())),
        "followups": open_,
        "handled": recent[:10],
        "dead_letters": await _dead_letters(redis, cfg.dead_letters_shown),
        "generated_at": datetime.fromtimestamp(now_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
