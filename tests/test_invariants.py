"""The promises as invariants, explored: hypothesis draws interleavings of events (equal and
out-of-order timestamps, batches), replies (STOP, START, slots, instructions, ratings), erasure,
clock jumps across quiet hours, provider faults (refusals and answers lost after acceptance) and
worker restarts, against the real stack, and after every step checks the providers' own ledgers:

- never the same news twice to one address (one ETA message per burst, the newest);
- nothing to a number after its STOP, nothing to anyone's contacts after their erasure;
- nothing in quiet hours that is not urgent;
- every tracking link opens its own delivery only;
- erasure leaves no trace of the customer in Redis.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import hypothesis.strategies as st
import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, example, given, settings

from tests.conftest import ADMIN_KEY, TEST_NOW, Hub
from tests.events import make_event
from tests.test_erasure import everything_in

CUSTOMERS = {
    1: {"phone": "+4915112340001", "email": "one@example.com", "name": "Uma One"},
    2: {"phone": "+4915112340002", "email": "two@example.com", "name": "Tom Two"},
}
URGENT = {"arriving_soon"}
_n = itertools.count(1)

steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("event"),
            st.sampled_from([1, 2]),
            st.sampled_from(["eta_changed", "arriving_soon"]),
            st.integers(0, 3),
        ),
        st.tuples(st.just("batch"), st.sampled_from([1, 2]), st.integers(2, 4), st.integers(0, 3)),
        st.tuples(st.just("delivered"), st.sampled_from([1, 2]), st.integers(0, 3)),
        st.tuples(
            st.just("reply"),
            st.sampled_from([1, 2]),
            st.sampled_from(["STOP", "START", "1", "NEIGHBOUR code 1 ALWAYS", "4 fine"]),
        ),
        st.tuples(st.just("erase"), st.sampled_from([1, 2])),
        st.tuples(st.just("clock"), st.sampled_from([3, 60, 600, 780])),
        st.tuples(
            st.just("fault"),
            st.sampled_from(
                [("twilio", "500"), ("smtp", "refuse"), ("twilio", "accept-drop"), ("smtp", "accept-drop")]
            ),
        ),
    ),
    min_size=1,
    max_size=10,
)


class World:
    """What the test knows: when each contact said no (ledger positions), which deliveries ended."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.stopped_at: dict[str, int] = {}  # phone -> ledger length at its STOP
        self.erased_at: dict[int, int] = {}
        self.delivered: set[int] = set()

    def sent(self) -> list[dict[str, Any]]:
        return self.hub.messages()

    def event(self, n: int, type_: str, minute: int) -> dict[str, Any]:
        k = next(_n)
        # Every event's news differs (its own ETA window or minutes), so equal texts mean a duplicate.
        eta = {
            "start": f"2026-11-30T{8 + k % 10:02d}:{k % 60:02d}:00+01:00",
            "end": f"2026-11-30T{18 + k % 5:02d}:{k % 60:02d}:00+01:00",
        }
        return make_event(
            type_,
            event_id=f"inv-{k}",
            occurred_at=datetime.fromtimestamp(TEST_NOW - 600 + minute * 60, ZoneInfo("Europe/Berlin")).isoformat(),
            delivery={"id": f"D-{n}", "tracking_code": f"TRK-{n}", "merchant": "Acme", "eta": eta},
            customer={"id": f"C-{n}"},
            data={
                "minutes": 5 + k,
                "reschedule_slots": [
                    {"id": "s1", "start": "2099-11-25T09:00:00+01:00", "end": "2099-11-25T12:00:00+01:00"}
                ],
            },
        )

    async def apply(self, step: tuple[Any, ...]) -> None:
        hub, kind = self.hub, step[0]
        if kind == "event":
            assert (await hub.post_event(self.event(step[1], step[2], step[3]))).status == 202
        elif kind == "batch":
            batch = [self.event(step[1], "eta_changed", step[3]) for _ in range(step[2])]
            assert (await hub.request("POST", "/v1/events/batch", json=batch)).status == 202
        elif kind == "delivered":
            if step[1] not in self.delivered:  # one delivery is delivered once
                self.delivered.add(step[1])
                assert (await hub.post_event(self.event(step[1], "delivered", step[2]))).status == 202
        elif kind == "reply":
            phone = CUSTOMERS[step[1]]["phone"]
            await hub.text_hub(phone, step[2])
            if step[2] == "STOP":
                self.stopped_at.setdefault(phone, len(self.sent()))
            elif step[2] == "START":
                self.stopped_at.pop(phone, None)
        elif kind == "erase":
            assert (await hub.request("DELETE", f"/v1/customers/C-{step[1]}", key=ADMIN_KEY)).status == 204
            self.erased_at.setdefault(step[1], len(self.sent()))
        elif kind == "clock":
            await hub.fast_forward(step[1] * 60)
        elif kind == "fault":
            provider, mode = step[1]
            hub.sandbox.faults.set(provider, mode, count=1)

    async def check(self, redis: aioredis.Redis) -> None:
        sent = self.sent()
        keyed = Counter(
            (m["channel"], m["to"], m.get("text") or m.get("subject")) for m in sent if m["channel"] != "push"
        )
        twice = [k for k, c in keyed.items() if c > 1]
        assert not twice, f"sent twice: {twice}"
        for phone, at in self.stopped_at.items():
            assert [m for m in sent[at:] if m["to"] == phone] == [], f"SMS to {phone} after STOP"
        for n, at in self.erased_at.items():
            contacts = {CUSTOMERS[n]["phone"], CUSTOMERS[n]["email"], f"tok-{n}"}
            assert [m for m in sent[at:] if m["to"] in contacts] == [], f"message to C-{n} after erasure"
            name_scan = [
                name
                for name, value in await everything_in(redis)
                for needle in (*contacts, CUSTOMERS[n]["name"])
                if needle in name or needle in value
            ]
            assert name_scan == [], f"C-{n} erased, yet in {name_scan}"
        for m in sent:  # every link in a text opens its own delivery's page
            for token in re.findall(r"/t/([A-Za-z0-9]+)", m.get("text") or ""):
                owner = next(n for n, c in CUSTOMERS.items() if m["to"] in (c["phone"], c["email"]))
                if owner in self.erased_at:
                    continue
                page = await self.hub.http.get(f"{self.hub.base}/t/{token}")
                assert page.status == 200 and f"TRK-{owner}" in await page.text(), (m["to"], token)


