"""The outbound webhook signature, pinned: a known-answer vector for ``hub.signing``, and the
verification recipes in docs/webhooks.md, run as written (the Python one executed from the
markdown, the Node.js one by ``node`` when it is installed) against webhooks the hub really sends
to a subscriber on loopback: they pass, and a tampered body, a wrong secret or an old timestamp
fails."""

from __future__ import annotations

import ast
import asyncio
import hashlib
import hmac
import json
import re
import shutil
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web

from hub.redis_server import free_port
from hub.signing import sign, signature_header, verify
from tests.conftest import ADMIN_KEY, Hub
from tests.events import make_event

DOC = Path(__file__).resolve().parents[1] / "docs" / "webhooks.md"

# The known answer. The expected value was computed once outside Python, with
#   printf '%s' "$TIMESTAMP.$BODY" | openssl dgst -sha256 -hmac "$SECRET"
# and is recomputed below with hmac/hashlib as docs/webhooks.md describes it. The body holds a
# non-ASCII character (º, UTF-8 C2 BA): the raw bytes are signed, whatever the JSON says.
SECRET = "known-answer-secret-0123456789"
TIMESTAMP = 1795942072
BODY = (
    '{"id":"wh_7eea32692f16e0992c3d26b6","type":"delivery.instructions_updated",'
    '"created_at":"2026-11-29T08:47:53.610+00:00","data":{"delivery_id":"D-1002","customer_id":"C-2",'
    '"kind":"neighbour","note":"Marta, 2º B","at":"2026-11-29T08:47:53.610+00:00","channel":"sms","always":true}}'
).encode()
EXPECTED = "t=1795942072,v1=5f8def0ac24dc52ecacd544393641ed30457c41f4090d2fc0043bc1136c70884"

SUBSCRIBER_SECRET = "subscriber-secret-0123456789"
Verify = Callable[..., bool]


