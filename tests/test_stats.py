"""The operators' figures (hub.stats, GET /v1/stats): what the hub counts is what it sent, once,
by shop and driver, in hour and UTC-day buckets, as JSON and CSV; a count costs one Redis call
and never reads the message log."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
import redis.asyncio as aioredis

from hub import keys
from hub.stats import Stats, stats_rates
from proofs.redis_replay import parse_line
from tests.conftest import Hub
from tests.events import make_event
from tests.test_relay import CUSTOMER, DRIVER, POOL, call, open_session, post_signed
from tests.test_send_gate import block, let_it_fall_due, waiting_sms
from tests.test_twoway import offer_slots

PHONE = "+4915112345678"
# Wide enough for the sample events (2026-11-24) and for what is counted as it happens (now).
SPAN = {"from": "2026-11-20T00:00:00Z", "to": str(int(time.time()) + 3600), "granularity": "day"}
BETA_ADDRESSES = {"+4915112345679", "ben@example.com", "fcm-token-2"}
CALLBACKS = pytest.mark.sandbox(status_callbacks=True, callback_delay=0.0)


async def figures(hub: Hub, **params: str) -> dict[str, Any]:
    resp = await hub.request("GET", "/v1/stats", params={**SPAN, **params})
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def until(check: Any, *, limit: float = 20.0) -> None:
    """Wait until ``check()`` is true (a safety bound only; the condition is what is awaited)."""
    async with asyncio.timeout(limit):
        while not await check():
            await asyncio.sleep(0.02)


def at(hhmm: str) -> str:
    return f"2026-11-24T{hhmm}:00+01:00"


async def a_failed_then_delivered_parcel(hub: Hub) -> None:
    """D-1001 of shop acme: failed twice (nobody home, then an access problem), then delivered by
    DR-5; D-2002 of shop beta delivered at the first attempt by DR-9."""
    acme = {"delivery__merchant_id": "acme"}
    await hub.post_event(make_event("out_for_delivery", occurred_at=at("08:05"), **acme))
    failed = make_event("delivery_failed", occurred_at=at("09:05"), data={"reason_code": "nobody_home"}, **acme)
    await hub.post_event(failed)
    await hub.post_event(
        make_event("delivery_failed", occurred_at=at("10:05"), data={"reason_code": "access_problem"}, **acme)
    )
    await hub.post_event(make_event("delivered", occurred_at=at("11:05"), **acme))
    await hub.post_event(
        make_event(
            "delivered",
            occurred_at=at("11:30"),
            delivery__id="D-2002",
            delivery__merchant_id="beta",
            customer__id="C-88",
            customer__phone="+4915112345679",
            customer__email="ben@example.com",
            customer__push_tokens=["fcm-token-2"],
            driver={"id": "DR-9", "name": "Kim"},
        )
    )
    await hub.run_worker()


def sent_by_channel(hub: Hub) -> Counter[str]:
    return Counter(m["channel"] for m in hub.messages())


@CALLBACKS
async def test_the_figures_count_exactly_what_was_sent_and_what_the_provider_reported(hub: Hub) -> None:
    await a_failed_then_delivered_parcel(hub)
    sent = sent_by_channel(hub)
    assert sent["sms"] and sent["email"] and sent["push"]

    async def reported() -> bool:
        totals = (await figures(hub))["totals"]
        return totals.get("message.sms.delivered", 0) == sent["sms"]

    await until(reported)  # the sandbox's status callbacks are in
    body = await figures(hub)
    totals = body["totals"]
    for channel in ("sms", "email", "push"):
        assert totals[f"message.{channel}.accepted"] == sent[channel], channel
    assert totals["message.sms.delivered"] == sent["sms"]
    assert not [f for f in totals if f.startswith("message.") and f.endswith((".failed", ".undelivered", ".skipped"))]
    # Attempts: D-1001 failed first, failed again, then was delivered; D-2002 at the first.
    assert {f: n for f, n in totals.items() if f.startswith(("attempt.", "failure."))} == {
        "attempt.first.delivered": 1,
        "attempt.first.failed": 1,
        "attempt.later.delivered": 1,
        "attempt.later.failed": 1,
        "failure.access_problem": 1,
        "failure.nobody_home": 1,
    }
    assert body["rates"]["first_attempt_success"] == 0.5
    assert body["rates"]["provider_delivery"]["sms"] == 1.0
    # By shop: every message of D-1001 is acme's, every one of D-2002 beta's.
    beta_sent = Counter(m["channel"] for m in hub.messages() if m["to"] in BETA_ADDRESSES)
    for channel in ("sms", "email", "push"):
        shop_counts = {
            shop: counts.get(f"message.{channel}.accepted", 0) for shop, counts in body["by_merchant"].items()
        }
        assert shop_counts == {"acme": sent[channel] - beta_sent[channel], "beta": beta_sent[channel]}, channel
    assert body["by_merchant"]["acme"]["message.sms.delivered"] == sent["sms"]
    assert body["by_merchant"]["beta"]["attempt.first.delivered"] == 1
    assert body["by_merchant"]["acme"]["attempt.later.delivered"] == 1
    assert body["by_driver"] == {
        "DR-5": {
            "attempt.first.failed": 1,
            "attempt.later.delivered": 1,
            "attempt.later.failed": 1,
            "failure.access_problem": 1,
            "failure.nobody_home": 1,
        },
        "DR-9": {"attempt.first.delivered": 1},
    }
    # Webhooks (the status reports' too): every POST the receiver answered is one delivered.
    await hub.run_worker()
    totals = (await figures(hub))["totals"]
    assert totals["webhook.delivered"] == len(hub.receiver.received) == hub.receiver.attempts


async def test_one_shops_figures_and_hour_buckets(hub: Hub) -> None:
    await a_failed_then_delivered_parcel(hub)
    everything = await figures(hub)
    beta = await figures(hub, merchant_id="beta")
    assert beta["merchant_id"] == "beta" and beta["by_driver"] == {}
    assert beta["totals"] == everything["by_merchant"]["beta"] and list(beta["by_merchant"]) == ["beta"]
    assert beta["totals"]["message.push.accepted"] == 1 and beta["totals"]["message.email.accepted"] == 1
    assert "attempt.first.failed" not in beta["totals"]
    # Hours, UTC: the attempts in the hours they occurred (09:05, 10:05, 11:05 and 11:30 at +01:00).
    hours = await figures(hub, **{"from": "2026-11-24T07:00:00Z", "to": "2026-11-24T11:00:00Z", "granularity": "hour"})
    assert hours["from"] == "2026-11-24T07:00:00Z" and hours["to"] == "2026-11-24T11:00:00Z"
    by_hour = {b["start"]: {f: n for f, n in b["counts"].items() if f.startswith("attempt.")} for b in hours["buckets"]}
    assert by_hour == {
        "2026-11-24T07:00:00Z": {},
        "2026-11-24T08:00:00Z": {"attempt.first.failed": 1},
        "2026-11-24T09:00:00Z": {"attempt.later.failed": 1},
        "2026-11-24T10:00:00Z": {"attempt.later.delivered": 1, "attempt.first.delivered": 1},
    }
    # Days, UTC: one bucket holds the day; from and to are its bounds.
    day = await figures(hub, **{"from": "2026-11-24T12:00:00+01:00", "to": "2026-11-24T13:00:00+01:00"})
    assert (day["from"], day["to"]) == ("2026-11-24T00:00:00Z", "2026-11-25T00:00:00Z")
    [bucket] = day["buckets"]
    assert bucket["counts"]["attempt.later.delivered"] == 1


async def test_csv_has_one_row_per_bucket_and_fact(hub: Hub) -> None:
    await a_failed_then_delivered_parcel(hub)
    body = await figures(hub)
    resp = await hub.request("GET", "/v1/stats", params=SPAN, headers={"Accept": "text/csv"})
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(await resp.text())))
    assert rows[0] == ["bucket_start", "fact", "count"]
    expected = [[b["start"], f, str(n)] for b in body["buckets"] for f, n in b["counts"].items()]
    assert rows[1:] == expected and expected
    same = await hub.request("GET", "/v1/stats", params={**SPAN, "format": "csv"})
    assert await same.text() == await resp.text()


@pytest.mark.settings(**{"relay.pool": POOL, "webhooks.max_attempts": 2})
async def test_replies_relay_skips_and_a_failing_receiver_are_counted(hub: Hub) -> None:
    hub.receiver.always_fail = True
    session = await open_session(hub)  # a shipped event (e-mail, push), then the relay
    customer_proxy = session["participants"]["customer"]["proxy_number"]
    form = {"MessageSid": "SMrelay1", "From": CUSTOMER, "To": customer_proxy, "Body": "Gate code 4711"}
    assert (await post_signed(hub, "/webhooks/twilio/sms", form)).status == 200
    await call(hub, CUSTOMER, customer_proxy)
    await hub.text_hub(PHONE, "HELP")
    await hub.text_hub(PHONE, "STOP")
    await hub.post_event(make_event("arriving_soon"))  # SMS and push: the SMS is skipped now
    await hub.run_worker()
    totals = (await figures(hub))["totals"]
    relayed = [m for m in hub.messages(channel="sms") if m["to"] == DRIVER]
    assert (totals["relay.session"], totals["relay.call"], totals["relay.sms"]) == (1, 1, len(relayed)) == (1, 1, 1)
    replies = Counter(r for r in await understood(hub))
    assert {f: n for f, n in totals.items() if f.startswith("reply.")} == {f"reply.{k}": n for k, n in replies.items()}
    assert totals["reply.help"] == totals["reply.stop"] == 1
    assert totals["message.sms.skipped"] == 1
    # Every delivery was tried twice and dead-lettered: one retry and one dead letter each.
    deliveries = (await (await hub.request("GET", "/v1/webhooks/deliveries?limit=1000")).json())["deliveries"]
    assert deliveries and all(d["status"] == "dead" for d in deliveries)
    assert totals["webhook.retry"] == totals["webhook.dead"] == len(deliveries)
    assert "webhook.delivered" not in totals
    assert hub.receiver.attempts == totals["webhook.retry"] + totals["webhook.dead"]


async def understood(hub: Hub) -> list[str]:
    """What the hub took each reply as, from the ``customer.reply`` webhooks it made."""
    deliveries = (await (await hub.request("GET", "/v1/webhooks/deliveries?type=customer.reply")).json())["deliveries"]
    return [d["body"]["data"]["understood_as"] for d in deliveries]


async def test_an_event_is_counted_once_even_when_its_job_runs_again(hub: Hub) -> None:
    event = make_event("delivery_failed", data={"reason_code": "nobody_home"})
    await hub.post_event(event)
    await hub.run_worker()
    r = aioredis.Redis.from_url(str(hub.settings.redis_url), decode_responses=True)
    try:
        delivery = {"id": "D-1001"}
        await Stats(r, hub.settings).event_applied("default", event, delivery)  # a retried job
        assert await r.hget(keys.event("default", event["event_id"]), "stats") == "1"
    finally:
        await r.aclose()
    totals = (await figures(hub))["totals"]
    assert totals["attempt.first.failed"] == totals["failure.nobody_home"] == 1
    assert "attempt.later.failed" not in totals


async def test_counters_expire_with_the_retention(hub: Hub) -> None:
    await hub.post_event(make_event("delivered"))
    await hub.run_worker()
    r = aioredis.Redis.from_url(str(hub.settings.redis_url), decode_responses=True)
    try:
        hour = keys.stats_hour("2026112407")  # 08:05 at +01:00
        ttl = await r.ttl(hour)
        end = datetime(2026, 11, 24, 8, tzinfo=UTC).timestamp() + 400 * 86_400
        assert abs(ttl - (end - time.time())) < 60
        now_hour = keys.stats_hour(datetime.now(UTC).strftime("%Y%m%d%H"))
        assert 399 * 86_400 < await r.ttl(now_hour) <= 400 * 86_400 + 3600
        # A fact older than the retention is not counted (its hour has expired).
        old = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp() * 1000)
        await Stats(r, hub.settings).count("relay.call", at_ms=old)
        assert not await r.exists(keys.stats_hour("2024010100"))
    finally:
        await r.aclose()


@pytest.mark.settings(**{"stats.enabled": False})
async def test_nothing_is_counted_when_stats_are_off(hub: Hub) -> None:
    await hub.post_event(make_event("delivered"))
    await hub.run_worker()
    assert hub.messages()
    body = await figures(hub)
    assert body["totals"] == {} and all(b["counts"] == {} for b in body["buckets"])


async def test_defaults_are_the_last_24_hours_or_30_days(hub: Hub) -> None:
    hours = await (await hub.request("GET", "/v1/stats")).json()
    assert hours["granularity"] == "hour" and len(hours["buckets"]) == 24
    now = datetime.now(UTC)
    assert hours["buckets"][-1]["start"] == now.strftime("%Y-%m-%dT%H:00:00Z")
    days = await (await hub.request("GET", "/v1/stats", params={"granularity": "day"})).json()
    assert len(days["buckets"]) == 30 and days["buckets"][-1]["start"] == now.strftime("%Y-%m-%dT00:00:00Z")
    assert set(days) == {
        "from",
        "to",
        "granularity",
        "merchant_id",
        "buckets",
        "totals",
        "by_merchant",
        "by_driver",
        "rates",
    }


@pytest.mark.parametrize(
    ("params", "code", "field"),
    [
        ({"granularity": "week"}, "invalid_granularity", "granularity"),
        ({"merchant_id": "no spaces"}, "invalid_merchant_id", "merchant_id"),
        ({"from": "yesterday"}, "invalid_from", "from"),
        ({"from": "2026-11-24T08:00:00"}, "invalid_from", "from"),
        ({"to": "99999999999"}, "invalid_to", "to"),
        ({"to": "9999-12-31T23:30:00Z"}, "invalid_to", "to"),
        ({"from": "1969-12-31T00:00:00Z"}, "invalid_from", "from"),
        ({"from": "2026-11-24T08:00:00Z", "to": "2026-11-23T08:00:00Z"}, "invalid_range", "to"),
        ({"from": "0", "to": "2000000000"}, "range_too_long", "to"),
        ({"format": "xml"}, "invalid_format", "format"),
    ],
)
async def test_bad_parameters_are_a_400_naming_the_parameter(
    hub: Hub, params: dict[str, str], code: str, field: str
) -> None:
    resp = await hub.request("GET", "/v1/stats", params=params)
    assert resp.status == 400, await resp.text()
    error = (await resp.json())["error"]
    assert error["code"] == code and field in error["fields"]


async def test_stats_need_a_key_with_the_read_scope(hub: Hub) -> None:
    assert (await hub.request("GET", "/v1/stats", key=None)).status == 401


class Tap:
    """A ``MONITOR`` connection keeping every command Redis runs (scripts' own marked ``lua``)."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []

    async def __aenter__(self) -> Tap:
        return self

    async def open(self, url: str) -> None:
        client = aioredis.Redis.from_url(url)
        port = client.connection_pool.connection_kwargs["port"]
        await client.aclose()
        reader, self._writer = await asyncio.open_connection("127.0.0.1", port)
        self._writer.write(b"MONITOR\r\n")
        await self._writer.drain()

        async def pump() -> None:
            while line := await reader.readline():
                self.lines.append(line)

        self._task = asyncio.get_running_loop().create_task(pump())

    async def upto(self, url: str, marker: str) -> list[Any]:
        """Every command until ``marker`` (an ECHO sent now) is seen, parsed."""
        r = aioredis.Redis.from_url(url)
        await r.echo(marker)
        await r.aclose()
        await until(lambda: _seen(self.lines, marker.encode()))
        self._writer.close()
        self._task.cancel()
        return [p for p in (parse_line(line) for line in self.lines) if p is not None]

    async def __aexit__(self, *exc: object) -> None:
        self._writer.close()


async def _seen(lines: list[bytes], marker: bytes) -> bool:
    return any(marker in line for line in lines[-50:])


# What the figures' scripts run inside Redis; nothing else, and never a scan of any kind.
SCRIPT_COMMANDS = {b"HINCRBY", b"EXPIREAT", b"EXISTS", b"HSETNX", b"GET", b"INCR", b"EXPIRE", b"HGET"}


@pytest.mark.settings(**{"webhooks.subscriptions": []})
async def test_a_counted_event_costs_one_call_per_fact_and_never_reads_the_message_log(hub: Hub) -> None:
    url = str(hub.settings.redis_url)
    await hub.post_event(make_event("delivered", delivery__merchant_id="acme"))  # loads the scripts
    await hub.run_worker()
    tap = Tap()
    await tap.open(url)
    await hub.post_event(make_event("delivered", delivery__id="D-2", delivery__merchant_id="acme"))
    await hub.run_worker()
    lines = await tap.upto(url, "stats-cost-test-end")
    sent = len(hub.messages()) // 2  # the second event's messages (push and e-mail)
    stats_calls, inside = [], []
    owner = None
    for line in lines:
        if line.client != "lua":
            owner = line if any(a.startswith(b"hub:stats:") for a in line.args) else None
            if owner is not None:
                stats_calls.append(line)
        elif owner is not None:
            inside.append(line.name)
    # One EVALSHA for the event's facts (attempt, by shop and driver) and one per message accepted.
    assert [c.name for c in stats_calls] == [b"EVALSHA"] * (1 + sent)
    assert set(inside) <= SCRIPT_COMMANDS
    # Nothing lists the message log or the counters (a worker's start-up SCAN of opt-out keys is
    # its own business).
    listing = (b"SCAN", b"KEYS", b"ZRANGE", b"ZRANGEBYSCORE", b"ZREVRANGE", b"ZSCAN", b"HSCAN")
    read_log = [c for c in lines if c.name in listing and any(a.startswith((b"hub:msg", b"hub:stats")) for a in c.args)]
    assert read_log == []
    # The shop came from the records at hand: no read of the delivery for it outside the scripts.
    assert not [c for c in lines if c.client != "lua" and c.name == b"HGET" and b"merchant_id" in c.args]


@pytest.mark.settings(**{"policy.quiet_spread_minutes": 0})
async def test_a_held_sms_the_send_gate_stops_is_counted_skipped(hub: Hub) -> None:
    await waiting_sms(hub, "held")  # quiet hours: the SMS waits for the morning
    await block(hub, "stop")
    await let_it_fall_due(hub, "held")
    assert hub.messages(channel="sms") == []
    totals = (await figures(hub))["totals"]
    assert totals["message.sms.skipped"] == 1 and "message.sms.accepted" not in totals


async def test_a_push_receipt_counts_the_push_delivered_for_its_shop(hub: Hub) -> None:
    await hub.post_event(make_event("delivered", delivery__merchant_id="acme"))
    await hub.run_worker()
    [push] = hub.messages(channel="push")
    receipt = {"message_id": push["push_data"]["message_id"], "receipt": push["push_data"]["receipt"]}
    for _ in range(2):  # a receipt sent twice moves the message once
        assert (await hub.request("POST", "/v1/push/receipts", key=None, json=receipt)).status == 204
    body = await figures(hub)
    assert body["totals"]["message.push.delivered"] == body["totals"]["message.push.accepted"] == 1
    assert body["by_merchant"]["acme"]["message.push.delivered"] == 1
    assert body["rates"]["provider_delivery"]["push"] == 1.0


async def test_an_exception_counts_its_reason_and_no_attempt(hub: Hub) -> None:
    await hub.post_event(make_event("exception", data={"reason_code": "weather"}, driver=None))
    await hub.post_event(make_event("delivery_failed", occurred_at=at("09:00"), data={"reason": "free text only"}))
    await hub.run_worker()
    body = await figures(hub)
    assert {f: n for f, n in body["totals"].items() if f.startswith(("attempt.", "failure."))} == {
        "attempt.first.failed": 1,
        "failure.unspecified": 1,
        "failure.weather": 1,
    }
    assert body["by_driver"]["DR-5"] == {"attempt.first.failed": 1, "failure.unspecified": 1}


async def test_a_reply_to_a_prompt_counts_for_the_shop_of_its_delivery(hub: Hub) -> None:
    await offer_slots(hub, delivery__merchant_id="acme")
    answered = await hub.text_hub(PHONE, "1")
    assert answered["replies"]
    body = await figures(hub)
    assert await understood(hub) == ["reschedule"]
    assert body["totals"]["reply.reschedule"] == body["by_merchant"]["acme"]["reply.reschedule"] == 1
    assert body["rates"]["reply_shares"] == {"reschedule": 1.0}


def test_a_channel_without_delivery_reports_has_no_delivery_rate() -> None:
    """SMTP never reports a delivery: its rate is unknown, not 0 (every e-mail lost)."""
    rates = stats_rates({"message.email.accepted": 8, "message.sms.accepted": 4, "message.sms.delivered": 3})
    assert rates["provider_delivery"] == {"email": None, "sms": 0.75}
    failing = stats_rates({"message.push.accepted": 2, "message.push.undelivered": 2})
    assert failing["provider_delivery"] == {"push": 0.0}
