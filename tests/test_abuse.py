"""Abuse from outside: bodies Python's own parsers choke on, vendor webhooks with odd fields,
wrong API keys behind a shared proxy, strangers texting the hub, and destructive calls with
everyday keys."""

from __future__ import annotations

import io
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from twilio.request_validator import RequestValidator

from hub.apikeys import KeyRing
from tests.conftest import ADMIN_KEY, API_KEY, Hub
from tests.events import make_event
from tests.test_adapters import (
    AFTERSHIP_SECRET,
    ONFLEET_SECRET,
    SENT_MS,
    aftership_body,
    onfleet_body,
    onfleet_task,
    post_aftership,
    post_onfleet,
)

# Every route that takes a JSON body, with a key that may call it (None: no key needed).
JSON_ROUTES = [
    ("POST", "/v1/events", ADMIN_KEY),
    ("POST", "/v1/events/batch", ADMIN_KEY),
    ("PUT", "/v1/customers/C-1", ADMIN_KEY),
    ("PATCH", "/v1/customers/C-1/preferences", ADMIN_KEY),
    ("POST", "/v1/messages/replay", ADMIN_KEY),
    ("POST", "/v1/push/receipts", None),
    ("POST", "/v1/deliveries/D-1/relay", ADMIN_KEY),
]
BAD_JSON = {
    "an integer past Python's 4,300-digit limit": b'{"event_id": ' + b"1" * 5000 + b"}",
    "a long integer at the top": b"9" * 4400,
    "a 4,000-digit integer": b'{"message_id": ' + b"9" * 4000 + b', "receipt": "x"}',
    "NaN": b'{"message_id": NaN, "receipt": "x"}',
    "-Infinity": b'{"a": [-Infinity]}',
    "a float past the largest double": b'{"message_id": 1e400, "receipt": "x"}',
    "nesting past any parser's stack": b"[" * 100_000 + b"]" * 100_000,
    "nesting deeper than the hub takes": b'{"a":' * 100 + b"1" + b"}" * 100,
    "invalid UTF-8": b'{"a": "\xff"}',
    "a lone surrogate": b'{"message_id": "\\ud800", "receipt": "x"}',
    "broken syntax": b'{"a": 1,}',
}


async def send_raw(hub: Hub, method: str, path: str, key: str | None, body: bytes) -> aiohttp.ClientResponse:
    return await hub.request(method, path, key=key, data=io.BytesIO(body), headers={"Content-Type": "application/json"})


# -- JSON the parser must refuse precisely --------------------------------------------------------
async def test_json_python_chokes_on_is_a_precise_400_on_every_json_route(hub: Hub) -> None:
    answers = {}
    for method, path, key in JSON_ROUTES:
        for name, body in BAD_JSON.items():
            resp = await send_raw(hub, method, path, key, body)
            error = (await resp.json())["error"]
            answers[f"{method} {path}: {name}"] = (resp.status, error["code"])
    wrong = {case: answer for case, answer in answers.items() if answer != (400, "invalid_json")}
    assert wrong == {}
    assert (await hub.post_event(make_event())).status == 202


async def test_the_400_says_what_is_wrong_with_the_body(hub: Hub) -> None:
    expected = {
        b"[" + b"1" * 5000 + b"]": "5000 digits",
        b"[NaN]": "NaN is not a JSON number",
        b"[1e999]": "1e999 is too large",
        b"[" * 70 + b"]" * 70: "nested deeper than 64 levels",
        b'["\\udfff"]': "lone surrogate (\\udfff)",
        b"\xc3": "not UTF-8 (byte 0)",
    }
    for body, words in expected.items():
        resp = await send_raw(hub, "POST", "/v1/events", API_KEY, body)
        assert resp.status == 400 and words in (await resp.json())["error"]["message"]


# -- Twilio's webhooks: every field read defensively ----------------------------------------------
DRIVER = "+4915700000001"
CUSTOMER = "+4915112345678"
POOL = ["+4915700000100", "+4915700000101"]


