"""WhatsApp, the fourth channel, end to end: templates outside the customer's 24-hour window,
free-form text inside it, replies in the SMS reply language answered over WhatsApp, STOP per
channel, read receipts, fallback, lost answers, erasure, and the sandbox's simulation."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis.asyncio as aioredis

from hub import keys
from hub.config import Settings
from hub.dev import DEV_WHATSAPP_NUMBER, dev_settings
from hub.export import export_customer
from hub.sandbox.ledger import CHANNELS as LEDGER_CHANNELS
from hub.vocabulary import CHANNELS, MILESTONES
from hub.whatsapp import template_for, variables
from tests.conftest import ADMIN_KEY, Hub
from tests.events import make_event
from tests.test_lost_answer import SHORT, everything_settled, messages, steps, until
from tests.test_track import browser, get_page, link_in
from tests.test_twoway import SLOTS

PHONE = "+4915112345678"
WHATSAPP = "+4915199990000"  # the customer's WhatsApp number, not their phone
SENDER = "+14155238886"
OFD_DE = "HX" + "0" * 31 + "1"
TEMPLATES = {
    "out_for_delivery": {"de": OFD_DE, "en": "HX" + "0" * 31 + "2"},
    "delivered": {"de": "HX" + "0" * 31 + "3"},
}
WHATSAPP_ON = {"whatsapp.from_number": SENDER, "whatsapp.templates": TEMPLATES}
pytestmark = pytest.mark.settings(**WHATSAPP_ON)

FAR_SLOTS = [
    {**s, "start": s["start"].replace("2026-11-25", "2099-11-25"), "end": s["end"].replace("2026-11-25", "2099-11-25")}
    for s in SLOTS
]


async def redis_of(hub: Hub) -> aioredis.Redis:
    return aioredis.Redis.from_url(hub.settings.redis_url or "", decode_responses=True)


async def prefer_whatsapp(hub: Hub, whatsapp: str | None = WHATSAPP, **prefs: Any) -> None:
    contact = {"name": "Ana Weber", "phone": PHONE, "email": "ana@example.com", "locale": "de-DE"}
    if whatsapp:
        contact["whatsapp"] = whatsapp
    assert (await hub.request("PUT", "/v1/customers/C-77", json=contact)).status in (200, 201)
    body = {"channels": {"default": ["whatsapp"]}, "fallback": ["whatsapp", "sms", "email"], **prefs}
    assert (await hub.request("PATCH", "/v1/customers/C-77/preferences", json=body)).status == 200


def event(type_: str = "out_for_delivery", **changes: Any) -> dict[str, Any]:
    """An event without inline contacts: the customer's stored ones count."""
    e = make_event(type_, **changes)
    e["customer"] = {"id": "C-77"}
    return e


async def write_whatsapp(hub: Hub, body: str, from_: str = WHATSAPP) -> dict[str, Any]:
    resp = await hub.http.post(hub.sandbox_url + "/whatsapp/inbound", json={"from": from_, "body": body, "to": SENDER})
    assert resp.status == 200, await resp.text()
    result: dict[str, Any] = await resp.json()
    return result


def whatsapps(hub: Hub) -> list[dict[str, Any]]:
    return hub.messages(channel="whatsapp")


# -- the vocabulary ------------------------------------------------------------------------------
def test_whatsapp_is_a_channel_everywhere_a_channel_is_named() -> None:
    assert CHANNELS[-1] == "whatsapp" and "whatsapp" in LEDGER_CHANNELS
    settings = Settings()
    assert settings.policy.per_customer_hour["whatsapp"] > 0  # type: ignore[index]
    assert "whatsapp" not in {c for chans in settings.channels.values() for c in chans}  # only when named


def test_template_lookup_falls_back_to_the_language_and_variables_are_flat() -> None:
    settings = Settings().replace(**{"whatsapp.templates": TEMPLATES, "whatsapp.variables": ["name", "shop", "text"]})
    assert template_for(settings, "out_for_delivery", "de-AT") == OFD_DE
    assert template_for(settings, "out_for_delivery", "fr") is None
    context = {"customer": {"first_name": "Ana"}, "delivery": {"merchant": ""}, "sender": {"name": "Parcelhub"}}
    filled = json.loads(variables(settings, context, "Heute\n  zwischen 10 und 12 Uhr."))
    assert filled == {"1": "Ana", "2": "Parcelhub", "3": "Heute zwischen 10 und 12 Uhr."}


