"""Customers answer by SMS; providers report status; upstream hears about it through signed webhooks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import redis.asyncio as aioredis

from hub import keys
from hub.signing import verify
from tests.conftest import WEBHOOK_SECRET, Hub
from tests.events import make_event

PHONE = "+4915112345678"
T = TypeVar("T")


def optout_key(hub: Hub, phone: str = PHONE) -> str:
    """The suppression-list key of a phone (a keyed hash: the name holds no number)."""
    return keys.sms_optout(keys.optout_pepper(hub.settings.secret_key), phone)


SLOTS = [
    {"id": "s1", "start": "2026-11-25T09:00:00+01:00", "end": "2026-11-25T12:00:00+01:00"},
    {"id": "s2", "start": "2026-11-25T13:00:00+01:00", "end": "2026-11-25T17:00:00+01:00"},
    {"id": "s3", "start": "2026-11-25T17:00:00+01:00", "end": "2026-11-25T20:00:00+01:00"},
]


def answer_of(result: dict) -> str:
    replies = result.get("replies") or []
    return " ".join(replies)


async def offer_slots(hub: Hub, **changes: object) -> None:
    slots_far = [
        {
            **s,
            "start": s["start"].replace("2026-11-25", "2099-11-25"),
            "end": s["end"].replace("2026-11-25", "2099-11-25"),
        }
        for s in SLOTS
    ]
    await hub.post_event(make_event("out_for_delivery", data={"reschedule_slots": slots_far}, **changes))
    await hub.run_worker()


async def redis_of(hub: Hub) -> aioredis.Redis:
    return aioredis.Redis.from_url(hub.settings.redis_url or "", decode_responses=True)


# -- signatures ----------------------------------------------------------------------------------
async def test_inbound_sms_without_a_valid_signature_is_403_and_changes_nothing(hub: Hub) -> None:
    await offer_slots(hub)
    form = {"MessageSid": "SM1", "From": PHONE, "To": "+15005550006", "Body": "STOP"}
    missing = await hub.http.post(hub.base + "/webhooks/twilio/sms", data=form)
    forged = await hub.http.post(
        hub.base + "/webhooks/twilio/sms", data=form, headers={"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"}
    )
    assert missing.status == 403 and forged.status == 403
    assert (await forged.json())["error"]["code"] == "bad_signature"
    r = await redis_of(hub)
    assert not await r.exists(optout_key(hub))
    await r.aclose()


async def test_status_callback_with_a_bad_signature_is_403(hub: Hub) -> None:
    resp = await hub.http.post(
        hub.base + "/webhooks/twilio/status",
        data={"MessageSid": "SMx", "MessageStatus": "delivered"},
        headers={"X-Twilio-Signature": "AAAA"},
    )
    assert resp.status == 403


# -- compliance keywords -----------------------------------------------------------------------
@pytest.mark.parametrize("word", ["STOP", "stop", " Stop. ", "STOPALL", "unsubscribe", "CANCEL", "end", "Quit"])
async def test_stop_keywords_opt_the_number_out_and_later_events_skip_sms(hub: Hub, word: str) -> None:
    await offer_slots(hub)
    result = await hub.text_hub(PHONE, word)
    assert "START" in answer_of(result)
    r = await redis_of(hub)
    optout = await r.hgetall(optout_key(hub))
    await r.aclose()
    assert optout["keyword"] and optout["at"]
    before = len(hub.messages(channel="sms"))
    await hub.post_event(make_event("arriving_soon", occurred_at="2026-11-24T09:30:00+01:00", data={"minutes": 5}))
    await hub.run_worker()
    assert len(hub.messages(channel="sms")) == before
    listing = await (await hub.request("GET", "/v1/messages?delivery_id=D-1001")).json()
    skipped = [m for m in listing["messages"] if m["status"] == "skipped" and m["milestone"] == "arriving_soon"]
    assert [(m["channel"], m["history"][0]["detail"]) for m in skipped] == [("sms", "sms_stopped")]
    assert [w["data"]["channel"] for w in hub.receiver.of_type("contact.opted_out")] == ["sms"]


@pytest.mark.parametrize("word", ["START", "unstop", "Yes"])
async def test_start_keywords_opt_back_in(hub: Hub, word: str) -> None:
    await offer_slots(hub)
    await hub.text_hub(PHONE, "STOP")
    result = await hub.text_hub(PHONE, word)
    assert "STOP" in answer_of(result)
    await hub.post_event(make_event("arriving_soon", occurred_at="2026-11-24T09:30:00+01:00", data={"minutes": 5}))
    await hub.run_worker()
    assert len(hub.messages(channel="sms")) == 2
    assert len(hub.receiver.of_type("contact.opted_in")) == 1


@pytest.mark.parametrize("word", ["HELP", "info", " help "])
async def test_help_answers_with_the_senders_name(hub: Hub, word: str) -> None:
    await offer_slots(hub)
    assert hub.settings.sender.name in answer_of(await hub.text_hub(PHONE, word))


async def test_only_sms_channel_falls_back_after_stop(hub: Hub) -> None:
    await hub.request("PUT", "/v1/customers/C-77", json={"phone": PHONE, "email": "ana@example.com"})
    await hub.request("PATCH", "/v1/customers/C-77/preferences", json={"channels": {"default": ["sms"]}})
    await hub.post_event(make_event("in_transit", customer={"id": "C-77"}))
    await hub.run_worker()
    await hub.text_hub(PHONE, "STOP")
    await hub.post_event(
        make_event("out_for_delivery", customer={"id": "C-77"}, occurred_at="2026-11-24T09:00:00+01:00")
    )
    await hub.run_worker()
    assert [m["channel"] for m in hub.messages()] == ["sms", "email"]


# -- reschedule ------------------------------------------------------------------------------------
@pytest.mark.parametrize("reply", ["2", "2.", "option 2", "Option 2", "Nr. 2", "opción 2", "choix 2", "zwei", "two"])
async def test_slot_reply_confirms_and_tells_upstream(hub: Hub, reply: str) -> None:
    await offer_slots(hub)
    [sms] = hub.messages(channel="sms")
    assert "1" in sms["text"] and "2" in sms["text"]
    result = await hub.text_hub(PHONE, reply)
    assert "13-17" in answer_of(result)
    await hub.run_worker()
    [hook] = [r for r in hub.receiver.received if r["json"]["type"] == "delivery.reschedule_requested"]
    assert hook["json"]["data"]["slot_id"] == "s2"
    assert hook["json"]["data"]["delivery_id"] == "D-1001"
    assert verify(WEBHOOK_SECRET, hook["headers"]["Hub-Signature"], hook["raw"])
    delivery = await (await hub.request("GET", "/v1/deliveries/D-1001")).json()
    assert delivery["reschedule_requested"]["slot_id"] == "s2"


async def test_slot_number_out_of_range_gets_a_helpful_answer(hub: Hub) -> None:
    await offer_slots(hub)
    text = answer_of(await hub.text_hub(PHONE, "7"))
    assert "3" in text
    await hub.run_worker()
    assert hub.receiver.of_type("delivery.reschedule_requested") == []


async def test_slot_reply_after_the_prompt_expired_is_refused_politely(hub: Hub) -> None:
    await offer_slots(hub)
    r = await redis_of(hub)
    key = f"hub:conv:{PHONE}:{hub.settings.twilio.from_number}"
    import json

    state = json.loads(await r.get(key))
    state["expires_at"] = time.time() - 1
    await r.set(key, json.dumps(state))
    await r.aclose()
    text = answer_of(await hub.text_hub(PHONE, "2"))
    assert text
    await hub.run_worker()
    assert hub.receiver.of_type("delivery.reschedule_requested") == []
    assert [w["data"]["understood_as"] for w in hub.receiver.of_type("customer.reply")] == ["reschedule_closed"]


async def test_slot_reply_after_the_delivery_completed_is_refused(hub: Hub) -> None:
    await offer_slots(hub)
    # Delivered, but the customer gets no SMS about it (push only), so the slot prompt is the latest.
    await hub.request("PATCH", "/v1/customers/C-77/preferences", json={"channels": {"delivered": ["push"]}})
    await hub.post_event(make_event("delivered", occurred_at="2026-11-24T11:00:00+01:00"))
    await hub.run_worker()
    await hub.text_hub(PHONE, "1")
    await hub.run_worker()
    assert hub.receiver.of_type("delivery.reschedule_requested") == []
    assert [w["data"]["understood_as"] for w in hub.receiver.of_type("customer.reply")] == ["reschedule_closed"]


# -- instructions and feedback -----------------------------------------------------------------
async def test_neighbour_instruction_with_always_is_stored_confirmed_and_sent_upstream(hub: Hub) -> None:
    await offer_slots(hub)
    text = answer_of(await hub.text_hub(PHONE, "NEIGHBOUR Mrs Li at no. 12 ALWAYS"))
    assert "Mrs Li at no. 12" in text
    await hub.run_worker()
    [hook] = hub.receiver.of_type("delivery.instructions_updated")
    assert hook["data"]["kind"] == "neighbour" and hook["data"]["note"] == "Mrs Li at no. 12"
    customer = await (await hub.request("GET", "/v1/customers/C-77")).json()
    assert customer["preferences"]["instructions"] == {"kind": "neighbour", "note": "Mrs Li at no. 12"}


async def test_free_text_after_an_instruction_prompt_becomes_a_note(hub: Hub) -> None:
    await hub.post_event(make_event("arriving_soon", data={"minutes": 10}))
    await hub.run_worker()
    await hub.text_hub(PHONE, "Please ring twice, the bell is quiet")
    await hub.run_worker()
    [hook] = hub.receiver.of_type("delivery.instructions_updated")
    assert hook["data"] == {**hook["data"], "kind": "note", "note": "Please ring twice, the bell is quiet"}


async def test_rating_after_delivery_is_stored_thanked_and_aggregated_per_driver(hub: Hub) -> None:
    await hub.request("PUT", "/v1/customers/C-77", json={"phone": PHONE})
    await hub.request("PATCH", "/v1/customers/C-77/preferences", json={"channels": {"delivered": ["sms"]}})
    await hub.post_event(make_event("delivered", data={"pod": {"recipient": "Ana", "place": "front door"}}))
    await hub.run_worker()
    text = answer_of(await hub.text_hub(PHONE, "4 friendly driver"))
    assert text
    await hub.run_worker()
    assert [w["data"]["understood_as"] for w in hub.receiver.of_type("customer.reply")] == ["rating"], text
    [hook] = hub.receiver.of_type("feedback.received")
    assert hook["data"]["rating"] == 4 and hook["data"]["comment"] == "friendly driver"
    assert hook["data"]["driver_id"] == "DR-5"
    summary = await (await hub.request("GET", "/v1/feedback?driver_id=DR-5")).json()
    assert summary["count"] == 1 and summary["average"] == 4.0
    assert summary["days"][0]["count"] == 1
    invalid = answer_of(await hub.text_hub(PHONE, "9"))
    assert "5" in invalid


async def test_unparseable_reply_says_what_is_possible(hub: Hub) -> None:
    await offer_slots(hub)
    text = answer_of(await hub.text_hub(PHONE, "what??"))
    assert "STOP" in text and "1-3" in text


async def test_unknown_number_gets_a_polite_answer_and_nothing_is_stored(hub: Hub) -> None:
    text = answer_of(await hub.text_hub("+4915199999999", "2"))
    assert hub.settings.sender.name in text
    r = await redis_of(hub)
    stored = [k async for k in r.scan_iter("hub:*") if not k.startswith("hub:inbound:")]
    # Only the count of answers to the number (a keyed hash for a name, gone after the window).
    assert [k.rpartition(":")[0] for k in stored] == ["hub:stranger"] and "9999" not in stored[0]
    assert 0 < await r.ttl(stored[0]) <= 24 * 3600
    await r.aclose()


async def test_replayed_inbound_webhook_is_handled_once(hub: Hub) -> None:
    await offer_slots(hub)
    from twilio.request_validator import RequestValidator

    form = {
        "MessageSid": "SMreplay0001",
        "AccountSid": hub.settings.twilio.account_sid,
        "From": PHONE,
        "To": hub.settings.twilio.from_number or "",
        "Body": "2",
        "NumMedia": "0",
    }
    url = hub.base + "/webhooks/twilio/sms"
    signature = RequestValidator(hub.settings.twilio.auth_token).compute_signature(url, form)
    first = await hub.http.post(url, data=form, headers={"X-Twilio-Signature": signature})
    second = await hub.http.post(url, data=form, headers={"X-Twilio-Signature": signature})
    assert first.status == second.status == 200
    assert "<Message>" in await first.text()
    assert "<Message>" not in await second.text()
    await hub.run_worker()
    assert len(hub.receiver.of_type("delivery.reschedule_requested")) == 1


# -- provider status ---------------------------------------------------------------------------
async def settled(fetch: Callable[[], Awaitable[T]], done: Callable[[T], bool], timeout: float = 30.0) -> T:
    """``fetch()`` again every 20 ms until ``done`` takes its answer, for at most ``timeout``
    seconds (the sandbox's status callbacks arrive in the background, typically within 0.1 s);
    the last answer either way, for the caller's assertions."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        answer = await fetch()
        if done(answer) or loop.time() > deadline:
            return answer
        await asyncio.sleep(0.02)


async def sms_status_webhooks(hub: Hub) -> list[str]:
    """The statuses of the message.status webhooks queued for SMS (delivered or not yet)."""
    rows = (await (await hub.request("GET", "/v1/webhooks/deliveries?type=message.status")).json())["deliveries"]
    return [row["body"]["data"]["status"] for row in rows if row["body"]["data"]["channel"] == "sms"]


@pytest.mark.sandbox(status_callbacks=True, callback_delay=0.01)
async def test_status_callbacks_move_the_message_to_delivered(hub: Hub) -> None:
    await hub.post_event(make_event("arriving_soon", data={"minutes": 10}))
    await hub.run_worker()
    # The "delivered" callback is handled once its webhook is queued (the status is stored just
    # before): the worker run below then finds all three.
    await settled(lambda: sms_status_webhooks(hub), lambda statuses: "delivered" in statuses)
    listing = await (await hub.request("GET", "/v1/messages?delivery_id=D-1001")).json()
    sms = next(m for m in listing["messages"] if m["channel"] == "sms")
    assert [h["status"] for h in sms["history"]] == ["sending", "accepted", "sent", "delivered"]
    await hub.run_worker()
    statuses = [w["data"]["status"] for w in hub.receiver.of_type("message.status") if w["data"]["channel"] == "sms"]
    # One webhook per step; the worker's "accepted" and the callbacks' steps race (docs/webhooks.md: no ordering).
    assert sorted(statuses) == ["accepted", "delivered", "sent"]


@pytest.mark.sandbox(status_callbacks=True, callback_delay=0.01, failing_numbers={PHONE: 30005})
async def test_undeliverable_number_is_marked_invalid_and_later_events_use_another_channel(hub: Hub) -> None:
    await hub.request("PUT", "/v1/customers/C-77", json={"phone": PHONE, "push_tokens": ["fcm-token-1"]})
    await hub.request("PATCH", "/v1/customers/C-77/preferences", json={"channels": {"default": ["sms"]}})
    await hub.post_event(make_event("arriving_soon", customer={"id": "C-77"}, data={"minutes": 10}))
    await hub.run_worker()

    async def customer() -> dict[str, Any]:
        record: dict[str, Any] = await (await hub.request("GET", "/v1/customers/C-77")).json()
        return record

    record = await settled(customer, lambda c: bool(c["invalid"].get("phone")))
    assert "30005" in record["invalid"]["phone"]
    await hub.post_event(make_event("delivered", customer={"id": "C-77"}, occurred_at="2026-11-24T11:00:00+01:00"))
    await hub.run_worker()
    assert [m["channel"] for m in hub.messages()] == ["sms", "push"]
    listing = await (await hub.request("GET", "/v1/messages?delivery_id=D-1001")).json()
    skipped = [m["history"][0]["detail"] for m in listing["messages"] if m["status"] == "skipped"]
    assert skipped == ["contact_invalid"]


async def test_unregistered_push_token_is_removed_from_the_customer(hub: Hub) -> None:
    await hub.post_event(make_event("in_transit", customer__push_tokens=["unregistered-1", "good-token"]))
    await hub.run_worker()
    record = await (await hub.request("GET", "/v1/customers/C-77")).json()
    assert record["push_tokens"] == ["good…"]
    assert [m["to"] for m in hub.messages(channel="push")] == ["good-token"]


# -- outbound webhooks -------------------------------------------------------------------------
async def test_receiver_failing_three_times_gets_the_event_once_with_a_valid_signature(hub: Hub) -> None:
    await offer_slots(hub)
    hub.receiver.received.clear()
    hub.receiver.fail_next = 3
    await hub.text_hub(PHONE, "STOP")
    await hub.run_worker()
    [hook] = [r for r in hub.receiver.received if r["json"]["type"] == "contact.opted_out"]
    assert verify(WEBHOOK_SECRET, hook["headers"]["Hub-Signature"], hook["raw"])
    assert hook["headers"]["Hub-Webhook-Id"] == hook["json"]["id"]
    rows = [
        row
        for kind in ("contact.opted_out", "customer.reply")
        for row in (await (await hub.request("GET", f"/v1/webhooks/deliveries?type={kind}")).json())["deliveries"]
    ]
    assert [row["status"] for row in rows] == ["delivered", "delivered"]
    assert sum(row["attempts"] for row in rows) == 2 + 3  # the three failures were retried
    assert len(hub.receiver.of_type("contact.opted_out")) == 1


@pytest.mark.settings(**{"webhooks.max_attempts": 2})
async def test_dead_lettered_webhook_is_listed_and_replayed(hub: Hub) -> None:
    from hub.webhooks import replay_webhooks

    hub.receiver.always_fail = True
    await offer_slots(hub)
    await hub.text_hub(PHONE, "STOP")
    await hub.run_worker()
    dead = (await (await hub.request("GET", "/v1/webhooks/deliveries?status=dead")).json())["deliveries"]
    assert dead and all(d["attempts"] == 2 for d in dead)
    hub.receiver.always_fail = False
    r = await redis_of(hub)
    await replay_webhooks(r, hub.settings, [d["id"] for d in dead])
    await r.aclose()
    await hub.run_worker()
    assert (await (await hub.request("GET", "/v1/webhooks/deliveries?status=dead")).json())["deliveries"] == []
    assert len(hub.receiver.received) == len(dead)


def test_signature_verification_rejects_tampering_and_old_timestamps() -> None:
    from hub.signing import signature_header

    body = b'{"id":"wh_1"}'
    header = signature_header("k" * 20, body, timestamp=1_800_000_000)
    assert verify("k" * 20, header, body, now=1_800_000_010)
    assert not verify("k" * 20, header, body + b" ", now=1_800_000_010)
    assert not verify("x" * 20, header, body, now=1_800_000_010)
    assert not verify("k" * 20, header, body, now=1_800_001_000)
    assert not verify("k" * 20, "garbage", body)
    assert not verify("k" * 20, "t=1800000000,v1=\u00e9", body, now=1_800_000_010)


async def test_cli_sandbox_sms_and_webhooks_replay(hub: Hub, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from hub.cli import _replay, _sandbox_sms

    await offer_slots(hub)
    origin = hub.sandbox_url.removesuffix("/sandbox")
    args = argparse.Namespace(from_=PHONE, body="HELP", to=None, url=origin)
    assert await _sandbox_sms(hub.settings, args) == 0
    assert hub.settings.sender.name in capsys.readouterr().out
    assert await _replay(hub.settings, argparse.Namespace(id=["wh_unknown"], dead=False)) == 1
    assert "unknown ids: wh_unknown" in capsys.readouterr().out


async def test_hard_bounce_at_smtp_time_marks_the_address_invalid(hub: Hub) -> None:
    hub.sandbox.smtp.bouncing_addresses.add("ana@example.com")
    await hub.post_event(make_event("order_confirmed"))
    await hub.run_worker()
    customer = await (await hub.request("GET", "/v1/customers/C-77")).json()
    assert "550" in customer["invalid"]["email"]
    listing = await (await hub.request("GET", "/v1/messages?delivery_id=D-1001")).json()
    [mail] = [m for m in listing["messages"] if m["channel"] == "email"]
    assert mail["status"] == "failed" and mail["error_code"] == "550"
    assert [m["channel"] for m in hub.messages()] == ["push"]  # the same news, on the next channel
    await hub.post_event(make_event("returned", occurred_at="2026-11-24T12:00:00+01:00"))  # e-mail only by default
    await hub.run_worker()
    assert [m["channel"] for m in hub.messages()] == ["push", "push"]  # the bounced address is skipped


async def test_an_update_without_a_question_keeps_the_slot_offer_open(hub: Hub) -> None:
    await offer_slots(hub)
    await hub.post_event(make_event("arriving_soon", occurred_at="2026-11-24T09:30:00+01:00", data={"minutes": 10}))
    await hub.run_worker()
    assert "13-17" in answer_of(await hub.text_hub(PHONE, "2"))


async def test_a_number_when_only_instructions_are_open_is_not_taken_as_anything(hub: Hub) -> None:
    await hub.post_event(make_event("arriving_soon", data={"minutes": 10}))
    await hub.run_worker()
    text = answer_of(await hub.text_hub(PHONE, "3"))
    assert "STOP" in text
    await hub.run_worker()
    assert [w["data"]["understood_as"] for w in hub.receiver.of_type("customer.reply")] == ["not_understood"]


async def test_status_callback_that_beats_the_worker_is_applied_later(hub: Hub) -> None:
    """Twilio may call back before the worker has recorded the message's SID."""
    from twilio.request_validator import RequestValidator

    await hub.post_event(make_event("arriving_soon", data={"minutes": 10}))
    hub.sandbox.twilio.status_callbacks = False
    # Park a "delivered" for the SID the fake will hand out next: send first, then replay the
    # report as if it had arrived before the worker recorded the SID.
    await hub.run_worker()
    listing = await (await hub.request("GET", "/v1/messages?delivery_id=D-1001")).json()
    sms = next(m for m in listing["messages"] if m["channel"] == "sms")
    r = await redis_of(hub)
    await r.delete(f"hub:provider:{sms['provider_id']}")
    url = hub.base + "/webhooks/twilio/status"
    form = {"MessageSid": sms["provider_id"], "MessageStatus": "delivered"}
    signature = RequestValidator(hub.settings.twilio.auth_token).compute_signature(url, form)
    resp = await hub.http.post(url, data=form, headers={"X-Twilio-Signature": signature})
    assert resp.status == 204
    assert await r.exists(f"hub:pending_status:{sms['provider_id']}")
    from hub.status import apply_parked
    from hub.store import HubStore
    from hub.webhooks import Webhooks
    from preferences import CustomerStore

    await apply_parked(
        HubStore(r, hub.settings), CustomerStore(r), Webhooks(r, hub.settings), sms["id"], sms["provider_id"]
    )
    await r.aclose()
    one = await (await hub.request("GET", f"/v1/messages/{sms['id']}")).json()
    assert [h["status"] for h in one["history"]][-2:] == ["sent", "delivered"]


@pytest.mark.settings(**{"twilio_hooks.trust_forwarded": True})
async def test_behind_a_proxy_the_signature_is_checked_against_the_forwarded_url(hub: Hub) -> None:
    from twilio.request_validator import RequestValidator

    await offer_slots(hub)
    form = {"MessageSid": "SMproxy0001", "From": PHONE, "To": hub.settings.twilio.from_number or "", "Body": "HELP"}
    validator = RequestValidator(hub.settings.twilio.auth_token)
    proxy_headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "hub.example.com"}
    public = validator.compute_signature("https://hub.example.com/webhooks/twilio/sms", form)
    internal = validator.compute_signature(hub.base + "/webhooks/twilio/sms", form)
    wrong = await hub.http.post(
        hub.base + "/webhooks/twilio/sms", data=form, headers={**proxy_headers, "X-Twilio-Signature": internal}
    )
    assert wrong.status == 403
    right = await hub.http.post(
        hub.base + "/webhooks/twilio/sms", data=form, headers={**proxy_headers, "X-Twilio-Signature": public}
    )
    assert right.status == 200 and "<Message>" in await right.text()


async def test_stop_from_a_number_we_texted_is_honoured_even_after_its_customer_changed_number(hub: Hub) -> None:
    await offer_slots(hub)
    await hub.request("PUT", "/v1/customers/C-77", json={"phone": "+4915199990000"})
    result = await hub.text_hub(PHONE, "STOP")
    assert "START" in answer_of(result)
    r = await redis_of(hub)
    assert await r.exists(optout_key(hub))
    await r.aclose()


async def test_a_reply_is_credited_to_the_customer_the_prompt_was_sent_to(hub: Hub) -> None:
    await offer_slots(hub)
    # Another customer is created later with the same phone number.
    await hub.request("PUT", "/v1/customers/C-99", json={"phone": PHONE})  # the phone index now points there
    await hub.text_hub(PHONE, "1")
    await hub.run_worker()
    [hook] = hub.receiver.of_type("delivery.reschedule_requested")
    assert hook["data"]["customer_id"] == "C-77"


async def test_provider_error_texts_are_masked_in_the_history(hub: Hub) -> None:
    hub.sandbox.twilio.invalid_numbers = frozenset({PHONE})
    await hub.post_event(make_event("arriving_soon", data={"minutes": 10}))
    await hub.run_worker()
    listing = await (await hub.request("GET", "/v1/messages?delivery_id=D-1001")).json()
    assert "12345678" not in str(listing)
