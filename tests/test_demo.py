"""The demo a newcomer watches: every customer hears about their parcel; Yuki's quiet hours hold
her non-urgent messages until they end, then they arrive."""

from __future__ import annotations

from datetime import datetime, tzinfo

import pytest

from hub.demo import run_demo
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
