"""Tracking link ids: one link per delivery and customer, unique by construction, the same link in
every message; a collision of the keyed hash moves the newcomer to its next candidate id and
never hands it another customer's page."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from hub import keys
from hub.links import TOKEN_LENGTH, Links
from hub.store import HubStore
from tests.conftest import ADMIN_KEY, Hub
from tests.events import make_event
from tests.test_track import browser, csrf_of, get_page, link_in

# Two (delivery, customer) pairs whose first candidate link id is the same under the tests'
# secret ("test-secret"): found by a birthday search over (D-A{i}, C-A) and (D-B{j}, C-B).
# A real collision of the keyed hash, end to end, with no stand-in for the code under test.
A = ("D-A144724", "C-A", "+4915112345601")
B = ("D-B139589", "C-B", "+4915112345602")
DAY = 86_400


def event_for(who: tuple[str, str, str], type_: str = "out_for_delivery", **changes: Any) -> dict[str, Any]:
    delivery_id, customer_id, phone = who
    return make_event(
        type_,
        delivery__id=delivery_id,
        delivery__tracking_code=f"TC-{customer_id}",
        customer__id=customer_id,
        customer__phone=phone,
        customer__email=f"{customer_id.lower()}@example.com",
        customer__push_tokens=[f"token-{customer_id}"],
        **{"data": {"reschedule_slots": []}, **changes},
    )


def sms_link(hub: Hub, phone: str) -> str:
    return link_in(hub.messages(channel="sms", to=phone)[-1]["text"])


async def instructions_of(hub: Hub, delivery_id: str) -> Any:
    delivery = await (await hub.request("GET", f"/v1/deliveries/{delivery_id}", key=ADMIN_KEY)).json()
    return delivery.get("instructions")


def test_the_collision_under_test_is_real() -> None:
    links = Links("test-secret", "http://hub.example")
    assert links.link_id(A[0], A[1]) == links.link_id(B[0], B[1])
    assert links.link_ids(A[0], A[1])[1:] != links.link_ids(B[0], B[1])[1:]


async def test_colliding_link_ids_never_share_a_page_a_form_or_an_erasure(hub: Hub) -> None:
    await hub.post_event(event_for(A))
    await hub.run_worker()
    await hub.post_event(event_for(B))
    await hub.run_worker()
    link_a, link_b = sms_link(hub, A[2]), sms_link(hub, B[2])
    assert link_a != link_b
    async with browser() as s:
        _, page_a = await get_page(s, link_a)
        _, page_b = await get_page(s, link_b)
        assert "TC-C-A" in page_a and "TC-C-B" not in page_a  # A sees A's delivery, never B's
        assert "TC-C-B" in page_b and "TC-C-A" not in page_b
        resp = await s.post(
            link_a + "/instructions",
            data={"kind": "note", "note": "Back door", "csrf": csrf_of(page_a)},
            allow_redirects=False,
        )
        assert resp.status == 303
    assert (await instructions_of(hub, A[0]))["note"] == "Back door"
    assert await instructions_of(hub, B[0]) is None  # A's form never reaches B's delivery

    # Every later message carries the same link, for both.
    await hub.post_event(event_for(B, "arriving_soon", occurred_at="2026-11-24T08:20:00+01:00", data={"minutes": 5}))
    await hub.post_event(event_for(A, "arriving_soon", occurred_at="2026-11-24T08:20:00+01:00", data={"minutes": 5}))
    await hub.run_worker()
    assert (sms_link(hub, A[2]), sms_link(hub, B[2])) == (link_a, link_b)

    assert (await hub.request("DELETE", f"/v1/customers/{A[1]}", key=ADMIN_KEY)).status == 204
    async with browser() as s:
        gone, _ = await get_page(s, link_a)
        status, page_b = await get_page(s, link_b)
    assert gone == 410
    assert status == 200 and "TC-C-B" in page_b  # erasing A leaves B's link working


def test_a_token_is_the_link_id_and_its_tag() -> None:
    links = Links("test-secret", "http://hub.example/")
    link_id = links.link_id("D-1", "C-1")
    token = links.tracking_token(link_id)
    assert len(token) == TOKEN_LENGTH and token.isascii() and token.isalnum()
    assert links.tracking_url(link_id) == f"http://hub.example/t/{token}"
    assert links.tracking_link_id(token) == link_id
    assert Links("another-secret", "http://hub.example").tracking_link_id(token) is None
    candidates = links.link_ids("D-1", "C-1")
    assert candidates[0] == link_id and len(set(candidates)) == len(candidates) > 1
    assert candidates == links.link_ids("D-1", "C-1")  # deterministic
    assert all(links.tracking_link_id(links.tracking_token(c)) == c for c in candidates)


async def test_with_ids_of_one_character_every_link_is_its_own(hub: Hub) -> None:
    """62 possible ids for 20 links: first candidates collide (checked), allocation must not."""
    tiny = Links("test-secret", hub.base, id_length=1)
    pairs = [(f"D-{i}", f"C-{i % 7}") for i in range(20)]
    firsts = [tiny.link_id(d, c) for d, c in pairs]
    assert len(set(firsts)) < len(firsts)
    r = aioredis.Redis.from_url(str(hub.settings.redis_url), decode_responses=True)
    try:
        store = HubStore(r, hub.settings)
        given = [await store.ensure_link(tiny.link_ids(d, c), d, c, DAY) for d, c in pairs]
        assert None not in given and len(set(given)) == len(given)
        for (d, c), link_id in zip(pairs, given, strict=True):
            assert link_id is not None
            found = await store.resolve_link(link_id)
            assert found is not None and (found["delivery_id"], found["customer_id"]) == (d, c)
        for customer_id in {c for _, c in pairs}:  # erasure deletes exactly the customer's own links
            own = {link_id for (_, c), link_id in zip(pairs, given, strict=True) if c == customer_id}
            assert await r.smembers(keys.links_of(customer_id)) == own
        again = [await store.ensure_link(tiny.link_ids(d, c), d, c, DAY) for d, c in reversed(pairs)]
        assert again == list(reversed(given))  # the same link for every message
        # A candidate freed before ours (expired) does not move an existing link.
        d, c = next((d, c) for (d, c), link_id in zip(pairs, given, strict=True) if link_id != tiny.link_id(d, c))
        blocker = tiny.link_id(d, c)
        await r.delete(keys.link(blocker))
        assert await store.ensure_link(tiny.link_ids(d, c), d, c, DAY) == given[pairs.index((d, c))]
    finally:
        await r.aclose()


async def test_when_every_candidate_belongs_to_others_no_link_is_taken(hub: Hub) -> None:
    links = Links("test-secret", hub.base)
    r = aioredis.Redis.from_url(str(hub.settings.redis_url), decode_responses=True)
    try:
        store = HubStore(r, hub.settings)
        candidates = links.link_ids("D-1", "C-1")
        for link_id in candidates:
            await r.hset(keys.link(link_id), mapping={"delivery_id": "D-9", "customer_id": "C-9"})
        assert await store.ensure_link(candidates, "D-1", "C-1", DAY) is None
        assert [await r.hget(keys.link(c), "customer_id") for c in candidates] == ["C-9"] * len(candidates)
        assert not await r.exists(keys.links_of("C-1"))
        # A record without its owner (never written by the hub) resolves to nothing, not a 500.
        await r.hset(keys.link("odd"), "created_at", "2026-11-24T08:00:00+00:00")
        assert await store.resolve_link("odd") is None
    finally:
        await r.aclose()