# -- sending -------------------------------------------------------------------------------------
async def test_a_customer_preferring_whatsapp_gets_the_template_outside_the_window_and_text_inside(hub: Hub) -> None:
    await prefer_whatsapp(hub)
    assert (await hub.post_event(event())).status == 202
    await hub.run_worker()
    [first] = whatsapps(hub)
    assert first["to"] == WHATSAPP and first["from"] == SENDER  # bare numbers in the ledger
    assert first["meta"]["content_sid"] == OFD_DE
    assert set(first["meta"]["content_variables"]) == {"1", "2"}
    assert first["meta"]["content_variables"]["1"] == "Ana"
    assert hub.messages(channel="sms") == [] and hub.messages(channel="email") == []
    # The customer writes: the window opens, and the next message is free-form text.
    await write_whatsapp(hub, "Danke!")
    assert (await hub.post_event(event("delivered", occurred_at="2026-11-24T10:30:00+01:00"))).status == 202
    await hub.run_worker()
    second = whatsapps(hub)[-1]
    assert "content_sid" not in second["meta"] and second["text"]
    log = await messages(hub)
    assert log["whatsapp"]["channel"] == "whatsapp"


async def test_no_template_outside_the_window_falls_back_and_never_sends_free_text(hub: Hub) -> None:
    await prefer_whatsapp(hub)
    assert (await hub.post_event(event("arriving_soon"))).status == 202  # no template for it
    await hub.run_worker()
    assert whatsapps(hub) == []
    assert len(hub.messages(channel="sms")) == 1  # the fallback order's next channel
    log = await messages(hub)
    assert log["whatsapp"]["status"] == "failed"
    assert "no approved template for arriving_soon" in log["whatsapp"]["error"]


async def test_whatsapp_goes_to_the_phone_when_no_whatsapp_number_is_given(hub: Hub) -> None:
    await prefer_whatsapp(hub, whatsapp=None)
    await hub.post_event(event())
    await hub.run_worker()
    assert [m["to"] for m in whatsapps(hub)] == [PHONE]


@pytest.mark.settings(**{"whatsapp.from_number": None})
async def test_without_a_whatsapp_sender_the_planner_skips_it_and_falls_back(hub: Hub) -> None:
    await prefer_whatsapp(hub)
    await hub.post_event(event())
    await hub.run_worker()
    assert whatsapps(hub) == [] and len(hub.messages(channel="sms")) == 1
    log = await messages(hub)
    assert log["whatsapp"]["status"] == "skipped" and steps(log["whatsapp"]) == ["skipped"]
    assert log["whatsapp"]["history"][0]["detail"] == "not_configured"


@pytest.mark.sandbox(status_callbacks=True, callback_delay=0.01)
async def test_read_receipts_are_recorded_and_told_upstream(hub: Hub) -> None:
    await prefer_whatsapp(hub)
    await hub.post_event(event())
    await hub.run_worker()

    async def read() -> bool:
        return bool((await messages(hub))["whatsapp"]["status"] == "read")

    await until(read)  # the sandbox reports sent, delivered, then read
    log = await messages(hub)
    assert [s for s in steps(log["whatsapp"]) if s in ("sent", "delivered", "read")] == ["sent", "delivered", "read"]
    await hub.run_worker()
    told = [w["data"]["status"] for w in hub.receiver.of_type("message.status") if w["data"]["channel"] == "whatsapp"]
    assert "read" in told


# -- replies -------------------------------------------------------------------------------------
async def test_a_whatsapp_reply_2_reschedules_upstream_and_is_answered_over_whatsapp(hub: Hub) -> None:
    await prefer_whatsapp(hub)
    await hub.post_event(event(data={"reschedule_slots": FAR_SLOTS}))
    await hub.run_worker()
    assert len(whatsapps(hub)) == 1
    result = await write_whatsapp(hub, "2")
    [answer] = result["replies"]
    assert answer
    reply = [e.to_dict() for e in hub.ledger.entries() if (e.meta or {}).get("direction") == "reply"][-1]
    assert reply["channel"] == "whatsapp" and reply["to"] == WHATSAPP
    await hub.run_worker()
    [requested] = hub.receiver.of_type("delivery.reschedule_requested")
    assert requested["data"]["slot_id"] == "s2" and requested["data"]["channel"] == "whatsapp"
    [told] = hub.receiver.of_type("customer.reply")
    assert told["data"]["channel"] == "whatsapp" and told["data"]["understood_as"] == "reschedule"
    # An SMS "2" from the phone finds no WhatsApp prompt: prompts are kept per channel.
    sms = await hub.text_hub(PHONE, "2")
    await hub.run_worker()
    assert sms["replies"] and len(hub.receiver.of_type("delivery.reschedule_requested")) == 1