async def post_signed(hub: Hub, path: str, form: dict[str, str]) -> aiohttp.ClientResponse:
    url = hub.base + path
    signature = RequestValidator(hub.settings.twilio.auth_token).compute_signature(url, form)
    return await hub.http.post(url, data=form, headers={"X-Twilio-Signature": signature})


async def relay_session(hub: Hub) -> dict[str, Any]:
    await hub.post_event(make_event("out_for_delivery"))
    await hub.run_worker()
    resp = await hub.request("POST", "/v1/deliveries/D-1001/relay")
    assert resp.status in (200, 201), await resp.text()
    session: dict[str, Any] = await resp.json()
    return session


@pytest.mark.settings(**{"relay.pool": POOL})
async def test_a_relayed_text_with_a_num_media_that_is_no_count_is_forwarded_without_media(hub: Hub) -> None:
    session = await relay_session(hub)
    proxy = session["participants"]["customer"]["proxy_number"]
    for n, count in enumerate(["two", "1.0", "", " ", "-3", "\u0661"]):
        form = {"MessageSid": f"SMnum{n}", "From": CUSTOMER, "To": proxy, "Body": "gate 4711", "NumMedia": count}
        form["MediaUrl0"] = "https://media.example/gate.jpg"
        resp = await post_signed(hub, "/webhooks/twilio/sms", form)
        assert resp.status == 200, (count, await resp.text())
    forwarded = hub.messages(channel="sms", to=DRIVER)
    assert [len(m["meta"]["media_urls"]) for m in forwarded][-6:] == [0, 0, 0, 0, 0, 1]  # U+0661 is a digit one


@pytest.mark.settings(**{"relay.pool": POOL})
async def test_a_relayed_text_passes_on_at_most_twilios_ten_media(hub: Hub) -> None:
    session = await relay_session(hub)
    proxy = session["participants"]["customer"]["proxy_number"]
    form = {"MessageSid": "SMmany", "From": CUSTOMER, "To": proxy, "Body": "photos", "NumMedia": "100000"}
    form.update({f"MediaUrl{i}": f"https://media.example/{i}.jpg" for i in range(12)})
    resp = await post_signed(hub, "/webhooks/twilio/sms", form)
    assert resp.status == 200
    [forwarded] = [m for m in hub.messages(channel="sms", to=DRIVER) if m["text"] == "photos"]
    assert len(forwarded["meta"]["media_urls"]) == 10


@pytest.mark.settings(**{"relay.pool": POOL})
async def test_a_call_outcome_with_a_duration_that_is_no_count_is_logged_as_zero_or_a_day_at_most(hub: Hub) -> None:
    session = await relay_session(hub)
    path = f"/webhooks/twilio/voice/status?session={session['id']}&from=customer"
    for n, duration in enumerate(["12.5", "abc", "", "-7", "9" * 5000]):
        form = {"CallSid": f"CA{n}", "DialCallStatus": "completed", "DialCallDuration": duration}
        resp = await post_signed(hub, path, form)
        assert resp.status == 200, (duration[:10], await resp.text())
    log = (await (await hub.request("GET", "/v1/deliveries/D-1001/relay")).json())["interactions"]
    assert [entry["duration_s"] for entry in log if entry["kind"] == "call"] == [0, 0, 0, 0, 86_400]


@pytest.mark.settings(**{"relay.pool": POOL})
async def test_a_call_outcome_for_an_unknown_role_or_session_is_answered_and_not_logged(hub: Hub) -> None:
    session = await relay_session(hub)
    form = {"CallSid": "CA1", "DialCallStatus": "completed", "DialCallDuration": "5"}
    for query in (f"session={session['id']}&from=mallory", "session=rs_nope&from=driver"):
        resp = await post_signed(hub, f"/webhooks/twilio/voice/status?{query}", form)
        assert resp.status == 200 and "<Hangup" in await resp.text()
    log = (await (await hub.request("GET", "/v1/deliveries/D-1001/relay")).json())["interactions"]
    assert [entry for entry in log if entry["kind"] == "call"] == []


