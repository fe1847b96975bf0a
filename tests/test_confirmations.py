"""Asking before the route is planned: a ``scheduled`` event asks the customers the policy selects
to confirm the planned window, and their numbered SMS answers go upstream as webhooks."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from hub.demo import prepare_customers, tomorrows_question
from hub.signing import verify
from tests.conftest import API_KEY, WEBHOOK_SECRET, Hub
from tests.events import make_event

PHONE = "+4915112345678"
WINDOW = {"start": "2099-11-25T09:00:00+01:00", "end": "2099-11-25T12:00:00+01:00"}
SLOTS = [
    {"id": "s1", "start": "2099-11-25T17:00:00+01:00", "end": "2099-11-25T20:00:00+01:00"},
    {"id": "s2", "start": "2099-11-26T09:00:00+01:00", "end": "2099-11-26T12:00:00+01:00"},
]


async def flag(hub: Hub, value: bool | None = True) -> None:
    """The sample customer, opted in to (or out of) confirmation questions."""
    await hub.request("PUT", "/v1/customers/C-77", json={"phone": PHONE, "push_tokens": ["fcm-token-1"]})
    if value is not None:
        resp = await hub.request("PATCH", "/v1/customers/C-77/preferences", json={"confirm_deliveries": value})
        assert resp.status == 200, await resp.text()


async def schedule(hub: Hub, **changes: Any) -> None:
    # In English, so that the assertions on wording hold once the catalogs translate it.
    base = {"delivery__eta": WINDOW, "data": {"reschedule_slots": SLOTS}, "customer__locale": "en-GB"}
    event = make_event("scheduled", **{**base, **changes})
    assert (await hub.post_event(event)).status == 202
    await hub.run_worker()


def answer_of(result: dict[str, Any]) -> str:
    return " ".join(result.get("replies") or [])


async def skipped_details(hub: Hub) -> list[tuple[str, str]]:
    listing = await (await hub.request("GET", "/v1/messages?delivery_id=D-1001")).json()
    return sorted(
        (m["channel"], m["history"][0]["detail"])
        for m in listing["messages"]
        if m["milestone"] == "scheduled" and m["status"] == "skipped"
    )


async def prompt_state(hub: Hub) -> tuple[aioredis.Redis, str]:
    r = aioredis.Redis.from_url(hub.settings.redis_url or "", decode_responses=True)
    return r, f"hub:conv:{PHONE}:{hub.settings.twilio.from_number}"


# -- who is asked ------------------------------------------------------------------------------
async def test_a_flagged_customer_is_asked_by_sms_and_push(hub: Hub) -> None:
    await flag(hub)
    await schedule(hub)

    [sms] = hub.messages(channel="sms")
    assert "Reply 1 to confirm" in sms["text"]
    assert "4 Wed, Nov 25 17-20" in sms["text"] and "5 Thu, Nov 26 9-12" in sms["text"], sms["text"]
    assert sms["text"].endswith(tuple("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    assert len(hub.messages(channel="push")) == 1
    assert await skipped_details(hub) == []


async def test_a_customer_the_policy_does_not_select_gets_nothing_and_the_log_says_why(hub: Hub) -> None:
    await flag(hub, None)
    await schedule(hub)

    assert hub.messages() == []
    assert await skipped_details(hub) == [("push", "not_selected"), ("sms", "not_selected")]


@pytest.mark.settings(**{"confirmation.ask": ["all"]})
async def test_policy_all_asks_every_customer(hub: Hub) -> None:
    await flag(hub, None)
    await schedule(hub)

    assert sorted(m["channel"] for m in hub.messages()) == ["push", "sms"]


@pytest.mark.settings(**{"confirmation.ask": ["all"]})
async def test_a_customer_who_said_never_ask_is_not_asked_even_under_all(hub: Hub) -> None:
    await flag(hub, False)
    await schedule(hub)

    assert hub.messages() == []
    assert await skipped_details(hub) == [("push", "not_selected"), ("sms", "not_selected")]


@pytest.mark.settings(**{"confirmation.ask": ["failed_before", "low_availability"]})
async def test_opting_in_counts_only_when_the_policy_lists_it(hub: Hub) -> None:
    await flag(hub)
    await schedule(hub)

    assert hub.messages() == []


async def test_other_milestones_are_untouched_by_the_policy(hub: Hub) -> None:
    await flag(hub, None)
    await hub.post_event(make_event("arriving_soon", data={"minutes": 10}))
    await hub.run_worker()

    assert sorted(m["channel"] for m in hub.messages()) == ["push", "sms"]


# What the availability model (hub.availability) knows selects customers too.
async def test_a_customer_whose_earlier_attempt_failed_is_asked(hub: Hub) -> None:
    await flag(hub, None)
    failed = make_event(
        "delivery_failed",
        delivery__id="D-0999",
        occurred_at="2026-11-20T10:00:00+01:00",
        data={"reason_code": "nobody_home"},
    )
    await hub.post_event(failed)
    await hub.run_worker()
    before = len(hub.messages(channel="sms"))
    await schedule(hub)
    assert len(hub.messages(channel="sms")) == before + 1


async def others_on_wednesday_mornings(hub: Hub, outcome: str) -> None:
    """Other customers (no contacts: nothing is sent), attempted on four Wednesdays at 10:00 and
    at 12:30, in the two blocks WINDOW covers: the pooled prior of a customer the hub has not
    seen yet."""
    days = ("2026-11-18", "2026-11-11", "2026-11-04", "2026-10-28")
    for n, at in enumerate(f"{day}T{hhmm}:00+01:00" for day in days for hhmm in ("10:00", "12:30")):
        data = {"reason_code": "nobody_home"} if outcome == "delivery_failed" else {}
        event = make_event(
            outcome,
            event_id=f"ev-other-{n}",
            delivery__id=f"D-OTHER-{n}",
            customer={"id": f"C-OTHER-{n}", "timezone": "Europe/Berlin"},
            occurred_at=at,
            data=data,
        )
        assert (await hub.post_event(event)).status == 202
    await hub.run_worker()


@pytest.mark.settings(**{"confirmation.ask": ["low_availability"]})
async def test_a_customer_unlikely_to_be_home_in_the_window_is_asked(hub: Hub) -> None:
    await flag(hub, None)
    await others_on_wednesday_mornings(hub, "delivery_failed")
    await schedule(hub)
    assert len(hub.messages(channel="sms")) == 1


@pytest.mark.settings(**{"confirmation.ask": ["low_availability"]})
async def test_a_customer_likely_to_be_home_in_the_window_is_not_asked(hub: Hub) -> None:
    await flag(hub, None)
    await others_on_wednesday_mornings(hub, "delivered")
    await schedule(hub)
    assert hub.messages() == []
    assert await skipped_details(hub) == [("push", "not_selected"), ("sms", "not_selected")]


# -- numbered answers ----------------------------------------------------------------------------
async def test_reply_1_confirms_the_window_upstream_with_the_availability_hint(hub: Hub) -> None:
    await flag(hub)
    await schedule(hub)

    text = answer_of(await hub.text_hub(PHONE, "1"))
    await hub.run_worker()

    assert "Thanks for confirming" in text and "Nov 25 09:00-12:00" in text, text
    [hook] = [r for r in hub.receiver.received if r["json"]["type"] == "delivery.confirmed"]
    assert verify(WEBHOOK_SECRET, hook["headers"]["Hub-Signature"], hook["raw"])
    data = hook["json"]["data"]
    assert data["delivery_id"] == "D-1001" and data["customer_id"] == "C-77"
    assert data["window"] == WINDOW and data["channel"] == "sms" and data["at"]
    assert set(data["availability"]) == {"p_home", "best"}
    assert [w["data"]["understood_as"] for w in hub.receiver.of_type("customer.reply")] == ["confirm"]
    delivery = await (await hub.request("GET", "/v1/deliveries/D-1001")).json()
    assert delivery["confirmed_window"] == f"{WINDOW['start']}/{WINDOW['end']}"


@pytest.mark.parametrize(
    ("reply", "kind", "said"), [("2", "neighbour", "with a neighbour"), ("3", "safe_place", "in a safe place")]
)
async def test_reply_2_or_3_says_where_to_leave_the_parcel(hub: Hub, reply: str, kind: str, said: str) -> None:
    await flag(hub)
    await schedule(hub)

    text = answer_of(await hub.text_hub(PHONE, reply))
    await hub.run_worker()

    assert said in text, text  # the instructions' own answer
    [hook] = hub.receiver.of_type("delivery.instructions_updated")
    assert hook["data"]["kind"] == kind and hook["data"]["channel"] == "sms"
    assert set(hook["data"]["availability"]) == {"p_home", "best"}
    assert hub.receiver.of_type("delivery.confirmed") == []


@pytest.mark.parametrize(("reply", "slot"), [("4", "s1"), ("5", "s2")])
async def test_reply_4_and_on_asks_for_the_offered_time(hub: Hub, reply: str, slot: str) -> None:
    await flag(hub)
    await schedule(hub)

    answer_of(await hub.text_hub(PHONE, reply))
    await hub.run_worker()

    [hook] = hub.receiver.of_type("delivery.reschedule_requested")
    assert hook["data"]["slot_id"] == slot and hook["data"]["channel"] == "sms"
    assert set(hook["data"]["availability"]) == {"p_home", "best"}


@pytest.mark.parametrize("reply", ["6", "0", "9"])
async def test_a_number_out_of_range_gets_the_choices_again(hub: Hub, reply: str) -> None:
    await flag(hub)
    await schedule(hub)

    text = answer_of(await hub.text_hub(PHONE, reply))
    await hub.run_worker()

    assert "1 to confirm" in text and "4-5" in text, text
    assert [w["data"]["understood_as"] for w in hub.receiver.of_type("customer.reply")] == ["confirm_invalid"]
    for kind in ("delivery.confirmed", "delivery.instructions_updated", "delivery.reschedule_requested"):
        assert hub.receiver.of_type(kind) == []


async def test_free_text_against_the_question_gets_the_choices(hub: Hub) -> None:
    await flag(hub)
    await schedule(hub)

    text = answer_of(await hub.text_hub(PHONE, "what is this"))

    assert "1 to confirm" in text, text


async def test_an_answer_after_the_window_started_is_refused_politely(hub: Hub) -> None:
    await flag(hub)
    await schedule(hub)
    r, key = await prompt_state(hub)
    state = json.loads(await r.get(key))
    assert state["prompt"] == "confirm"
    assert state["expires_at"] <= time.time() + hub.settings.conversation.reschedule_hours * 3600
    state["expires_at"] = time.time() - 1
    await r.set(key, json.dumps(state))
    await r.aclose()

    text = answer_of(await hub.text_hub(PHONE, "1"))
    await hub.run_worker()

    assert "closed" in text, text
    assert hub.receiver.of_type("delivery.confirmed") == []
    assert [w["data"]["understood_as"] for w in hub.receiver.of_type("customer.reply")] == ["confirm_closed"]


async def test_an_answer_after_the_delivery_ended_is_refused(hub: Hub) -> None:
    await flag(hub)
    await schedule(hub)
    await hub.request("PATCH", "/v1/customers/C-77/preferences", json={"channels": {"delivered": ["push"]}})
    await hub.post_event(make_event("delivered", occurred_at="2026-11-24T11:00:00+01:00"))
    await hub.run_worker()

    await hub.text_hub(PHONE, "1")
    await hub.run_worker()

    assert hub.receiver.of_type("delivery.confirmed") == []
    assert [w["data"]["understood_as"] for w in hub.receiver.of_type("customer.reply")] == ["confirm_closed"]


async def test_the_question_expires_when_the_window_starts(hub: Hub) -> None:
    await flag(hub)
    soon = time.time() + 3600
    start = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(soon))
    end = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(soon + 3 * 3600))
    await schedule(hub, delivery__eta={"start": start, "end": end})
    r, key = await prompt_state(hub)
    state = json.loads(await r.get(key))
    await r.aclose()

    assert state["expires_at"] == pytest.approx(soon, abs=1)
    assert [s["n"] for s in state["slots"]] == [4, 5]


# -- the tracking page -----------------------------------------------------------------------------
LINK = re.compile(r"https?://\S+/t/[A-Za-z0-9]{12}")


def browser() -> aiohttp.ClientSession:
    """A client that keeps cookies for 127.0.0.1, as browsers do (aiohttp's default jar refuses IPs)."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found
    return found.group(1)


async def page_link(hub: Hub, **changes: Any) -> str:
    await flag(hub)
    await schedule(hub, **changes)
    [sms] = hub.messages(channel="sms")
    found = LINK.search(sms["text"])
    assert found, sms["text"]
    return found.group(0)


async def test_the_page_asks_the_question_and_confirming_there_is_the_same_webhook(hub: Hub) -> None:
    url = await page_link(hub)
    async with browser() as s:
        page = await (await s.get(url)).text()
        assert 'id="confirm"' in page and 'value="confirm"' in page
        assert 'value="neighbour"' in page and 'value="safe_place"' in page
        assert 'value="slot:s1"' in page and 'value="slot:s2"' in page
        assert 'id="reschedule"' not in page  # the question offers the other times itself
        token = csrf_of(page)
        for _ in range(2):  # a double click: one webhook
            resp = await s.post(url + "/confirm", data={"answer": "confirm", "csrf": token}, allow_redirects=False)
            assert resp.status == 303 and resp.headers["Location"].endswith("?done=confirm")
        again = await (await s.get(url)).text()
    await hub.run_worker()

    [hook] = hub.receiver.of_type("delivery.confirmed")
    assert hook["data"]["channel"] == "web" and hook["data"]["window"] == WINDOW
    assert set(hook["data"]["availability"]) == {"p_home", "best"}
    assert "Your answer was sent" in again


async def test_another_time_or_a_neighbour_from_the_page(hub: Hub) -> None:
    url = await page_link(hub)
    async with browser() as s:
        page = await (await s.get(url)).text()
        token = csrf_of(page)
        for answer in ("slot:s2", "neighbour"):
            resp = await s.post(url + "/confirm", data={"answer": answer, "csrf": token}, allow_redirects=False)
            assert resp.status == 303
    await hub.run_worker()

    [reschedule] = hub.receiver.of_type("delivery.reschedule_requested")
    assert reschedule["data"]["slot_id"] == "s2" and reschedule["data"]["channel"] == "web"
    [instructions] = hub.receiver.of_type("delivery.instructions_updated")
    assert instructions["data"]["kind"] == "neighbour" and instructions["data"]["channel"] == "web"


@pytest.mark.parametrize("answer", ["slot:s9", "maybe", "", "slot:"])
async def test_an_answer_the_question_does_not_offer_is_refused_with_a_message(hub: Hub, answer: str) -> None:
    url = await page_link(hub)
    async with browser() as s:
        page = await (await s.get(url)).text()
        resp = await s.post(url + "/confirm", data={"answer": answer, "csrf": csrf_of(page)}, allow_redirects=False)
        assert resp.status == 422
        assert "Choose one of the answers" in await resp.text()
    await hub.run_worker()
    assert hub.receiver.of_type("delivery.confirmed") == []


async def test_the_confirm_form_needs_the_csrf_token_of_this_browser(hub: Hub) -> None:
    url = await page_link(hub)
    async with browser() as s:
        await s.get(url)
        resp = await s.post(url + "/confirm", data={"answer": "confirm", "csrf": "0" * 64}, allow_redirects=False)
        assert resp.status == 403
    await hub.run_worker()
    assert hub.receiver.of_type("delivery.confirmed") == []


async def test_once_the_window_has_started_the_page_no_longer_asks(hub: Hub) -> None:
    past = {"start": "2026-11-25T09:00:00+01:00", "end": "2026-11-25T12:00:00+01:00"}
    url = await page_link(hub, delivery__eta=past)
    async with browser() as s:
        page = await (await s.get(url)).text()
        assert 'id="confirm"' not in page
        resp = await s.post(url + "/confirm", data={"answer": "confirm", "csrf": csrf_of(page)}, allow_redirects=False)
        assert resp.status == 422
        assert "This question has closed" in await resp.text()


# -- push actions ----------------------------------------------------------------------------------
async def pushed_question(hub: Hub) -> dict[str, Any]:
    await flag(hub)
    await schedule(hub)
    [push] = hub.messages(channel="push")
    data: dict[str, Any] = push["push_data"]
    return {"data": data, "apns": push["meta"]["message"].get("apns") or {}}


async def post_answer(hub: Hub, body: Any, **kwargs: Any) -> aiohttp.ClientResponse:
    return await hub.request("POST", "/v1/push/answers", key=None, json=body, **kwargs)


async def test_the_push_carries_the_answers_as_actions_in_the_customers_language(hub: Hub) -> None:
    pushed = await pushed_question(hub)
    data = pushed["data"]

    assert [a["id"] for a in json.loads(data["actions"])] == ["confirm", "neighbour", "safe_place"]
    assert all(a["title"] for a in json.loads(data["actions"]))
    assert data["answer_url"] == f"{hub.settings.public_url}/v1/push/answers"
    assert data["category"] == "scheduled_question"
    assert pushed["apns"]["payload"]["aps"]["category"] == "scheduled_question"


async def test_a_push_action_answers_the_question_with_the_same_webhook(hub: Hub) -> None:
    data = (await pushed_question(hub))["data"]
    body = {"message_id": data["message_id"], "receipt": data["receipt"], "answer": "confirm"}

    first = await post_answer(hub, body)
    again = await post_answer(hub, body)  # the app retried: one webhook
    await hub.run_worker()

    assert first.status == 200 and again.status == 200
    assert (await first.json())["understood_as"] == "confirm"
    [hook] = hub.receiver.of_type("delivery.confirmed")
    assert hook["data"]["channel"] == "push" and hook["data"]["window"] == WINDOW
    assert set(hook["data"]["availability"]) == {"p_home", "best"}


async def test_a_push_action_can_pick_an_offered_time(hub: Hub) -> None:
    data = (await pushed_question(hub))["data"]
    body = {"message_id": data["message_id"], "receipt": data["receipt"], "answer": "slot:s2"}

    resp = await post_answer(hub, body)
    await hub.run_worker()

    assert resp.status == 200, await resp.text()
    [hook] = hub.receiver.of_type("delivery.reschedule_requested")
    assert hook["data"]["slot_id"] == "s2" and hook["data"]["channel"] == "push"


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"receipt": "0" * 32}, 403, "invalid_receipt"),
        ({"receipt": "ü" * 10}, 403, "invalid_receipt"),
        ({"answer": "maybe"}, 422, "validation_failed"),
        ({"answer": "slot:s9"}, 422, "validation_failed"),
        ({"answer": ""}, 422, "validation_failed"),
        ({"extra": 1}, 422, "validation_failed"),
    ],
)
async def test_a_forged_or_wrong_push_answer_is_refused(
    hub: Hub, change: dict[str, Any], status: int, code: str
) -> None:
    data = (await pushed_question(hub))["data"]
    body = {"message_id": data["message_id"], "receipt": data["receipt"], "answer": "confirm", **change}

    resp = await post_answer(hub, body)
    await hub.run_worker()

    assert resp.status == status, await resp.text()
    error = (await resp.json())["error"]
    assert error["code"] == code
    if status == 422 and "extra" not in change:
        assert "answer" in error["fields"]
    assert hub.receiver.of_type("delivery.confirmed") == []


