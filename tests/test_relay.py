"""Masked-number relay: drivers and customers call and text through proxy numbers."""

from __future__ import annotations

import asyncio
import contextlib
import json

import aiohttp
import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from hub.config import load_settings
from hub.relay import PoolExhausted, Relay
from tests.conftest import ADMIN_KEY, ROOT, Hub
from tests.events import make_event

DRIVER = "+4915700000001"
CUSTOMER = "+4915112345678"
POOL = ["+4915700000100", "+4915700000101", "+15005550100"]
RELAY = {"relay.pool": POOL}


async def open_session(hub: Hub) -> dict:
    await hub.post_event(make_event("shipped"))
    await hub.run_worker()
    resp = await hub.request("POST", "/v1/deliveries/D-1001/relay")
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def post_signed(hub: Hub, path: str, form: dict[str, str]) -> aiohttp.ClientResponse:
    """POST a form to the hub as Twilio would, with a valid X-Twilio-Signature."""
    url = hub.base + path
    signature = RequestValidator(hub.settings.twilio.auth_token).compute_signature(url, form)
    return await hub.http.post(url, data=form, headers={"X-Twilio-Signature": signature})


async def call(hub: Hub, from_: str, to: str) -> dict:
    resp = await hub.http.post(hub.sandbox_url + "/voice/inbound", json={"from": from_, "to": to})
    return await resp.json()


@pytest.mark.settings(**RELAY)
async def test_session_gives_each_participant_a_local_proxy_and_masks_real_numbers(hub: Hub) -> None:
    session = await open_session(hub)
    parts = session["participants"]
    assert parts["driver"]["proxy_number"].startswith("+49") and parts["customer"]["proxy_number"].startswith("+49")
    assert DRIVER not in json.dumps(session) and CUSTOMER not in json.dumps(session)
    again = await hub.request("POST", "/v1/deliveries/D-1001/relay")
    assert again.status == 200 and (await again.json())["id"] == session["id"]
    shown = await (await hub.request("GET", "/v1/deliveries/D-1001/relay")).json()
    assert shown["status"] == "open" and shown["interactions"] == []


@pytest.mark.settings(**RELAY)
async def test_a_participants_call_rings_the_other_showing_only_proxy_numbers(hub: Hub) -> None:
    session = await open_session(hub)
    driver_proxy = session["participants"]["driver"]["proxy_number"]
    customer_proxy = session["participants"]["customer"]["proxy_number"]
    from_customer = await call(hub, CUSTOMER, customer_proxy)
    assert from_customer["would_ring"] == DRIVER
    assert from_customer["caller_id"] == driver_proxy  # the number the driver knows
    assert CUSTOMER not in from_customer["twiml"]
    from_driver = await call(hub, DRIVER, driver_proxy)
    assert from_driver["would_ring"] == CUSTOMER and from_driver["caller_id"] == customer_proxy
    assert DRIVER not in from_driver["twiml"]
    log = (await (await hub.request("GET", "/v1/deliveries/D-1001/relay")).json())["interactions"]
    assert [(i["direction"], i["kind"]) for i in log] == [("customer->driver", "call"), ("driver->customer", "call")]


@pytest.mark.settings(**RELAY)
async def test_strangers_and_closed_sessions_are_refused_without_revealing_anything(hub: Hub) -> None:
    session = await open_session(hub)
    proxy = session["participants"]["customer"]["proxy_number"]
    stranger = await call(hub, "+4915199999999", proxy)
    assert stranger["would_ring"] is None and stranger["hangup"] and stranger["said"]
    assert DRIVER not in stranger["twiml"] and CUSTOMER not in stranger["twiml"]
    assert (await hub.request("DELETE", "/v1/deliveries/D-1001/relay")).status == 204
    closed = await call(hub, CUSTOMER, proxy)
    assert closed["would_ring"] is None and closed["hangup"]
    assert (await (await hub.request("GET", "/v1/deliveries/D-1001/relay")).json())["status"] == "closed"


