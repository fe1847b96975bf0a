"""The send gate: every path that can put a message on a provider (held for quiet hours, retried,
escalated from push, replayed from the dead letters) stops at the same check when the customer
texted STOP, opted out of the channel, was erased or changed the number meanwhile."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from tests.conftest import ADMIN_KEY, Hub
from tests.events import make_event

PHONE = "+4915112345678"
NEW_PHONE = "+4915199990000"
pytestmark = pytest.mark.settings(
    **{
        "worker.max_tries": 2,
        "worker.retry_base_delay": 60.0,
        "policy.quiet_spread_minutes": 0,
        "policy.escalate_after_minutes": 10,
        "policy.escalate_milestones": ["delivery_failed"],
    }
)


async def sms_log(hub: Hub) -> list[dict[str, Any]]:
    resp = await hub.request("GET", "/v1/messages?customer_id=C-77", key=ADMIN_KEY)
    return [m for m in (await resp.json())["messages"] if m["channel"] == "sms"]


async def waiting_sms(hub: Hub, path: str) -> None:
    """An SMS for C-77 that waits on ``path``, none sent yet."""
    channels = ["push"] if path == "escalated" else ["sms"]
    await hub.request("PUT", "/v1/customers/C-77", json={"phone": PHONE, "push_tokens": ["tok-1"]})
    await hub.request("PATCH", "/v1/customers/C-77/preferences", json={"channels": {"default": channels}})
    event = make_event("delivery_failed" if path == "escalated" else "shipped", customer={"id": "C-77"})
    if path == "held":
        hub.now = datetime.fromisoformat("2026-11-24T23:30:00+01:00").timestamp()
        event["occurred_at"] = "2026-11-24T23:29:00+01:00"
    if path in ("retried", "replayed"):
        hub.sandbox.faults.set("twilio", "503", count=1 if path == "retried" else 2)
    await hub.post_event(event)
    await hub.run_worker()
    if path == "replayed":
        await hub.fast_forward(3600)
        await hub.run_worker()
        [dead] = await sms_log(hub)
        assert dead["status"] == "dead"
    else:
        [waiting] = await sms_log(hub) if path != "escalated" else [{"status": "deferred"}]
        assert waiting["status"] in ("deferred", "transient")
    assert hub.messages(channel="sms") == []


async def block(hub: Hub, how: str) -> None:
    if how == "stop":
        await hub.text_hub(PHONE, "STOP")
    elif how == "erase":
        assert (await hub.request("DELETE", "/v1/customers/C-77", key=ADMIN_KEY)).status == 204
    elif how == "opt_out":
        await hub.request("PATCH", "/v1/customers/C-77/preferences", json={"opt_out": ["sms"]})
    else:
        await hub.request("PUT", "/v1/customers/C-77", json={"phone": NEW_PHONE, "push_tokens": ["tok-1"]})


async def let_it_fall_due(hub: Hub, path: str) -> None:
    """The provider heals, a dead letter is replayed, and the clock passes quiet hours, the retry
    and the escalation delay: whatever waits on ``path`` runs."""
    hub.sandbox.faults.clear()
    if path == "replayed":
        resp = await hub.request("POST", "/v1/messages/replay", key=ADMIN_KEY, json={"since": "2026-01-01T00:00:00Z"})
        assert resp.status == 202, await resp.text()
    await hub.fast_forward(10 * 3600 if path == "held" else 3600)
    await hub.run_worker()


@pytest.mark.parametrize("how", ["stop", "erase", "opt_out", "new_number"])
@pytest.mark.parametrize("path", ["held", "retried", "escalated", "replayed"])
async def test_no_waiting_sms_passes_the_gate_after_the_customer_says_no(hub: Hub, path: str, how: str) -> None:
    await waiting_sms(hub, path)
    await block(hub, how)
    await let_it_fall_due(hub, path)
    assert hub.messages(channel="sms") == []
    if how != "erase":  # erasure itself marks waiting messages skipped and drops their jobs
        statuses = [m["status"] for m in await sms_log(hub)]
        assert statuses == ["skipped"], statuses


@pytest.mark.parametrize("path", ["held", "retried", "escalated", "replayed"])
async def test_without_a_no_every_waiting_path_sends_once(hub: Hub, path: str) -> None:
    """The control: the same paths, nobody says no, the SMS goes out once."""
    await waiting_sms(hub, path)
    await let_it_fall_due(hub, path)
    assert [m["to"] for m in hub.messages(channel="sms")] == [PHONE]


# -- WhatsApp: the same gate, with a STOP over WhatsApp ---------------------------------------------
WA_SENDER = "+14155238886"
WA_SETTINGS = {
    "worker.max_tries": 2,
    "worker.retry_base_delay": 60.0,
    "policy.quiet_spread_minutes": 0,
    "whatsapp.from_number": WA_SENDER,
    "whatsapp.templates": {"shipped": {"en": "HX" + "1" * 32, "de": "HX" + "2" * 32}},
}


async def whatsapp_log(hub: Hub) -> list[dict[str, Any]]:
    resp = await hub.request("GET", "/v1/messages?customer_id=C-77", key=ADMIN_KEY)
    return [m for m in (await resp.json())["messages"] if m["channel"] == "whatsapp"]


async def waiting_whatsapp(hub: Hub, path: str) -> None:
    """A WhatsApp message for C-77 that waits on ``path`` (held, retried, replayed), none sent."""
    await hub.request("PUT", "/v1/customers/C-77", json={"phone": PHONE})
    await hub.request("PATCH", "/v1/customers/C-77/preferences", json={"channels": {"default": ["whatsapp"]}})
    event = make_event("shipped", customer={"id": "C-77"})
    if path == "held":
        hub.now = datetime.fromisoformat("2026-11-24T23:30:00+01:00").timestamp()
        event["occurred_at"] = "2026-11-24T23:29:00+01:00"
    else:
        hub.sandbox.faults.set("twilio", "503", count=1 if path == "retried" else 2)
    await hub.post_event(event)
    await hub.run_worker()
    if path == "replayed":
        await hub.fast_forward(3600)
        await hub.run_worker()
    [waiting] = await whatsapp_log(hub)
    assert waiting["status"] == {"held": "deferred", "retried": "transient", "replayed": "dead"}[path]
    assert hub.messages(channel="whatsapp") == []


async def say_no_on_whatsapp(hub: Hub, how: str) -> None:
    if how == "stop":
        resp = await hub.http.post(
            hub.sandbox_url + "/whatsapp/inbound", json={"from": PHONE, "body": "STOP", "to": WA_SENDER}
        )
        assert resp.status == 200
    elif how == "erase":
        assert (await hub.request("DELETE", "/v1/customers/C-77", key=ADMIN_KEY)).status == 204
    elif how == "opt_out":
        await hub.request("PATCH", "/v1/customers/C-77/preferences", json={"opt_out": ["whatsapp"]})
    else:
        await hub.request("PUT", "/v1/customers/C-77", json={"phone": PHONE, "whatsapp": NEW_PHONE})


@pytest.mark.settings(**WA_SETTINGS)
@pytest.mark.parametrize("how", ["stop", "erase", "opt_out", "new_number"])
@pytest.mark.parametrize("path", ["held", "retried", "replayed"])
async def test_no_waiting_whatsapp_passes_the_gate_after_the_customer_says_no(hub: Hub, path: str, how: str) -> None:
    await waiting_whatsapp(hub, path)
    await say_no_on_whatsapp(hub, how)
    await let_it_fall_due(hub, path)
    assert hub.messages(channel="whatsapp") == []
    if how != "erase":
        assert [m["status"] for m in await whatsapp_log(hub)] == ["skipped"]


@pytest.mark.settings(**WA_SETTINGS)
@pytest.mark.parametrize("path", ["held", "retried", "replayed"])
async def test_an_sms_stop_leaves_every_waiting_whatsapp_path_to_send_once(hub: Hub, path: str) -> None:
    """The control, and STOP per channel: an SMS STOP does not stop WhatsApp."""
    await waiting_whatsapp(hub, path)
    await hub.text_hub(PHONE, "STOP")
    await let_it_fall_due(hub, path)
    assert [m["to"] for m in hub.messages(channel="whatsapp")] == [PHONE]


@pytest.mark.settings(**WA_SETTINGS)
async def test_a_fallback_skips_whatsapp_after_a_whatsapp_stop(hub: Hub) -> None:
    hub.sandbox.smtp.bouncing_addresses.add("ana@example.com")
    await hub.request("PUT", "/v1/customers/C-77", json={"phone": PHONE, "email": "ana@example.com"})
    prefs = {"channels": {"default": ["email"]}, "fallback": ["email", "whatsapp", "sms"]}
    await hub.request("PATCH", "/v1/customers/C-77/preferences", json=prefs)
    await say_no_on_whatsapp(hub, "stop")
    await hub.post_event(make_event("shipped", customer={"id": "C-77"}))
    await hub.run_worker()
    assert hub.messages(channel="whatsapp") == []
    assert [m["to"] for m in hub.messages(channel="sms")] == [PHONE]  # the bounce fell back past WhatsApp
