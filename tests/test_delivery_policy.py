"""The delivery policy end to end, with the policy clock fixed: quiet hours in each customer's own
time zone, collapsing, superseding, expiry, per-customer and per-sender limits, fallback, push
escalation, retries, dead letters and replay."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
import redis.asyncio as aioredis

from hub.cli import main as cli_main
from hub.message import SendInProgress
from hub.records import MessageRecord
from hub.store import HubStore
from hub.worker import create_worker, drain
from tests.conftest import ADMIN_KEY, Hub, a_runtime
from tests.events import make_event

NO_SPREAD = {"policy.quiet_spread_minutes": 0}


def at(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


async def messages(hub: Hub, **query: str) -> list[dict[str, Any]]:
    query = query or {"delivery_id": "D-1001"}
    resp = await hub.request("GET", "/v1/messages?" + "&".join(f"{k}={v}" for k, v in query.items()), key=ADMIN_KEY)
    assert resp.status == 200, await resp.text()
    listed: list[dict[str, Any]] = (await resp.json())["messages"]
    return listed


def customer(n: int, tz: str, phone: str) -> dict[str, Any]:
    return {"id": f"C-{n}", "name": f"Customer {n}", "phone": phone, "push_tokens": [f"tok-{n}"], "timezone": tz}


@pytest.mark.settings(**NO_SPREAD)
async def test_tokyo_and_los_angeles_get_the_same_event_at_their_own_right_times(hub: Hub) -> None:
    hub.now = at("2026-11-24T22:00:00+00:00")
    eta = {"start": "2026-11-25T09:00:00+00:00", "end": "2026-11-25T11:00:00+00:00"}
    for n, tz, phone in ((1, "Asia/Tokyo", "+81312345678"), (2, "America/Los_Angeles", "+14155550100")):
        event = make_event(
            "out_for_delivery",
            occurred_at="2026-11-24T22:00:00+00:00",
            delivery={"id": f"D-{n}", "merchant": "Acme", "eta": eta},
            customer=customer(n, tz, phone),
        )
        assert (await hub.post_event(event)).status == 202
    await hub.run_worker()
    assert {m["to"] for m in hub.messages()} == {"+14155550100", "tok-2"}  # 14:00 in Los Angeles
    tokyo = [m for m in await messages(hub, customer_id="C-1") if m["to"]]  # no e-mail address: skipped
    assert {m["status"] for m in tokyo} == {"deferred"}
    assert {m["due_at"] for m in tokyo} == {"2026-11-24T23:00:00+00:00"}  # 08:00 in Tokyo
    assert "quiet hours until 08:00 Asia/Tokyo" in tokyo[0]["history"][-1]["detail"]

    await hub.fast_forward(30 * 60)  # 07:30 in Tokyo: still quiet
    await hub.run_worker()
    assert {m["to"] for m in hub.messages()} == {"+14155550100", "tok-2"}
    await hub.fast_forward(31 * 60)
    await hub.run_worker()
    assert Counter(m["to"] for m in hub.messages()) == Counter(["+14155550100", "tok-2", "+81312345678", "tok-1"])
    assert {m["status"] for m in await messages(hub, customer_id="C-1") if m["to"]} == {"accepted"}


@pytest.mark.settings(**NO_SPREAD)
async def test_urgent_milestones_break_quiet_hours_as_configured(hub: Hub) -> None:
    hub.now = at("2026-11-24T23:30:00+01:00")  # Berlin, quiet
    await hub.post_event(make_event("arriving_soon", occurred_at="2026-11-24T23:25:00+01:00", delivery__eta=None))
    await hub.post_event(
        make_event("delivery_failed", delivery__id="D-2", occurred_at="2026-11-24T23:26:00+01:00", delivery__eta=None)
    )
    await hub.run_worker()
    sent = Counter((m["channel"], m["meta"].get("delivery_id", "")) for m in hub.messages())
    channels_now = sorted(m["channel"] for m in hub.messages())
    assert channels_now == ["push", "push", "sms"], sent  # arriving_soon: sms + push; failed: push only
    failed = await messages(hub, delivery_id="D-2")
    waiting = {m["channel"]: m for m in failed if m["status"] == "deferred"}
    assert set(waiting) == {"sms", "email"}
    assert {m["due_at"] for m in waiting.values()} == {"2026-11-25T07:00:00+00:00"}


@pytest.mark.settings(**NO_SPREAD)
async def test_a_message_held_overnight_is_dropped_when_the_parcel_is_delivered_first(hub: Hub) -> None:
    hub.now = at("2026-11-24T06:00:00+01:00")
    await hub.post_event(
        make_event("out_for_delivery", occurred_at="2026-11-24T05:55:00+01:00", data={"reschedule_slots": []})
    )
    await hub.run_worker()
    assert hub.messages() == []
    await hub.fast_forward(30 * 60)
    await hub.post_event(make_event("delivered", occurred_at="2026-11-24T06:25:00+01:00"))
    await hub.run_worker()
    assert hub.messages() == []  # still quiet: the delivered news waits too
    await hub.fast_forward(90 * 60)
    await hub.run_worker()
    listed = await messages(hub)
    by_milestone = Counter((m["milestone"], m["status"]) for m in listed if m["to"])
    assert by_milestone == Counter({("out_for_delivery", "superseded"): 3, ("delivered", "accepted"): 2})
    superseded = next(m for m in listed if m["status"] == "superseded")
    assert superseded["history"][-1]["detail"] == "a newer delivered event arrived while it waited"
    assert sorted(m["channel"] for m in hub.messages()) == ["email", "push"]


async def test_a_burst_of_eta_updates_sends_only_the_newest(hub: Hub) -> None:
    prefs = {"channels": {"eta_changed": ["sms"]}}
    await hub.request("PUT", "/v1/customers/C-77", json={"phone": "+4915112345678"})
    await hub.request("PATCH", "/v1/customers/C-77/preferences", json=prefs)
    for i in range(10):
        eta = {"start": f"2026-11-24T10:{i:02d}:00+01:00", "end": f"2026-11-24T11:{i:02d}:00+01:00"}
        event = make_event("eta_changed", occurred_at=f"2026-11-24T08:29:{i * 5:02d}+01:00", delivery__eta=eta)
        assert (await hub.post_event(event)).status == 202
    await hub.run_worker()
    assert hub.messages() == []  # held for the collapsing window
    await hub.fast_forward(121)
    await hub.run_worker()
    sent = hub.messages()
    assert len(sent) == 1
    assert "11:09" in (sent[0]["text"] or "")  # the newest ETA
    listed = await messages(hub)
    statuses = Counter(m["status"] for m in listed if m["milestone"] == "eta_changed")
    stale = 10 - sum(statuses.values())  # events that arrived after a newer one send nothing at all
    assert statuses["accepted"] == 1 and statuses["superseded"] + stale == 9, statuses


@pytest.mark.settings(**{"policy.per_customer_hour": {"sms": 3, "email": 4, "push": 5}})
async def test_a_hundred_events_for_one_customer_respect_the_hourly_limit_and_none_is_lost(hub: Hub) -> None:
    events = [
        make_event("shipped", delivery__id=f"D-{i}", occurred_at=f"2026-11-24T08:{i % 60:02d}:00+01:00")
        for i in range(50)
    ] + [
        make_event("ready_for_pickup", delivery__id=f"P-{i}", occurred_at=f"2026-11-24T08:{i % 60:02d}:30+01:00")
        for i in range(50)
    ]
    resp = await hub.request("POST", "/v1/events/batch", json=events)
    assert resp.status == 202
    await hub.run_worker()
    sent = Counter(m["channel"] for m in hub.messages())
    assert sent == {"sms": 3, "email": 4, "push": 5}
    listed = await messages(hub, customer_id="C-77", limit="1000")
    assert len(listed) == 50 * 2 + 50 * 3  # shipped: email+push; ready_for_pickup: sms+email+push
    by_event: dict[str, set[str]] = {}
    for m in listed:
        by_event.setdefault(m["event_id"], set()).add(m["status"])
    assert set(by_event) == {e["event_id"] for e in events}  # the log accounts for every event
    held = [m for m in listed if m["status"] == "deferred"]
    assert len(held) == 250 - 12
    assert all("messages to this customer in an hour" in m["history"][-1]["detail"] for m in held)
    await hub.fast_forward(3601)
    await hub.run_worker()
    assert Counter(m["channel"] for m in hub.messages()) == {"sms": 6, "email": 8, "push": 10}


@pytest.mark.settings(**{"policy.sender_rate": {"sms": 20, "email": 0, "push": 0}})
async def test_a_sender_s_rate_is_shared_and_paces_sends(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    events = [
        make_event("arriving_soon", delivery__id=f"D-{i}", customer={"id": f"C-{i}", "phone": f"+49151{20000000 + i}"})
        for i in range(10)
    ]
    await hub.request("POST", "/v1/events/batch", json=events)
    # Pacing runs on Redis's clock (TIME), which no test can stop; but a send never starts before
    # its slot, and a loaded machine only makes it later. The slots are 50 ms apart from the first
    # one taken, and that is no earlier than the first request for a slot: so the k-th SMS to
    # arrive arrives no sooner than k * 50 ms after that, however slow the run. Unpaced, the ten
    # concurrent sends arrive within a few ms of each other. (Redis and the sandbox use this
    # machine's clock; 2 ms: both round to milliseconds.)
    asked_ms: list[float] = []
    pace = HubStore.pace

    async def timed_pace(self: HubStore, *args: Any) -> float:
        asked_ms.append(time.time() * 1000)
        return await pace(self, *args)

    monkeypatch.setattr(HubStore, "pace", timed_pace)
    await hub.run_worker()
    assert len(asked_ms) == 10  # every SMS took a slot
    first_ms = min(asked_ms)
    arrived = sorted(datetime.fromisoformat(m["received_at"]).timestamp() * 1000 for m in hub.messages(channel="sms"))
    assert len(arrived) == 10
    early = [(k, round(at - first_ms)) for k, at in enumerate(arrived) if at < first_ms + k * 50 - 2]
    assert early == [], "SMS sent before its slot (k, ms after the first slot was asked for)"


async def test_an_arriving_soon_that_is_too_old_is_not_sent(hub: Hub) -> None:
    await hub.post_event(make_event("arriving_soon", occurred_at="2026-11-24T06:30:00+01:00", delivery__eta=None))
    await hub.post_event(
        make_event(
            "out_for_delivery",
            delivery__id="D-2",
            delivery__eta={"start": "2026-11-24T07:00:00+01:00", "end": "2026-11-24T08:00:00+01:00"},
        )
    )
    await hub.run_worker()
    assert hub.messages() == []
    listed = await messages(hub) + await messages(hub, delivery_id="D-2")
    assert {m["status"] for m in listed} == {"expired"}
    assert any("2026-11-24T07:00:00+00:00" in m["history"][0]["detail"] for m in listed)  # the window's end


@pytest.mark.settings(**{"worker.retry_base_delay": 60.0})
async def test_after_a_long_outage_the_retry_of_a_stale_sms_is_not_sent(hub: Hub) -> None:
    hub.sandbox.faults.set("twilio", "503")
    await hub.post_event(make_event("arriving_soon", occurred_at="2026-11-24T08:25:00+01:00", delivery__eta=None))
    await hub.run_worker()
    sms = next(m for m in await messages(hub) if m["channel"] == "sms")
    assert sms["status"] == "transient"
    hub.sandbox.faults.clear()
    await hub.fast_forward(3 * 3600)  # the provider is back three hours later
    await hub.run_worker()
    sms = next(m for m in await messages(hub) if m["channel"] == "sms")
    assert sms["status"] == "expired"
    assert hub.messages(channel="sms") == []


async def test_an_invalid_number_falls_back_to_the_next_channel_with_the_same_news(hub: Hub) -> None:
    hub.sandbox.twilio.invalid_numbers = frozenset({"+4915112345678"})
    await hub.request("PUT", "/v1/customers/C-77", json={"phone": "+4915112345678", "email": "ana@example.com"})
    await hub.request(
        "PATCH",
        "/v1/customers/C-77/preferences",
        json={"channels": {"default": ["sms"]}, "fallback": ["sms", "email", "push"]},
    )
    event = make_event("arriving_soon", data={"minutes": 10}, customer={"id": "C-77"})
    await hub.post_event(event)
    await hub.run_worker()
    [mail] = hub.messages()
    assert mail["channel"] == "email" and mail["to"] == "ana@example.com"
    assert "10" in (mail["text"] or "")  # the arriving-soon news, as an e-mail
    listed = {m["channel"]: m for m in await messages(hub)}
    assert listed["sms"]["status"] == "failed"
    assert listed["sms"]["history"][-1]["detail"].startswith("sms failed permanently; falling back to email")
    assert listed["email"]["via_fallback"] is True and listed["email"]["fallback_of"] == listed["sms"]["id"]


async def test_an_unregistered_push_token_falls_back_to_sms(hub: Hub) -> None:
    await hub.post_event(
        make_event("in_transit", customer={"id": "C-9", "phone": "+4915112340000", "push_tokens": ["unregistered-1"]})
    )
    await hub.run_worker()
    assert [(m["channel"], m["to"]) for m in hub.messages()] == [("sms", "+4915112340000")]
    customer = await (await hub.request("GET", "/v1/customers/C-9", key=ADMIN_KEY)).json()
    assert customer.get("push_tokens") in (None, [])


@pytest.mark.settings(**{"policy.escalate_after_minutes": 10, "policy.escalate_milestones": ["delivery_failed"]})
async def test_a_push_not_confirmed_in_time_escalates_to_sms_and_a_confirmed_one_does_not(hub: Hub) -> None:
    prefs = {"channels": {"delivery_failed": ["push"]}}
    for n in (1, 2):
        await hub.request(
            "PUT", f"/v1/customers/C-{n}", json={"phone": f"+4915112340{n:03d}", "push_tokens": [f"t{n}"]}
        )
        await hub.request("PATCH", f"/v1/customers/C-{n}/preferences", json=prefs)
        await hub.post_event(make_event("delivery_failed", delivery__id=f"D-{n}", customer={"id": f"C-{n}"}))
    await hub.run_worker()
    pushes = {m["to"]: m for m in hub.messages(channel="push")}
    assert set(pushes) == {"t1", "t2"} and hub.messages(channel="sms") == []
    data = pushes["t2"]["push_data"]
    bad = await hub.request(
        "POST", "/v1/push/receipts", key=None, json={"message_id": data["message_id"], "receipt": "0" * 32}
    )
    assert bad.status == 403
    ok = await hub.request(
        "POST", "/v1/push/receipts", key=None, json={"message_id": data["message_id"], "receipt": data["receipt"]}
    )
    assert ok.status == 204
    await hub.fast_forward(11 * 60)
    await hub.run_worker()
    assert [m["to"] for m in hub.messages(channel="sms")] == ["+4915112340001"]  # only the unconfirmed one
    [escalated] = [m for m in await messages(hub, delivery_id="D-1") if m["channel"] == "sms"]
    assert escalated["via_fallback"] is True and escalated["fallback_of"] == pushes["t1"]["push_data"]["message_id"]


@pytest.mark.settings(**{"worker.max_tries": 2, "policy.sender_rate": {"sms": 0, "email": 0, "push": 0}})
async def test_providers_failing_for_a_while_every_message_ends_sent_or_dead_and_replay_sends_each_once(
    hub: Hub,
) -> None:
    hub.sandbox.faults.timeout_seconds = 0.2
    hub.sandbox.faults.set("twilio", "500", count=14)  # 10 first tries and 4 retries fail
    hub.sandbox.faults.set("fcm", "timeout", count=14)  # held, then 504
    hub.sandbox.faults.set("smtp", "refuse", count=3)
    hub.sandbox.twilio.invalid_numbers = frozenset({"+4915130000010", "+4915130000011"})  # permanent
    prefs = {"channels": {"out_for_delivery": ["sms", "push"]}, "fallback": ["sms", "push", "email"]}
    events = []
    for i in range(12):
        contact = {"phone": f"+49151{30000000 + i}", "email": f"c{i}@example.com", "push_tokens": [f"p{i}"]}
        await hub.request("PUT", f"/v1/customers/C-{i}", json=contact)
        await hub.request("PATCH", f"/v1/customers/C-{i}/preferences", json=prefs)
        events.append(make_event("out_for_delivery", delivery__id=f"D-{i}", customer={"id": f"C-{i}"}))
    await hub.request("POST", "/v1/events/batch", json=events)
    await hub.run_worker()
    everything = [m for i in range(12) for m in await messages(hub, delivery_id=f"D-{i}")]
    # An invalid number's SMS fails for good (21211) and an e-mail stands in for it; unless both
    # its tries met an injected 500 first (which of the concurrent sends meets the faults is the
    # scheduler's choice): then it is dead like the others, and its replay below fails it.
    invalid_sms = [m for m in everything if m["channel"] == "sms" and m["delivery_id"] in ("D-10", "D-11")]
    assert len(invalid_sms) == 2 and all(m["status"] in ("failed", "dead") for m in invalid_sms)
    failed = [m for m in everything if m["status"] == "failed"]
    assert len(everything) == 24 + len(failed)  # SMS and push each, and an e-mail per failed SMS
    final = Counter(m["status"] for m in everything)
    assert set(final) <= {"accepted", "dead", "failed"}, final
    assert final["dead"] >= 4  # more failures than two tries each can absorb
    for failed in (m for m in everything if m["status"] == "failed"):  # permanent: the next channel took over
        assert failed["error_code"] == "21211"
        stand_in = next(m for m in everything if m.get("fallback_of") == failed["id"])
        assert stand_in["channel"] == "email" and stand_in["status"] in ("accepted", "dead")
    dead = await messages(hub, status="dead")
    assert {m["id"] for m in dead} == {m["id"] for m in everything if m["status"] == "dead"}
    assert all(m["error"].startswith("gave up after 2 tries") for m in dead)
    sent = Counter(m["to"] for m in hub.messages())
    assert max(sent.values()) == 1

    hub.sandbox.faults.clear()
    resp = await hub.request("POST", "/v1/messages/replay", key=ADMIN_KEY, json={"since": "2026-01-01T00:00:00Z"})
    assert resp.status == 202
    assert sorted((await resp.json())["queued"]) == sorted(m["id"] for m in dead)
    again = await hub.request("POST", "/v1/messages/replay", key=ADMIN_KEY, json={"ids": [m["id"] for m in dead]})
    assert (await again.json())["queued"] == []  # asked twice, queued once
    await hub.run_worker()
    sent = Counter(m["to"] for m in hub.messages())
    assert len(sent) == 24 and max(sent.values()) == 1  # every message once, none twice
    assert await messages(hub, status="dead") == []


@pytest.mark.settings(**{"worker.max_tries": 1})
async def test_hub_messages_replay_resends_a_dead_letter_once(
    hub: Hub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    hub.sandbox.faults.set("smtp", "500", count=1)
    await hub.post_event(make_event("order_confirmed"))
    await hub.run_worker()
    [dead] = await messages(hub, status="dead")
    for name, value in {
        "HUB_REDIS_URL": str(hub.settings.redis_url),
        "HUB_SECRET_KEY": "test-secret",
    }.items():
        monkeypatch.setenv(name, value)
    assert await asyncio_cli(["messages", "list", "--status", "dead"]) == 0
    assert dead["id"] in capsys.readouterr().out
    assert await asyncio_cli(["messages", "replay", "--id", dead["id"]]) == 0
    assert "queued 1" in capsys.readouterr().out
    assert await asyncio_cli(["messages", "replay", "--id", dead["id"]]) == 0
    assert "queued 0" in capsys.readouterr().out
    await hub.run_worker()
    assert len(hub.messages(channel="email")) == 1
    [mail] = [m for m in await messages(hub) if m["channel"] == "email"]
    assert mail["status"] == "accepted"
    assert [h["status"] for h in mail["history"]] == [
        "sending",
        "dead",
        "replaying",
        "sending",
        "accepted",
    ]


async def asyncio_cli(argv: list[str]) -> int:
    """Run the CLI (which starts its own event loop) in a thread, off this test's loop."""
    import asyncio

    return await asyncio.to_thread(cli_main, argv)