async def test_whatsapp_stop_stops_whatsapp_and_not_sms(hub: Hub) -> None:
    await prefer_whatsapp(hub, channels={"default": ["whatsapp", "sms"]})
    await hub.post_event(event())
    await hub.run_worker()
    assert len(whatsapps(hub)) == 1 and len(hub.messages(channel="sms")) == 1
    result = await write_whatsapp(hub, "STOP")
    assert result["replies"]
    r = await redis_of(hub)
    pepper = keys.optout_pepper(hub.settings.secret_key)
    assert await r.exists(keys.whatsapp_optout(pepper, WHATSAPP))
    assert not await r.exists(keys.sms_optout(pepper, WHATSAPP)) and not await r.exists(keys.sms_optout(pepper, PHONE))
    await r.aclose()
    await hub.post_event(event("delivered", occurred_at="2026-11-24T10:30:00+01:00"))
    await hub.run_worker()
    assert len(whatsapps(hub)) == 1  # nothing more on WhatsApp
    assert len(hub.messages(channel="sms")) == 2  # SMS goes on
    # The planner knew from the event's own step (APPLY_EVENT), before any claim.
    listed = await (await hub.request("GET", "/v1/messages?customer_id=C-77", key=ADMIN_KEY)).json()
    skipped = [m for m in listed["messages"] if m["channel"] == "whatsapp" and m["status"] == "skipped"]
    assert [m["history"][-1]["detail"] for m in skipped] == ["whatsapp_stopped"]
    await hub.run_worker()
    [opted_out] = hub.receiver.of_type("contact.opted_out")
    assert opted_out["data"]["channel"] == "whatsapp"
    # START over WhatsApp lifts it.
    await write_whatsapp(hub, "START")
    await hub.post_event(event("delivered", occurred_at="2026-11-24T10:40:00+01:00", delivery__id="D-2"))
    await hub.run_worker()
    assert len(whatsapps(hub)) == 2


async def test_a_held_whatsapp_message_is_not_sent_after_a_whatsapp_stop(hub: Hub) -> None:
    await prefer_whatsapp(hub, quiet_hours={"start": "08:00", "end": "09:00"})  # the test clock: 08:30
    await hub.post_event(event("delivered"))
    await hub.run_worker()
    assert whatsapps(hub) == []
    log = await messages(hub)
    assert log["whatsapp"]["status"] == "deferred"
    await write_whatsapp(hub, "STOP")
    await hub.fast_forward(3600)
    await hub.run_worker()
    assert whatsapps(hub) == []
    log = await messages(hub)
    assert log["whatsapp"]["status"] == "skipped"
    assert "STOP on WhatsApp" in log["whatsapp"]["history"][-1]["detail"]


# -- the sandbox ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"body": "hi"}, "from"),
        ({"from": "12345", "body": "hi"}, "from"),
        ({"from": WHATSAPP}, "body"),
        ({"from": WHATSAPP, "body": "  "}, "body"),
        ({"from": WHATSAPP, "body": "hi", "to": 5}, "to"),
        (["not", "an", "object"], "object"),
    ],
)
async def test_the_sandbox_refuses_bad_whatsapp_input_naming_the_field(hub: Hub, body: Any, field: str) -> None:
    resp = await hub.http.post(hub.sandbox_url + "/whatsapp/inbound", json=body)
    assert resp.status == 400
    assert field in json.dumps(await resp.json())


async def test_the_sandbox_needs_the_hubs_whatsapp_number(hub: Hub) -> None:
    resp = await hub.http.post(hub.sandbox_url + "/whatsapp/inbound", json={"from": WHATSAPP, "body": "hi"})
    assert resp.status == 409
    hub.sandbox.whatsapp_number = SENDER
    resp = await hub.http.post(hub.sandbox_url + "/whatsapp/inbound", json={"from": WHATSAPP, "body": "hi"})
    assert resp.status == 200
    [inbound] = [e.to_dict() for e in hub.ledger.entries() if (e.meta or {}).get("direction") == "inbound"]
    assert inbound["channel"] == "whatsapp" and inbound["from"] == WHATSAPP and inbound["to"] == SENDER