async def quiet_violations(hub: Hub, before: set[str]) -> list[str]:
    """Messages accepted in this step while the customer's local time was in quiet hours."""
    local = datetime.fromtimestamp(hub.now, ZoneInfo("Europe/Berlin"))
    quiet = local.hour >= 21 or local.hour < 8
    accepted = {m["id"]: m for m in await logged(hub) if m["status"] in ("accepted", "delivered")}
    if not quiet:
        return []
    return [
        f"{m['milestone']} {m['channel']}"
        for i, m in accepted.items()
        if i not in before and m["milestone"] not in URGENT
    ]


async def stale_news(hub: Hub, before: set[str]) -> list[str]:
    """ETA news sent more than once per delivery and address in one step: a burst collapses into
    its newest event, and a held message whose event was overtaken is superseded, so only one can
    go out at a time (it would be the same news told twice, each time a little different)."""
    fresh = [m for m in await logged(hub) if m["status"] in ("accepted", "delivered") and m["id"] not in before]
    counted = Counter((m["channel"], m["to"], m["delivery_id"]) for m in fresh if m["milestone"] == "eta_changed")
    return [f"{k}: {c} ETA messages" for k, c in counted.items() if c > 1]


async def logged(hub: Hub) -> list[dict[str, Any]]:
    found = []
    for n in CUSTOMERS:
        resp = await hub.request("GET", f"/v1/messages?customer_id=C-{n}&limit=500", key=ADMIN_KEY)
        assert resp.status == 200, await resp.text()
        found += (await resp.json())["messages"]
    return found


async def accepted_ids(hub: Hub) -> set[str]:
    return {m["id"] for m in await logged(hub) if m["status"] in ("accepted", "delivered")}


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(script=steps)
# Paths the exploration must always walk, whatever it draws: a held message after STOP and after
# erasure, a burst with one timestamp, an answer lost after the provider took the message.
@example(script=[("event", 1, "eta_changed", 0), ("reply", 1, "STOP"), ("clock", 3)])
@example(script=[("event", 2, "eta_changed", 0), ("erase", 2), ("clock", 3)])
@example(script=[("batch", 1, 4, 1), ("event", 1, "eta_changed", 1), ("clock", 3)])
@example(script=[("fault", ("twilio", "accept-drop")), ("event", 1, "arriving_soon", 2), ("clock", 60)])
async def test_the_promises_hold_over_any_interleaving(hub: Hub, script: list[tuple[Any, ...]]) -> None:
    await explore(hub, World(hub), script, ["sms", "email"])


async def explore(
    hub: Hub, world: Any, script: list[tuple[Any, ...]], channels: list[str], whatsapp: dict[int, str] | None = None
) -> None:
    """Run ``script`` from an empty hub whose customers want ``channels`` (and have the WhatsApp
    numbers of ``whatsapp``), checking the promises after every step and once all is due."""
    redis = aioredis.Redis.from_url(hub.settings.redis_url or "", decode_responses=True)
    try:
        await redis.flushall()
        hub.sandbox.ledger.clear()
        hub.sandbox.faults.clear()
        hub.now = TEST_NOW
        for n, contact in CUSTOMERS.items():
            body = {**contact, "push_tokens": [f"tok-{n}"], "timezone": "Europe/Berlin", "locale": "en-US"}
            if whatsapp and whatsapp[n] != contact["phone"]:
                body["whatsapp"] = whatsapp[n]
            await hub.request("PUT", f"/v1/customers/C-{n}", json=body)
            prefs = {"channels": {"default": channels}}
            await hub.request("PATCH", f"/v1/customers/C-{n}/preferences", json=prefs)
        for step in script:
            before = await accepted_ids(hub)
            await world.apply(step)
            await hub.run_worker()
            assert await quiet_violations(hub, before) == [], step
            assert await stale_news(hub, before) == [], step
            await world.check(redis)
        await hub.fast_forward(24 * 3600)  # everything held falls due
        await hub.run_worker()
        await world.check(redis)
    finally:
        hub.sandbox.faults.clear()
        await redis.aclose()


