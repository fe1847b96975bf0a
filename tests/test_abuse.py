"""Abuse from outside: bodies Python's own parsers choke on, vendor webhooks with odd fields,
wrong API keys behind a shared proxy, strangers texting the hub, and destructive calls with
everyday keys."""

from __future__ import annotations

import io

import aiohttp

from tests.conftest import ADMIN_KEY, API_KEY, Hub
from tests.events import make_event

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
