"""Hostile input: guessed API keys, bodies built to hurt the parser, slow clients, and customer
data that tries to be a template or a script."""

from __future__ import annotations

import asyncio
import io
import json
import re
import time

import aiohttp
import pytest

from hub import keys
from tests.conftest import ADMIN_KEY, API_KEY, Hub
from tests.events import make_event
from tests.test_fuzz import schemathesis


@pytest.mark.settings(**{"api.auth_failures_per_minute": 5})
async def test_guessing_api_keys_is_throttled_per_address_and_a_valid_key_still_works(hub: Hub) -> None:
    answers = [(await hub.request("GET", "/v1/customers/C-1", key=f"guess-{i}")).status for i in range(5)]
    assert answers == [401] * 5
    blocked = await hub.request("GET", "/v1/customers/C-1", key="guess-6")
    assert blocked.status == 429 and 1 <= int(blocked.headers["Retry-After"]) <= 60
    assert (await blocked.json())["error"]["code"] == "too_many_failures"
    right = await hub.request("GET", "/v1/customers/C-1", key=API_KEY)
    assert right.status == 404  # answered (no such customer): others' wrong keys never lock out a valid one
    health = await hub.http.get(hub.base + "/healthz")
    assert health.status == 200  # only the API is throttled


async def test_right_keys_are_never_counted(hub: Hub) -> None:
    for _ in range(30):
        assert (await hub.request("GET", "/v1/feedback?driver_id=DR-5")).status == 200


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"[" * 200_000 + b"]" * 200_000, 400),  # nested deeper than any parser's stack
        (b'{"event_id": "\xff\xfe"}', 400),  # invalid UTF-8
        (b"{" + b'"a":1,' * 10 + b"}", 400),  # broken JSON
        (b"x" * 1_100_000, 413),  # over the body limit
    ],
)
async def test_bodies_built_to_hurt_get_a_4xx_and_the_api_stays_up(hub: Hub, body: bytes, code: int) -> None:
    resp = await hub.request("POST", "/v1/events", data=io.BytesIO(body), headers={"Content-Type": "application/json"})
    assert resp.status == code
    assert (await resp.json())["error"]["code"] in ("invalid_json", "body_too_large")
    assert (await hub.post_event(make_event())).status == 202


async def test_a_batch_over_the_limit_is_refused_whole(hub: Hub) -> None:
    events = [make_event(event_id=f"e-{i}") for i in range(1001)]
    resp = await hub.request("POST", "/v1/events/batch", json=events)
    assert resp.status == 413
    assert (await hub.request("GET", "/v1/messages?delivery_id=D-1001")).status == 200


async def test_slow_clients_do_not_starve_the_others(hub: Hub) -> None:
    host, port = "127.0.0.1", int(hub.base.rsplit(":", 1)[1])
    stalled = []
    for _ in range(60):  # bounded: 60 connections that send half a request and stall
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n")
        await writer.drain()
        stalled.append((reader, writer))
    try:
        # Starved, the request would wait for the stalled ones, which never finish (the server has
        # no read timeout to drop them): it would hang. The limit is for that failure only; the
        # answer typically takes under 10 ms.
        async with asyncio.timeout(30):
            resp = await hub.post_event(make_event())
        assert resp.status == 202
        # Answered while every stalled client still holds its connection: not by dropping them.
        assert not any(reader.at_eof() for reader, _ in stalled)
    finally:
        for _, writer in stalled:
            writer.close()


HOSTILE_NAME = "{{ 7*7 }}{% raw %}<script>alert(1)</script>{{ config }}"


async def test_customer_data_posing_as_a_template_or_script_stays_inert_everywhere(hub: Hub) -> None:
    event = make_event(
        "out_for_delivery",
        customer={"id": "C-66", "name": HOSTILE_NAME, "phone": "+4915112345666", "email": "x@example.com"},
        delivery={"id": "D-66", "merchant": "<b>Shop</b>{{ secret }}", "tracking_code": "{% for %}"},
    )
    assert (await hub.post_event(event)).status == 202
    await hub.run_worker()
    [sms] = hub.messages(channel="sms")
    [mail] = hub.messages(channel="email")
    assert "{{ secret }}" in (sms["text"] or "")  # shown as written, never evaluated
    assert (mail["text"] or "").startswith("Hi {{,")  # the first word of the name, as given
    assert not re.search(r"\b49\b", mail["text"] or "")
    html = mail["html"] or ""
    assert "<script>" not in html and "<b>Shop" not in html and "&lt;b&gt;Shop&lt;/b&gt;" in html
    assert "{{ secret }}" in (mail["text"] or "")
    link = next(word for word in (sms["text"] or "").split() if "/t/" in word)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s, s.get(link) as resp:
        page = await resp.text()
    assert resp.status == 200 and "<b>Shop</b>" not in page and "&lt;b&gt;Shop&lt;/b&gt;" in page


async def test_instructions_and_comments_from_customers_are_inert_on_the_page(hub: Hub) -> None:
    await hub.post_event(make_event("out_for_delivery", data={"reschedule_slots": []}))
    await hub.run_worker()
    await hub.text_hub("+4915112345678", 'NEIGHBOUR <img src=x onerror="alert(1)"> {{ 7*7 }}')
    link = next(w for w in (hub.messages(channel="sms")[0]["text"] or "").split() if "/t/" in w)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s, s.get(link) as resp:
        page = await resp.text()
    assert "<img src=x" not in page and "&lt;img src=x" in page and "{{ 7*7 }}" in page
    delivery = await (await hub.request("GET", "/v1/deliveries/D-1001", key=ADMIN_KEY)).json()
    assert "<img" in json.dumps(delivery["instructions"])  # stored as given, escaped on the way out


async def test_a_twilio_form_with_duplicated_keys_is_refused_not_crashed(hub: Hub) -> None:
    body = "From=%2B4915112345678&To=%2B15005550006&Body=STOP&Body=START&MessageSid=SM1"
    resp = await hub.http.post(
        hub.base + "/webhooks/twilio/sms",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": "bogus"},
    )
    assert resp.status == 403  # the signature covers the form as sent; nothing is applied
    assert (await hub.http.get(hub.base + "/healthz")).status == 200


@pytest.mark.slow
@pytest.mark.settings(**{"api.auth_failures_per_minute": 10**6})  # schemathesis sends keyless requests on purpose
async def test_schemathesis_finds_no_server_error_and_no_answer_outside_the_schema(hub: Hub) -> None:
    """Every operation of the served OpenAPI document, with an admin key: generated valid and
    invalid requests never get a 5xx, and every answer's status, content type and body match
    the document."""
    import redis.asyncio as aioredis

    # A worker heartbeat, so /readyz answers 200: its 503 without workers is right, but is a 5xx.
    r = aioredis.Redis.from_url(str(hub.settings.redis_url))
    await r.zadd(keys.WORKER_HEARTBEAT, {"schemathesis": time.time() + 600})
    await r.aclose()
    report = await schemathesis(
        hub,
        "--header",
        f"Authorization: Bearer {ADMIN_KEY}",
        "--max-examples",
        "15",
        checks="not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance",
        seed="20261129",
    )
    assert "generated" in report
    print(report)  # the counts (pytest -s) for docs/reliability.md
