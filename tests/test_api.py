"""The HTTP contract: authentication, validation, idempotency, batches, size limits."""

from __future__ import annotations

import asyncio
import io
import json

import pytest
import redis.asyncio as aioredis

from tests.conftest import Hub
from tests.events import DELETE, make_event


async def error_of(resp) -> dict:  # type: ignore[no-untyped-def]
    body = await resp.json()
    assert set(body) == {"error"}, body
    return body["error"]


async def test_missing_api_key_is_401_with_json_error(hub: Hub) -> None:
    resp = await hub.post_event(make_event(), key=None)
    assert resp.status == 401
    assert (await error_of(resp))["code"] == "unauthorized"


async def test_wrong_api_key_is_401(hub: Hub) -> None:
    resp = await hub.post_event(make_event(), key="not-a-key")
    assert resp.status == 401
    assert "unknown" in (await error_of(resp))["message"]


@pytest.mark.parametrize(
    ("changes", "field", "fragment"),
    [
        ({"type": "teleported"}, "type", "unknown event type"),
        ({"event_id": DELETE}, "event_id", "Field required"),
        ({"delivery__id": DELETE}, "delivery.id", "Field required"),
        ({"customer__id": DELETE}, "customer.id", "Field required"),
        ({"occurred_at": "2026-11-24T08:05:00"}, "occurred_at", "UTC offset"),
        ({"customer__phone": "12345"}, "customer.phone", "phone number"),
        ({"customer__phone": "+49 151"}, "customer.phone", "not a valid phone number"),
        ({"customer__email": "ana@"}, "customer.email", "e-mail"),
        ({"customer__timezone": "Mars/Olympus"}, "customer.timezone", "unknown IANA time zone"),
        ({"driver__phone": "call me"}, "driver.phone", "phone number"),
        (
            {"delivery__eta": {"start": "2026-11-24T12:00:00+01:00", "end": "2026-11-24T10:00:00+01:00"}},
            "delivery.eta",
            "end is before start",
        ),
    ],
    ids=[
        "unknown-type",
        "no-event-id",
        "no-delivery-id",
        "no-customer-id",
        "no-offset",
        "bad-phone",
        "short-phone",
        "bad-email",
        "bad-timezone",
        "bad-driver-phone",
        "eta-backwards",
    ],
)
async def test_invalid_event_is_422_with_the_field_named(hub: Hub, changes: dict, field: str, fragment: str) -> None:
    resp = await hub.post_event(make_event(**changes))
    assert resp.status == 422, await resp.text()
    err = await error_of(resp)
    assert err["code"] == "validation_failed"
    assert fragment in err["fields"][field], err["fields"]


async def test_invalid_event_changes_nothing(hub: Hub) -> None:
    resp = await hub.post_event(make_event(customer__email="broken@", customer__id="C-new", delivery__id="D-new"))
    assert resp.status == 422
    assert (await hub.request("GET", "/v1/customers/C-new")).status == 404
    assert (await hub.request("GET", "/v1/deliveries/D-new")).status == 404


async def test_unknown_locale_falls_back_instead_of_failing(hub: Hub) -> None:
    resp = await hub.post_event(make_event(customer__locale="tlh-QO"))
    assert resp.status == 202
    await hub.run_worker()
    msg = (await (await hub.request("GET", "/v1/messages?customer_id=C-77")).json())["messages"]
    assert {m["locale"] for m in msg if m["status"] != "skipped"} == {"en"}


async def test_national_phone_number_uses_the_default_region(hub: Hub) -> None:
    resp = await hub.post_event(make_event(customer__phone="0151 12345678"))
    assert resp.status == 202
    await hub.run_worker()
    assert [m["to"] for m in hub.messages(channel="sms")] == ["+4915112345678"]


async def test_body_over_the_size_limit_is_413(hub: Hub) -> None:
    body = json.dumps(make_event(data={"note": "x" * 1_100_000})).encode()
    resp = await hub.request("POST", "/v1/events", data=io.BytesIO(body), headers={"Content-Type": "application/json"})
    assert resp.status == 413
    assert (await error_of(resp))["code"] == "body_too_large"


async def test_malformed_json_is_400(hub: Hub) -> None:
    resp = await hub.request("POST", "/v1/events", data=b"{not json", headers={"Content-Type": "application/json"})
    assert resp.status == 400
    assert (await error_of(resp))["code"] == "invalid_json"


async def test_wrong_content_type_is_415(hub: Hub) -> None:
    resp = await hub.request("POST", "/v1/events", data=b"a=b", headers={"Content-Type": "text/plain"})
    assert resp.status == 415


async def test_unknown_route_is_json_404(hub: Hub) -> None:
    resp = await hub.request("GET", "/v1/nothing-here")
    assert resp.status == 404
    assert (await error_of(resp))["code"] == "not_found"


