"""The demo a newcomer watches: every customer hears about their parcel; Yuki's quiet hours hold
her non-urgent messages until they end, then they arrive."""

from __future__ import annotations

import time

from hub.demo import run_demo
from tests.conftest import ADMIN_KEY, API_KEY, Hub


async def test_the_demo_reaches_everyone_and_shows_quiet_hours_at_work(hub: Hub) -> None:
    hub.now = time.time()  # the demo's route happened in the last 40 minutes of the wall clock
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
