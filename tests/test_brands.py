"""Shops (merchants): registered through the API or the configuration, and their identity on every
message and page of their deliveries: e-mail From and Reply-To, the SMS sender where allowed,
the name in every text, logo and colour in the HTML e-mail and on the tracking page, the support
contact in HELP answers, and a shop's own wording for one block of one milestone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from hub.config import hash_key
from hub.context import build_context
from hub.merchants import text_colour
from hub.render import Renderer
from tests.conftest import ADMIN_KEY, ROOT, Hub
from tests.events import make_event
from tests.test_lost_answer import SHORT, everything_settled, messages
from tests.test_track import SLOTS, link_in
from tests.test_twoway import answer_of

READ_KEY = "read-only-key-0123456789"

ACME = {
    "name": "Acme Shoes",
    "email_from": "Acme Shoes <shop@acme.example>",
    "reply_to": "help@acme.example",
    "sms_sender": "Acme Shoes",
    "logo_url": "https://cdn.acme.example/logo.png",
    "brand_color": "#C0392B",
    "support_url": "https://acme.example/help",
    "support_phone": "+49 30 1234567",
}
NORDLICHT = {
    "name": "Nordlicht Books",
    "reply_to": "service@nordlicht.example",
    "sms_sender": "+49 151 98765432",
    "logo_url": "/static/brands/nordlicht-books.svg",
    "brand_color": "#0f766e",
    "support_phone": "+49 40 7654321",
}
NORDLICHT_NUMBER = "+4915198765432"


async def register(hub: Hub, merchant_id: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = await hub.request("PUT", f"/v1/merchants/{merchant_id}", json=body)
    assert resp.status in (200, 201), await resp.text()
    answer: dict[str, Any] = await resp.json()
    return answer


def shop_event(type_: str, merchant_id: str | None, n: int, **changes: Any) -> dict[str, Any]:
    """An event of the shop's own delivery ``D-<merchant>-<n>`` without a display name: the name
    in the texts must come from the registered shop."""
    event = make_event(type_, **{"delivery__id": f"D-{merchant_id}-{n}", **changes})  # changes may name another
    event["delivery"].pop("merchant")
    if merchant_id is not None:
        event["delivery"]["merchant_id"] = merchant_id
    return event


# -- the API -----------------------------------------------------------------------------------
async def test_put_get_list_and_delete_a_merchant(hub: Hub) -> None:
    created = await hub.request("PUT", "/v1/merchants/acme", json=ACME)
    assert created.status == 201
    view = await created.json()
    assert view["id"] == "acme" and view["source"] == "api"
    assert view["brand_color"] == "#c0392b" and view["support_phone"] == "+49301234567"
    assert (await hub.request("PUT", "/v1/merchants/acme", json={**ACME, "name": "ACME"})).status == 200
    got = await (await hub.request("GET", "/v1/merchants/acme")).json()
    assert got["name"] == "ACME" and got["email_from"] == "Acme Shoes <shop@acme.example>"
    await register(hub, "nordlicht", NORDLICHT)
    listed = await (await hub.request("GET", "/v1/merchants")).json()
    assert [m["id"] for m in listed["merchants"]] == ["acme", "nordlicht"]
    assert (await hub.request("DELETE", "/v1/merchants/acme")).status == 204
    assert (await hub.request("GET", "/v1/merchants/acme")).status == 404
    assert (await hub.request("DELETE", "/v1/merchants/acme")).status == 404


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"brand_color": "red"}, "brand_color"),
        ({"brand_color": "#12345"}, "brand_color"),
        ({"email_from": "Acme <not an address>"}, "email_from"),
        ({"email_from": "Acme <shop@acme.example>\r\nBcc: x@y.example"}, "email_from"),
        ({"reply_to": "nobody"}, "reply_to"),
        ({"sms_sender": "Acme Shoes Online"}, "sms_sender"),  # 17 characters
        ({"sms_sender": "12345"}, "sms_sender"),  # digits only, no +
        ({"logo_url": "http://cdn.acme.example/logo.png"}, "logo_url"),
        ({"logo_url": "https://cdn.acme.example/a b.png"}, "logo_url"),
        ({"support_url": "javascript:alert(1)"}, "support_url"),
        ({"support_phone": "555"}, "support_phone"),
        ({"name": ""}, "name"),
        ({"fax": "+4930123456"}, "fax"),
    ],
)
async def test_bad_input_is_a_422_naming_the_field(hub: Hub, change: dict[str, str], field: str) -> None:
    resp = await hub.request("PUT", "/v1/merchants/acme", json={**ACME, **change})
    assert resp.status == 422, await resp.text()
    assert set((await resp.json())["error"]["fields"]) == {field}


async def test_bad_ids_and_bodies_are_refused_precisely(hub: Hub) -> None:
    assert (await hub.request("PUT", "/v1/merchants/-acme", json=ACME)).status == 400
    assert (await hub.request("PUT", f"/v1/merchants/{'a' * 65}", json=ACME)).status == 400
    assert (await hub.request("PUT", "/v1/merchants/acme", json=[ACME])).status == 400
    other = await hub.request("PUT", "/v1/merchants/acme", json={**ACME, "id": "other"})
    assert other.status == 422 and "id" in (await other.json())["error"]["fields"]
    missing = await hub.request("PUT", "/v1/merchants/acme", json={})
    assert (await missing.json())["error"]["fields"] == {"name": "Field required"}
    assert (await hub.request("GET", "/v1/merchants/none")).status == 404


@pytest.mark.settings(**{"api.keys": [{"source": "reader", "sha256": hash_key(READ_KEY), "scopes": ["read"]}]})
async def test_writing_needs_the_events_scope_and_reading_the_read_scope(hub: Hub) -> None:
    await register(hub, "acme", ACME)
    assert (await hub.request("PUT", "/v1/merchants/acme", json=ACME, key=READ_KEY)).status == 403
    assert (await hub.request("DELETE", "/v1/merchants/acme", key=READ_KEY)).status == 403
    assert (await hub.request("GET", "/v1/merchants/acme", key=READ_KEY)).status == 200
    assert (await hub.request("GET", "/v1/merchants", key=None)).status == 401


@pytest.mark.settings(**{"brands.merchants": [{"id": "acme", **ACME}]})
async def test_configured_merchants_are_base_entries_the_api_overrides(hub: Hub) -> None:
    configured = await (await hub.request("GET", "/v1/merchants/acme")).json()
    assert configured["source"] == "config" and configured["name"] == "Acme Shoes"
    assert (await register(hub, "acme", {"name": "Acme Outlet"}))["source"] == "api"
    assert (await (await hub.request("GET", "/v1/merchants/acme")).json())["name"] == "Acme Outlet"
    assert (await hub.request("DELETE", "/v1/merchants/acme")).status == 204
    assert (await (await hub.request("GET", "/v1/merchants/acme")).json())["source"] == "config"
    refused = await hub.request("DELETE", "/v1/merchants/acme")
    assert refused.status == 409 and (await refused.json())["error"]["code"] == "configured"


# -- every message and page of a shop's delivery ------------------------------------------------
async def test_two_shops_each_speak_with_their_own_identity(hub: Hub) -> None:
    await register(hub, "acme", ACME)
    await register(hub, "nordlicht", NORDLICHT)
    await hub.post_event(shop_event("out_for_delivery", "acme", 1))
    await hub.post_event(shop_event("out_for_delivery", "nordlicht", 1))
    await hub.run_worker()
    acme_mail = hub.messages(channel="email", to="ana@example.com")
    [acme_mail, nordlicht_mail] = sorted(acme_mail, key=lambda m: "Nordlicht" in (m["text"] or ""))
    assert acme_mail["from"] == "Acme Shoes <shop@acme.example>"
    assert acme_mail["meta"]["headers"]["Reply-To"] == "help@acme.example"
    assert "Acme Shoes" in acme_mail["text"] and "Acme Shoes" in acme_mail["subject"] + acme_mail["text"]
    assert 'src="https://cdn.acme.example/logo.png"' in acme_mail["html"]
    assert "background-color:#c0392b" in acme_mail["html"] and "+49301234567" in acme_mail["html"]
    # A shop without its own From: the hub's, with the shop's Reply-To, logo (on this hub) and colour.
    assert nordlicht_mail["from"] == hub.settings.smtp.from_address
    assert nordlicht_mail["meta"]["headers"]["Reply-To"] == "service@nordlicht.example"
    assert f'src="{hub.base}/static/brands/nordlicht-books.svg"' in nordlicht_mail["html"]
    assert "background-color:#0f766e" in nordlicht_mail["html"]
    sms = {m["text"].split()[0]: m for m in hub.messages(channel="sms")}
    [acme_sms] = [m for m in hub.messages(channel="sms") if "Acme Shoes" in m["text"]]
    [nordlicht_sms] = [m for m in hub.messages(channel="sms") if "Nordlicht Books" in m["text"]]
    assert sms and acme_sms["from"] == "Acme Shoes"  # asks for no answer, and Germany allows one
    assert nordlicht_sms["from"] == NORDLICHT_NUMBER  # a number: every SMS
    assert acme_sms["meta"]["status_callback"] == nordlicht_sms["meta"]["status_callback"]
    assert [m for m in hub.messages(channel="push") if "Acme Shoes" in (m["push_body"] or "")]


async def test_an_sms_that_asks_for_an_answer_comes_from_the_hubs_number(hub: Hub) -> None:
    await register(hub, "acme", ACME)
    await hub.post_event(shop_event("out_for_delivery", "acme", 1, data={"reschedule_slots": SLOTS}))
    await hub.post_event(shop_event("delivered", "acme", 2, occurred_at="2026-11-24T08:20:00+01:00"))
    await hub.run_worker(channels={"out_for_delivery": ["sms"], "delivered": ["sms"]})
    texts = hub.messages(channel="sms")
    assert len(texts) == 2 and all("Acme Shoes" in m["text"] for m in texts)
    assert {m["from"] for m in texts} == {hub.settings.twilio.from_number}


async def test_an_alphanumeric_sender_only_where_the_country_allows_it(hub: Hub) -> None:
    await register(hub, "acme", ACME)
    # The Czech Republic is not in brands.alphanumeric_countries (nor are the US or Canada).
    czech = {"id": "C-88", "name": "Jana Nováková", "phone": "+420 601 123 456", "locale": "cs-CZ"}
    await hub.post_event(shop_event("out_for_delivery", "acme", 1, customer=czech))
    await hub.post_event(shop_event("out_for_delivery", "acme", 2))
    await hub.run_worker()
    by_country = {m["to"][:3]: m["from"] for m in hub.messages(channel="sms")}
    assert by_country == {"+42": hub.settings.twilio.from_number, "+49": "Acme Shoes"}


TILES = "https://tile.openstreetmap.org"  # the map's default tile origin (hub.location)


async def test_the_tracking_page_wears_the_shops_logo_and_colour(hub: Hub) -> None:
    await register(hub, "acme", ACME)
    await register(hub, "nordlicht", NORDLICHT)
    for shop in ("acme", "nordlicht"):
        await hub.post_event(shop_event("out_for_delivery", shop, 1))
    await hub.run_worker()
    links = {
        shop: link_in(next(m["text"] for m in hub.messages(channel="sms") if name in m["text"]))
        for shop, name in (("acme", "Acme Shoes"), ("nordlicht", "Nordlicht Books"))
    }
    async with hub.http.get(links["acme"]) as resp:
        page, csp = await resp.text(), resp.headers["Content-Security-Policy"]
    assert '<img class="logo" src="https://cdn.acme.example/logo.png" alt="Acme Shoes">' in page
    assert 'href="/static/brand/acme.css?v=c0392b"' in page and "Acme Shoes" in page
    img_src = next(d for d in csp.split("; ") if d.startswith("img-src"))
    assert img_src.split()[:2] == ["img-src", "'self'"] and "https://cdn.acme.example" in img_src.split()
    assert "style-src 'self';" in csp
    async with hub.http.get(links["nordlicht"]) as resp:
        page, csp = await resp.text(), resp.headers["Content-Security-Policy"]
    # A logo on the hub itself opens no other image origin (only the map's tiles are there).
    img_src = next(d for d in csp.split("; ") if d.startswith("img-src")).split()
    assert 'src="/static/brands/nordlicht-books.svg"' in page and img_src == ["img-src", "'self'", TILES]
    async with hub.http.get(f"{hub.base}/static/brand/acme.css") as resp:
        assert resp.status == 200 and resp.content_type == "text/css"
        assert "--brand:#c0392b" in await resp.text()
    async with hub.http.get(f"{hub.base}/static/brands/nordlicht-books.svg") as resp:
        assert resp.status == 200  # the demo's logos are the hub's own files: no network needed
    async with hub.http.get(f"{hub.base}/static/brand/unknown.css") as resp:
        assert resp.status == 404


async def test_an_unknown_merchant_id_falls_back_to_the_hubs_identity(hub: Hub) -> None:
    event = make_event("out_for_delivery", delivery__merchant_id="no-such-shop")
    assert (await hub.post_event(event)).status == 202
    await hub.run_worker()
    [sms] = hub.messages(channel="sms")
    [mail] = hub.messages(channel="email")
    assert sms["from"] == hub.settings.twilio.from_number and "Acme Shoes" in sms["text"]
    assert mail["from"] == hub.settings.smtp.from_address and "Reply-To" not in mail["meta"]["headers"]
    assert "background-color:#1d3557" in mail["html"]
    page = await (await hub.http.get(link_in(sms["text"]))).text()
    assert "/static/brand/" not in page and 'class="logo"' not in page


async def test_a_later_event_without_the_id_keeps_the_shop(hub: Hub) -> None:
    await register(hub, "acme", ACME)
    await hub.post_event(shop_event("out_for_delivery", "acme", 1))
    await hub.run_worker()
    later = shop_event("delivery_failed", None, 1, occurred_at="2026-11-24T08:20:00+01:00", delivery__id="D-acme-1")
    await hub.post_event(later)
    await hub.run_worker()
    mails = hub.messages(channel="email")
    assert len(mails) == 2 and all(m["from"] == "Acme Shoes <shop@acme.example>" for m in mails)


async def test_help_names_the_shops_support_contact_also_on_the_shops_number(hub: Hub) -> None:
    await register(hub, "acme", ACME)
    await register(hub, "nordlicht", NORDLICHT)
    await hub.post_event(shop_event("out_for_delivery", "acme", 1))
    await hub.run_worker()
    answer = answer_of(await hub.text_hub("+4915112345678", "HELP"))
    assert "Acme Shoes: +49301234567, https://acme.example/help" in answer
    await hub.post_event(shop_event("out_for_delivery", "nordlicht", 1, occurred_at="2026-11-24T08:10:00+01:00"))
    await hub.run_worker()
    # A reply to the shop's own number reaches the same conversation.
    resp = await hub.http.post(
        hub.sandbox_url + "/sms/inbound", json={"from": "+4915112345678", "to": NORDLICHT_NUMBER, "body": "HELP"}
    )
    assert "Nordlicht Books: +49407654321" in answer_of(await resp.json())
    resp = await hub.http.post(
        hub.sandbox_url + "/sms/inbound", json={"from": "+4915112345678", "to": NORDLICHT_NUMBER, "body": "DOOR"}
    )
    assert (await resp.json())["replies"]
    await hub.run_worker()
    [hook] = hub.receiver.of_type("delivery.instructions_updated")
    assert hook["data"]["delivery_id"] == "D-nordlicht-1" and hook["data"]["kind"] == "leave_at_door"


async def test_one_read_of_the_shop_per_worker_run_at_most(hub: Hub) -> None:
    """The worker reads a shop once and keeps it a few seconds (brands.cache_seconds): ten events
    of one shop cost one read, next to the same ten events without a shop."""
    await register(hub, "acme", ACME)
    redis = aioredis.Redis.from_url(str(hub.settings.redis_url), decode_responses=True)

    async def reads(merchant_id: str | None, tag: str) -> int:
        before = (await redis.info("commandstats")).get("cmdstat_hget", {}).get("calls", 0)
        for n in range(10):
            customer = {"id": f"C-{tag}-{n}", "push_tokens": [f"tok-{tag}-{n}"]}  # no hourly limit in the way
            await hub.post_event(shop_event("in_transit", merchant_id, n, event_id=f"{tag}-{n}", customer=customer))
        await hub.run_worker()
        after = (await redis.info("commandstats")).get("cmdstat_hget", {}).get("calls", 0)
        return int(after) - int(before)

    try:
        plain = await reads(None, "plain")
        shop = await reads("acme", "shop")
    finally:
        await redis.aclose()
    assert len(hub.messages(channel="push")) == 20
    assert shop - plain <= 1


async def test_erasure_leaves_the_shops_alone(hub: Hub) -> None:
    await register(hub, "acme", ACME)
    await hub.post_event(shop_event("out_for_delivery", "acme", 1))
    await hub.run_worker()
    assert (await hub.request("DELETE", "/v1/customers/C-77", key=ADMIN_KEY)).status == 204
    assert (await (await hub.request("GET", "/v1/merchants/acme")).json())["name"] == "Acme Shoes"
    delivery = await (await hub.request("GET", "/v1/deliveries/D-acme-1")).json()
    assert delivery["merchant_id"] == "acme"


# -- a shop's own wording ------------------------------------------------------------------------
@pytest.fixture
def shop_templates(tmp_path: Path) -> Path:
    directory = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", directory)
    own = directory / "shops" / "acme"
    (own / "de").mkdir(parents=True)
    (own / "out_for_delivery.txt.j2").write_text(
        '{% extends "out_for_delivery.txt.j2" %}\n{% block push_title %}Your Acme order is on the road{% endblock %}\n'
    )
    (own / "de" / "out_for_delivery.txt.j2").write_text(
        '{% extends "out_for_delivery.txt.j2" %}\n'
        "{% block sms %}Ihre Acme-Schuhe kommen heute! {{ super() }}{% endblock %}\n"
    )
    return directory


def _context(locale: str) -> dict[str, Any]:
    event = make_event("out_for_delivery")
    return build_context(
        event=event,
        delivery={**event["delivery"], "driver": event["driver"]},
        customer_name="Ana Weber",
        locale=locale,
        timezone="Europe/Berlin",
        sender={"name": "Parcelhub"},
        link="https://hub.example/t/x",
        unsubscribe_url=None,
    )


def test_a_shop_template_changes_only_the_blocks_it_overrides(shop_templates: Path) -> None:
    renderer = Renderer(shop_templates)
    standard = renderer.render("out_for_delivery", "de", _context("de"))
    own = renderer.render("out_for_delivery", "de", _context("de"), shop="acme")
    assert own.sms == "Ihre Acme-Schuhe kommen heute! " + standard.sms  # its language's file, with super()
    assert (own.push_title, own.push_body, own.email_text, own.email_html) == (
        standard.push_title,
        standard.push_body,
        standard.email_text,
        standard.email_html,
    )
    english = renderer.render("out_for_delivery", "en", _context("en"), shop="acme")
    plain = renderer.render("out_for_delivery", "en", _context("en"))
    assert english.push_title == "Your Acme order is on the road" != plain.push_title
    assert (english.sms, english.push_body, english.email_subject) == (plain.sms, plain.push_body, plain.email_subject)
    other = renderer.render("out_for_delivery", "en", _context("en"), shop="nordlicht")
    assert other == plain


async def test_the_demo_runs_two_shops_with_different_brands(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    from hub.demo import SHOPS, run_demo
    from tests.conftest import API_KEY
    from tests.test_demo import _DemoClock

    monkeypatch.setattr("hub.demo.datetime", _DemoClock)  # the demo's route dated at the policy clock
    assert await run_demo(hub.base, API_KEY, pause=0) == 20
    await hub.run_worker()
    listed = await (await hub.request("GET", "/v1/merchants")).json()
    assert [m["id"] for m in listed["merchants"]] == list(SHOPS)
    mails = hub.messages(channel="email")
    # Ana's first parcel comes from Acme Shoes, Lucía's (and Ana's second) from Nordlicht Books.
    ana = [m for m in mails if m["to"] == "ana.weber@example.com" and m["from"] == SHOPS["acme-shoes"]["email_from"]]
    lucia = [m for m in mails if m["to"] == "lucia@example.es"]
    assert ana and all("#c0392b" in m["html"] for m in ana)
    assert lucia and all(m["from"] == SHOPS["nordlicht-books"]["email_from"] and "#0f766e" in m["html"] for m in lucia)
    senders = {m["from"] for m in hub.messages(channel="sms")}
    assert {"Acme Shoes", "Nordlicht", hub.settings.twilio.from_number} <= senders


@pytest.mark.settings(**{"twilio.messaging_service_sid": "MG" + "0" * 32})
async def test_with_a_messaging_service_the_shops_sender_goes_beside_it(hub: Hub) -> None:
    await register(hub, "acme", ACME)
    await hub.post_event(shop_event("out_for_delivery", "acme", 1))
    await hub.post_event(make_event("out_for_delivery", delivery__id="D-2", customer__id="C-2", event_id="plain"))
    await hub.run_worker()
    shop, plain = sorted(hub.messages(channel="sms"), key=lambda m: m["from"] is None)
    assert shop["from"] == "Acme Shoes" and shop["meta"]["messaging_service_sid"] == "MG" + "0" * 32
    assert plain["from"] is None and plain["meta"]["messaging_service_sid"] == "MG" + "0" * 32


@pytest.mark.settings(**SHORT)
async def test_a_lost_answer_is_looked_up_under_the_shops_sender(hub: Hub) -> None:
    await register(hub, "acme", ACME)
    hub.sandbox.faults.set("twilio", "accept-drop", count=1)
    await hub.post_event(shop_event("out_for_delivery", "acme", 1))
    await everything_settled(hub)
    [sms] = hub.messages(channel="sms")  # Twilio had it: found under "Acme Shoes", not sent again
    assert sms["from"] == "Acme Shoes"
    log = await messages(hub, "D-acme-1")
    assert log["sms"]["status"] == "accepted" and log["sms"]["provider_id"] == sms["provider_id"]


async def test_stop_to_the_shops_number_stops_the_hubs_sms(hub: Hub) -> None:
    await register(hub, "nordlicht", NORDLICHT)
    await hub.post_event(shop_event("out_for_delivery", "nordlicht", 1))
    await hub.run_worker()
    resp = await hub.http.post(
        hub.sandbox_url + "/sms/inbound", json={"from": "+4915112345678", "to": NORDLICHT_NUMBER, "body": "STOP"}
    )
    assert resp.status == 200
    await hub.post_event(make_event("arriving_soon", occurred_at="2026-11-24T08:20:00+01:00", data={"minutes": 5}))
    await hub.run_worker()
    assert len(hub.messages(channel="sms")) == 1  # the other delivery's SMS from the hub's number: not sent
    log = await messages(hub)
    assert log["sms"]["status"] == "skipped" and log["sms"]["history"][-1]["detail"] == "sms_stopped"


def test_the_header_text_is_black_or_white_whichever_reads_better() -> None:
    assert text_colour("#c0392b") == text_colour("#0f766e") == "#ffffff"
    assert text_colour("#ffd60a") == text_colour("#f2f4f7") == "#111111"


def test_a_worker_compiles_the_shops_templates_when_it_starts(shop_templates: Path) -> None:
    plain = Renderer(ROOT / "templates").precompile()
    assert Renderer(shop_templates).precompile() == plain + len(Renderer(shop_templates).locales) + 1


async def test_any_json_body_on_put_merchant_gets_a_precise_answer(hub: Hub) -> None:
    """A real shop with values replaced by any JSON value, or any JSON document: never a 5xx, and a
    422 always names the fields."""
    from hypothesis import given

    from tests.test_fuzz import JSON_VALUES, Bridge, bounded, in_thread, mutated

    async def put(body: Any) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"}
        async with hub.http.put(f"{hub.base}/v1/merchants/acme", data=json.dumps(body), headers=headers) as resp:
            return resp.status, await resp.json()

    def run(bridge: Bridge) -> None:
        @bounded(150)
        @given(mutated([ACME, NORDLICHT]) | JSON_VALUES)
        def posted(body: Any) -> None:
            status, answer = bridge(put(body))
            assert status in (200, 201, 400, 422), (status, answer)
            if status == 422:
                assert answer["error"]["fields"]

        posted()

    await in_thread(run)
