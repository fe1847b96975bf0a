"""First-attempt success, end to end through the public surfaces only (the issue's "done when"):
the hub learns when a customer is home from their attempts, asks them to confirm a planned
window they are unlikely to be in for, hears a low rating, and counts what it sent."""

from __future__ import annotations

import time
from typing import Any

from tests.conftest import Hub
from tests.events import make_event
from tests.test_dashboard import Operator, signed_in

PHONE = "+4915112345678"
# Tuesday 17 and Wednesday 18 November 2026, Berlin (UTC+1): weekdays 1 and 2.
MORNINGS = ("2026-11-17T09:30:00+01:00", "2026-11-18T09:30:00+01:00")
EVENINGS = ("2026-11-17T18:30:00+01:00", "2026-11-18T18:30:00+01:00")
WINDOW = {"start": "2099-11-25T09:00:00+01:00", "end": "2099-11-25T12:00:00+01:00"}


def attempt(type_: str, at: str, n: int, **data: Any) -> dict[str, Any]:
    return make_event(type_, event_id=f"att-{n}", delivery__id=f"D-ATT-{n}", occurred_at=at, data=data)


async def post(hub: Hub, event: dict[str, Any]) -> None:
    resp = await hub.post_event(event)
    assert resp.status == 202, await resp.text()
    await hub.run_worker()


async def test_learned_asked_rated_and_counted(hub: Hub) -> None:
    await hub.request("PUT", "/v1/customers/C-77", json={"phone": PHONE})
    await hub.request("PATCH", "/v1/customers/C-77/preferences", json={"channels": {"delivered": ["sms"]}})

    # Two mornings nobody was home, two evenings delivered.
    n = 0
    for at in MORNINGS:
        n += 1
        await post(hub, attempt("delivery_failed", at, n, reason_code="nobody_home"))
    for at in EVENINGS:
        n += 1
        await post(hub, attempt("delivered", at, n))
    view = await (await hub.request("GET", "/v1/customers/C-77/availability")).json()
    for weekday in (1, 2):
        [morning] = [b for b in view["blocks"] if b["weekday"] == weekday and b["start"] == "08:00"]
        [evening] = [b for b in view["blocks"] if b["weekday"] == weekday and b["start"] == "17:00"]
        assert evening["p_home"] > morning["p_home"], (evening, morning)
    assert view["best"][0]["start"] == "17:00"

    # A morning window, when this customer is rarely in: they are asked, and "1" confirms it upstream.
    sent_before = len(hub.messages(channel="sms"))
    await post(hub, make_event("scheduled", occurred_at="2026-11-24T19:00:00+01:00", delivery__eta=WINDOW))
    [question] = hub.messages(channel="sms")[sent_before:]
    assert "1" in question["text"] and question["to"] == PHONE
    await hub.text_hub(PHONE, "1")
    await hub.run_worker()
    [confirmed] = hub.receiver.of_type("delivery.confirmed")
    assert confirmed["data"]["delivery_id"] == "D-1001" and confirmed["data"]["window"] == WINDOW
    assert 0 <= confirmed["data"]["availability"]["p_home"] <= 1

    # Delivered; a rating of 1 goes upstream as feedback.low and onto the operators' dashboard.
    await post(hub, make_event("delivered", occurred_at="2026-11-25T10:15:00+01:00"))
    await hub.text_hub(PHONE, "1 the parcel was left in the rain")
    await hub.run_worker()
    [low] = hub.receiver.of_type("feedback.low")
    assert low["data"]["rating"] == 1 and low["data"]["driver_id"] == "DR-5"
    assert low["data"]["comment"] == "the parcel was left in the rain"
    operator = Operator(hub.base)
    try:
        page = await signed_in(operator)
    finally:
        await operator.http.close()
    assert "D-1001" in page and "the parcel was left in the rain" in page

    # The figures count what was sent, without reading the message log.
    until = int(time.time()) + 86_400  # messages count when they are sent, events when they occurred
    resp = await hub.request("GET", "/v1/stats", params={"from": "2026-11-01T00:00:00Z", "to": str(until)})
    assert resp.status == 200, await resp.text()
    totals = (await resp.json())["totals"]
    assert totals["message.sms.accepted"] == len(hub.messages(channel="sms"))
    assert totals["attempt.first.failed"] == 2 and totals["attempt.first.delivered"] == 3
    assert totals["failure.nobody_home"] == 2
    assert totals["reply.confirm"] == 1 and totals["reply.rating"] == 1
    assert totals["rating.low"] == 1 and totals["scheduled.asked"] == 1
