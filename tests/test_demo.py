"""The demo a newcomer watches: every customer hears about their parcel; Yuki's quiet hours hold
her non-urgent messages until they end, then they arrive; and a second run plays as the first."""

from __future__ import annotations

import re
from datetime import datetime, tzinfo
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from hub.demo import demo_steps, prepare_customers, reset_demo, run_demo
from hub.dev import DEV_RELAY_POOL
from tests.conftest import ADMIN_KEY, API_KEY, TEST_NOW, Hub


class _DemoClock(datetime):
    """``datetime`` for hub.demo, frozen at the policy clock's instant: the demo dates its route
    (the last 40 minutes) and Yuki's quiet hours (until two minutes from now) by ``now()``."""

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> datetime:  # type: ignore[override]
        return datetime.fromtimestamp(TEST_NOW, tz)


async def test_the_demo_reaches_everyone_and_shows_quiet_hours_at_work(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The demo as it runs at 08:30 in Berlin (16:30 in Tokyo), whatever the wall clock says: the
    # policy clock and the demo's own clock are one fixed instant, so no minute or midnight
    # boundary crossed during the run can change what is quiet or expired.
    monkeypatch.setattr("hub.demo.datetime", _DemoClock)
    assert hub.now == TEST_NOW
    accepted = await run_demo(hub.base, API_KEY, pause=0)
    assert accepted == 20
    await hub.run_worker()
    held = (await (await hub.request("GET", "/v1/messages?status=deferred", key=ADMIN_KEY)).json())["messages"]
    assert held and {m["customer_id"] for m in held} == {"C-5"}
    assert all("quiet hours until" in m["history"][-1]["detail"] for m in held)
    received = {m["to"] for m in hub.messages()}
    assert {"+4915123456789", "+34612345678", "+12125550142", "demo-token-camille"} <= received
    assert "demo-token-yuki" in received  # "arriving soon" is urgent: it breaks quiet hours

    await hub.fast_forward(25 * 60)  # her window has ended and the spread is over
    await hub.run_worker()
    after = (await (await hub.request("GET", "/v1/messages?status=deferred", key=ADMIN_KEY)).json())["messages"]
    assert after == []
    listed = (await (await hub.request("GET", "/v1/messages?customer_id=C-5", key=ADMIN_KEY)).json())["messages"]
    assert {m["status"] for m in listed if m["to"]} <= {"accepted", "superseded"}
    assert "yuki@example.jp" in {m["to"] for m in hub.messages()}


def _what_phones_and_inboxes_got(entries: list[dict[str, Any]], run: str) -> list[tuple[str, ...]]:
    """Each message as the customer sees it, without what differs by design between two runs: the
    run's tag in delivery ids and the tracking link's random id."""

    def same(text: str | None) -> str:
        return re.sub(r"/t/[\w-]+", "/t/…", (text or "").replace(run, ""))

    return sorted(
        (e["channel"], e["to"], same(e.get("subject")), same(e.get("text")), same(e.get("push_body"))) for e in entries
    )


@pytest.mark.settings(**{"relay.pool": list(DEV_RELAY_POOL)})
async def test_a_second_demo_run_in_the_same_redis_plays_as_the_first(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What `hub dev --demo` does each time it starts, twice against one Redis within the hour (the
    # policy clock does not move): without the reset the second run's US customer hits the hourly
    # SMS limit left by the first, and her rating is answered as a reschedule that came too late.
    monkeypatch.setattr("hub.demo.datetime", _DemoClock)
    redis = aioredis.Redis.from_url(str(hub.settings.redis_url), decode_responses=True)

    async def play(run: str) -> tuple[list[tuple[str, ...]], dict[str, Any], dict[str, Any]]:
        seen = len(hub.ledger.entries())
        await reset_demo(redis, hub.settings)
        # run_demo's rounds, each handled before the next is posted as the pause between them
        # lets `hub dev` do (so the relay session of `out_for_delivery` is open for the next).
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {API_KEY}"}) as http:
            await prepare_customers(http, hub.base)
        for batch in demo_steps(run=run):
            resp = await hub.request("POST", "/v1/events/batch", json={"events": batch})
            assert (await resp.json())["summary"]["accepted"] == len(batch)
            await hub.run_worker()
        got = [e.to_dict() for e in hub.ledger.entries()[seen:]]
        # What the tour leaves: a low rating on the follow-up list, and what the hub learned.
        open_before = (await (await hub.request("GET", "/v1/feedback/followups")).json())["followups"]
        assert open_before == [], f"an earlier tour's follow-up is still open: {open_before}"
        assert await redis.hget("hub:avail:customer:C-4", "count") in (None, "1")  # this run's delivery only
        await hub.text_hub("+12125550142", "1 box was crushed")
        answer = await hub.text_hub("+12125550142", "5 great driver")
        rating = {"status": answer["status"], "replies": answer["replies"]}
        session = await (await hub.request("GET", f"/v1/deliveries/D-1002{run}/relay", key=ADMIN_KEY)).json()
        assert "participants" in session, f"no relay session for Lucía's delivery: {session}"
        return _what_phones_and_inboxes_got(got, run), rating, session["participants"]["customer"]

    try:
        first, first_rating, first_proxy = await play("-R1")
        second, second_rating, second_proxy = await play("-R2")
    finally:
        await redis.aclose()
    assert len(first) >= 15 and second == first
    assert second_rating == first_rating and first_rating["replies"]
    assert "rescheduled" not in first_rating["replies"][0]
    assert first_proxy["proxy_number"] in DEV_RELAY_POOL and second_proxy == first_proxy
