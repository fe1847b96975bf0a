"""When each customer is home (hub.availability): learned from the attempts the worker applies
and the answers customers give, read through ``GET /v1/customers/{id}/availability`` and
``POST /v1/availability/query``, forgotten on erasure, and used to list reschedule slots
best-first."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

import pytest
import redis.asyncio as aioredis

from hub import keys
from hub.availability import Availability
from preferences import CustomerStore
from tests.conftest import ADMIN_KEY, Hub
from tests.events import make_event

_n = itertools.count(1)

# Tuesday 24 and Wednesday 25 November 2026, Berlin (UTC+1): weekday 1 and 2.
MORNING = ("2026-11-24T09:30:00+01:00", "2026-11-25T09:30:00+01:00")
EVENING = ("2026-11-24T18:30:00+01:00", "2026-11-25T18:30:00+01:00")
EXACT = pytest.mark.settings(**{"availability.half_life_days": 0})  # evidence without ageing


def attempt(type_: str, at: str, customer: str = "C-AV", area: str | None = None, **data: Any) -> dict[str, Any]:
    """An attempt on a delivery of its own, for a customer without contacts (nothing is sent)."""
    n = next(_n)
    delivery: dict[str, Any] = {"id": f"D-AV-{n}"}
    if area:
        delivery["area"] = area
    return {
        "event_id": f"av-{n}",
        "type": type_,
        "occurred_at": at,
        "delivery": delivery,
        "customer": {"id": customer, "timezone": "Europe/Berlin"},
        "data": data,
    }


def routine(customer: str, area: str | None = None, evening_home: bool = True) -> list[dict[str, Any]]:
    """Two mornings nobody home and two evenings delivered (or the other way round)."""
    home, away = (EVENING, MORNING) if evening_home else (MORNING, EVENING)
    return [attempt("delivery_failed", at, customer, area, reason_code="nobody_home") for at in away] + [
        attempt("delivered", at, customer, area) for at in home
    ]


async def apply(hub: Hub, events: list[dict[str, Any]]) -> None:
    resp = await hub.request("POST", "/v1/events/batch", json={"events": events})
    assert resp.status in (200, 202), await resp.text()
    await hub.run_worker()


async def week(hub: Hub, customer: str) -> dict[str, Any]:
    resp = await hub.request("GET", f"/v1/customers/{customer}/availability")
    assert resp.status == 200, await resp.text()
    found: dict[str, Any] = await resp.json()
    return found


def block(view: dict[str, Any], weekday: int, start: str) -> dict[str, Any]:
    [found] = [b for b in view["blocks"] if b["weekday"] == weekday and b["start"] == start]
    return found


async def redis_of(hub: Hub) -> aioredis.Redis:
    return aioredis.Redis.from_url(str(hub.settings.redis_url), decode_responses=True)


async def pool(hub: Hub, area: str) -> dict[str, float]:
    r = await redis_of(hub)
    try:
        return {k: float(v) for k, v in (await r.hgetall(keys.availability_area(area))).items()}
    finally:
        await r.aclose()


# -- learning from attempts ------------------------------------------------------------------------
@EXACT
async def test_morning_failures_and_evening_deliveries_show_the_evening_likelier(hub: Hub) -> None:
    await apply(hub, routine("C-AV"))
    view = await week(hub, "C-AV")
    assert view["customer_id"] == "C-AV" and view["timezone"] == "Europe/Berlin" and view["area"] is None
    assert len(view["blocks"]) == 35 and len(view["best"]) == 5
    for weekday in (1, 2):  # the days seen, each with one observation per block
        evening, morning = block(view, weekday, "17:00"), block(view, weekday, "08:00")
        assert evening["p_home"] > 0.5 > morning["p_home"]
        assert evening["evidence"] == morning["evidence"] == 1
        assert evening["end"] == "20:00" and morning["end"] == "11:00"
    # Alone in the pools, the customer's prior is prior_home (their own evidence never counts
    # twice): the block over both days (2 home of 2, 12 pseudo-observations at 0.5) is 8/14, and
    # Tuesday's own home observation with 6 pseudo-observations at 8/14 makes 31/49.
    assert block(view, 1, "17:00")["p_home"] == round(31 / 49, 4)
    assert block(view, 1, "08:00")["p_home"] == round(18 / 49, 4)
    # A day never seen leans the same way through the customer's own blocks, with no evidence.
    assert block(view, 0, "17:00")["p_home"] > block(view, 0, "08:00")["p_home"]
    assert block(view, 0, "17:00")["evidence"] == 0
    assert {(b["weekday"], b["start"]) for b in view["best"][:2]} == {(1, "17:00"), (2, "17:00")}
    assert all(0 <= b["p_home"] <= 1 for b in view["blocks"])


@EXACT
async def test_an_event_applied_twice_is_learned_once(hub: Hub) -> None:
    [event] = [attempt("delivered", EVENING[0])]
    await apply(hub, [event])
    r = await redis_of(hub)
    record = await CustomerStore(r).get("C-AV")
    assert record is not None
    # The event's job run again (a retry after the step that learns): nothing new is learned.
    await Availability(r, hub.settings).learn("default", event, record)
    await r.aclose()
    assert block(await week(hub, "C-AV"), 1, "17:00")["evidence"] == 1
    assert await pool(hub, "*") == {"n:1:3": 1.0, "h:1:3": 1.0}


async def test_failed_before_is_the_latest_attempt_failing_and_recent(hub: Hub) -> None:
    r = await redis_of(hub)
    availability = Availability(r, hub.settings)
    await apply(hub, [attempt("delivery_failed", MORNING[1], reason_code="nobody_home")])
    assert await availability.failed_before("C-AV")
    await apply(hub, [attempt("delivered", MORNING[0])])  # an older success, told late, changes nothing
    assert await availability.failed_before("C-AV")
    await apply(hub, [attempt("delivered", EVENING[1])])
    assert not await availability.failed_before("C-AV")
    await apply(hub, [attempt("delivery_failed", "2026-11-26T09:30:00+01:00", reason_code="weather")])
    assert await availability.failed_before("C-AV")
    # The same failure, judged a long time later: too old to ask about.
    later = Availability(r, hub.settings, clock=lambda: datetime.fromisoformat("2027-01-30T00:00:00+01:00").timestamp())
    assert hub.settings.confirmation.failed_within_days < 60 and not await later.failed_before("C-AV")
    await r.aclose()


@EXACT
async def test_a_failure_for_another_reason_says_nothing_about_being_home(hub: Hub) -> None:
    r = await redis_of(hub)
    availability = Availability(r, hub.settings)
    assert not await availability.failed_before("C-AV")
    await apply(hub, [attempt("delivery_failed", MORNING[0], reason_code="access_problem")])
    assert await availability.failed_before("C-AV")
    await r.aclose()
    view = await week(hub, "C-AV")
    assert all(b["evidence"] == 0 and b["p_home"] == 0.5 for b in view["blocks"])
    assert await pool(hub, "*") == {}


@EXACT
async def test_an_attempt_outside_every_block_is_not_learned(hub: Hub) -> None:
    await apply(hub, [attempt("delivered", "2026-11-24T23:30:00+01:00")])
    assert all(b["evidence"] == 0 for b in (await week(hub, "C-AV"))["blocks"])


@pytest.mark.settings(**{"availability.half_life_days": 0, "availability.max_observations": 2})
async def test_only_the_newest_observations_are_kept_and_the_pool_follows(hub: Hub) -> None:
    await apply(hub, routine("C-AV")[:3])  # two mornings away, then one evening home
    view = await week(hub, "C-AV")
    assert block(view, 1, "08:00")["evidence"] == 0  # the oldest, forgotten
    assert block(view, 2, "08:00")["evidence"] == 1 and block(view, 1, "17:00")["evidence"] == 1
    assert await pool(hub, "*") == {"n:2:0": 1.0, "n:1:3": 1.0, "h:1:3": 1.0}


async def test_old_evidence_counts_less(hub: Hub) -> None:
    await apply(hub, [attempt("delivered", "2025-11-26T18:30:00+01:00"), attempt("delivered", EVENING[0])])
    view = await week(hub, "C-AV")
    # A year apart at a half-life of 180 days: the older counts about a quarter of the newer.
    old, new = block(view, 2, "17:00")["evidence"], block(view, 1, "17:00")["evidence"]
    assert 0 < new < 1 and 0 < old < new / 3


# -- stated answers --------------------------------------------------------------------------------
@EXACT
async def test_a_stated_answer_counts_half_once_spread_over_its_blocks(hub: Hub) -> None:
    r = await redis_of(hub)
    availability = Availability(r, hub.settings)
    weight = hub.settings.availability.stated_weight
    for _ in range(2):  # the same answer told twice is one answer
        await availability.observe_window(
            "C-AV", "confirm:D-1", "2026-11-24T14:00:00+01:00", "2026-11-24T20:00:00+01:00", True, weight
        )
    await availability.observe_window(
        "C-AV", "confirm:D-2", "2026-11-24T08:00:00+01:00", "2026-11-24T11:00:00+01:00", False, weight
    )
    assert not await availability.failed_before("C-AV")  # an answer is not an attempt
    await r.aclose()
    view = await week(hub, "C-AV")
    assert block(view, 1, "14:00")["evidence"] == block(view, 1, "17:00")["evidence"] == 0.25
    assert block(view, 1, "08:00")["evidence"] == 0.5
    assert block(view, 1, "17:00")["p_home"] > 0.5 > block(view, 1, "08:00")["p_home"]


# -- the area's prior ------------------------------------------------------------------------------
@EXACT
async def test_a_new_customer_starts_at_their_areas_rates(hub: Hub) -> None:
    await apply(
        hub,
        routine("C-A1", "10115")
        + routine("C-A2", "10115")
        + routine("C-B1", "80331", evening_home=False)
        + routine("C-B2", "80331", evening_home=False),
    )
    # The newcomer's first event names the area: nothing learned of them yet, the area's lean.
    await apply(hub, [{**attempt("shipped", MORNING[0], "C-NEW", "10115"), "data": {}}])
    newcomer = await week(hub, "C-NEW")
    assert newcomer["area"] == "10115" and all(b["evidence"] == 0 for b in newcomer["blocks"])
    assert block(newcomer, 1, "17:00")["p_home"] > 0.5 > block(newcomer, 1, "08:00")["p_home"]
    # A customer the hub knows nothing of: every customer's pool, evening and morning level here.
    stranger = await week(hub, "C-NOBODY")
    assert stranger["area"] is None and stranger["timezone"] == hub.settings.default_timezone
    assert block(stranger, 1, "17:00")["p_home"] == block(stranger, 1, "08:00")["p_home"] == 0.5
    assert block(newcomer, 1, "17:00")["p_home"] > block(stranger, 1, "17:00")["p_home"]


async def test_with_nothing_learned_every_block_is_the_prior(hub: Hub) -> None:
    view = await week(hub, "C-NOBODY")
    prior = hub.settings.availability.prior_home
    assert all(b["p_home"] == prior and b["evidence"] == 0 for b in view["blocks"])


# -- erasure ---------------------------------------------------------------------------------------
@EXACT
async def test_erasure_forgets_the_customer_and_their_share_of_the_area(hub: Hub) -> None:
    await apply(hub, [attempt("delivered", EVENING[0], "C-KEEP", "10115")])
    alone = await pool(hub, "10115"), await pool(hub, "*")
    await apply(hub, routine("C-AV", "10115"))
    assert await pool(hub, "10115") != alone[0]
    resp = await hub.request("DELETE", "/v1/customers/C-AV", key=ADMIN_KEY)
    assert resp.status == 204, await resp.text()
    view = await week(hub, "C-AV")
    assert view["area"] is None and all(b["evidence"] == 0 for b in view["blocks"])
    assert (await pool(hub, "10115"), await pool(hub, "*")) == alone  # as if they had never been
    r = await redis_of(hub)
    assert not await r.exists(keys.availability("C-AV"))
    assert not await Availability(r, hub.settings).failed_before("C-AV")
    await r.aclose()


# -- the query -------------------------------------------------------------------------------------
@EXACT
async def test_the_query_answers_every_customer_and_window_in_the_order_asked(hub: Hub) -> None:
    await apply(hub, routine("C-AV"))
    evening = {"start": "2026-12-01T17:30:00+01:00", "end": "2026-12-01T19:30:00+01:00"}  # a Tuesday
    morning = {"start": "2026-12-01T08:00:00Z", "end": "2026-12-01T09:00:00Z"}  # 09:00-10:00 in Berlin
    night = {"start": "2026-12-01T23:00:00+01:00", "end": "2026-12-02T06:00:00+01:00"}
    body = {
        "queries": [
            {"customer_id": "C-AV", "windows": [morning, evening, night]},
            {"customer_id": "C-NOBODY", "windows": [evening]},
            {"customer_id": "C-AV", "windows": [evening]},
        ]
    }
    resp = await hub.request("POST", "/v1/availability/query", json=body)
    assert resp.status == 200, await resp.text()
    results = (await resp.json())["results"]
    assert [r["customer_id"] for r in results] == ["C-AV", "C-NOBODY", "C-AV"]
    am, pm, dark = results[0]["windows"]
    assert pm["p_home"] > 0.5 > am["p_home"] and pm["evidence"] == am["evidence"] == 1
    assert dark == {"start": night["start"], "end": night["end"], "p_home": None, "evidence": 0}
    assert results[1]["windows"][0]["evidence"] == 0 and 0 < results[1]["windows"][0]["p_home"] < 1
    assert results[2]["windows"] == [pm]
    # The same answer through the profile: the window lies inside one block.
    assert pm["p_home"] == block(await week(hub, "C-AV"), 1, "17:00")["p_home"]


WINDOW = {"start": "2026-12-01T17:30:00+01:00", "end": "2026-12-01T19:30:00+01:00"}


def _query(windows: Any = None, **customer: Any) -> dict[str, Any]:
    return {"queries": [{"customer_id": "C-1", "windows": [WINDOW] if windows is None else windows, **customer}]}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "body"),
        ({}, "queries"),
        ({"queries": []}, "queries"),
        ({"queries": [], "extra": 1}, "extra"),
        (_query(colour="red"), "queries.0.colour"),
        (_query([]), "queries.0.windows"),
        (_query([WINDOW] * 51), "queries.0.windows"),
        ({"queries": [_query()["queries"][0]] * 501}, "queries"),
        (_query(customer_id=""), "queries.0.customer_id"),
        (_query(customer_id="no spaces"), "queries.0.customer_id"),
        (_query(customer_id=7), "queries.0.customer_id"),
        (_query([{**WINDOW, "start": "tomorrow"}]), "queries.0.windows.0.start"),
        (_query([{**WINDOW, "start": "2026-12-01T17:30:00"}]), "queries.0.windows.0.start"),
        (_query([{**WINDOW, "start": 1764606600}]), "queries.0.windows.0.start"),
        (_query([{**WINDOW, "end": "2026-12-01T16:00:00+01:00"}]), "queries.0.windows.0"),
        (_query([{**WINDOW, "end": "2026-12-09T16:00:00+01:00"}]), "queries.0.windows.0"),
        (_query([{"start": WINDOW["start"]}]), "queries.0.windows.0.end"),
        (_query([{**WINDOW, "slot": "s1"}]), "queries.0.windows.0.slot"),
        (_query(["x"]), "queries.0.windows.0"),
    ],
)
async def test_a_bad_query_is_a_422_naming_the_field(hub: Hub, body: Any, field: str) -> None:
    resp = await hub.request("POST", "/v1/availability/query", json=body)
    assert resp.status == 422, await resp.text()
    error = (await resp.json())["error"]
    assert error["code"] == "validation_failed" and field in error["fields"], error


async def test_the_query_refuses_what_is_not_json_and_needs_a_key(hub: Hub) -> None:
    resp = await hub.request("POST", "/v1/availability/query", data=b"{", headers={"Content-Type": "application/json"})
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "invalid_json"
    resp = await hub.request("POST", "/v1/availability/query", data=b"x", headers={"Content-Type": "text/plain"})
    assert resp.status == 415
    assert (await hub.request("POST", "/v1/availability/query", key=None, json=_query())).status == 401
    assert (await hub.request("GET", "/v1/customers/C-1/availability", key=None)).status == 401
    resp = await hub.request("GET", "/v1/customers/not%20an%20id/availability")
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "invalid_id"


# -- reschedule slots best-first -------------------------------------------------------------------
SLOTS = [  # Wednesday 25 November 2099
    {"id": "morning", "start": "2099-11-25T09:00:00+01:00", "end": "2099-11-25T11:00:00+01:00"},
    {"id": "evening", "start": "2099-11-25T17:00:00+01:00", "end": "2099-11-25T20:00:00+01:00"},
]


async def offer(hub: Hub) -> str:
    """Two evenings home and two mornings not, then a delivery offering a morning and an
    evening slot, in that order: the SMS's text."""
    await apply(hub, routine("C-77"))
    await hub.post_event(make_event("out_for_delivery", customer__locale="en-GB", data={"reschedule_slots": SLOTS}))
    await hub.run_worker()
    text: str = hub.messages(channel="sms")[-1]["text"]
    return text