# -- lost answers, erasure -----------------------------------------------------------------------
@pytest.mark.settings(**{**WHATSAPP_ON, **SHORT})
@pytest.mark.parametrize("mode", ["accept-stall", "accept-drop"])
async def test_a_lost_whatsapp_answer_is_reconciled_and_never_sent_twice(hub: Hub, mode: str) -> None:
    await prefer_whatsapp(hub)
    hub.sandbox.faults.set("twilio", mode, count=1)
    await hub.post_event(event())
    await everything_settled(hub)
    assert len(whatsapps(hub)) == 1
    log = await messages(hub)
    assert log["whatsapp"]["status"] in ("accepted", "sent", "delivered", "read")
    assert steps(log["whatsapp"])[:4] == ["sending", "in_doubt", "sending", "accepted"]
    assert log["whatsapp"]["provider_id"] == whatsapps(hub)[0]["provider_id"]


async def test_erasure_removes_the_window_and_the_whatsapp_prompts(hub: Hub) -> None:
    await prefer_whatsapp(hub)
    await hub.post_event(event(data={"reschedule_slots": FAR_SLOTS}))
    await hub.run_worker()
    await write_whatsapp(hub, "hallo")
    r = await redis_of(hub)
    pepper = keys.optout_pepper(hub.settings.secret_key)
    window = keys.whatsapp_window(pepper, WHATSAPP)
    prompts = [k async for k in r.scan_iter(match=f"hub:conv:whatsapp:{WHATSAPP}:*")]
    assert await r.exists(window) and prompts
    assert (await hub.request("DELETE", "/v1/customers/C-77", key=ADMIN_KEY)).status in (200, 204)
    assert not await r.exists(window)
    assert [k async for k in r.scan_iter(match=f"hub:conv:whatsapp:{WHATSAPP}:*")] == []
    await r.aclose()


async def test_a_whatsapp_stop_is_in_the_customers_export(hub: Hub) -> None:
    await prefer_whatsapp(hub)
    await write_whatsapp(hub, "STOP")
    r = await redis_of(hub)
    try:
        exported = await export_customer(r, hub.settings, "C-77")
    finally:
        await r.aclose()
    assert exported["customer"]["whatsapp"] == WHATSAPP
    assert exported["opt_outs"]["whatsapp_stop"]["keyword"] == "STOP"
    assert exported["opt_outs"]["sms_stop"] is None


def test_hub_dev_sends_whatsapp_without_settings(tmp_path: Any) -> None:
    """`hub dev`: a sandbox WhatsApp sender and a template for every milestone and catalog locale."""
    plain = Settings().replace(data_dir=str(tmp_path))
    dev = dev_settings(plain, redis_url="redis://127.0.0.1:1", origin="http://127.0.0.1:1", smtp_port=1)
    assert dev.whatsapp.from_number == DEV_WHATSAPP_NUMBER
    assert set(dev.whatsapp.templates) == set(MILESTONES)
    assert all({"en", "de", "es", "fr"} <= set(by_locale) for by_locale in dev.whatsapp.templates.values())


async def test_the_sandbox_page_shows_the_whatsapp_thread_and_answers_on_whatsapp(hub: Hub) -> None:
    await prefer_whatsapp(hub)
    await hub.post_event(event())
    await hub.run_worker()
    hub.sandbox.whatsapp_number = SENDER
    page = await (await hub.http.get(hub.sandbox_url + "?refresh=0")).text()
    assert 'data-channel="whatsapp"' in page and 'name="channel" value="whatsapp"' in page
    form = {"from": WHATSAPP, "channel": "whatsapp", "body": "HELP"}
    resp = await hub.http.post(hub.sandbox_url + "/ui/reply", data=form, allow_redirects=False)
    assert resp.status == 303
    inbound = [e.to_dict() for e in hub.ledger.entries() if (e.meta or {}).get("direction") == "inbound"]
    assert [(e["channel"], e["from"], e["text"]) for e in inbound] == [("whatsapp", WHATSAPP, "HELP")]
    replies = [e.to_dict() for e in hub.ledger.entries() if (e.meta or {}).get("direction") == "reply"]
    assert replies and replies[-1]["channel"] == "whatsapp"


async def test_answers_over_whatsapp_speak_of_whatsapp(hub: Hub) -> None:
    """STOP over WhatsApp is confirmed for WhatsApp (SMS goes on), not as an SMS unsubscription."""
    await prefer_whatsapp(hub, locale="en")
    await hub.post_event(event(data={"reschedule_slots": FAR_SLOTS}))
    await hub.run_worker()
    [slot] = (await write_whatsapp(hub, "1"))["replies"]
    assert "message you to confirm" in slot
    [stop] = (await write_whatsapp(hub, "STOP"))["replies"]
    assert "WhatsApp" in stop and "SMS" not in stop
    [start] = (await write_whatsapp(hub, "START"))["replies"]
    assert "WhatsApp" in start
    [sms_stop] = (await hub.text_hub(PHONE, "STOP"))["replies"]
    await hub.run_worker()
    assert "SMS" in sms_stop