async def test_bad_filters_and_bodies_get_precise_errors(hub: Hub) -> None:
    resp = await hub.request("GET", "/v1/messages?status=accepted")
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "invalid_status"
    resp = await hub.request("GET", "/v1/messages?status=dead&since=yesterday")
    assert resp.status == 400 and (await resp.json())["error"]["fields"] == {"since": "not a time"}
    resp = await hub.request("POST", "/v1/messages/replay", json={"ids": ["m_1"]})
    assert resp.status == 403  # admin only
    resp = await hub.request("POST", "/v1/messages/replay", key=ADMIN_KEY, json={"nothing": 1})
    assert resp.status == 422
    resp = await hub.request("POST", "/v1/push/receipts", key=None, json={"message_id": "m_1"})
    assert resp.status == 422 and "receipt" in (await resp.json())["error"]["fields"]


# One SMS per 100 s: the sender's pace key (kept for its slot plus a second) outlives the test; at
# the default ten a second it expires 1.1 s after the send, which a slow run can outlast.
@pytest.mark.settings(**{"policy.sender_rate": {"sms": 0.01, "email": 20.0, "push": 0.0}})
async def test_rate_windows_and_holds_live_in_redis_shared_by_workers(hub: Hub) -> None:
    r = aioredis.Redis.from_url(str(hub.settings.redis_url), decode_responses=True)
    try:
        await hub.post_event(make_event("arriving_soon", data={"minutes": 5}))
        await hub.run_worker()
        assert await r.zcard("hub:rl:C-77:sms") == 1
        assert await r.exists("hub:pace:sms:+15005550006") == 1
    finally:
        await r.aclose()