# -- vendor adapters: a list where an object was, a number where a list was ------------------------
@pytest.mark.settings(
    **{
        "adapters.onfleet.secret": ONFLEET_SECRET,
        "adapters.aftership.secret": AFTERSHIP_SECRET,
        "adapters.onfleet.delivery_id_metadata": "orderRef",
    }
)
async def test_signed_vendor_payloads_with_fields_of_the_wrong_type_are_acknowledged_not_crashed(hub: Hub) -> None:
    done = {"success": True, "time": SENT_MS, "photoUploadIds": True, "photoUploadId": None}
    onfleet = [
        onfleet_body("taskStarted", 0, onfleet_task(recipients=5)),
        onfleet_body("taskStarted", 0, onfleet_task(metadata=True)),
        onfleet_body("taskCompleted", 3, onfleet_task(completionDetails=done)),
        {"triggerName": "SMSRecipientOptOut", "data": {"task": {"recipients": 7}}},
    ]
    aftership = []
    for field, value in (("checkpoints", 7), ("customers", True), ("checkpoints", [1, "x"])):
        body = aftership_body("Delivered", "Delivered_001")
        body["msg"][field] = value
        aftership.append(body)
    answers = [(await post_onfleet(hub, body)).status for body in onfleet]
    answers += [(await post_aftership(hub, body)).status for body in aftership]
    assert answers == [202, 202, 202, 200, 202, 202, 202]  # metadata unreadable: the task id; the opt-out: no phone


# -- wrong API keys: throttled per presented key and per client, never a valid key -----------------
THROTTLE = {"api.auth_failures_per_minute": 5}
BEHIND_PROXY = {**THROTTLE, "api.trusted_proxies": ["127.0.0.0/8"]}


async def as_client(hub: Hub, key: str | None, address: str | None = None) -> aiohttp.ClientResponse:
    headers = {"X-Forwarded-For": address} if address else {}
    return await hub.request("GET", "/v1/feedback?driver_id=DR-5", key=key, headers=headers)


@pytest.mark.settings(**THROTTLE)
async def test_others_wrong_keys_through_one_proxy_never_lock_out_a_valid_key(hub: Hub) -> None:
    """No trusted proxy configured: every client shares the proxy's address (here 127.0.0.1)."""
    answers = [(await as_client(hub, f"guess-{i}")).status for i in range(30)]
    assert answers == [401] * 5 + [429] * 25
    for key in (API_KEY, ADMIN_KEY):
        assert (await as_client(hub, key)).status == 200
    assert (await hub.post_event(make_event())).status == 202


@pytest.mark.settings(**THROTTLE)
async def test_a_wrong_key_retried_is_refused_with_retry_after(hub: Hub) -> None:
    answers = [await as_client(hub, "revoked-key-0123456789") for _ in range(6)]
    assert [a.status for a in answers] == [401] * 5 + [429]
    assert 1 <= int(answers[-1].headers["Retry-After"]) <= 60
    assert (await answers[-1].json())["error"]["code"] == "too_many_failures"


@pytest.mark.settings(**BEHIND_PROXY)
async def test_behind_a_trusted_proxy_one_guessing_client_does_not_throttle_the_others(hub: Hub) -> None:
    guesser, neighbour = "203.0.113.7", "198.51.100.2"
    answers = [(await as_client(hub, f"guess-{i}", guesser)).status for i in range(7)]
    assert answers == [401] * 5 + [429] * 2
    typo = await as_client(hub, "typo-key-0123456789", neighbour)
    assert typo.status == 401  # its own first mistake, not the guesser's count
    assert (await as_client(hub, API_KEY, guesser)).status == 200


@pytest.mark.settings(**BEHIND_PROXY)
async def test_forwarded_addresses_a_client_writes_itself_are_not_believed(hub: Hub) -> None:
    """The proxy appends the address it saw; whatever the client put before it is ignored."""
    answers = [(await as_client(hub, f"guess-{i}", f"192.0.2.{i}, 203.0.113.7")).status for i in range(6)]
    assert answers == [401] * 5 + [429]