@pytest.mark.settings(**RELAY)
async def test_texts_are_forwarded_from_the_proxy_with_media_and_stop_ends_forwarding(hub: Hub) -> None:
    session = await open_session(hub)
    customer_proxy = session["participants"]["customer"]["proxy_number"]
    driver_proxy = session["participants"]["driver"]["proxy_number"]
    form = {
        "MessageSid": "SMrelay1",
        "From": CUSTOMER,
        "To": customer_proxy,
        "Body": "Gate code 4711",
        "NumMedia": "1",
        "MediaUrl0": "https://media.example/gate.jpg",
    }
    sms = "/webhooks/twilio/sms"
    assert (await post_signed(hub, sms, form)).status == 200
    [forwarded] = [m for m in hub.messages(channel="sms") if m["to"] == DRIVER]
    assert forwarded["from"] == driver_proxy and forwarded["text"] == "Gate code 4711"
    assert forwarded["meta"]["media_urls"] == ["https://media.example/gate.jpg"]
    # The driver texts STOP to their proxy: nothing more is forwarded to the driver.
    await post_signed(hub, sms, {"MessageSid": "SMrelay2", "From": DRIVER, "To": driver_proxy, "Body": "STOP"})
    await post_signed(hub, sms, {"MessageSid": "SMrelay3", "From": CUSTOMER, "To": customer_proxy, "Body": "Hello"})
    assert [m["text"] for m in hub.messages(channel="sms") if m["to"] == DRIVER] == ["Gate code 4711"]
    # START to the proxy undoes it.
    await post_signed(hub, sms, {"MessageSid": "SMrelay4", "From": DRIVER, "To": driver_proxy, "Body": "START"})
    await post_signed(
        hub, sms, {"MessageSid": "SMrelay5", "From": CUSTOMER, "To": customer_proxy, "Body": "Back home now"}
    )
    assert [m["text"] for m in hub.messages(channel="sms") if m["to"] == DRIVER][-1] == "Back home now"


@pytest.mark.settings(**RELAY)
async def test_voice_webhook_without_a_valid_signature_is_403(hub: Hub) -> None:
    resp = await hub.http.post(
        hub.base + "/webhooks/twilio/voice",
        data={"From": CUSTOMER, "To": POOL[0]},
        headers={"X-Twilio-Signature": "forged"},
    )
    assert resp.status == 403


@pytest.mark.settings(**RELAY)
async def test_out_for_delivery_opens_the_relay_and_the_message_shows_only_the_proxy(hub: Hub) -> None:
    await hub.post_event(make_event("out_for_delivery"))
    await hub.run_worker()
    session = await (await hub.request("GET", "/v1/deliveries/D-1001/relay")).json()
    assert session["status"] == "open"
    for m in hub.messages():
        assert DRIVER not in json.dumps(m)
    [sms] = hub.messages(channel="sms")
    assert session["participants"]["customer"]["proxy_number"] in sms["text"]
    await hub.run_worker()
    opened = hub.receiver.of_type("relay.session.opened")
    assert len(opened) == 1 and DRIVER not in json.dumps(opened)


@pytest.mark.settings(**{**RELAY, "relay.close_grace_minutes": 0})
async def test_delivered_closes_the_session_after_the_grace_period(hub: Hub) -> None:
    await hub.post_event(make_event("out_for_delivery"))
    await hub.run_worker()
    proxy = (await (await hub.request("GET", "/v1/deliveries/D-1001/relay")).json())["participants"]["customer"][
        "proxy_number"
    ]
    await hub.post_event(make_event("delivered", occurred_at="2026-11-24T11:00:00+01:00"))
    await hub.run_worker()
    await asyncio.sleep(1.1)  # the routing keys' TTL (at least 1 s) runs out
    assert (await call(hub, CUSTOMER, proxy))["would_ring"] is None
    await hub.run_worker()
    assert (await (await hub.request("GET", "/v1/deliveries/D-1001/relay")).json())["status"] == "closed"
    assert len(hub.receiver.of_type("relay.session.closed")) == 1


@pytest.mark.settings(**{"relay.pool": ["+15005550100"]})
async def test_a_pool_that_cannot_serve_answers_503(hub: Hub) -> None:
    ok = await hub.request(
        "POST", "/v1/deliveries/D-1/relay", json={"driver_phone": DRIVER, "customer_phone": CUSTOMER}
    )
    assert ok.status == 201
    busy = await hub.request(
        "POST", "/v1/deliveries/D-2/relay", json={"driver_phone": DRIVER, "customer_phone": "+4915112340000"}
    )
    assert busy.status == 503
    assert (await busy.json())["error"]["code"] == "relay_pool_exhausted"


# -- allocation properties -------------------------------------------------------------------
def relay_settings(redis_url: str, pool: list[str]):  # type: ignore[no-untyped-def]
    return load_settings(ROOT / "config.yaml", environ={}, redis_url=redis_url, **{"relay.pool": pool})