@pytest.mark.parametrize(("provider", "channel"), [("twilio", "sms"), ("fcm", "push")])
@pytest.mark.settings(**{"worker.retry_base_delay": 0.05})
async def test_a_429_is_retried_no_sooner_than_its_retry_after(hub: Hub, provider: str, channel: str) -> None:
    hub.sandbox.faults.set(provider, "429", count=1)  # Retry-After: 1
    await hub.post_event(make_event("arriving_soon", data={"minutes": 10}))
    # Only what is due now (hub.run_worker would also wait for the retry, a second of wall time).
    await drain(create_worker(hub.settings, handle_signals=False, clock=hub.clock), horizon=0)
    [message] = [m for m in await messages(hub) if m["channel"] == channel]
    assert message["status"] == "transient"
    # Due by the policy clock one second on (Retry-After), not 25-50 ms on (the back-off)...
    assert message["due_at"] == datetime.fromtimestamp(hub.now + 1, UTC).isoformat(timespec="seconds")
    due_ms = int((hub.now + 1) * 1000)
    r = aioredis.Redis.from_url(str(hub.settings.redis_url), decode_responses=True)
    try:
        [job] = [j for j in await r.zrange(hub.settings.worker.queue_name, 0, -1) if j.startswith("msg:")]
        assert job == f"msg:{message['id']}:{due_ms}"
        score = await r.zscore(hub.settings.worker.queue_name, job)
    finally:
        await r.aclose()
    # ...and the queue hands the job out no sooner than a second after the 429 was recorded.
    failed_ms = datetime.fromisoformat(message["history"][-1]["at"]).timestamp() * 1000
    assert score is not None and score >= failed_ms + 1000
    await hub.fast_forward(1)
    await hub.run_worker()
    [message] = [m for m in await messages(hub) if m["channel"] == channel]
    assert message["status"] == "accepted"
    assert [h["status"] for h in message["history"]] == ["sending", "transient", "sending", "accepted"]