@pytest.mark.settings(**{"whatsapp.from_number": None})
async def test_without_a_whatsapp_sender_the_fallback_stands_in_beside_the_other_channels(hub: Hub) -> None:
    await prefer_whatsapp(hub, channels={"default": ["whatsapp", "email"]})
    await hub.post_event(event())
    await hub.run_worker()
    assert whatsapps(hub) == []
    assert len(hub.messages(channel="email")) == 1 and [m["to"] for m in hub.messages(channel="sms")] == [PHONE]


# -- a shop's own templates ------------------------------------------------------------------------
SHOP_OFD = "HX" + "a" * 32


async def test_a_shops_own_template_goes_before_the_hubs(hub: Hub) -> None:
    shop = {"name": "Nordlicht Books", "whatsapp_templates": {"out_for_delivery": {"de": SHOP_OFD}}}
    assert (await hub.request("PUT", "/v1/merchants/nordlicht", json=shop)).status == 201
    await prefer_whatsapp(hub)
    assert (await hub.post_event(event(delivery__merchant_id="nordlicht"))).status == 202
    await hub.run_worker()
    [sent] = whatsapps(hub)
    assert sent["meta"]["content_sid"] == SHOP_OFD
    # For a milestone the shop has no template of its own, the hub's applies.
    later = event("delivered", delivery__merchant_id="nordlicht", occurred_at="2026-11-24T10:30:00+01:00")
    assert (await hub.post_event(later)).status == 202
    await hub.run_worker()
    assert whatsapps(hub)[-1]["meta"]["content_sid"] == TEMPLATES["delivered"]["de"]


@pytest.mark.parametrize(
    "templates", [{"out_for_delivery": {"de": "HX123"}}, {"teleported": {"de": SHOP_OFD}}, {"delivered": "HX"}]
)
async def test_a_shops_bad_template_table_is_refused_naming_the_field(hub: Hub, templates: Any) -> None:
    resp = await hub.request("PUT", "/v1/merchants/nordlicht", json={"name": "N", "whatsapp_templates": templates})
    assert resp.status == 422
    assert "whatsapp_templates" in await resp.text()


# -- the tracking page -----------------------------------------------------------------------------
async def _preferences_form(hub: Hub) -> str:
    await prefer_whatsapp(hub, channels={"default": ["sms"]})
    assert (await hub.post_event(event())).status == 202
    await hub.run_worker()
    [sms] = hub.messages(channel="sms")[-1:]
    async with browser() as session:
        status, page = await get_page(session, link_in(sms["text"]))
    assert status == 200
    return page


async def test_the_page_offers_whatsapp_when_the_hub_can_send_it(hub: Hub) -> None:
    page = await _preferences_form(hub)
    assert 'name="opt_out" value="whatsapp"' in page and 'name="opt_out" value="sms"' in page


@pytest.mark.settings(**{"whatsapp.from_number": None})
async def test_the_page_offers_no_whatsapp_without_a_sender(hub: Hub) -> None:
    page = await _preferences_form(hub)
    assert 'value="whatsapp"' not in page and 'name="opt_out" value="sms"' in page


async def test_help_over_whatsapp_speaks_of_whatsapp(hub: Hub) -> None:
    await prefer_whatsapp(hub)
    await hub.post_event(event())
    await hub.run_worker()
    [answer] = (await write_whatsapp(hub, "HELP"))["replies"]
    assert "WhatsApp" in answer and "SMS" not in answer and "STOP" in answer


async def test_hub_sandbox_whatsapp_writes_as_the_customer(hub: Hub, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from hub.cli import _sandbox_sms

    await prefer_whatsapp(hub)
    await hub.post_event(event())
    await hub.run_worker()
    origin = hub.sandbox_url.removesuffix("/sandbox")
    args = argparse.Namespace(sandbox_command="whatsapp", from_=WHATSAPP, body="HELP", to=None, url=origin)
    assert await _sandbox_sms(hub.settings, args) == 0
    assert "WhatsApp" in capsys.readouterr().out
    inbound = [
        e.to_dict()
        for e in hub.sandbox.ledger.entries()
        if (e.to_dict().get("meta") or {}).get("direction") == "inbound"
    ]
    assert [m["channel"] for m in inbound] == ["whatsapp"]