async def assert_invariants(r: aioredis.Redis) -> None:
    """No participant holds a proxy twice among live sessions; every route points at its session."""
    held: set[tuple[str, str]] = set()
    async for key in r.scan_iter("hub:relay:route:*"):
        _, _, _, real, proxy = key.split(":", 4)
        sid = await r.get(key)
        session = await r.hgetall(f"hub:relay:session:{sid}")
        assert session["status"] == "open"
        role = "driver" if session["driver"] == real else "customer"
        assert session[role] == real and session[f"{role}_proxy"] == proxy
        assert (real, proxy) not in held
        held.add((real, proxy))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 3), st.integers(0, 5)), min_size=1, max_size=25))
def test_any_sequence_of_opens_and_closes_keeps_the_allocation_rule(redis_url: str, steps: list) -> None:
    async def run() -> None:
        r = aioredis.Redis.from_url(redis_url, decode_responses=True)
        await r.flushall()
        relay = Relay(r, relay_settings(redis_url, ["+15005550100", "+15005550101"]))
        for n, (is_open, driver, customer) in enumerate(steps):
            delivery = f"D-{n % 6}"
            if is_open:
                with contextlib.suppress(PoolExhausted):
                    await relay.open(delivery, f"+4915700000{driver:03d}", f"+4915112345{customer:03d}")
            else:
                session = await relay.for_delivery(delivery)
                if session:
                    await relay.close(session["id"])
                    route = f"hub:relay:route:{session['driver']}:{session['driver_proxy']}"
                    assert await r.get(route) != session["id"]  # closing frees what it held
            await assert_invariants(r)
        await r.aclose()

    asyncio.run(run())


async def test_a_thousand_concurrent_opens_never_break_the_rule(redis_url: str) -> None:
    pool = [f"+150055501{n:02d}" for n in range(20)]
    r = aioredis.Redis.from_url(redis_url, decode_responses=True, max_connections=64)
    relay = Relay(r, relay_settings(redis_url, pool))
    drivers = [f"+4915700000{n:03d}" for n in range(25)]

    async def attempt(n: int) -> str:
        try:
            await relay.open(f"D-{n}", drivers[n % 25], f"+4915112{n:06d}")
        except PoolExhausted as e:
            return e.role
        return "ok"

    outcomes = await asyncio.gather(*(attempt(n) for n in range(1000)))
    # 25 drivers x 20 proxies = 500 driver routes at most; every other open is refused for the driver.
    assert outcomes.count("ok") == 500
    assert set(outcomes) == {"ok", "driver"}
    await assert_invariants(r)
    # Closing everything frees everything: no routing key is left behind.
    for n in range(1000):
        session = await relay.for_delivery(f"D-{n}")
        if session:
            await relay.close(session["id"])
    assert [k async for k in r.scan_iter("hub:relay:route:*")] == []
    await r.aclose()


@pytest.mark.settings(**RELAY)
async def test_call_outcome_is_logged_and_its_webhook_is_signed_too(hub: Hub) -> None:
    session = await open_session(hub)
    path = f"/webhooks/twilio/voice/status?session={session['id']}&from=customer"
    form = {"CallSid": "CA1", "DialCallStatus": "completed", "DialCallDuration": "42"}
    forged = await hub.http.post(hub.base + path, data=form, headers={"X-Twilio-Signature": "nope"})
    assert forged.status == 403
    assert (await post_signed(hub, path, form)).status == 200
    log = (await (await hub.request("GET", "/v1/deliveries/D-1001/relay")).json())["interactions"]
    assert log[-1]["status"] == "completed" and log[-1]["duration_s"] == 42


@pytest.mark.settings(**{**RELAY, "relay.dispatcher_number": "+4930901820"})
async def test_refused_callers_can_be_put_through_to_the_dispatcher(hub: Hub) -> None:
    stranger = await call(hub, "+4915199999999", POOL[0])
    assert stranger["would_ring"] == "+4930901820"
    assert stranger["said"]


@pytest.mark.settings(**RELAY)
async def test_erasing_the_customer_closes_their_relay_session(hub: Hub) -> None:
    session = await open_session(hub)
    proxy = session["participants"]["customer"]["proxy_number"]
    assert (await hub.request("DELETE", "/v1/customers/C-77", key=ADMIN_KEY)).status == 204
    assert (await call(hub, CUSTOMER, proxy))["would_ring"] is None
    assert (await call(hub, DRIVER, session["participants"]["driver"]["proxy_number"]))["would_ring"] is None
    shown = await (await hub.request("GET", "/v1/deliveries/D-1001/relay")).json()
    assert shown["status"] == "closed" and CUSTOMER not in json.dumps(shown)