@pytest.mark.settings(**NO_SPREAD)
async def test_a_held_message_whose_job_was_lost_is_found_by_the_sweeper_and_sent_once(hub: Hub) -> None:
    hub.now = at("2026-11-24T23:00:00+01:00")
    await hub.post_event(make_event("out_for_delivery", occurred_at="2026-11-24T22:59:00+01:00", delivery__eta=None))
    await hub.run_worker()
    r = aioredis.Redis.from_url(str(hub.settings.redis_url), decode_responses=True)
    try:  # the held messages' jobs vanish (a crash between recording and queueing)
        lost = [j for j in await r.zrange(hub.settings.worker.queue_name, 0, -1) if j.startswith("msg:")]
        assert len(lost) == 3
        await r.zrem(hub.settings.worker.queue_name, *lost)
        await r.delete(*(f"arq:job:{j}" for j in lost))
    finally:
        await r.aclose()
    await hub.fast_forward(9 * 3600 + 30)  # 08:00:30: due, not yet overdue by the grace
    await hub.run_worker()
    assert hub.messages() == []
    async with a_runtime(hub) as runtime:
        assert await runtime.sweep() == 0
        hub.now += 60
        assert await runtime.sweep() == 3
        assert await runtime.sweep() == 0  # queued once, not on every sweep
    await hub.run_worker()
    assert sorted(m["channel"] for m in hub.messages()) == ["email", "push", "sms"]
    async with a_runtime(hub) as runtime:
        assert await runtime.sweep() == 0


