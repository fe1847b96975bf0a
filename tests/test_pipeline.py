"""Full path: event in through the HTTP API, messages out through the real provider clients."""

from __future__ import annotations

from tests.conftest import Hub
from tests.events import make_event


async def test_event_sends_sms_push_and_email_through_the_providers(hub: Hub) -> None:
    resp = await hub.post_event(make_event("out_for_delivery", event_id="evt-ofd-1"))
    assert resp.status == 202, await resp.text()
    assert await resp.json() == {"event_id": "evt-ofd-1", "status": "accepted"}
    await hub.run_worker()

    sms = hub.messages(channel="sms")
    push = hub.messages(channel="push")
    mail = hub.messages(channel="email")
    assert [m["to"] for m in sms] == ["+4915112345678"]
    assert [m["to"] for m in push] == ["fcm-token-1"]
    assert [m["to"] for m in mail] == ["ana@example.com"]
    assert "Acme Shoes" in sms[0]["text"]
    assert push[0]["meta"]["collapse_key"] == "delivery-D-1001"
    assert mail[0]["html"] and mail[0]["text"]
    assert 'lang="de"' in mail[0]["html"]
    assert mail[0]["meta"]["list_unsubscribe"].startswith("<http://127.0.0.1:")


async def test_email_in_the_customers_language_keeps_non_ascii_text_intact(hub: Hub) -> None:
    event = make_event(
        "shipped", customer__locale="es-MX", customer__name="Lucía García", delivery__merchant="Peña & Söhne"
    )
    assert (await hub.post_event(event)).status == 202
    await hub.run_worker()
    [mail] = hub.messages(channel="email")
    assert mail["subject"] == "Su pedido de Peña & Söhne ya está en camino"
    assert "Lucía" in mail["text"]
    assert 'lang="es"' in mail["html"] and "Peña &amp; Söhne" in mail["html"]