@pytest.mark.settings(**{"availability.order_slots": True})
async def test_slots_listed_best_first_and_reply_1_picks_the_best(hub: Hub) -> None:
    text = await offer(hub)
    assert "1 for Wed, Nov 25 17-20 or 2 for Wed, Nov 25 9-11" in text, text
    await hub.text_hub("+4915112345678", "1")
    await hub.run_worker()
    [hook] = hub.receiver.of_type("delivery.reschedule_requested")
    assert hook["data"]["slot_id"] == "evening"


async def test_slots_keep_the_upstreams_order_by_default(hub: Hub) -> None:
    text = await offer(hub)
    assert "1 for Wed, Nov 25 9-11 or 2 for Wed, Nov 25 17-20" in text, text
    await hub.text_hub("+4915112345678", "1")
    await hub.run_worker()
    [hook] = hub.receiver.of_type("delivery.reschedule_requested")
    assert hook["data"]["slot_id"] == "morning"


# -- what the confirmation policy and the webhooks read --------------------------------------------
async def test_p_window_is_none_with_nothing_to_go_on_and_the_pool_once_anyone_was_seen(hub: Hub) -> None:
    """The bare prior is no reason to ask anyone (hub.confirmations' low_availability): a new
    customer in an empty hub has no p_window; once others were observed in those blocks, the
    pool speaks for them."""
    r = await redis_of(hub)
    availability = Availability(r, hub.settings)
    evening = ("2026-12-01T17:30:00+01:00", "2026-12-01T19:30:00+01:00")
    assert await availability.p_window("C-NEW", *evening) is None
    await apply(hub, routine("C-AV"))
    p_new = await availability.p_window("C-NEW", *evening)
    assert p_new is not None and p_new > 0.5  # the others were home on Tuesday evenings
    await r.aclose()


