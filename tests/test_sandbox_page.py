"""The sandbox page shows every phone and inbox and lets a person reply as a phone."""

from __future__ import annotations

import pytest

from tests.conftest import Hub
from tests.events import make_event


async def test_sandbox_page_lists_phones_and_inboxes_and_replies_as_a_phone(hub: Hub) -> None:
    hub.sandbox.sms_number = hub.settings.twilio.from_number
    slots = [{"id": "s1", "start": "2099-11-25T09:00:00+01:00", "end": "2099-11-25T12:00:00+01:00"}]
    await hub.post_event(
        make_event("out_for_delivery", delivery__merchant="<b>Evil</b>", data={"reschedule_slots": slots})
    )
    await hub.run_worker()
    page = await hub.http.get(hub.sandbox_url)
    html = await page.text()
    assert page.status == 200
    assert "+4915112345678" in html and "ana@example.com" in html and "fcm-token-1" in html
    assert "<b>Evil</b>" not in html and "&lt;b&gt;Evil" in html
    sent = await hub.http.post(
        hub.sandbox_url + "/ui/reply", data={"from": "+4915112345678", "body": "1"}, allow_redirects=False
    )
    assert sent.status == 303
    html = await (await hub.http.get(hub.sandbox_url)).text()
    assert "customer wrote" in html and "hub answered" in html


@pytest.mark.settings(**{"relay.pool": ["+4915700000100", "+4915700000101"]})
async def test_sandbox_page_calls_a_proxy_number_from_a_phone_and_says_what_rang(hub: Hub) -> None:
    hub.sandbox.proxy_numbers = tuple(hub.settings.relay.pool)
    await hub.post_event(make_event("out_for_delivery"))
    await hub.run_worker()
    [sms] = hub.messages(channel="sms")
    [proxy] = [p for p in hub.sandbox.proxy_numbers if p in sms["text"]]
    html = await (await hub.http.get(hub.sandbox_url + "?refresh=0")).text()
    assert f"Call the proxy number {proxy}" in html
    assert '<meta http-equiv="refresh"' not in html
    called = await hub.http.post(
        hub.sandbox_url + "/ui/call", data={"from": "+4915112345678", "to": proxy}, allow_redirects=False
    )
    assert called.status == 303
    html = await (await hub.http.get(hub.sandbox_url)).text()
    assert f"Last call: {proxy} would ring +4915700000001, showing" in html
