"""Fuzzing for server errors: no input, signed or not, may get a 5xx.

- schemathesis over the served OpenAPI document, every operation, with and without a key;
- hypothesis over the vendor webhooks with valid signatures (Twilio's SMS, voice and status
  callbacks signed by twilio's own RequestValidator; Onfleet and AfterShip signed with their
  algorithms), starting from real payloads with any field replaced by any JSON value;
- hypothesis over every JSON route with any JSON document and with the bodies Python's own
  parser chokes on (integers past its digit limit, nesting past its stack), and over
  ``hub.jsonbody`` with any bytes.

Bounded and repeatable: a fixed number of examples, derandomized (the tests' hypothesis profile)
and a fixed seed (schemathesis), so each run tries the same inputs; ``HYPOTHESIS_PROFILE=explore``
searches afresh.

The hub runs on the test's event loop; each hypothesis test runs in a thread and hands its
requests to that loop (``Bridge``), so the server keeps serving while hypothesis waits.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator
from yarl import URL

from hub import jsonbody, keys
from tests.conftest import ADMIN_KEY, API_KEY, Hub
from tests.events import make_event
from tests.test_adapters import (
    AFTERSHIP_SECRET,
    GENERIC,
    ONFLEET_SECRET,
    aftership_body,
    aftership_signature,
    onfleet_body,
    onfleet_signature,
    onfleet_task,
)

EXPLORE = os.environ.get("HYPOTHESIS_PROFILE") == "explore"


def bounded(examples: int) -> settings:
    """A fixed number of examples, derandomized with no database (the tests' default hypothesis
    profile, tests/conftest.py); under HYPOTHESIS_PROFILE=explore, a fresh search of that profile's
    size instead."""
    return settings(
        max_examples=max(examples, settings.default.max_examples) if EXPLORE else examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


DRIVER = "+4915700000001"
CUSTOMER = "+4915112345678"
POOL = ["+4915700000100", "+4915700000101", "+15005550100"]
ADAPTERS = {
    "adapters.onfleet.secret": ONFLEET_SECRET,
    "adapters.aftership.secret": AFTERSHIP_SECRET,
    **GENERIC,
}


class Bridge:
    """Runs coroutines on the hub's event loop from the hypothesis thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def __call__(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)


async def in_thread(test: Callable[[Bridge], None]) -> None:
    await asyncio.to_thread(test, Bridge(asyncio.get_running_loop()))


# -- strategies ---------------------------------------------------------------------------------
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
NUMBER_TEXT = st.one_of(
    st.integers(-(10**30), 10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["", " ", "1e3", "0x10", "\u0661\u0662", "-0", "99999999999999999999", "NaN", "12abc"]),
)
JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**40), 10**40),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
)
JSON_VALUES = st.recursive(
    JSON_LEAVES, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4), max_leaves=12
)