# -- WhatsApp: the same promises over a fourth channel ----------------------------------------------
# Customer 1 has a WhatsApp number of its own, customer 2 is on WhatsApp with its phone; both want
# SMS, WhatsApp and e-mail. Replies come by SMS and over WhatsApp; a STOP stops its own channel.
WA_NUMBERS = {1: "+4915199990001", 2: CUSTOMERS[2]["phone"]}
WA_SENDER = "+14155238886"
WA_TEMPLATES = {m: {"en": f"HX{i:032d}"} for i, m in enumerate(["eta_changed", "arriving_soon", "delivered"])}
wreplies = st.tuples(st.just("wreply"), st.sampled_from([1, 2]), st.sampled_from(["STOP", "START", "1", "4 fine"]))
wa_steps = st.tuples(steps, st.lists(st.tuples(st.integers(0, 10), wreplies), max_size=4)).map(
    lambda drawn: _interleave(*drawn)
)


def _interleave(script: list[tuple[Any, ...]], extra: list[tuple[int, tuple[Any, ...]]]) -> list[tuple[Any, ...]]:
    merged = list(script)
    for at, step in extra:
        merged.insert(min(at, len(merged)), step)
    return merged


class WhatsAppWorld(World):
    """The world with WhatsApp: STOPs are kept per (channel, number)."""

    def __init__(self, hub: Hub) -> None:
        super().__init__(hub)
        self.wa_stopped_at: dict[str, int] = {}

    async def apply(self, step: tuple[Any, ...]) -> None:
        if step[0] != "wreply":
            await super().apply(step)
            return
        number = WA_NUMBERS[step[1]]
        resp = await self.hub.http.post(
            self.hub.sandbox_url + "/whatsapp/inbound", json={"from": number, "body": step[2], "to": WA_SENDER}
        )
        assert resp.status == 200, await resp.text()
        if step[2] == "STOP":
            self.wa_stopped_at.setdefault(number, len(self.sent()))
        elif step[2] == "START":
            self.wa_stopped_at.pop(number, None)

    async def check(self, redis: aioredis.Redis) -> None:
        sent = self.sent()
        keyed = Counter(
            (m["channel"], m["to"], m.get("text") or m.get("subject")) for m in sent if m["channel"] != "push"
        )
        assert not [k for k, c in keyed.items() if c > 1], f"sent twice: {keyed}"
        for phone, at in self.stopped_at.items():
            assert [m for m in sent[at:] if m["to"] == phone and m["channel"] == "sms"] == [], f"SMS after STOP {phone}"
        for number, at in self.wa_stopped_at.items():
            late = [m for m in sent[at:] if m["to"] == number and m["channel"] == "whatsapp"]
            assert late == [], f"WhatsApp to {number} after its WhatsApp STOP"
        for n, at in self.erased_at.items():
            contacts = {CUSTOMERS[n]["phone"], CUSTOMERS[n]["email"], f"tok-{n}", WA_NUMBERS[n]}
            assert [m for m in sent[at:] if m["to"] in contacts] == [], f"message to C-{n} after erasure"
            traces = [
                name
                for name, value in await everything_in(redis)
                for needle in (*contacts, CUSTOMERS[n]["name"])
                if needle in name or needle in value
            ]
            assert traces == [], f"C-{n} erased, yet in {traces}"


@pytest.mark.settings(**{"whatsapp.from_number": WA_SENDER, "whatsapp.templates": WA_TEMPLATES})
@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(script=wa_steps)
# A held WhatsApp message after a WhatsApp STOP; an SMS STOP that must not stop WhatsApp; a lost answer.
@example(script=[("event", 1, "eta_changed", 0), ("wreply", 1, "STOP"), ("clock", 3)])
@example(script=[("reply", 2, "STOP"), ("event", 2, "arriving_soon", 1), ("wreply", 2, "1")])
@example(script=[("fault", ("twilio", "accept-drop")), ("event", 1, "arriving_soon", 2), ("clock", 60)])
@example(script=[("event", 1, "delivered", 0), ("wreply", 1, "4 fine"), ("erase", 1), ("clock", 3)])
async def test_the_promises_hold_with_whatsapp(hub: Hub, script: list[tuple[Any, ...]]) -> None:
    await explore(hub, WhatsAppWorld(hub), script, ["sms", "whatsapp", "email"], WA_NUMBERS)
