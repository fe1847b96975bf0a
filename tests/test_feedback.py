"""Acting on feedback: a low rating (SMS reply or the tracking page's form) raises feedback.low
upstream and lands on the operators' follow-up list until marked handled; ratings per driver and
per shop with their trend; erasure leaves no comment behind."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis

from hub import keys
from hub.feedback import ratings_summary, record_rating
from tests.conftest import ADMIN_KEY, Hub
from tests.events import make_event
from tests.test_track import browser, csrf_of, get_page, link_in

PHONE = "+4915112345678"
SHOP = "acme"


async def delivered_by_sms(hub: Hub) -> None:
    """A delivery of shop ``acme`` by driver DR-5, delivered: the SMS that asks for a rating."""
    await hub.request("PUT", "/v1/customers/C-77", json={"phone": PHONE})
    await hub.request("PATCH", "/v1/customers/C-77/preferences", json={"channels": {"delivered": ["sms"]}})
    await hub.post_event(make_event("delivered", delivery__merchant_id=SHOP, data={"pod": {"recipient": "Ana"}}))
    await hub.run_worker()


async def rate_by_sms(hub: Hub, text: str) -> None:
    await hub.text_hub(PHONE, text)
    await hub.run_worker()


async def open_followups(hub: Hub, status: str = "open") -> list[dict[str, Any]]:
    resp = await hub.request("GET", f"/v1/feedback/followups?status={status}")
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    assert body["status"] == status
    rows: list[dict[str, Any]] = body["followups"]
    return rows


def lows(hub: Hub) -> list[dict[str, Any]]:
    return [h["data"] for h in hub.receiver.of_type("feedback.low")]


# -- a low rating ---------------------------------------------------------------------------------
async def test_a_rating_of_one_by_sms_raises_feedback_low_and_opens_a_followup(hub: Hub) -> None:
    await delivered_by_sms(hub)
    before = datetime.now(UTC)
    await rate_by_sms(hub, "1 thrown over the fence, call me on +49 151 99887766")
    [low] = lows(hub)
    at = low.pop("at")
    assert before - timedelta(seconds=1) <= datetime.fromisoformat(at) <= datetime.now(UTC)
    assert low == {
        "delivery_id": "D-1001",
        "customer_id": "C-77",
        "rating": 1,
        "comment": "thrown over the fence, call me on +49 151 99887766",
        "driver_id": "DR-5",
        "merchant_id": SHOP,
        "channel": "sms",
    }
    [entry] = await open_followups(hub)
    assert entry["delivery_id"] == "D-1001" and entry["customer_id"] == "C-77"
    assert entry["rating"] == 1 and entry["low_rating"] == 1 and entry["status"] == "open"
    assert entry["driver_id"] == "DR-5" and entry["merchant_id"] == SHOP and entry["at"] == at
    # The comment is shown to operators, the number in it masked.
    assert entry["comment"].startswith("thrown over the fence, call me on +49")
    assert "99887766" not in entry["comment"] and entry["comment"].endswith("7766")
    assert entry["handled_at"] is None and entry["handled_by"] is None


def threshold(low_rating: int) -> pytest.MarkDecorator:
    return pytest.mark.settings(**{"feedback.low_rating": low_rating})


@pytest.mark.parametrize(
    ("rating", "raised"),
    [
        ("2", True),
        ("3", False),
        pytest.param("3", True, marks=threshold(3)),
        pytest.param("4", False, marks=threshold(3)),
        pytest.param("1", False, marks=threshold(0)),
    ],
)
async def test_only_a_rating_at_or_below_the_threshold_is_low(hub: Hub, rating: str, raised: bool) -> None:
    await delivered_by_sms(hub)
    await rate_by_sms(hub, f"{rating} so-so")
    assert [low["rating"] for low in lows(hub)] == ([int(rating)] if raised else [])
    assert len(await open_followups(hub)) == (1 if raised else 0)
    [received] = [h["data"] for h in hub.receiver.of_type("feedback.received")]
    assert received["rating"] == int(rating)


async def test_a_rating_of_four_raises_nothing(hub: Hub) -> None:
    await delivered_by_sms(hub)
    await rate_by_sms(hub, "4 friendly driver")
    assert lows(hub) == []
    assert await open_followups(hub, "all") == []
    assert [h["data"]["rating"] for h in hub.receiver.of_type("feedback.received")] == [4]


# -- handled ----------------------------------------------------------------------------------------
async def test_a_handled_followup_leaves_the_open_list_and_keeps_its_first_handler(hub: Hub) -> None:
    await delivered_by_sms(hub)
    await rate_by_sms(hub, "1 late and rude")
    path = "/v1/feedback/followups/D-1001/handled"
    first = await hub.request("POST", path, json={"by": "ops-ana"})
    assert first.status == 200, await first.text()
    handled = await first.json()
    assert handled["status"] == "handled" and handled["handled_by"] == "ops-ana" and handled["handled_at"]
    again = await (await hub.request("POST", path, json={"by": "ops-ben"})).json()
    assert (again["handled_by"], again["handled_at"]) == ("ops-ana", handled["handled_at"])
    assert await open_followups(hub) == []
    [kept] = await open_followups(hub, "handled")
    assert kept["delivery_id"] == "D-1001" and kept["comment"] == "late and rude"
    assert [e["delivery_id"] for e in await open_followups(hub, "all")] == ["D-1001"]
    # Without a body, the key's source is who handled it.
    await hub.post_event(make_event("delivered", delivery__id="D-2002", delivery__merchant_id=SHOP))
    await hub.run_worker()
    await rate_by_sms(hub, "2")
    bare = await (await hub.request("POST", "/v1/feedback/followups/D-2002/handled")).json()
    assert bare["handled_by"] == "default" and bare["rating"] == 2


async def test_followup_requests_with_bad_input_get_a_precise_4xx(hub: Hub) -> None:
    await delivered_by_sms(hub)
    await rate_by_sms(hub, "1")
    path = "/v1/feedback/followups/D-1001/handled"

    async def error(resp: Any, status: int) -> dict[str, Any]:
        assert resp.status == status, await resp.text()
        body: dict[str, Any] = (await resp.json())["error"]
        return body

    missing = await error(await hub.request("POST", "/v1/feedback/followups/D-9/handled"), 404)
    assert missing["code"] == "not_found"
    long_by = await error(await hub.request("POST", path, json={"by": "x" * 129}), 422)
    assert "by" in long_by["fields"]
    extra = await error(await hub.request("POST", path, json={"who": "ops"}), 422)
    assert "who" in extra["fields"]
    assert (await error(await hub.request("POST", path, json=[1]), 422))["code"] == "validation_failed"
    text = await hub.request("POST", path, data="by=ops", headers={"Content-Type": "text/plain"})
    assert (await error(text, 415))["code"] == "unsupported_media_type"
    bad_id = await error(await hub.request("POST", "/v1/feedback/followups/%20x/handled"), 400)
    assert bad_id["code"] == "invalid_id"
    status = await error(await hub.request("GET", "/v1/feedback/followups?status=closed"), 400)
    assert status["code"] == "invalid_status" and "status" in status["fields"]
    limit = await error(await hub.request("GET", "/v1/feedback/followups?limit=0"), 400)
    assert "limit" in limit["fields"]
    by = await error(await hub.request("GET", "/v1/ratings"), 400)
    assert by["code"] == "invalid_by" and "by" in by["fields"]
    assert (await error(await hub.request("GET", "/v1/ratings?by=shop"), 400))["code"] == "invalid_by"
    assert (await hub.request("GET", "/v1/feedback/followups", key=None)).status == 401
    # Still open: nothing above changed it.
    assert [e["status"] for e in await open_followups(hub)] == ["open"]


# -- re-ratings -------------------------------------------------------------------------------------
async def test_a_re_rating_makes_no_second_entry_and_no_second_webhook_for_the_same_rating(hub: Hub) -> None:
    await delivered_by_sms(hub)
    await rate_by_sms(hub, "1 late")
    await rate_by_sms(hub, "1 late")  # another message saying the same
    assert [low["comment"] for low in lows(hub)] == ["late"]
    [entry] = await open_followups(hub, "all")
    assert entry["rating"] == 1
    await rate_by_sms(hub, "4 sorted out now")  # higher: recorded, the entry stays open
    [entry] = await open_followups(hub)
    assert (entry["rating"], entry["low_rating"], entry["comment"], entry["status"]) == (4, 1, "late", "open")
    assert entry["rated_at"] is not None and len(lows(hub)) == 1
    await hub.request("POST", "/v1/feedback/followups/D-1001/handled", json={"by": "ops"})
    await rate_by_sms(hub, "2 broken after all")  # low again and changed: raised, the entry open again
    assert sorted(low["comment"] for low in lows(hub)) == ["broken after all", "late"]
    [entry] = await open_followups(hub, "all")
    assert (entry["rating"], entry["low_rating"], entry["comment"]) == (2, 2, "broken after all")
    assert (entry["status"], entry["handled_by"], entry["rated_at"]) == ("open", None, None)
    # The driver's and the shop's figures hold the latest rating only.
    for group, name in (("driver", "DR-5"), ("merchant", SHOP)):
        [row] = (await (await hub.request("GET", f"/v1/ratings?by={group}")).json())["ratings"]
        assert (row["id"], row["count"], row["average"]) == (name, 1, 2.0)


async def test_a_low_rating_on_the_tracking_page_raises_once_however_often_it_is_sent(hub: Hub) -> None:
    event = make_event("out_for_delivery", delivery__merchant_id=SHOP)
    await hub.post_event(event)
    await hub.run_worker()
    url = link_in(hub.messages(channel="sms")[-1]["text"])
    await hub.post_event(make_event("delivered", occurred_at="2026-11-24T11:00:00+01:00"))
    await hub.run_worker()
    async with browser() as s:
        _, page = await get_page(s, url)
        form = {"rating": "1", "comment": "Karton nass, bitte an anna@example.com", "csrf": csrf_of(page)}

        async def submit() -> None:
            resp = await s.post(url + "/feedback", data=form, allow_redirects=False)
            assert resp.status == 303, await resp.text()

        await asyncio.gather(submit(), submit())  # a double click
        await submit()  # a reload
    await hub.run_worker()
    [low] = lows(hub)
    assert (low["rating"], low["channel"], low["driver_id"], low["merchant_id"]) == (1, "web", "DR-5", SHOP)
    assert low["comment"] == "Karton nass, bitte an anna@example.com"
    [entry] = await open_followups(hub)
    assert entry["comment"] == "Karton nass, bitte an a***@example.com" and entry["channel"] == "web"


# -- ratings per driver and per shop ---------------------------------------------------------------
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


async def test_ratings_per_driver_and_per_shop_with_their_trend(hub: Hub) -> None:
    r = aioredis.Redis.from_url(str(hub.settings.redis_url), decode_responses=True)

    async def rate(delivery: str, rating: int, driver: str, shop: str, days_ago: float) -> None:
        await record_rating(
            r,
            hub.settings,
            delivery_id=delivery,
            customer_id="C-1",
            rating=rating,
            comment="",
            driver_id=driver,
            merchant_id=shop,
            channel="sms",
            sid=f"SM-{delivery}-{rating}-{days_ago}",
            at=NOW - timedelta(days=days_ago),
        )

    try:
        await rate("D-1", 2, "DR-1", "acme", 10)  # the seven days before the last seven
        await rate("D-2", 4, "DR-1", "acme", 8)
        await rate("D-3", 5, "DR-1", "acme", 1)  # the last seven days (today is one of them)
        await rate("D-4", 3, "DR-2", "acme", 0)
        await rate("D-5", 5, "DR-2", "zeta", 30)  # older than both windows
        await rate("D-6", 1, "DR-3", "zeta", 3)
        await rate("D-6", 4, "DR-3", "zeta", 2)  # a re-rating: its count moves to its new day
        drivers = await ratings_summary(r, hub.settings, "driver", now=NOW)
        shops = await ratings_summary(r, hub.settings, "merchant", now=NOW)
    finally:
        await r.aclose()
    assert [(d["id"], d["count"], d["average"]) for d in drivers] == [
        ("DR-1", 3, 3.67),
        ("DR-2", 2, 4.0),
        ("DR-3", 1, 4.0),
    ]
    dr1 = drivers[0]
    assert dr1["last_7_days"] == {"count": 1, "average": 5.0}
    assert dr1["previous_7_days"] == {"count": 2, "average": 3.0}
    assert dr1["trend"] == 2.0
    assert drivers[1]["previous_7_days"] == {"count": 0, "average": None} and drivers[1]["trend"] is None
    assert drivers[2]["last_7_days"] == {"count": 1, "average": 4.0}
    assert [(s["id"], s["count"], s["average"], s["trend"]) for s in shops] == [
        ("acme", 4, 3.5, 1.0),  # last seven: 5 and 3 (4.0); the seven before: 2 and 4 (3.0)
        ("zeta", 2, 4.5, None),
    ]
    # The same figures through the API (its days end today by the wall clock: counts only).
    resp = await hub.request("GET", "/v1/ratings?by=merchant")
    assert resp.status == 200
    body = await resp.json()
    assert body["by"] == "merchant"
    assert [(s["id"], s["count"], s["average"]) for s in body["ratings"]] == [("acme", 4, 3.5), ("zeta", 2, 4.5)]


# -- erasure ------------------------------------------------------------------------------------
async def test_erasing_the_customer_leaves_the_followup_without_comment_or_customer(hub: Hub) -> None:
    await delivered_by_sms(hub)
    await rate_by_sms(hub, "1 the driver shouted at my daughter Lena")
    assert (await hub.request("DELETE", "/v1/customers/C-77", key=ADMIN_KEY)).status == 204
    [entry] = await open_followups(hub)
    assert (entry["customer_id"], entry["comment"]) == (None, None)
    assert (entry["rating"], entry["driver_id"], entry["merchant_id"]) == (1, "DR-5", SHOP)
    r = aioredis.Redis.from_url(str(hub.settings.redis_url), decode_responses=True)
    try:
        left = []
        async for name in r.scan_iter("hub:*"):
            kind = await r.type(name)
            values = await r.hvals(name) if kind == "hash" else [await r.get(name)] if kind == "string" else []
            left += [name for v in values if v and "Lena" in v]
        assert left == []
        assert not await r.exists(keys.followups_of("C-77"))
    finally:
        await r.aclose()
    # The driver's and the shop's figures keep the rating (no personal data in them).
    [row] = (await (await hub.request("GET", "/v1/ratings?by=driver")).json())["ratings"]
    assert (row["id"], row["count"]) == ("DR-5", 1)
