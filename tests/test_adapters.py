"""Upstream adapters end to end: vendors' documented payloads, signed with their real algorithms,
posted over HTTP to the running hub; the worker runs and the sandbox providers show what went out."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime
from typing import Any

import pytest
import redis.asyncio as aioredis

from hub import keys
from tests.conftest import ADMIN_KEY, Hub

ONFLEET_SECRET = "9f1c2b3a4d5e6f708192a3b4c5d6e7f8"  # Onfleet shows its webhook secret as hex
AFTERSHIP_SECRET = "as-webhook-secret-0123456789"
GENERIC_SECRET = "generic-secret-0123456789"
PHONE = "+4915112345678"


def optout_key(hub: Hub, phone: str = PHONE) -> str:
    """The suppression-list key of a phone (a keyed hash: the name holds no number)."""
    return keys.sms_optout(keys.optout_pepper(hub.settings.secret_key), phone)


EMAIL = "ana@example.com"
SENT_AT = datetime.fromisoformat("2026-11-24T08:20:00+01:00")  # just before the fixture's clock
SENT_MS = int(SENT_AT.timestamp() * 1000)

SECRETS = {
    "adapters.onfleet.secret": ONFLEET_SECRET,
    "adapters.aftership.secret": AFTERSHIP_SECRET,
}
GENERIC = {
    "adapters.generic": {
        "shipco": {
            "secret": GENERIC_SECRET,
            "signature_header": "X-Shipco-Signature",
            "signature_prefix": "sha256=",
            "fields": {
                "event_id": "/id",
                "type": "/shipment/state",
                "occurred_at": "/at",
                "delivery.id": "/shipment/ref",
                "delivery.merchant": "/shipment/shop~1name",
                "customer.id": "/shipment/buyer/id",
                "customer.phone": "/shipment/buyer/contacts/0/value",
                "delivery.eta.start": "/shipment/window/from",
                "delivery.eta.end": "/shipment/window/to",
            },
            "statuses": {"OUT": "out_for_delivery", "DONE": "delivered", "NOISE": None},
        }
    }
}


# -- vendors' payloads and signatures ---------------------------------------------------------
def onfleet_task(task_id: str = "11z1BFspwhBYDvIH_FrJfWMm", **changes: Any) -> dict[str, Any]:
    task: dict[str, Any] = {
        "id": task_id,
        "shortId": "8f983639",
        "state": 2,
        "trackingURL": "https://onf.lt/8f983639",
        "merchant": "cBrUjKvQQgdRp~s1qvQNLpK*",
        "completeAfter": SENT_MS,
        "completeBefore": SENT_MS + 2 * 3600 * 1000,
        "destination": {"address": {"unparsed": "Hauptstr. 1, 10115 Berlin"}},
        "recipients": [{"id": "VVLx5OdKvw0dRSjT2rGvJxos", "name": "Ana Weber", "phone": PHONE, "notes": ""}],
        "metadata": [{"name": "orderRef", "type": "string", "value": "D-4242"}],
        "completionDetails": {"success": False, "time": None, "notes": "", "photoUploadIds": []},
    }
    task.update(changes)
    return task


def onfleet_body(trigger: str, trigger_id: int, task: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "taskId": task["id"],
        "time": SENT_MS,
        "triggerId": trigger_id,
        "triggerName": trigger,
        "workerId": "1Ds6ulPYWxNPgaIaoLPqlIQE",
        "adminId": None,
        "data": {"task": task, "worker": {"id": "1Ds6ulPYWxNPgaIaoLPqlIQE", "name": "Sam"}},
        **extra,
    }


def onfleet_signature(raw: bytes, secret: str = ONFLEET_SECRET) -> str:
    return hmac.new(bytes.fromhex(secret), raw, hashlib.sha512).hexdigest()


def aftership_body(tag: str, subtag: str, event_id: str = "3f645f5e-530b-4062-8695-db6a64420af8") -> dict[str, Any]:
    return {
        "event": "tracking_update",
        "event_id": event_id,
        "is_tracking_first_tag": True,
        "ts": int(SENT_AT.timestamp()),
        "msg": {
            "id": "grhrexm6t3hiwkjwq37jd003",
            "tracking_number": "9361289676091361892011",
            "title": "Acme Shoes",
            "slug": "dhl",
            "tag": tag,
            "subtag": subtag,
            "subtag_message": "Returned to sender" if subtag == "Exception_011" else "On the way",
            "order_id": "ORD-77",
            "customer_name": "Ana Weber",
            "emails": [EMAIL],
            "smses": [PHONE],
            "expected_delivery": "2026-11-24T12:00:00+01:00",
            "checkpoints": [
                {
                    "checkpoint_time": "2026-11-24T08:15:00+01:00",
                    "message": "Out for delivery",
                    "location": "Berlin",
                    "tag": tag,
                    "subtag": subtag,
                }
            ],
        },
    }


def aftership_signature(raw: bytes, secret: str = AFTERSHIP_SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), raw, hashlib.sha256).digest()).decode()


async def post_onfleet(hub: Hub, body: dict[str, Any], signature: str | None = "auto") -> Any:
    raw = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if signature == "auto":
        headers["X-Onfleet-Signature"] = onfleet_signature(raw)
    elif signature is not None:
        headers["X-Onfleet-Signature"] = signature
    return await hub.http.post(hub.base + "/webhooks/onfleet", data=raw, headers=headers)


async def post_aftership(hub: Hub, body: dict[str, Any]) -> Any:
    raw = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "aftership-hmac-sha256": aftership_signature(raw)}
    return await hub.http.post(hub.base + "/webhooks/aftership", data=raw, headers=headers)


async def messages_of(hub: Hub, delivery_id: str) -> list[dict[str, Any]]:
    resp = await hub.request("GET", f"/v1/messages?delivery_id={delivery_id}&reveal=true", key=ADMIN_KEY)
    assert resp.status == 200
    body: dict[str, Any] = await resp.json()
    return [m for m in body["messages"] if m["status"] not in ("skipped",)]


# -- Onfleet ---------------------------------------------------------------------------------
@pytest.mark.settings(**SECRETS)
async def test_onfleet_task_completed_sends_delivered_with_proof_of_delivery(hub: Hub) -> None:
    task = onfleet_task(
        state=3,
        completionDetails={
            "success": True,
            "time": SENT_MS,
            "notes": "Left with the neighbour at no. 12",
            "photoUploadIds": ["b5OuQ7t9d1zk5lbqgPyzM3rQ"],
            "signatureUploadId": "Wt0vJ1KvpKfBtQ7GEVrJOvN2",
            "signatureText": "A. Weber",
        },
    )
    resp = await post_onfleet(hub, onfleet_body("taskCompleted", 3, task))
    assert resp.status == 202, await resp.text()
    answer = await resp.json()
    assert answer["status"] == "accepted" and answer["type"] == "delivered"
    await hub.run_worker()

    sent = await messages_of(hub, task["id"])
    assert [(m["milestone"], m["channel"], m["to"]) for m in sent] == [("delivered", "sms", PHONE)]
    assert hub.messages(channel="sms", to=PHONE)
    delivery = await (await hub.request("GET", f"/v1/deliveries/{task['id']}", key=ADMIN_KEY)).json()
    [entry] = delivery["timeline"]
    assert entry["type"] == "delivered" and entry["source"] == "onfleet"
    assert entry["pod"]["photo_url"] == "https://d15p8tr8p0vffz.cloudfront.net/b5OuQ7t9d1zk5lbqgPyzM3rQ/800x.png"
    assert entry["pod"]["signature"] == "A. Weber"
    assert delivery["driver"]["id"] == "1Ds6ulPYWxNPgaIaoLPqlIQE"


@pytest.mark.settings(**SECRETS)
async def test_onfleet_retry_is_a_duplicate_and_sends_once(hub: Hub) -> None:
    body = onfleet_body("taskStarted", 0, onfleet_task())
    first = await (await post_onfleet(hub, body)).json()
    second = await (await post_onfleet(hub, body)).json()
    assert (first["status"], second["status"]) == ("accepted", "duplicate")
    assert first["event_id"] == second["event_id"]
    await hub.run_worker()
    sms = [m for m in await messages_of(hub, body["taskId"]) if m["channel"] == "sms"]
    assert [m["milestone"] for m in sms] == ["out_for_delivery"]
    assert len(hub.messages(channel="sms", to=PHONE)) == 1


@pytest.mark.settings(**SECRETS)
async def test_onfleet_task_failed_carries_the_reason(hub: Hub) -> None:
    task = onfleet_task(
        completionDetails={"success": False, "failureReason": "NOBODY", "failureNotes": "Rang twice", "time": SENT_MS}
    )
    resp = await post_onfleet(hub, onfleet_body("taskFailed", 4, task))
    assert (await resp.json())["type"] == "delivery_failed"
    await hub.run_worker()
    delivery = await (await hub.request("GET", f"/v1/deliveries/{task['id']}", key=ADMIN_KEY)).json()
    assert delivery["timeline"][0]["reason"] == "nobody: Rang twice"
    assert [m["milestone"] for m in await messages_of(hub, task["id"])] == ["delivery_failed"]
    # Onfleet's code is the hub's: the customer reads the wording of their language.
    [sms] = hub.messages(channel="sms", to=PHONE)
    assert "nobody was home" in sms["text"] and "Rang twice" not in sms["text"]


@pytest.mark.settings(**SECRETS)
async def test_onfleet_eta_delay_and_update_map_onto_milestones(hub: Hub) -> None:
    task = onfleet_task(estimatedArrivalTime=SENT_MS + 600_000, estimatedCompletionTime=SENT_MS + 900_000)
    cases = [
        (onfleet_body("taskEta", 1, task, etaSeconds=540), "arriving_soon"),
        (onfleet_body("taskArrival", 2, task, distance=150), "arriving_soon"),
        (onfleet_body("taskDelayed", 12, task, delay=1200), "exception"),
        (onfleet_body("taskCreated", 6, task), "order_confirmed"),
        (onfleet_body("taskUpdated", 7, task), "eta_changed"),
    ]
    for body, milestone in cases:
        answer = await (await post_onfleet(hub, body)).json()
        assert (answer["status"], answer["type"]) == ("accepted", milestone), body["triggerName"]
    # An update that keeps the ETA is the same event; one without an ETA is nothing to send.
    again = {**cases[-1][0], "time": SENT_MS + 5000}
    assert (await (await post_onfleet(hub, again)).json())["status"] in ("duplicate", "conflict")
    plain = onfleet_body("taskUpdated", 7, onfleet_task())
    assert (await (await post_onfleet(hub, plain)).json())["status"] == "ignored"


@pytest.mark.settings(**SECRETS)
async def test_onfleet_task_ids_become_hub_ids(hub: Hub) -> None:
    body = onfleet_body("taskStarted", 0, onfleet_task("kc8SS1tzuZ~jqjlebKGrUmpe"))
    assert (await post_onfleet(hub, body)).status == 202
    await hub.run_worker()
    # "~" is no id character in the event schema: it becomes "-", the same way on every retry.
    assert (await hub.request("GET", "/v1/deliveries/kc8SS1tzuZ-jqjlebKGrUmpe", key=ADMIN_KEY)).status == 200


@pytest.mark.settings(**SECRETS, **{"adapters.onfleet.delivery_id_metadata": "orderRef"})
async def test_onfleet_metadata_field_names_the_delivery(hub: Hub) -> None:
    assert (await post_onfleet(hub, onfleet_body("taskStarted", 0, onfleet_task()))).status == 202
    await hub.run_worker()
    assert (await hub.request("GET", "/v1/deliveries/D-4242", key=ADMIN_KEY)).status == 200


@pytest.mark.settings(**SECRETS)
async def test_onfleet_signature_is_checked_both_ways(hub: Hub) -> None:
    body = onfleet_body("taskStarted", 0, onfleet_task())
    raw = json.dumps(body).encode()
    wrong_key = onfleet_signature(raw, "00" * 16)
    tampered = raw.replace(b"Ana Weber", b"Eve Weber")
    for data, signature in ((raw, None), (raw, wrong_key), (tampered, onfleet_signature(raw)), (raw, "zz")):
        headers = {"Content-Type": "application/json"}
        if signature is not None:
            headers["X-Onfleet-Signature"] = signature
        resp = await hub.http.post(hub.base + "/webhooks/onfleet", data=data, headers=headers)
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] == "invalid_signature"
    resp = await post_onfleet(hub, body, signature=onfleet_signature(raw).upper())
    assert resp.status == 202  # hex compared without case
    await hub.run_worker()
    assert len(hub.messages(channel="sms", to=PHONE)) == 1


@pytest.mark.settings(**SECRETS)
async def test_onfleet_validation_handshake_echoes_the_check_value(hub: Hub) -> None:
    resp = await hub.http.get(hub.base + "/webhooks/onfleet", params={"check": "eN2wHQ7aT1"})
    assert resp.status == 200 and resp.content_type == "text/plain"
    assert await resp.text() == "eN2wHQ7aT1"
    resp = await hub.http.get(hub.base + "/webhooks/onfleet")
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "missing_check"


@pytest.mark.settings(**SECRETS)
async def test_unknown_triggers_and_tags_are_acknowledged_and_send_nothing(hub: Hub) -> None:
    worker_duty = {"time": SENT_MS, "triggerId": 5, "triggerName": "workerDuty", "workerId": "w1", "status": 1}
    resp = await post_onfleet(hub, worker_duty)
    assert resp.status == 200 and (await resp.json())["status"] == "ignored"
    no_task = onfleet_body("taskStarted", 0, onfleet_task())
    no_task["taskId"] = None
    no_task["data"]["task"].pop("id")
    resp = await post_onfleet(hub, no_task)
    assert resp.status == 200 and "no task id" in (await resp.json())["reason"]
    # A signed body with a number JSON does not have (Python's parser would take it): not a 500.
    delayed = onfleet_body("taskDelayed", 12, onfleet_task(), delay=float("inf"))
    resp = await post_onfleet(hub, delayed)
    assert resp.status == 200 and (await resp.json())["status"] == "ignored"
    for tag, subtag in (("Pending", "Pending_001"), ("Expired", "Expired_001"), ("Teleported", "")):
        resp = await post_aftership(hub, aftership_body(tag, subtag))
        assert resp.status == 200 and (await resp.json())["status"] == "ignored"
    await hub.run_worker()
    assert hub.messages() == []


@pytest.mark.settings(**SECRETS)
async def test_sms_recipient_opt_out_stops_sms(hub: Hub) -> None:
    opt_out = {
        "time": SENT_MS,
        "triggerId": 17,
        "triggerName": "SMSRecipientOptOut",
        "data": {"recipient": {"id": "VVLx5OdKvw0dRSjT2rGvJxos", "name": "Ana Weber", "phone": PHONE}},
    }
    resp = await post_onfleet(hub, opt_out)
    assert resp.status == 200 and (await resp.json())["status"] == "opted_out"
    r = aioredis.Redis.from_url(str(hub.settings.redis_url), decode_responses=True)
    try:
        record = await r.hgetall(optout_key(hub))
    finally:
        await r.aclose()
    assert record["sender"] == "onfleet"
    await post_onfleet(hub, onfleet_body("taskStarted", 0, onfleet_task()))
    await hub.run_worker()
    assert hub.messages(channel="sms") == []


# -- AfterShip -------------------------------------------------------------------------------
@pytest.mark.settings(**SECRETS)
async def test_aftership_out_for_delivery_reaches_the_customer(hub: Hub) -> None:
    resp = await post_aftership(hub, aftership_body("OutForDelivery", "OutForDelivery_001"))
    assert resp.status == 202, await resp.text()
    assert (await resp.json())["type"] == "out_for_delivery"
    await hub.run_worker()
    sent = await messages_of(hub, "9361289676091361892011")
    assert {(m["milestone"], m["channel"]) for m in sent} == {("out_for_delivery", c) for c in ("sms", "email")}
    assert hub.messages(channel="sms", to=PHONE) and hub.messages(channel="email", to=EMAIL)


@pytest.mark.settings(**SECRETS)
async def test_aftership_substatus_returned_to_sender_is_returned(hub: Hub) -> None:
    answer = await (await post_aftership(hub, aftership_body("Exception", "Exception_011"))).json()
    assert answer["type"] == "returned"
    answer = await (await post_aftership(hub, aftership_body("Exception", "Exception_012", "e2"))).json()
    assert answer["type"] == "exception"
    await hub.run_worker()
    delivery = await (await hub.request("GET", "/v1/deliveries/9361289676091361892011", key=ADMIN_KEY)).json()
    kinds = {e["type"]: e.get("kind") for e in delivery["timeline"]}
    assert kinds == {"returned": None, "exception": "damage"}


@pytest.mark.settings(**SECRETS)
async def test_aftership_signature_and_retries(hub: Hub) -> None:
    body = aftership_body("Delivered", "Delivered_001")
    raw = json.dumps(body).encode()
    bad = {"Content-Type": "application/json", "aftership-hmac-sha256": aftership_signature(raw, "other-secret")}
    assert (await hub.http.post(hub.base + "/webhooks/aftership", data=raw, headers=bad)).status == 401
    assert (await hub.http.post(hub.base + "/webhooks/aftership", data=raw)).status == 401
    first = await (await post_aftership(hub, body)).json()
    retry = await (await post_aftership(hub, body)).json()
    assert (first["status"], retry["status"]) == ("accepted", "duplicate")
    await hub.run_worker()
    assert [m["milestone"] for m in await messages_of(hub, "9361289676091361892011")] == ["delivered"]


@pytest.mark.settings(**SECRETS, **{"adapters.aftership.tags": {"Expired": "exception", "InTransit": None}})
async def test_mapping_tables_are_adjusted_in_config(hub: Hub) -> None:
    assert hub.settings.adapters.aftership.tags["outfordelivery"] == "out_for_delivery"  # defaults stay
    answer = await (await post_aftership(hub, aftership_body("Expired", "Expired_001"))).json()
    assert answer["type"] == "exception"
    answer = await (await post_aftership(hub, aftership_body("InTransit", "InTransit_002", "e3"))).json()
    assert answer["status"] == "ignored"


async def test_adapters_without_a_secret_are_disabled(hub: Hub) -> None:
    for path in ("/webhooks/onfleet", "/webhooks/aftership", "/webhooks/generic/shipco"):
        resp = await hub.http.post(hub.base + path, data=b"{}")
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] in ("adapter_disabled", "unknown_adapter")
    resp = await hub.http.get(hub.base + "/webhooks/onfleet", params={"check": "x"})
    assert resp.status == 404 and "HUB_ADAPTERS__ONFLEET__SECRET" in (await resp.json())["error"]["message"]


# -- generic mappings ------------------------------------------------------------------------
def shipco_body(state: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "wh_81",
        "at": "2026-11-24T08:10:00+01:00",
        "shipment": {
            "ref": "SC-1",
            "state": state,
            "shop/name": "Acme Shoes",
            "buyer": {"id": "B-9", "contacts": [{"kind": "mobile", "value": "0151 12345678"}]},
            "window": {"from": "2026-11-24T10:00:00+01:00", "to": "2026-11-24T12:00:00+01:00"},
        },
    }
    body.update(changes)
    return body


async def post_shipco(hub: Hub, body: dict[str, Any], secret: str = GENERIC_SECRET) -> Any:
    raw = json.dumps(body).encode()
    signature = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json", "X-Shipco-Signature": signature}
    return await hub.http.post(hub.base + "/webhooks/generic/shipco", data=raw, headers=headers)


@pytest.mark.settings(**GENERIC)
async def test_generic_mapping_reads_fields_by_json_pointer(hub: Hub) -> None:
    resp = await post_shipco(hub, shipco_body("OUT"))
    assert resp.status == 202, await resp.text()
    answer = await resp.json()
    assert (answer["type"], answer["status"]) == ("out_for_delivery", "accepted")
    assert (await (await post_shipco(hub, shipco_body("OUT"))).json())["status"] == "duplicate"
    assert (await post_shipco(hub, shipco_body("OUT"), secret="wrong")).status == 401
    assert (await (await post_shipco(hub, shipco_body("NOISE", id="wh_82"))).json())["status"] == "ignored"
    assert (await (await post_shipco(hub, shipco_body("LOST", id="wh_83"))).json())["status"] == "ignored"
    await hub.run_worker()
    delivery = await (await hub.request("GET", "/v1/deliveries/SC-1", key=ADMIN_KEY)).json()
    assert delivery["merchant"] == "Acme Shoes" and delivery["customer_id"] == "B-9"
    assert delivery["timeline"][0]["source"] == "generic:shipco"
    assert [m["milestone"] for m in await messages_of(hub, "SC-1") if m["channel"] == "sms"] == ["out_for_delivery"]
    assert hub.messages(channel="sms", to=PHONE)  # the national number, read in the default region
    resp = await hub.http.post(hub.base + "/webhooks/generic/nobody", data=b"{}")
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "unknown_adapter"


@pytest.mark.settings(**SECRETS)
async def test_invalid_contact_fields_are_dropped_not_fatal(hub: Hub) -> None:
    body = aftership_body("OutForDelivery", "OutForDelivery_001")
    body["msg"]["smses"] = ["not a phone"]
    answer = await (await post_aftership(hub, body)).json()
    assert answer["status"] == "accepted"
    await hub.run_worker()
    assert hub.messages(channel="email", to=EMAIL) and hub.messages(channel="sms") == []


def test_environment_overrides_one_entry_of_a_table() -> None:
    from pathlib import Path

    from hub.config import load_settings

    root = Path(__file__).resolve().parents[1]
    s = load_settings(
        root / "config.yaml",
        environ={
            "HUB_ADAPTERS__AFTERSHIP__TAGS__EXPIRED": "exception",
            "HUB_ADAPTERS__ONFLEET__TRIGGERS": "{taskArrival: null}",
        },
    )
    assert s.adapters.aftership.tags["expired"] == "exception"
    assert s.adapters.aftership.tags["delivered"] == "delivered"
    assert s.adapters.onfleet.triggers["taskarrival"] is None
    assert s.adapters.onfleet.triggers["taskcompleted"] == "delivered"


def test_derived_customer_ids_are_keyed_and_the_same_however_the_number_is_written() -> None:
    from hub.adapters_map import IdKey, customer_id_for

    ids = IdKey(b"hub-secret", "DE")
    national = customer_id_for("aftership", "0151 12345678", None, "D-1", ids)
    assert national == customer_id_for("aftership", "+49 151 12345678", None, "D-1", ids)
    assert hashlib.sha256(b"+4915112345678").hexdigest()[:20] not in national  # not an unkeyed digest
    assert national != customer_id_for("aftership", "+4915112345678", None, "D-1", IdKey(b"other", "DE"))
    assert customer_id_for("aftership", None, " Ana@Example.com", "D-1", ids) == customer_id_for(
        "aftership", None, "ana@example.com", "D-1", ids
    )