async def test_duplicate_event_is_processed_once(hub: Hub) -> None:
    event = make_event("arriving_soon", data={"minutes": 10})
    first = await hub.post_event(event)
    second = await hub.post_event(event)
    assert (await first.json())["status"] == "accepted"
    assert (await second.json()) == {"event_id": event["event_id"], "status": "duplicate"}
    await hub.run_worker()
    third = await hub.post_event(event)
    assert (await third.json())["status"] == "duplicate"
    await hub.run_worker()
    assert len(hub.messages(channel="sms")) == 1
    assert len(hub.messages(channel="push")) == 1


async def test_concurrent_copies_of_an_event_produce_one_message_each(hub: Hub) -> None:
    event = make_event("out_for_delivery")
    responses = await asyncio.gather(*(hub.post_event(event) for _ in range(25)))
    statuses = sorted([(await r.json())["status"] for r in responses])
    assert statuses.count("accepted") == 1 and statuses.count("duplicate") == 24
    await asyncio.gather(hub.run_worker(), hub.run_worker())
    assert len(hub.messages(channel="sms")) == 1
    assert len(hub.messages(channel="email")) == 1
    assert len(hub.messages(channel="push")) == 1


async def test_reused_event_id_with_another_payload_is_409(hub: Hub) -> None:
    event = make_event()
    assert (await hub.post_event(event)).status == 202
    event["type"] = "delivered"
    resp = await hub.post_event(event)
    assert resp.status == 409
    assert (await error_of(resp))["code"] == "event_id_conflict"


async def test_event_interrupted_before_enqueue_is_queued_by_the_retry(hub: Hub, redis_url: str) -> None:
    # Simulate an API that crashed after registering the event but before enqueueing it.
    event = make_event("arriving_soon", data={"minutes": 5})
    r = aioredis.Redis.from_url(redis_url, decode_responses=True)
    from hub.schema import parse_event

    digest = parse_event(event, "DE").digest()
    await r.hset(f"hub:event:default:{event['event_id']}", mapping={"digest": digest, "state": "queued"})
    await r.aclose()
    resp = await hub.post_event(event)
    assert (await resp.json())["status"] == "duplicate"
    await hub.run_worker()
    assert len(hub.messages(channel="sms")) == 1


async def test_batch_accepts_valid_items_and_rejects_invalid_ones(hub: Hub) -> None:
    good = [make_event("shipped", delivery__id=f"D-{i}") for i in range(3)]
    bad = make_event("shipped", customer__email="nope")
    resp = await hub.request("POST", "/v1/events/batch", json={"events": [*good, bad, good[0]]})
    assert resp.status == 207
    body = await resp.json()
    assert [r["status"] for r in body["results"]] == ["accepted"] * 3 + ["rejected", "duplicate"]
    assert "customer.email" in body["results"][3]["error"]["fields"]
    assert body["summary"] == {"accepted": 3, "duplicate": 1, "rejected": 1}
    await hub.run_worker()
    assert len(hub.messages(channel="email")) == 3


async def test_all_valid_batch_is_202(hub: Hub) -> None:
    resp = await hub.request("POST", "/v1/events/batch", json=[make_event("shipped") for _ in range(5)])
    assert resp.status == 202


async def test_batch_over_the_limit_is_413(hub: Hub) -> None:
    events = [{"event_id": f"e{i}"} for i in range(1001)]
    resp = await hub.request("POST", "/v1/events/batch", json=events)
    assert resp.status == 413
    assert (await error_of(resp))["code"] == "batch_too_large"


async def test_batch_of_only_invalid_events_is_422(hub: Hub) -> None:
    resp = await hub.request("POST", "/v1/events/batch", json=[{"type": "nope"}])
    assert resp.status == 422


async def test_health_and_readiness(hub: Hub) -> None:
    assert (await hub.request("GET", "/healthz", key=None)).status == 200
    resp = await hub.request("GET", "/readyz", key=None)
    assert resp.status == 503  # no worker has heartbeated yet
    assert "worker" in json.dumps(await resp.json())


async def test_same_event_id_twice_in_one_batch_with_different_payloads_is_a_conflict(hub: Hub) -> None:
    first = make_event("shipped")
    second = {**first, "type": "in_transit"}
    resp = await hub.request("POST", "/v1/events/batch", json=[first, second])
    assert resp.status == 207
    assert [r["status"] for r in (await resp.json())["results"]] == ["accepted", "conflict"]


async def test_timestamps_outside_plausible_years_are_rejected(hub: Hub) -> None:
    eta = {"start": "9999-12-31T20:00:00-05:00", "end": "9999-12-31T21:00:00-05:00"}
    resp = await hub.post_event(make_event(delivery__eta=eta))
    assert resp.status == 422
    assert "2100" in (await resp.json())["error"]["fields"]["delivery.eta.start"]