@EXACT
async def test_the_hint_and_p_window_read_the_same_model(hub: Hub) -> None:
    await apply(hub, routine("C-AV"))
    r = await redis_of(hub)
    availability = Availability(r, hub.settings)
    evening = await availability.p_window("C-AV", "2026-12-01T17:30:00+01:00", "2026-12-01T19:30:00+01:00")
    morning = await availability.p_window("C-AV", "2026-12-01T09:00:00+01:00", "2026-12-01T10:00:00+01:00")
    assert evening is not None and morning is not None and evening > 0.5 > morning
    assert await availability.p_window("C-AV", "2026-12-01T23:00:00+01:00", "2026-12-02T05:00:00+01:00") is None
    assert await availability.p_window("C-AV", "not a time", "2026-12-02T05:00:00+01:00") is None
    hint = await availability.hint("C-AV", "2026-12-01T17:30:00+01:00", "2026-12-01T19:30:00+01:00")
    assert hint["p_home"] == evening and len(hint["best"]) == 3 and hint["best"][0]["start"] == "17:00"
    assert (await availability.hint("C-NOBODY"))["p_home"] is None
    # The latest attempt was delivered (Wednesday evening): no reason to ask before the next one.
    assert not await availability.failed_before("C-AV") and not await availability.failed_before("C-NOBODY")
    await r.aclose()


async def test_without_an_area_the_destinations_grid_cell_pools_the_customer(hub: Hub) -> None:
    event = attempt("delivered", EVENING[0])
    event["delivery"]["destination"] = {"lat": 52.5301, "lon": 13.4012}
    await apply(hub, [event])
    assert (await week(hub, "C-AV"))["area"] == "grid:52.5000:13.4000"
    assert await pool(hub, "grid:52.5000:13.4000") == await pool(hub, "*") != {}