def documented_signature(secret: str, timestamp: int, body: bytes) -> str:
    """The header as docs/webhooks.md defines it: lowercase hex HMAC-SHA256, keyed with the
    secret, of the decimal timestamp, a dot and the raw body."""
    digest = hmac.new(secret.encode("utf-8"), str(timestamp).encode("ascii") + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def doc_block(heading: str, language: str) -> tuple[str, int]:
    """The first ``language`` code block after ``heading`` in docs/webhooks.md, and the line of
    the file it starts on (so a traceback points at the doc's own line)."""
    text = DOC.read_text(encoding="utf-8")
    assert heading in text, f"docs/webhooks.md has no {heading!r} section"
    found = re.compile(rf"```{language}\n(.*?)```", re.S).search(text, text.index(heading))
    assert found, f"no {language} block under {heading!r} in docs/webhooks.md"
    return found.group(1), text.count("\n", 0, found.start(1)) + 1


def doc_verify(clock: Callable[[], float] | None = None) -> Verify:
    """``verify`` from the Python recipe in docs/webhooks.md, executed as written: the block's
    imports and that function (not its module-level lines, which read the secret from the
    environment and serve on port 8000). ``clock``: instead of the wall clock (its ``time``)."""
    source, line = doc_block("### Python (standard library only)", "python")
    tree = ast.increment_lineno(ast.parse(source, filename=str(DOC)), line - 1)
    kept: list[ast.stmt] = [
        node
        for node in tree.body
        if isinstance(node, ast.Import | ast.ImportFrom)
        or (isinstance(node, ast.FunctionDef) and node.name == "verify")
    ]
    assert any(isinstance(node, ast.FunctionDef) for node in kept), "the Python recipe defines no verify()"
    namespace: dict[str, Any] = {}
    exec(compile(ast.Module(body=kept, type_ignores=[]), str(DOC), "exec"), namespace)
    if clock is not None:  # a float, as time.time() returns (an int would hide an OverflowError)
        namespace["time"] = SimpleNamespace(time=lambda: float(clock()))
    function: Verify = namespace["verify"]
    return function


def fixed(at: float) -> Callable[[], float]:
    """A clock that always reads ``at``."""
    return lambda: at


# -- the known answer -------------------------------------------------------------------------


def test_the_signature_header_matches_a_known_answer() -> None:
    assert b"\xc2\xba" in BODY
    assert documented_signature(SECRET, TIMESTAMP, BODY) == EXPECTED  # the documented recipe
    assert signature_header(SECRET, BODY, timestamp=TIMESTAMP) == EXPECTED  # what the hub sends
    assert f"t={TIMESTAMP},v1={sign(SECRET, TIMESTAMP, BODY)}" == EXPECTED
    assert verify(SECRET, EXPECTED, BODY, now=TIMESTAMP)
    assert doc_verify(clock=lambda: TIMESTAMP)(SECRET, EXPECTED, BODY)


def test_the_signature_covers_secret_timestamp_and_every_byte_of_the_body() -> None:
    assert signature_header(SECRET, BODY + b"\n", timestamp=TIMESTAMP) != EXPECTED
    assert signature_header(SECRET, BODY, timestamp=TIMESTAMP + 1) != EXPECTED
    assert signature_header(SECRET + "x", BODY, timestamp=TIMESTAMP) != EXPECTED
    reencoded = json.dumps(json.loads(BODY), separators=(",", ":")).encode()  # "2\\u00ba B": same JSON
    assert json.loads(reencoded) == json.loads(BODY)
    assert signature_header(SECRET, reencoded, timestamp=TIMESTAMP) != EXPECTED


@pytest.mark.parametrize("implementation", ["hub", "doc"])
def test_tampering_a_wrong_secret_and_the_age_limit_in_both_recipes(implementation: str) -> None:
    def check(header: str, body: bytes = BODY, *, secret: str = SECRET, now: float = TIMESTAMP) -> bool:
        if implementation == "hub":
            return verify(secret, header, body, now=now)
        return doc_verify(clock=fixed(now))(secret, header, body)

    assert check(EXPECTED)
    assert not check(EXPECTED, BODY.replace(b"Marta", b"Marte"))  # a tampered body
    assert not check(EXPECTED, BODY + b" ")
    assert not check(EXPECTED, secret="another-secret-0123456789")
    assert check(EXPECTED, now=TIMESTAMP + 300)  # five minutes is the documented limit...
    assert not check(EXPECTED, now=TIMESTAMP + 301)  # ...a replay after it fails
    assert not check(EXPECTED, now=TIMESTAMP - 301)  # so does a timestamp from the future
    replayed = EXPECTED.replace(f"t={TIMESTAMP}", f"t={TIMESTAMP + 3600}")  # a fresh t on an old v1
    assert not check(replayed, now=TIMESTAMP + 3600)
    for hostile in ("", "garbage", "t=,v1=", f"t={TIMESTAMP}", "v1=" + "0" * 64, "t=1e9,v1=", "t=" + "9" * 5000):
        assert not check(hostile)
    assert not check("t=" + "9" * 400 + ",v1=" + "0" * 64)  # a t beyond the float range: False, not OverflowError
    assert not check(f"t={TIMESTAMP},v1=é")  # non-ASCII in the header: False, not an exception
    assert not check(f"t={TIMESTAMP},v1=\udcff")  # an undecodable header byte (aiohttp's surrogateescape)


# -- the recipes against webhooks the hub sends -------------------------------------------------


@dataclass
class DocSubscriber:
    """A receiver built as docs/webhooks.md says, on aiohttp: the raw body, the documented
    ``verify``, 400 when it fails and 204 when it passes."""

    url: str
    secret: str
    check: Verify
    received: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        header = request.headers.get("Hub-Signature", "")
        ok = self.check(self.secret, header, body)
        self.received.append({"header": header, "body": body, "verified": ok, "at": time.time()})
        return web.Response(status=204 if ok else 400)


@pytest.fixture
async def subscriber() -> AsyncIterator[DocSubscriber]:
    port = free_port()
    sub = DocSubscriber(f"http://127.0.0.1:{port}/hooks", SUBSCRIBER_SECRET, doc_verify())
    app = web.Application()
    app.router.add_post("/hooks", sub.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield sub
    finally:
        await runner.cleanup()


def subscribed(url: str, secret: str, **more: Any) -> dict[str, Any]:
    """Settings overrides for ``hub.run_worker``: the event worker creates the webhooks for this
    subscription only, and the webhook worker delivers them."""
    return {"webhooks.subscriptions": [{"url": url, "secret": secret}], **more}


async def test_the_documented_recipe_verifies_what_the_hub_sends(hub: Hub, subscriber: DocSubscriber) -> None:
    before = int(time.time())
    await hub.post_event(make_event())
    await hub.run_worker(**subscribed(subscriber.url, subscriber.secret))
    after = int(time.time())
    assert subscriber.received, "the hub sent no webhook"
    assert all(r["verified"] for r in subscriber.received)  # every one accepted by the doc's verify
    deliveries = await (await hub.request("GET", "/v1/webhooks/deliveries", key=ADMIN_KEY)).json()
    assert {d["status"] for d in deliveries["deliveries"]} == {"delivered"}
    for r in subscriber.received:
        header, body = r["header"], r["body"]
        shape = re.fullmatch(r"t=(\d+),v1=[0-9a-f]{64}", header)
        assert shape, header
        t = int(shape[1])
        assert before <= t <= after  # signed at the attempt, by the wall clock
        assert header == documented_signature(subscriber.secret, t, body)
        at_t = doc_verify(clock=fixed(t))
        assert at_t(subscriber.secret, header, body)
        assert not at_t(subscriber.secret, header, body.replace(b'"type":"', b'"type":"x'))  # tampered
        assert not at_t(subscriber.secret, header, body + b"\n")
        assert not at_t("another-secret-0123456789", header, body)
        assert not doc_verify(clock=fixed(t + 301))(subscriber.secret, header, body)  # replayed late
        old = signature_header(subscriber.secret, body, timestamp=t - 301)  # rightly signed, but old
        assert not at_t(subscriber.secret, old, body)


async def test_a_subscriber_with_another_secret_answers_400_and_the_hub_dead_letters_it(
    hub: Hub, subscriber: DocSubscriber
) -> None:
    """As docs/webhooks.md says: a wrong secret shows up as retrying, then dead deliveries with
    ``last_error`` ``HTTP 400``."""
    await hub.post_event(make_event())
    await hub.run_worker(
        **subscribed(subscriber.url, "the-hub-has-another-secret-0123", **{"webhooks.max_attempts": 2})
    )
    assert subscriber.received and not any(r["verified"] for r in subscriber.received)
    dead = await (await hub.request("GET", "/v1/webhooks/deliveries?status=dead", key=ADMIN_KEY)).json()
    assert dead["deliveries"]
    assert {(d["attempts"], d["last_error"]) for d in dead["deliveries"]} == {(2, "HTTP 400")}
    assert len(subscriber.received) == 2 * len(dead["deliveries"])


NODE = shutil.which("node")


@pytest.mark.skipif(NODE is None, reason="needs node for the Node.js recipe")
async def test_the_documented_node_recipe_agrees(hub: Hub, subscriber: DocSubscriber) -> None:
    """The Node.js ``verify`` from docs/webhooks.md (everything before its server), on the known
    answer and on webhooks the hub sent, with ``Date.now`` set for each case."""
    await hub.post_event(make_event())
    await hub.run_worker(**subscribed(subscriber.url, subscriber.secret))
    assert subscriber.received
    recipe, _ = doc_block("### Node.js (`crypto` module)", "js")
    assert "http.createServer(" in recipe
    recipe = recipe.split("http.createServer(", 1)[0]
    cases: list[tuple[bool, str, str, str, float]] = [  # expected, secret, header, body, now
        (True, SECRET, EXPECTED, BODY.decode(), TIMESTAMP),
        (True, SECRET, EXPECTED, BODY.decode(), TIMESTAMP + 300),
        (False, SECRET, EXPECTED, BODY.decode(), TIMESTAMP + 301),
        (False, SECRET, EXPECTED, BODY.decode().replace("Marta", "Marte"), TIMESTAMP),
        (False, "another-secret-0123456789", EXPECTED, BODY.decode(), TIMESTAMP),
        (False, SECRET, f"t={TIMESTAMP},v1=é", BODY.decode(), TIMESTAMP),
        (False, SECRET, "garbage", BODY.decode(), TIMESTAMP),
    ]
    for r in subscriber.received:
        t = int(r["header"].split(",")[0][2:])
        body = r["body"].decode()
        cases += [
            (True, subscriber.secret, r["header"], body, t),
            (False, subscriber.secret, r["header"], body + " ", t),
            (False, subscriber.secret, r["header"], body, t + 301),
        ]
    script = (
        recipe
        + """
const cases = JSON.parse(require("node:fs").readFileSync(0, "utf8"));
console.log(JSON.stringify(cases.map(([secret, header, body, now]) => {
  Date.now = () => now * 1000;
  return verify(secret, header, Buffer.from(body, "utf8"));
})));
"""
    )
    proc = await asyncio.create_subprocess_exec(
        str(NODE),
        "-e",
        script,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    payload = json.dumps([case[1:] for case in cases]).encode()
    out, err = await asyncio.wait_for(proc.communicate(payload), 60)  # typically 0.1 s; a hang guard
    assert proc.returncode == 0, err.decode()
    assert json.loads(out) == [case[0] for case in cases]
