"""Deliveries keep a timeline; stale events send nothing; the log shows every status change."""

from __future__ import annotations

import pytest

from tests.conftest import ADMIN_KEY, Hub
from tests.events import make_event


async def test_delivery_timeline_lists_milestones_in_time_order(hub: Hub) -> None:
    await hub.post_event(make_event("arriving_soon", occurred_at="2026-11-24T09:40:00+01:00", data={"minutes": 10}))
    await hub.post_event(make_event("shipped", occurred_at="2026-11-23T18:00:00+01:00"))
    await hub.run_worker()
    resp = await hub.request("GET", "/v1/deliveries/D-1001")
    body = await resp.json()
    assert [e["type"] for e in body["timeline"]] == ["shipped", "arriving_soon"]
    assert body["status"] == "arriving_soon"
    assert body["driver"]["phone"] != "+4915700000001"  # masked
    assert body["tracking_code"] == "LM123456789"


async def test_out_of_order_event_after_delivered_sends_nothing(hub: Hub) -> None:
    await hub.post_event(make_event("delivered", occurred_at="2026-11-24T11:00:00+01:00"))
    await hub.run_worker()
    before = len(hub.messages())
    await hub.post_event(make_event("in_transit", occurred_at="2026-11-24T07:00:00+01:00"))
    await hub.post_event(make_event("arriving_soon", occurred_at="2026-11-24T12:00:00+01:00"))
    await hub.run_worker()
    assert len(hub.messages()) == before
    body = await (await hub.request("GET", "/v1/deliveries/D-1001")).json()
    assert body["status"] == "delivered"
    assert [e["type"] for e in body["timeline"]] == ["in_transit", "delivered", "arriving_soon"]


async def test_message_log_records_status_history_and_masks_addresses(hub: Hub) -> None:
    await hub.post_event(make_event("out_for_delivery"))
    await hub.run_worker()
    listing = await (await hub.request("GET", "/v1/messages?delivery_id=D-1001")).json()
    by_channel = {m["channel"]: m for m in listing["messages"]}
    assert set(by_channel) == {"sms", "email", "push"}
    sms = by_channel["sms"]
    assert sms["status"] == "accepted" and sms["provider_id"].startswith("SM")
    assert [h["status"] for h in sms["history"]] == ["sending", "accepted"]
    assert sms["to"] == "+49*******5678"
    assert sms["template"] == "de/out_for_delivery"
    assert sms["encoding"] == "GSM-7" and 1 <= int(sms["segments"]) <= 2
    one = await (await hub.request("GET", f"/v1/messages/{sms['id']}?reveal=1", key=ADMIN_KEY)).json()
    assert one["to"] == "+4915112345678"
    assert (await hub.request("GET", "/v1/messages/m_nope")).status == 404
    assert (await hub.request("GET", "/v1/messages")).status == 400


async def test_transient_provider_failure_is_retried_and_sent_once(hub: Hub) -> None:
    hub.sandbox.faults.set("twilio", "500", count=1)
    await hub.post_event(make_event("arriving_soon", data={"minutes": 10}))
    await hub.run_worker()
    assert len(hub.messages(channel="sms")) == 1
    assert len(hub.messages(channel="push")) == 1
    listing = await (await hub.request("GET", "/v1/messages?delivery_id=D-1001")).json()
    sms = next(m for m in listing["messages"] if m["channel"] == "sms")
    assert [h["status"] for h in sms["history"]] == ["sending", "transient", "sending", "accepted"]
    assert sms["attempts"] == 2


async def test_permanent_failure_is_logged_with_the_provider_code(hub: Hub) -> None:
    hub.sandbox.twilio.invalid_numbers = frozenset({"+4915112345678"})
    await hub.post_event(make_event("arriving_soon", data={"minutes": 10}))
    await hub.run_worker()
    listing = await (await hub.request("GET", "/v1/messages?delivery_id=D-1001")).json()
    sms = next(m for m in listing["messages"] if m["channel"] == "sms")
    assert sms["status"] == "failed"
    assert sms["error_code"] == "21211"
    assert hub.messages(channel="sms") == []


async def _message_status(hub: Hub, channel: str) -> str | None:
    listing = await (await hub.request("GET", "/v1/messages?delivery_id=D-1001")).json()
    found = [m["status"] for m in listing["messages"] if m["channel"] == channel]
    return found[0] if found else None


# A retry 5 to 10 minutes (policy clock) after the failure: held until the test moves the clock
# on, so the newer event is processed first whatever the speed of the machine.
@pytest.mark.settings(**{"worker.retry_base_delay": 600.0})
async def test_retry_made_obsolete_by_a_newer_event_is_superseded_not_sent(hub: Hub) -> None:
    hub.sandbox.faults.set("twilio", "500", count=1)
    await hub.post_event(make_event("arriving_soon", occurred_at="2026-11-24T09:40:00+01:00", data={"minutes": 10}))
    await hub.run_worker()
    assert await _message_status(hub, "sms") == "transient"  # its retry waits
    await hub.post_event(make_event("delivered", occurred_at="2026-11-24T09:55:00+01:00"))
    await hub.run_worker()
    assert await _message_status(hub, "sms") == "transient"  # the retry has not run yet
    await hub.fast_forward(600)  # the retry is due
    await hub.run_worker()
    assert await _message_status(hub, "sms") == "superseded"
    assert hub.messages(channel="sms") == []  # the late "arriving soon" SMS never went out


async def test_smtp_server_refusing_connections_is_retried_and_the_email_sent_once(hub: Hub) -> None:
    hub.sandbox.faults.set("smtp", "refuse", count=1)
    await hub.post_event(make_event("order_confirmed"))  # e-mail only by default
    await hub.run_worker()
    assert len(hub.messages(channel="email")) == 1
    listing = await (await hub.request("GET", "/v1/messages?delivery_id=D-1001")).json()
    [mail] = [m for m in listing["messages"] if m["channel"] == "email"]
    assert mail["status"] == "accepted"
    assert [h["status"] for h in mail["history"]] == ["sending", "transient", "sending", "accepted"]


@pytest.mark.settings(**{"worker.max_tries": 2})
async def test_a_provider_that_stays_down_ends_in_dead_not_in_a_loop(hub: Hub) -> None:
    hub.sandbox.faults.set("twilio", "500")
    await hub.post_event(make_event("arriving_soon", data={"minutes": 10}))
    await hub.run_worker()
    assert await _message_status(hub, "sms") == "dead"
    assert hub.messages(channel="sms") == []