async def test_a_message_found_sending_is_busy_while_its_lease_runs_and_unknown_after(hub: Hub) -> None:
    await hub.post_event(make_event("order_confirmed"))
    await hub.run_worker()
    [mail] = [m for m in await messages(hub) if m["channel"] == "email"]
    async with a_runtime(hub) as runtime:
        record = MessageRecord.from_fields(mail)
        r = runtime.redis
        claimed_ms = int(time.time() * 1000)
        await r.hset(f"hub:msg:{record.id}", mapping={"status": "sending", "claimed_ms": str(claimed_ms)})
        with pytest.raises(SendInProgress) as busy:  # another worker is sending it now: look again later
            await runtime.resolve_in_doubt(record)
        held = time.time() - claimed_ms / 1000  # at least as long as when the hub looked (the lease's clock)
        lease = hub.settings.worker.job_timeout + 5
        assert lease - held <= busy.value.retry_in <= lease + 1  # when the sending lease ends, not sooner
        await r.hset(f"hub:msg:{record.id}", "claimed_ms", "0")  # ...or died doing so long ago
        assert await runtime.resolve_in_doubt(record) == "unknown"
    [mail] = [m for m in await messages(hub) if m["channel"] == "email"]
    assert mail["status"] == "unknown"
    assert len(hub.messages(channel="email")) == 1