def paths_of(document: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside a JSON document (the document itself included)."""
    found = [prefix]
    if isinstance(document, dict):
        for key, value in document.items():
            found += paths_of(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found += paths_of(value, (*prefix, index))
    return found


def replaced(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    copy = json.loads(json.dumps(document))
    node = copy
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return copy


# What a value is replaced with: each JSON type as likely as the others (a list where an object
# was, a number where a list was: the type confusions parsers of vendor payloads trip over).
REPLACEMENTS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
    st.lists(JSON_LEAVES, max_size=3),
    st.dictionaries(TEXT, JSON_LEAVES, max_size=3),
    JSON_VALUES,
)


@st.composite
def mutated(draw: st.DrawFn, templates: list[dict[str, Any]]) -> Any:
    """A real payload with one to four of its values (at any depth) replaced by any JSON value."""
    document: Any = draw(st.sampled_from(templates))
    for _ in range(draw(st.integers(1, 4))):
        paths = paths_of(document)
        containers = [p for p in paths if isinstance(value_at(document, p), dict | list)]
        path = draw(st.sampled_from(containers or paths) | st.sampled_from(paths))
        document = replaced(document, path, draw(REPLACEMENTS))
    return document


def value_at(document: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        document = document[step]
    return document


# -- Twilio's webhooks --------------------------------------------------------------------------
TWILIO_FIELDS = {
    "MessageSid": st.one_of(st.just("SMfuzz"), TEXT),
    "SmsSid": TEXT,
    "From": st.sampled_from([CUSTOMER, DRIVER, "+4915199999999", "", "not a number"]) | TEXT,
    "To": st.sampled_from([*POOL, "+15005550006", ""]) | TEXT,
    "Body": st.sampled_from(["STOP", "START", "HELP", "2", "5 great", "NEIGHBOUR", ""]) | TEXT,
    "NumMedia": NUMBER_TEXT,
    "MediaUrl0": st.just("https://media.example/a.jpg") | TEXT,
    "MediaUrl1": TEXT,
    "MessageStatus": st.sampled_from(["queued", "sent", "delivered", "undelivered", "failed", "read"]) | TEXT,
    "SmsStatus": TEXT,
    "ErrorCode": NUMBER_TEXT | TEXT,
    "CallSid": TEXT,
    "DialCallStatus": st.sampled_from(["completed", "busy", "no-answer", "failed"]) | TEXT,
    "DialCallDuration": NUMBER_TEXT,
}


@st.composite
def twilio_requests(draw: st.DrawFn, session_id: str) -> tuple[str, dict[str, str]]:
    path = draw(
        st.sampled_from(["/webhooks/twilio/sms", "/webhooks/twilio/status", "/webhooks/twilio/voice", "voice-status"])
    )
    if path == "voice-status":
        session = draw(st.sampled_from([session_id, "nope"]) | TEXT)
        role = draw(st.sampled_from(["driver", "customer"]) | TEXT)
        path = "/webhooks/twilio/voice/status?" + urlencode({"session": session, "from": role})
    names = draw(st.lists(st.sampled_from(sorted(TWILIO_FIELDS)), unique=True, max_size=len(TWILIO_FIELDS)))
    form = {name: draw(TWILIO_FIELDS[name]) for name in names}
    form.update(draw(st.dictionaries(TEXT.filter(bool), TEXT, max_size=2)))
    return path, form


@pytest.mark.settings(**{"relay.pool": POOL})
async def test_signed_twilio_webhooks_never_get_a_server_error(hub: Hub) -> None:
    await hub.post_event(make_event("out_for_delivery"))
    await hub.run_worker()
    opened = await hub.request("POST", "/v1/deliveries/D-1001/relay")
    assert opened.status in (200, 201), await opened.text()  # out_for_delivery may have opened it
    session_id = (await opened.json())["id"]
    validator = RequestValidator(hub.settings.twilio.auth_token)
    seen: dict[int, int] = {}

    async def post(path: str, form: dict[str, str]) -> int:
        url = str(URL(hub.base + path))  # as the client sends it (it normalises escapes)
        headers = {
            "X-Twilio-Signature": validator.compute_signature(url, form),
            "Content-Type": "application/x-www-form-urlencoded",
        }
        async with hub.http.post(url, data=urlencode(form).encode(), headers=headers) as resp:
            await resp.read()
            return resp.status

    def run(bridge: Bridge) -> None:
        @bounded(200)
        @given(twilio_requests(session_id))
        def signed(request: tuple[str, dict[str, str]]) -> None:
            status = bridge(post(*request))
            seen[status] = seen.get(status, 0) + 1
            assert status < 500, request

        signed()

    await in_thread(run)
    assert seen.get(403, 0) == 0  # every request was signed right: the fuzzer got past the signature
    assert {200, 204} <= set(seen)


# -- the adapters -------------------------------------------------------------------------------
ONFLEET_TEMPLATES = [
    onfleet_body(trigger, n, onfleet_task())
    for n, trigger in enumerate(["taskStarted", "taskEta", "taskCompleted", "taskFailed", "taskDelayed", "taskUpdated"])
] + [
    {
        "time": 1764000000000,
        "triggerId": 17,
        "triggerName": "SMSRecipientOptOut",
        "data": {"recipient": {"id": "r1", "name": "Ana", "phone": CUSTOMER}},
    }
]
AFTERSHIP_TEMPLATES = [
    aftership_body(tag, subtag)
    for tag, subtag in (
        ("OutForDelivery", "OutForDelivery_001"),
        ("Delivered", "Delivered_001"),
        ("Exception", "Exception_011"),
        ("Exception", "Exception_004"),
        ("AvailableForPickup", "AvailableForPickup_001"),
        ("AttemptFail", "AttemptFail_001"),
    )
]
GENERIC_TEMPLATES = [
    {
        "id": "evt-77",
        "at": "2026-11-24T08:20:00+01:00",
        "shipment": {
            "ref": "D-77",
            "state": state,
            "shop/name": "Acme",
            "buyer": {"id": "B-1", "contacts": [{"value": CUSTOMER}]},
            "window": {"from": "2026-11-24T10:00:00+01:00", "to": "2026-11-24T12:00:00+01:00"},
        },
    }
    for state in ("OUT", "DONE", "NOISE", "delivered")
]


def signed_adapter_request(vendor: str, body: Any) -> tuple[str, bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if vendor == "onfleet":
        headers["X-Onfleet-Signature"] = onfleet_signature(raw)
        return "/webhooks/onfleet", raw, headers
    if vendor == "aftership":
        headers["aftership-hmac-sha256"] = aftership_signature(raw)
        return "/webhooks/aftership", raw, headers
    mapping = GENERIC["adapters.generic"]["shipco"]
    digest = hmac.new(mapping["secret"].encode(), raw, "sha256").hexdigest()
    headers[mapping["signature_header"]] = mapping["signature_prefix"] + digest
    return "/webhooks/generic/shipco", raw, headers


ADAPTER_BODIES = st.one_of(
    st.tuples(st.just("onfleet"), mutated(ONFLEET_TEMPLATES)),
    st.tuples(st.just("aftership"), mutated(AFTERSHIP_TEMPLATES)),
    st.tuples(st.just("generic"), mutated(GENERIC_TEMPLATES)),
    st.tuples(st.sampled_from(["onfleet", "aftership", "generic"]), JSON_VALUES),
)


@pytest.mark.settings(**ADAPTERS)
async def test_signed_adapter_webhooks_never_get_a_server_error(hub: Hub) -> None:
    seen: dict[int, int] = {}

    async def post(vendor: str, body: Any) -> int:
        path, raw, headers = signed_adapter_request(vendor, body)
        async with hub.http.post(hub.base + path, data=raw, headers=headers) as resp:
            await resp.read()
            return resp.status

    def run(bridge: Bridge) -> None:
        @bounded(150)
        @given(ADAPTER_BODIES)
        def signed(request: tuple[str, Any]) -> None:
            status = bridge(post(*request))
            seen[status] = seen.get(status, 0) + 1
            assert status < 500, request

        signed()

    await in_thread(run)
    assert seen.get(401, 0) == 0  # every body was signed right
    assert {200, 202} <= set(seen)  # some were mapped and queued, some acknowledged and ignored


# -- the JSON routes ----------------------------------------------------------------------------
JSON_ROUTES = [
    ("POST", "/v1/events"),
    ("POST", "/v1/events/batch"),
    ("PUT", "/v1/customers/C-1"),
    ("PATCH", "/v1/customers/C-1/preferences"),
    ("POST", "/v1/messages/replay"),
    ("POST", "/v1/push/receipts"),
    ("POST", "/v1/deliveries/D-1001/relay"),
    ("PUT", "/v1/merchants/m-1"),
]
EVENT_TEMPLATES = [make_event(kind) for kind in ("out_for_delivery", "delivered", "delivery_failed")]


# Bodies: any JSON document (real events with values replaced, or anything), and the shapes
# Python's own parser chokes on (integers past its digit limit, nesting past its stack).
JSON_BODIES = st.one_of(
    st.one_of(
        mutated(EVENT_TEMPLATES),
        JSON_VALUES,
        st.builds(lambda event: {"events": [event]}, mutated(EVENT_TEMPLATES)),
    ).map(lambda document: json.dumps(document).encode()),
    st.integers(1, 6000).map(lambda n: b'{"event_id": ' + b"9" * n + b"}"),
    st.integers(1, 5000).map(lambda n: b"[" * n + b"]" * n),
)


@pytest.mark.settings(**{"relay.pool": POOL})
async def test_any_json_body_on_any_json_route_gets_no_server_error(hub: Hub) -> None:
    async def post(method: str, path: str, body: bytes) -> int:
        async with hub.http.request(
            method,
            hub.base + path,
            data=body,
            headers={"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"},
        ) as resp:
            await resp.read()
            return resp.status

    def run(bridge: Bridge) -> None:
        @bounded(120)
        @given(st.sampled_from(JSON_ROUTES), JSON_BODIES)
        def posted(route: tuple[str, str], body: bytes) -> None:
            status = bridge(post(*route, body))
            assert status < 500, (route, body[:200])

        posted()

    await in_thread(run)


@bounded(200)
@given(st.binary(max_size=200) | JSON_VALUES.map(lambda v: json.dumps(v).encode()))
def test_the_json_parser_returns_a_value_or_says_why_not(raw: bytes) -> None:
    try:
        jsonbody.loads(raw)
    except jsonbody.InvalidJson as e:
        assert str(e)


# -- schemathesis over the OpenAPI document -----------------------------------------------------
async def schemathesis(hub: Hub, *options: str, checks: str = "not_a_server_error", seed: str = "20261205") -> str:
    """Run schemathesis's CLI over the hub's served OpenAPI document; its report, once it passed."""
    st_cli = Path(sys.executable).with_name("st")
    proc = await asyncio.create_subprocess_exec(
        str(st_cli),
        "run",
        f"{hub.base}/openapi.json",
        "--checks",
        checks,
        "--seed",
        seed,
        *options,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "SCHEMATHESIS_TELEMETRY": "false", "NO_COLOR": "1"},
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 240)
    report = out.decode(errors="replace")
    assert proc.returncode == 0, report[-6000:]
    assert " passed" in report
    return report


@pytest.mark.slow
@pytest.mark.settings(**{**ADAPTERS, "relay.pool": POOL, "api.auth_failures_per_minute": 10**6})
async def test_schemathesis_finds_no_server_error_on_any_operation(hub: Hub) -> None:
    """Every operation of the served document, positive and negative data, with the events key
    (what upstream systems hold) and then with no key at all (what anyone on the internet can
    send): no answer is a 5xx. Adapters and the relay are configured, so their routes run past
    the 'not configured' answer."""
    r = aioredis.Redis.from_url(str(hub.settings.redis_url))
    await r.zadd(keys.WORKER_HEARTBEAT, {"fuzz": time.time() + 600})  # /readyz: 200, not its (right) 503
    await r.aclose()
    await hub.post_event(make_event("out_for_delivery"))
    await hub.run_worker()
    keyed = await schemathesis(hub, "--header", f"Authorization: Bearer {API_KEY}", "--max-examples", "15")
    anonymous = await schemathesis(hub, "--max-examples", "8")
    print(keyed[-1500:], anonymous[-1500:])
