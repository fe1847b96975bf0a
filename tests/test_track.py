"""The tracking page over HTTP: the link in every message, what the page shows, its forms, and
every way a token can be wrong."""

from __future__ import annotations

import asyncio
import collections
import http.client
import itertools
import json
import re
import urllib.parse
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.track import CSRF_COOKIE
from tests.conftest import ADMIN_KEY, Hub
from tests.events import make_event

# The page offers only slots that have not started by the wall clock: tomorrow's.
_TOMORROW = (datetime.now(ZoneInfo("Europe/Berlin")) + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
SLOTS = [
    {"id": "s1", "start": _TOMORROW.replace(hour=8).isoformat(), "end": _TOMORROW.replace(hour=12).isoformat()},
    {"id": "s2", "start": _TOMORROW.replace(hour=13).isoformat(), "end": _TOMORROW.replace(hour=17).isoformat()},
]
LINK = re.compile(r"https?://\S+/t/([A-Za-z0-9]{12})")


def link_in(text: str | None) -> str:
    found = LINK.search(text or "")
    assert found, f"no tracking link in {text!r}"
    return found.group(0)


async def tracked(hub: Hub, event: dict[str, Any] | None = None) -> str:
    """Post an event, run the worker, return the tracking link from the SMS."""
    await hub.post_event(event or make_event("out_for_delivery", data={"reschedule_slots": SLOTS}))
    await hub.run_worker()
    [sms] = hub.messages(channel="sms")[-1:]
    return link_in(sms["text"])


async def get_page(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url) as resp:
        return resp.status, await resp.text()


def browser() -> aiohttp.ClientSession:
    """A client that keeps cookies for 127.0.0.1, as browsers do (aiohttp's default jar refuses IPs)."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found
    return found.group(1)


async def test_every_channel_carries_the_same_link_and_the_page_shows_the_delivery(hub: Hub) -> None:
    url = await tracked(hub)
    [mail] = hub.messages(channel="email")
    assert link_in(mail["text"]) == url and url in (mail["html"] or "")
    async with browser() as s:
        status, page = await get_page(s, url)
    assert status == 200
    assert '<html lang="de">' in page  # the customer's language
    assert "In Zustellung" in page and "Acme Shoes" in page and "LM123456789" in page
    assert "Di., 24. Nov. 10:00-12:00" in page  # the ETA window in the customer's time zone
    assert 'value="s1"' in page and 'value="s2"' in page and " 8-12" in page and " 13-17" in page  # the slots
    assert "Ana Weber" not in page and "+4915112345678" not in page  # no more personal data than needed


async def test_security_headers_and_no_external_assets(hub: Hub) -> None:
    url = await tracked(hub)
    async with browser() as s, s.get(url) as resp:
        page = await resp.text()
        assert resp.headers["Referrer-Policy"] == "no-referrer"
        assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
        assert resp.headers["Cache-Control"] == "no-store"
        assert "SameSite=Strict" in resp.headers["Set-Cookie"] and "HttpOnly" in resp.headers["Set-Cookie"]
    assets = re.findall(r'(?:src|href)="([^"#]+)"', page)
    assert assets and all(a.startswith(("/", "tel:", "sms:")) for a in assets), assets
    async with browser() as s:
        for asset in ("/static/track.css", "/static/track.js"):
            async with s.get(hub.base + asset) as resp:
                assert resp.status == 200


@pytest.mark.parametrize(
    ("mangle", "status"),
    [
        (lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"), 403),  # tampered tag
        (lambda t: t[:5] + ("A" if t[5] != "A" else "B") + t[6:], 403),  # another id, old tag
        (lambda t: t[:-2], 403),  # truncated
        (lambda t: t + "<script>", 403),  # not even a token's shape
    ],
)
async def test_a_tampered_token_gets_a_clear_403_page_never_a_trace(hub: Hub, mangle: Any, status: int) -> None:
    url = await tracked(hub)
    token = url.rsplit("/", 1)[1]
    async with browser() as s:
        code, page = await get_page(s, f"{hub.base}/t/{mangle(token)}")
    assert code == status
    assert "This link is not valid" in page and "Traceback" not in page and "<script>" not in page


async def test_an_erased_customer_s_link_is_revoked_with_410(hub: Hub) -> None:
    url = await tracked(hub)
    resp = await hub.request("DELETE", "/v1/customers/C-77", key=ADMIN_KEY)
    assert resp.status == 204
    async with browser() as s:
        code, page = await get_page(s, url)
    assert code == 410 and "This link has expired" in page


async def test_forms_need_the_csrf_token_of_this_browser(hub: Hub) -> None:
    url = await tracked(hub)
    async with browser() as s:
        _, page = await get_page(s, url)
        resp = await s.post(url + "/reschedule", data={"slot": "s1", "csrf": "0" * 64}, allow_redirects=False)
        assert resp.status == 403
        assert "Ihre Sitzung ist abgelaufen" in await resp.text()
    async with browser() as other:  # a page's token with another browser's cookie
        resp = await other.post(url + "/reschedule", data={"slot": "s1", "csrf": csrf_of(page)}, allow_redirects=False)
        assert resp.status == 403
    assert hub.receiver.of_type("delivery.reschedule_requested") == []


async def test_rescheduling_on_the_page_is_the_same_request_as_by_sms(hub: Hub) -> None:
    url = await tracked(hub)
    async with browser() as s:
        _, page = await get_page(s, url)
        bad = await s.post(url + "/reschedule", data={"slot": "s9", "csrf": csrf_of(page)}, allow_redirects=False)
        assert bad.status == 422 and "einen der angebotenen Termine" in await bad.text()
        ok = await s.post(url + "/reschedule", data={"slot": "s2", "csrf": csrf_of(page)}, allow_redirects=False)
        assert ok.status == 303 and ok.headers["Location"].endswith("?done=reschedule")
        _, after = await get_page(s, url + "?done=reschedule")
    assert "Ihre Anfrage für einen neuen Termin wurde gesendet" in after
    await hub.run_worker()
    [hook] = hub.receiver.of_type("delivery.reschedule_requested")
    assert hook["data"]["slot_id"] == "s2" and hook["data"]["channel"] == "web"
    delivery = await (await hub.request("GET", "/v1/deliveries/D-1001")).json()
    assert delivery["reschedule_requested"]["slot_id"] == "s2"


async def test_instructions_are_validated_in_the_page_language_then_stored_and_sent_upstream(hub: Hub) -> None:
    url = await tracked(hub)
    async with browser() as s:
        _, page = await get_page(s, url)
        token = csrf_of(page)
        resp = await s.post(url + "/instructions", data={"kind": "neighbour", "note": "", "csrf": token})
        assert resp.status == 422 and "Namen des Nachbarn" in await resp.text()
        resp = await s.post(url + "/instructions", data={"kind": "teleport", "csrf": token})
        assert resp.status == 422 and "Bitte wählen Sie einen Hinweis" in await resp.text()
        resp = await s.post(url + "/instructions", data={"kind": "note", "note": "x" * 501, "csrf": token})
        assert resp.status == 422 and "höchstens 500 Zeichen" in await resp.text()
        resp = await s.post(
            url + "/instructions",
            data={"kind": "neighbour", "note": "Frau Vogel, Nr. 12 <b>", "always": "1", "csrf": token},
            allow_redirects=False,
        )
        assert resp.status == 303
        _, after = await get_page(s, url)
    assert "Frau Vogel, Nr. 12 &lt;b&gt;" in after  # shown again, escaped
    await hub.run_worker()
    [hook] = hub.receiver.of_type("delivery.instructions_updated")
    assert hook["data"]["kind"] == "neighbour" and hook["data"]["channel"] == "web"
    customer = await (await hub.request("GET", "/v1/customers/C-77", key=ADMIN_KEY)).json()
    assert customer["preferences"]["instructions"]["kind"] == "neighbour"  # "always"


async def test_preferences_changed_on_the_page_govern_the_next_event(hub: Hub) -> None:
    url = await tracked(hub)
    async with browser() as s:
        _, page = await get_page(s, url)
        token = csrf_of(page)
        form = aiohttp.FormData()
        for group in ("progress", "problems", "done"):
            form.add_field(group, "email")
        for name, value in (("quiet_start", "22:00"), ("quiet_end", "25:00"), ("language", "fr"), ("csrf", token)):
            form.add_field(name, value)
        resp = await s.post(url + "/preferences", data=form)
        assert resp.status == 422 and "Bitte eine Uhrzeit wie 21:00" in await resp.text()
        form = aiohttp.FormData()
        for group in ("progress", "problems", "done"):
            form.add_field(group, "email")
        for name, value in (("quiet_start", "22:00"), ("quiet_end", "06:30"), ("language", "fr"), ("csrf", token)):
            form.add_field(name, value)
        form.add_field("opt_out", "sms")
        resp = await s.post(url + "/preferences", data=form, allow_redirects=False)
        assert resp.status == 303
        _, after = await get_page(s, url + "?done=preferences")
    assert '<html lang="fr">' in after and "Vos préférences ont été enregistrées" in after
    customer = await (await hub.request("GET", "/v1/customers/C-77", key=ADMIN_KEY)).json()
    prefs = customer["preferences"]
    assert prefs["quiet_hours"] == {"start": "22:00", "end": "06:30"} and prefs["opt_out"] == ["sms"]
    before = len(hub.messages())
    await hub.post_event(make_event("arriving_soon", occurred_at="2026-11-24T08:20:00+01:00", data={"minutes": 5}))
    await hub.run_worker()
    assert [m["channel"] for m in hub.messages()[before:]] == ["email"]  # only e-mail now, in French
    assert "Votre colis" in (hub.messages()[-1]["subject"] or "") or hub.messages()[-1]["subject"]


async def test_rating_after_delivery_once(hub: Hub) -> None:
    url = await tracked(hub)
    pod = {"recipient": "Ana", "place": "front door", "signature": True, "photo_url": "https://pod.example/1.jpg"}
    await hub.post_event(make_event("delivered", occurred_at="2026-11-24T11:00:00+01:00", data={"pod": pod}))
    await hub.run_worker()
    async with browser() as s:
        _, page = await get_page(s, url)
        assert "Zugestellt" in page and "Angenommen von Ana" in page and "Abgelegt: front door" in page
        assert 'id="reschedule"' not in page and 'id="instructions"' not in page  # nothing left to change
        bad = await s.post(url + "/feedback", data={"rating": "7", "csrf": csrf_of(page)})
        assert bad.status == 422 and "von 1 bis 5" in await bad.text()
        ok = await s.post(
            url + "/feedback",
            data={"rating": "5", "comment": "Sehr nett", "csrf": csrf_of(page)},
            allow_redirects=False,
        )
        assert ok.status == 303
        _, after = await get_page(s, url)
    assert "Vielen Dank für Ihre Bewertung" in after and 'name="rating"' not in after
    await hub.run_worker()
    [hook] = hub.receiver.of_type("feedback.received")
    assert hook["data"]["rating"] == 5 and hook["data"]["channel"] == "web" and hook["data"]["driver_id"] == "DR-5"


async def test_the_live_part_reports_a_new_version_when_the_delivery_moves(hub: Hub) -> None:
    url = await tracked(hub)
    async with browser() as s:
        async with s.get(url + "/live") as resp:
            first = await resp.json()
        await hub.post_event(make_event("arriving_soon", occurred_at="2026-11-24T08:20:00+01:00", data={"minutes": 5}))
        await hub.run_worker()
        async with s.get(url + "/live") as resp:
            second = await resp.json()
    assert first["version"] != second["version"]
    assert "Gleich da" in second["html"] and "Gleich da" not in first["html"]


async def test_a_push_opens_the_same_page(hub: Hub) -> None:
    url = await tracked(hub)
    [push] = hub.messages(channel="push")
    assert push["push_data"]["url"] == url


async def test_a_link_past_its_time_is_gone_with_410(hub: Hub) -> None:
    import redis.asyncio as aioredis

    url = await tracked(hub)
    r = aioredis.Redis.from_url(str(hub.settings.redis_url), decode_responses=True)
    try:
        [key] = [k async for k in r.scan_iter("hub:link:*")]
        await r.delete(key)  # what its TTL (tracking.link_days after the last message) does
    finally:
        await r.aclose()
    async with browser() as s:
        code, page = await get_page(s, url)
    assert code == 410 and "This link has expired" in page


@pytest.mark.settings(**{"relay.pool": ["+4915700000100", "+4915700000101"]})
async def test_while_the_relay_is_open_the_page_offers_the_driver_on_the_proxy_number(hub: Hub) -> None:
    url = await tracked(hub)
    async with browser() as s:
        _, page = await get_page(s, url)
    proxy = re.search(r'href="tel:(\+\d+)"', page)
    assert proxy and proxy.group(1) in ("+4915700000100", "+4915700000101")
    assert "Sam anrufen" in page and f'href="sms:{proxy.group(1)}"' in page
    assert "+4915700000001" not in page  # never the driver's own number
    await hub.post_event(make_event("delivered", occurred_at="2026-11-24T11:00:00+01:00"))
    await hub.run_worker()
    async with browser() as s:
        _, page = await get_page(s, url)
    assert "tel:" not in page  # delivered: no more calls


# -- proof of delivery: every part of it, and odd stored ones ---------------------------------------
POD = {"recipient": "Ana", "place": "front door", "signature": True, "photo_url": "https://pod.example/1.jpg"}
POD_SHOWN = {
    "recipient": "Angenommen von Ana",
    "place": "Abgelegt: front door",
    "signature": "Bei Zustellung unterschrieben",
    "photo_url": "https://pod.example/1.jpg",
}
POD_PARTS = [dict(c) for n in range(len(POD) + 1) for c in itertools.combinations(POD.items(), n)]
POD_ODD = [{"signature": False}, {"signature": "signature-0042.png"}, {"recipient": "", "place": " "}]


async def delivered_with(hub: Hub, pod: dict[str, Any] | None) -> str:
    url = await tracked(hub)
    await hub.post_event(
        make_event("delivered", occurred_at="2026-11-24T11:00:00+01:00", data={"pod": pod} if pod is not None else {})
    )
    await hub.run_worker()
    return url


async def assert_page_and_forms_answer(url: str) -> str:
    """The page, its live part and every form answer without a server error; returns the page."""
    async with browser() as s:
        status, page = await get_page(s, url)
        assert status == 200, page
        async with s.get(url + "/live") as resp:
            assert resp.status == 200
        forms = {
            "feedback": {"rating": "9"},
            "instructions": {"kind": "note", "note": "x"},
            "reschedule": {"slot": "s1"},
            "preferences": {"progress": "sms", "problems": "sms", "done": "sms"},
        }
        for action, form in forms.items():
            resp = await s.post(f"{url}/{action}", data={**form, "csrf": csrf_of(page)}, allow_redirects=False)
            assert resp.status < 500, (action, await resp.text())
    return page


@pytest.mark.parametrize("pod", POD_PARTS + POD_ODD, ids=lambda p: "+".join(f"{k}={v!r}" for k, v in p.items()))
async def test_any_part_of_a_proof_of_delivery_renders_and_the_forms_still_answer(
    hub: Hub, pod: dict[str, Any]
) -> None:
    url = await delivered_with(hub, pod)
    page = await assert_page_and_forms_answer(url)
    assert "Zugestellt" in page
    given = {name: bool(str(pod.get(name) or "").strip()) for name in POD}  # a signature image's name: signed
    for name, shown in POD_SHOWN.items():
        assert (shown in page) == given[name], name
    assert ('class="pod"' in page) == any(given.values())  # nothing to show: no empty section


@pytest.mark.parametrize(
    "stored",
    ["signed", ["Ana"], {"recipient": 42, "place": None}, {"photo_url": "javascript:alert(1)"}, {"photo_url": 7}],
    ids=["text", "list", "odd-types", "script-url", "number-url"],
)
async def test_an_odd_stored_proof_of_delivery_renders_and_never_links_a_script(hub: Hub, stored: Any) -> None:
    """Timeline entries outlive the code that wrote them: the page reads them defensively."""
    import redis.asyncio as aioredis

    url = await delivered_with(hub, None)
    r = aioredis.Redis.from_url(str(hub.settings.redis_url), decode_responses=True)
    try:
        entry = {"event_id": "evt-odd", "type": "delivered", "occurred_at": "2026-11-24T11:05:00+01:00", "pod": stored}
        await r.zadd("hub:timeline:D-1001", {json.dumps(entry): 1_795_514_700_000})
    finally:
        await r.aclose()
    page = await assert_page_and_forms_answer(url)
    assert "javascript:" not in page


# -- forms: idempotent resubmits, ratings only after delivery -----------------------------------------
async def test_resubmitting_the_same_answer_sends_no_second_webhook_a_changed_one_does(hub: Hub) -> None:
    url = await tracked(hub)
    async with browser() as s:
        _, page = await get_page(s, url)
        token = csrf_of(page)

        async def post(action: str, **form: str) -> None:
            resp = await s.post(f"{url}/{action}", data={**form, "csrf": token}, allow_redirects=False)
            assert resp.status == 303, await resp.text()

        for slot in ("s1", "s1", "s2", "s2", "s1"):
            await post("reschedule", slot=slot)
        for kind, note in (("note", "Hof"), ("note", "Hof"), ("note", "Garage"), ("note", "Hof"), ("note", "Hof")):
            await post("instructions", kind=kind, note=note)
        await post("instructions", kind="note", note="Hof", always="1")  # now also for the future: a change
        same = {"kind": "safe_place", "note": "Garage"}
        await asyncio.gather(post("instructions", **same), post("instructions", **same))  # a double click
    await hub.run_worker()
    # Counted, not ordered: webhooks created in the same millisecond may arrive in either order.
    slots = collections.Counter(h["data"]["slot_id"] for h in hub.receiver.of_type("delivery.reschedule_requested"))
    assert slots == {"s1": 2, "s2": 1}  # s1, s2, then s1 again: a change back is a change
    sent = collections.Counter(
        (h["data"]["kind"], h["data"]["note"], h["data"]["always"])
        for h in hub.receiver.of_type("delivery.instructions_updated")
    )
    assert sent == {
        ("note", "Hof", False): 2,
        ("note", "Garage", False): 1,
        ("note", "Hof", True): 1,
        ("safe_place", "Garage", False): 1,
    }


async def test_a_rating_resubmitted_is_sent_once_and_a_new_rating_again(hub: Hub) -> None:
    url = await delivered_with(hub, {"recipient": "Ana"})
    async with browser() as s:
        _, page = await get_page(s, url)
        for rating, comment in (("5", "Top"), ("5", "Top"), ("4", "Top"), ("4", "Top")):
            resp = await s.post(
                url + "/feedback",
                data={"rating": rating, "comment": comment, "csrf": csrf_of(page)},
                allow_redirects=False,
            )
            assert resp.status == 303
    await hub.run_worker()
    assert sorted(h["data"]["rating"] for h in hub.receiver.of_type("feedback.received")) == [4, 5]


async def test_a_rating_before_delivery_is_refused_with_a_message(hub: Hub) -> None:
    url = await tracked(hub)
    async with browser() as s:
        _, page = await get_page(s, url)
        resp = await s.post(url + "/feedback", data={"rating": "5", "csrf": csrf_of(page)}, allow_redirects=False)
        assert resp.status == 422
        assert "sobald Ihr Paket zugestellt ist" in await resp.text()
        _, after = await get_page(s, url)
    assert "Vielen Dank für Ihre Bewertung" not in after
    await hub.run_worker()
    assert hub.receiver.of_type("feedback.received") == []


# -- any input to /t/: an answer, never a server error ---------------------------------------------
COOKIE = "0123456789abcdef" * 2  # a browser's CSRF cookie (32 characters), fixed for the test
ODD_VALUES = [
    "", " ", "0", "-1", "5", "1e3", "٣", "9" * 5000, "none", "25:00", "xx", "\x00", "x" * 600, "😀", "<script>",
    "%FF", "null", "\ud800", "email", "sms", "fr", "s1",
]  # fmt: skip
ODD = st.one_of(st.sampled_from(ODD_VALUES), st.text(max_size=40))


def mostly(valid: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Three times in four one of the ``valid`` values, else an odd one."""
    return st.one_of(valid, valid, valid, ODD)


# Each form's own fields, with values from the valid ones and odd ones.
FORMS: dict[str, dict[str, st.SearchStrategy[str]]] = {
    "reschedule": {"slot": mostly(st.sampled_from(["s1", "s2", "s9"]))},
    "instructions": {
        "kind": mostly(st.sampled_from(["leave_at_door", "neighbour", "safe_place", "access_code", "note", "none"])),
        "note": mostly(st.sampled_from(["Frau Vogel", "x" * 501, "x" * 200_000])),
        "always": mostly(st.just("1")),
    },
    "feedback": {"rating": mostly(st.sampled_from(["1", "3", "5", "6"])), "comment": ODD},
    "preferences": {
        "progress": mostly(st.sampled_from(["sms", "email", "push"])),
        "problems": mostly(st.sampled_from(["sms", "email", "push"])),
        "done": mostly(st.sampled_from(["sms", "email", "push"])),
        "opt_out": mostly(st.sampled_from(["sms", "email", "push"])),
        "quiet_start": mostly(st.sampled_from(["22:00", "21:30"])),
        "quiet_end": mostly(st.sampled_from(["06:30", "07:00"])),
        "language": mostly(st.sampled_from(["en", "de", "es", "fr"])),
    },
}
FORM_TYPES = [
    "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=utf-8",
    "application/x-www-form-urlencoded; charset=latin-1",
    "application/x-www-form-urlencoded; charset=utf-16",
    "application/x-www-form-urlencoded; charset=no-such-charset",
]
OTHER_TYPES = ["multipart/form-data; boundary=b0undary", "multipart/form-data", "text/plain", "application/json", ""]
ROUTES = ["", "/live", "/reschedule", "/instructions", "/feedback", "/preferences", "/unknown"]
COOKIES = [
    f"{CSRF_COOKIE}={COOKIE}",
    "",
    f"{CSRF_COOKIE}=short",
    f"{CSRF_COOKIE}=%FF%FE",
    f"{CSRF_COOKIE}={'é' * 16}",  # sent as Latin-1 bytes: not UTF-8
    f"{CSRF_COOKIE}={'é' * 32}",
    f"{CSRF_COOKIE}={'z' * 32}",
]


@st.composite
def hostile_requests(draw: st.DrawFn, tokens: dict[str, str], csrfs: dict[str, str]) -> dict[str, Any]:
    """Mostly a form post as this browser would send it, with odd values and odd extras; else
    anything: odd tokens, routes, methods, content types, cookies and bodies."""
    as_browser = draw(st.integers(0, 9)) < 6
    if as_browser:
        which = draw(st.sampled_from(sorted(tokens)))
        token, csrf, method, cookie = tokens[which], csrfs[which], "POST", COOKIES[0]
        action = draw(st.sampled_from(sorted(FORMS)))
        route, content_type = f"/{action}", draw(st.sampled_from(FORM_TYPES[:3]))  # charsets that decode
        fields = [
            (name, value)
            for name, values in FORMS[action].items()
            for value in draw(
                st.lists(values, max_size=3 if name in ("progress", "problems", "done", "opt_out") else 1)
            )
        ]
        with_csrf = draw(st.integers(0, 9)) < 8
    else:
        which = draw(st.sampled_from([*sorted(tokens), "odd"]))
        if which == "odd":
            raw_token = draw(st.binary(max_size=24) | st.text(max_size=24).map(lambda t: t.encode()))
            token, csrf = (
                urllib.parse.quote_from_bytes(raw_token, safe="") or "x",
                draw(st.sampled_from(sorted(csrfs.values()))),
            )
        else:
            token, csrf = tokens[which], csrfs[which]
        route, method = draw(st.sampled_from(ROUTES)), draw(st.sampled_from(["GET", "POST"]))
        content_type, cookie = draw(st.sampled_from(FORM_TYPES + OTHER_TYPES)), draw(st.sampled_from(COOKIES))
        fields, with_csrf = [], draw(st.booleans())
    extra = st.tuples(st.text(max_size=8) | st.sampled_from(["csrf", "slot", "rating"]), ODD)
    fields += draw(st.lists(extra, max_size=2 if as_browser else 4))
    if with_csrf:
        fields.insert(draw(st.integers(0, len(fields))), ("csrf", csrf))
    tail = b""  # bytes after the form: not UTF-8, or past the size limit
    if draw(st.integers(0, 9)) < (2 if as_browser else 6):
        tail = draw(
            st.binary(min_size=1, max_size=32) | st.sampled_from([b"&\xff\xfe=\x80", b"&x=" + b"y" * 1_100_000])
        )
    if content_type.startswith("multipart"):
        body = b"".join(
            f'--b0undary\r\nContent-Disposition: form-data; name="{n}"; filename="f"\r\n\r\n{v}\r\n'.encode(
                "utf-8", "surrogatepass"
            )
            for n, v in fields
        )
        body += tail + b"--b0undary--\r\n"
    else:
        body = urllib.parse.urlencode(fields, encoding="utf-8", errors="surrogatepass").encode() + tail
    headers = {"Content-Type": content_type} if content_type else {}
    if cookie:
        headers["Cookie"] = cookie
    query = draw(st.sampled_from(["", "?done=feedback", "?done=%FF", "?done=" + "x" * 2000]))
    return {
        "method": method,
        "route": route,
        "path": f"/t/{token}{route}{query}",
        "body": body if method == "POST" else None,
        "headers": headers,
    }


async def test_no_input_to_the_tracking_routes_gets_a_server_error(hub: Hub) -> None:
    """Random tokens, routes, form bodies (with and without this browser's CSRF token), charsets,
    non-UTF-8 and oversized bodies, odd cookies: every answer is below 500."""
    delivered = await delivered_with(hub, {"photo_url": "https://pod.example/2.jpg"})
    second = make_event(
        "out_for_delivery",
        delivery__id="D-2002",
        customer__id="C-88",
        customer__phone="+4915112345699",
        customer__email="bo@example.com",
        customer__push_tokens=["fcm-token-2"],
        data={"reschedule_slots": SLOTS},
    )
    await hub.post_event(second)
    await hub.run_worker()
    urls = {"delivered": delivered, "open": link_in(hub.messages(channel="sms", to="+4915112345699")[-1]["text"])}
    tokens = {name: url.rsplit("/", 1)[1] for name, url in urls.items()}
    csrfs = {}
    async with aiohttp.ClientSession(cookies={CSRF_COOKIE: COOKIE}) as s:
        for name, url in urls.items():
            csrfs[name] = csrf_of((await get_page(s, url))[1])
    port = int(hub.base.rsplit(":", 1)[1])
    answers: collections.Counter[int] = collections.Counter()

    @settings(
        max_examples=300,
        deadline=None,
        derandomize=True,  # the same requests every run
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )
    @given(hostile_requests(tokens, csrfs))
    def probe(request: dict[str, Any]) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            connection.request(request["method"], request["path"], body=request["body"], headers=request["headers"])
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        assert response.status < 500, (request["method"], request["path"][:80], response.status, body[:300])
        answers[response.status] += 1

    await asyncio.to_thread(probe)  # the hub answers on this loop while the probe waits in a thread
    # Not a vacuous run: forms were taken (303), refused for their values (422) and for their CSRF
    # token (403), and bodies that are no form were refused (400, 413, 415).
    assert {303, 403, 422, 400, 413, 415} <= set(answers), answers