async def test_push_falls_back_once_when_the_last_of_several_devices_is_gone(hub: Hub) -> None:
    customer = {"id": "C-9", "phone": "+4915112340000", "push_tokens": ["unregistered-a", "unregistered-b"]}
    await hub.post_event(make_event("in_transit", customer=customer))
    await hub.run_worker()
    assert [(m["channel"], m["to"]) for m in hub.messages()] == [("sms", "+4915112340000")]


@pytest.mark.settings(**{"policy.escalate_after_minutes": 10, "policy.escalate_milestones": ["delivery_failed"]})
async def test_a_push_confirmed_on_one_of_two_devices_sends_no_sms(hub: Hub) -> None:
    await hub.request("PUT", "/v1/customers/C-1", json={"phone": "+4915112340001", "push_tokens": ["ta", "tb"]})
    await hub.request("PATCH", "/v1/customers/C-1/preferences", json={"channels": {"delivery_failed": ["push"]}})
    await hub.post_event(make_event("delivery_failed", customer={"id": "C-1"}))
    await hub.run_worker()
    pushes = {m["to"]: m for m in hub.messages(channel="push")}
    data = pushes["tb"]["push_data"]
    ok = await hub.request(
        "POST", "/v1/push/receipts", key=None, json={"message_id": data["message_id"], "receipt": data["receipt"]}
    )
    assert ok.status == 204
    await hub.fast_forward(11 * 60)
    await hub.run_worker()
    assert hub.messages(channel="sms") == []


