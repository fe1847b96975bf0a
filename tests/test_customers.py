"""Customers and preferences decide who gets what; erasure removes personal data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from hub.clock import explicit_stamp
from tests.conftest import ADMIN_KEY, Hub
from tests.events import make_event

CONTACT = {
    "name": "Ana Weber",
    "phone": "+49 151 12345678",
    "email": "ana@example.com",
    "push_tokens": ["tok-a"],
    "locale": "de-DE",
    "timezone": "Europe/Berlin",
}


def bare_event(type_: str = "out_for_delivery", **changes: object) -> dict:
    """An event that names the customer but carries no contact data."""
    return make_event(type_, customer={"id": "C-77"}, **changes)


async def test_put_then_get_masks_contacts_unless_an_admin_asks(hub: Hub) -> None:
    resp = await hub.request("PUT", "/v1/customers/C-77", json=CONTACT)
    assert resp.status == 201
    again = await hub.request("PUT", "/v1/customers/C-77", json=CONTACT)
    assert again.status == 200
    masked = await (await hub.request("GET", "/v1/customers/C-77")).json()
    assert masked["phone"] == "+49*******5678"
    assert masked["email"] == "a***@example.com"
    assert "tok-a" not in str(masked)
    plain = await (await hub.request("GET", "/v1/customers/C-77?reveal=true", key=ADMIN_KEY)).json()
    assert plain["phone"] == "+4915112345678" and plain["email"] == "ana@example.com"
    not_admin = await (await hub.request("GET", "/v1/customers/C-77?reveal=true")).json()
    assert not_admin["phone"] == "+49*******5678"


async def test_put_validates_contacts(hub: Hub) -> None:
    resp = await hub.request("PUT", "/v1/customers/C-1", json={"phone": "555", "timezone": "Nowhere/City"})
    assert resp.status == 422
    fields = (await resp.json())["error"]["fields"]
    assert set(fields) == {"phone", "timezone"}


async def test_put_rejects_unknown_fields(hub: Hub) -> None:
    resp = await hub.request("PUT", "/v1/customers/C-1", json={"fax": "+4930123456"})
    assert resp.status == 422
    assert "fax" in (await resp.json())["error"]["fields"]


async def test_preferences_change_which_channels_fire(hub: Hub) -> None:
    await hub.request("PUT", "/v1/customers/C-77", json=CONTACT)
    resp = await hub.request(
        "PATCH", "/v1/customers/C-77/preferences", json={"channels": {"default": ["email"], "delivered": ["sms"]}}
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["preferences"]["channels"]["default"] == ["email"]
    await hub.post_event(bare_event("out_for_delivery"))
    await hub.post_event(bare_event("delivered", occurred_at="2026-11-24T11:00:00+01:00"))
    await hub.run_worker()
    assert [m["channel"] for m in hub.messages()] in (["email", "sms"], ["sms", "email"])


async def test_opt_out_skips_the_channel_and_logs_why(hub: Hub) -> None:
    await hub.request("PUT", "/v1/customers/C-77", json=CONTACT)
    await hub.request("PATCH", "/v1/customers/C-77/preferences", json={"opt_out": ["sms"]})
    await hub.post_event(bare_event("out_for_delivery"))
    await hub.run_worker()
    assert {m["channel"] for m in hub.messages()} == {"push", "email"}
    log = (await (await hub.request("GET", "/v1/messages?customer_id=C-77")).json())["messages"]
    skipped = [m for m in log if m["status"] == "skipped"]
    assert [(m["channel"], m["history"][0]["detail"]) for m in skipped] == [("sms", "opted_out")]


async def test_fallback_channel_used_when_none_of_the_milestone_channels_reach(hub: Hub) -> None:
    await hub.request("PUT", "/v1/customers/C-77", json={"email": "ana@example.com"})
    await hub.post_event(bare_event("arriving_soon", data={"minutes": 10}))  # sms + push by default
    await hub.run_worker()
    assert [m["channel"] for m in hub.messages()] == ["email"]


async def test_invalid_preferences_are_422_with_fields(hub: Hub) -> None:
    await hub.request("PUT", "/v1/customers/C-77", json=CONTACT)
    resp = await hub.request(
        "PATCH",
        "/v1/customers/C-77/preferences",
        json={"channels": {"teleport": ["sms"]}, "quiet_hours": {"start": "25:00", "end": "8"}, "fallback": ["pigeon"]},
    )
    assert resp.status == 422
    fields = (await resp.json())["error"]["fields"]
    assert {"channels", "quiet_hours.start", "quiet_hours.end"} <= set(fields)
    assert any(k.startswith("fallback") for k in fields)


async def test_preferences_of_an_unknown_customer_are_404(hub: Hub) -> None:
    resp = await hub.request("PATCH", "/v1/customers/C-404/preferences", json={"opt_out": ["sms"]})
    assert resp.status == 404


async def test_erased_customer_gets_nothing_until_contacts_are_given_again(hub: Hub) -> None:
    await hub.post_event(make_event("shipped"))
    await hub.run_worker()
    sent_before = len(hub.messages())
    assert sent_before > 0
    assert (await hub.request("DELETE", "/v1/customers/C-77", key=ADMIN_KEY)).status == 204
    record = await (await hub.request("GET", "/v1/customers/C-77?reveal=1", key=ADMIN_KEY)).json()
    assert record["erased"] is True and record["phone"] is None and record["email"] is None
    log = await (await hub.request("GET", "/v1/messages?customer_id=C-77&reveal=1", key=ADMIN_KEY)).json()
    assert all(not m.get("to") for m in log["messages"])  # addresses scrubbed from the log too

    await hub.post_event(bare_event("out_for_delivery", occurred_at="2026-11-24T09:00:00+01:00"))
    await hub.run_worker()
    assert len(hub.messages()) == sent_before

    await hub.post_event(
        make_event(
            "arriving_soon", occurred_at="2026-11-24T09:30:00+01:00", customer={"id": "C-77", "phone": "+4915112345678"}
        )
    )
    await hub.run_worker()
    assert [m["channel"] for m in hub.messages()[sent_before:]] == ["sms"]


async def test_unsubscribe_link_opts_out_of_email(hub: Hub) -> None:
    await hub.post_event(make_event("shipped"))
    await hub.run_worker()
    [mail] = hub.messages(channel="email")
    url = mail["meta"]["list_unsubscribe"].strip("<>")
    page = await hub.http.get(url)
    assert page.status == 200 and "<form" in await page.text()
    done = await hub.http.post(url, data={"List-Unsubscribe": "One-Click"})
    assert done.status == 200
    customer = await (await hub.request("GET", "/v1/customers/C-77")).json()
    assert customer["preferences"]["opt_out"] == ["email"]
    tampered = await hub.http.post(url[:-3] + "abc")
    assert tampered.status == 404


async def test_erasure_scrubs_the_customers_deliveries_too(hub: Hub) -> None:
    pod = {"recipient": "Ana Weber", "place": "behind the gate", "photo_url": "https://pod.example/1.jpg"}
    await hub.post_event(make_event("delivered", delivery__address="12 Harbour Street", data={"pod": pod}))
    await hub.run_worker()
    assert (await hub.request("DELETE", "/v1/customers/C-77", key=ADMIN_KEY)).status == 204
    delivery = await (await hub.request("GET", "/v1/deliveries/D-1001")).json()
    assert "address" not in delivery
    assert [e["type"] for e in delivery["timeline"]] == ["delivered"]
    assert "Ana" not in str(delivery) and "gate" not in str(delivery)


async def test_a_retried_old_event_does_not_bring_back_a_replaced_phone(hub: Hub) -> None:
    hub.sandbox.faults.set("twilio", "500", count=1)
    await hub.post_event(make_event("arriving_soon", data={"minutes": 10}))  # carries the old phone
    await hub.request("PUT", "/v1/customers/C-77", json={"phone": "+4915199990000"})  # changed meanwhile
    await hub.run_worker()
    record = await (await hub.request("GET", "/v1/customers/C-77?reveal=1", key=ADMIN_KEY)).json()
    assert record["phone"] == "+4915199990000"


@settings(max_examples=300)
@given(st.datetimes(max_value=datetime(9000, 1, 1), timezones=st.just(UTC)), st.integers(min_value=1, max_value=10**9))
def test_an_explicit_contact_write_wins_a_same_millisecond_tie_and_loses_to_later_events(
    moment: datetime, later_ms: int
) -> None:
    # APPLY_EVENT skips an event's contact data when the stored contact_at sorts after the event's
    # receipt time. A PUT, an import or an erasure in the same millisecond as the event's receipt
    # must win (a test that posted then PUT at once failed when both fell in one millisecond),
    # and an event received later must still apply.
    received = moment.isoformat(timespec="milliseconds")
    later = (moment + timedelta(milliseconds=later_ms)).isoformat(timespec="milliseconds")
    assert received < explicit_stamp(received) < later