@pytest.mark.settings(**THROTTLE)
async def test_forwarded_for_from_an_untrusted_peer_is_ignored(hub: Hub) -> None:
    answers = [(await as_client(hub, f"guess-{i}", f"192.0.2.{i}")).status for i in range(6)]
    assert answers == [401] * 5 + [429]


@pytest.mark.settings(**THROTTLE)
async def test_requests_without_a_key_are_counted_per_client(hub: Hub) -> None:
    answers = [(await as_client(hub, None)).status for _ in range(6)]
    assert answers == [401] * 5 + [429]
    assert (await as_client(hub, API_KEY)).status == 200


# -- destructive calls need their own scope ----------------------------------------------------------
async def test_erasing_a_customer_needs_the_erase_scope_not_an_everyday_key(hub: Hub) -> None:
    contact = {"name": "Ana Weber", "email": "ana@example.com"}
    for customer in ("C-5", "C-6"):
        assert (await hub.request("PUT", f"/v1/customers/{customer}", json=contact)).status == 201
    r = aioredis.Redis.from_url(str(hub.settings.redis_url), decode_responses=True)
    try:
        eraser = (await KeyRing(r).create("privacy-desk", ["erase"])).secret
        everyday = (await KeyRing(r).create("shop", ["events", "read"])).secret
    finally:
        await r.aclose()
    for key in (API_KEY, everyday):
        refused = await hub.request("DELETE", "/v1/customers/C-5", key=key)
        assert refused.status == 403 and "'erase'" in (await refused.json())["error"]["message"]
    assert (await (await hub.request("GET", "/v1/customers/C-5")).json())["erased"] is False
    assert (await hub.request("DELETE", "/v1/customers/C-5", key=eraser)).status == 204
    assert (await hub.request("DELETE", "/v1/customers/C-6", key=ADMIN_KEY)).status == 204
    for customer in ("C-5", "C-6"):
        assert (await (await hub.request("GET", f"/v1/customers/{customer}")).json())["erased"] is True


# -- strangers texting the hub ------------------------------------------------------------------------
STRANGER = "+4915199999999"


async def test_an_unknown_number_gets_one_answer_however_often_it_texts(hub: Hub) -> None:
    """An auto-responder texting the hub must not start a loop (nor cost an SMS per text)."""
    answers = [(await hub.text_hub(STRANGER, f"out of office {n}"))["replies"] for n in range(30)]
    assert len(answers[0]) == 1 and "find a delivery" in answers[0][0]
    assert answers[1:] == [[]] * 29
    other = await hub.text_hub("+4915199999998", "hello?")
    assert len(other["replies"]) == 1  # counted per number


@pytest.mark.settings(**{"conversation.unknown_number_answers": 3})
async def test_the_answers_an_unknown_number_gets_are_a_setting(hub: Hub) -> None:
    answers = [(await hub.text_hub(STRANGER, "hi"))["replies"] for _ in range(5)]
    assert [len(a) for a in answers] == [1, 1, 1, 0, 0]


async def test_customers_replies_are_always_answered(hub: Hub) -> None:
    await hub.post_event(make_event("out_for_delivery"))
    await hub.run_worker()
    answers = [(await hub.text_hub("+4915112345678", "what?"))["replies"] for _ in range(5)]
    assert all(len(a) == 1 for a in answers)


@pytest.mark.settings(**{"relay.pool": POOL})
async def test_a_stranger_texting_a_proxy_number_gets_one_refusal(hub: Hub) -> None:
    session = await relay_session(hub)
    proxy = session["participants"]["customer"]["proxy_number"]
    answers = []
    for n in range(5):
        form = {"MessageSid": f"SMstranger{n}", "From": STRANGER, "To": proxy, "Body": "auto-reply: away"}
        resp = await post_signed(hub, "/webhooks/twilio/sms", form)
        assert resp.status == 200
        answers.append((await resp.text()).count("<Message>"))
    assert answers == [1, 0, 0, 0, 0]