@pytest.mark.parametrize("batch", [False, True], ids=["one-by-one", "batch"])
async def test_a_burst_of_eta_updates_with_equal_timestamps_sends_only_the_newest(hub: Hub, batch: bool) -> None:
    """Second-resolution clocks and batch posts give many events one ``occurred_at``: the order of
    arrival breaks the tie, so "the newest" is always one event and one SMS goes out."""
    prefs = {"channels": {"eta_changed": ["sms"]}}
    await hub.request("PUT", "/v1/customers/C-77", json={"phone": "+4915112345678"})
    await hub.request("PATCH", "/v1/customers/C-77/preferences", json=prefs)
    events = []
    for i in range(10):
        eta = {"start": f"2026-11-24T10:{i:02d}:00+01:00", "end": f"2026-11-24T11:{i:02d}:00+01:00"}
        events.append(make_event("eta_changed", occurred_at="2026-11-24T08:29:00+01:00", delivery__eta=eta))
    if batch:
        assert (await hub.request("POST", "/v1/events/batch", json=events)).status == 202
    else:
        for event in events:
            assert (await hub.post_event(event)).status == 202
    await hub.run_worker()
    await hub.fast_forward(121)
    await hub.run_worker()
    sent = hub.messages()
    assert len(sent) == 1, [m["text"] for m in sent]
    assert "11:09" in (sent[0]["text"] or "")  # the last to arrive
    delivery = await (await hub.request("GET", "/v1/deliveries/D-1001", key=ADMIN_KEY)).json()
    assert delivery["eta"]["end"].startswith("2026-11-24T11:09")