async def test_a_receipt_of_another_push_or_no_json_is_refused(hub: Hub) -> None:
    data = (await pushed_question(hub))["data"]
    other = {"message_id": "msg-someone-else", "receipt": data["receipt"], "answer": "confirm"}
    assert (await post_answer(hub, other)).status == 403
    raw = await hub.request("POST", "/v1/push/answers", key=None, data="answer=confirm")
    assert raw.status == 415


async def test_a_push_that_asked_nothing_cannot_be_answered(hub: Hub) -> None:
    await flag(hub)
    await hub.post_event(make_event("arriving_soon", data={"minutes": 10}))
    await hub.run_worker()
    [push] = hub.messages(channel="push")
    data = push["push_data"]
    assert "actions" not in data

    resp = await post_answer(hub, {"message_id": data["message_id"], "receipt": data["receipt"], "answer": "confirm"})

    assert resp.status == 409 and (await resp.json())["error"]["code"] == "not_a_question"


async def test_a_push_answer_after_the_delivery_moved_on_is_closed(hub: Hub) -> None:
    data = (await pushed_question(hub))["data"]
    await hub.post_event(make_event("out_for_delivery", occurred_at="2026-11-24T09:00:00+01:00"))
    await hub.run_worker()

    resp = await post_answer(hub, {"message_id": data["message_id"], "receipt": data["receipt"], "answer": "confirm"})

    assert resp.status == 409 and (await resp.json())["error"]["code"] == "question_closed"


# -- the demo ----------------------------------------------------------------------------------------
async def test_the_demo_asks_its_opted_in_customer_about_tomorrow(hub: Hub) -> None:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {API_KEY}"}) as http:
        await prepare_customers(http, hub.base)
    event = tomorrows_question("-T1")
    assert (await hub.post_event(event)).status == 202
    await hub.run_worker()

    [sms] = hub.messages(channel="sms", to="+4915134567890")
    assert "Reply 1 to confirm" in sms["text"] and "4 " in sms["text"], sms["text"]
    [push] = hub.messages(channel="push", to="demo-token-mia")
    assert "actions" in push["push_data"]
    answer = answer_of(await hub.text_hub("+4915134567890", "1"))
    await hub.run_worker()
    assert "Thanks for confirming" in answer
    assert [h["data"]["delivery_id"] for h in hub.receiver.of_type("delivery.confirmed")] == ["D-1007-T1"]
