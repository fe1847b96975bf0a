"""The operators' dashboard (hub.dashboard) through HTTP against the real hub and Redis: sign-in
with the API's own key check and rate limit, the session cookie and its end, CSRF on every form,
the CSP on every answer, the page empty and with figures; and hub.charts' SVG, parsed as XML,
carrying the numbers it was given."""

from __future__ import annotations

import contextlib
import re
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from hub import charts, keys
from hub.api import create_app
from hub.apikeys import KeyRing
from hub.appkeys import DASHBOARD_CLOCK
from hub.config import Settings, hash_key
from hub.dashboard import HEADERS, PRE_COOKIE, SESSION_COOKIE
from hub.dashboard_view import RANGES, axis, figures, rating_figures
from tests.conftest import ADMIN_KEY, API_KEY, ROOT, Hub, reserve_port
from tests.events import make_event

SVG = "{http://www.w3.org/2000/svg}"
CSP = HEADERS["Content-Security-Policy"]


class Operator:
    """A browser's worth of state: its own cookie jar (cookies for 127.0.0.1 too)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def get(self, path: str = "/dashboard") -> tuple[aiohttp.ClientResponse, str]:
        resp = await self.http.get(self.base + path, allow_redirects=False)
        return resp, await resp.text()

    async def post(self, path: str, data: dict[str, str]) -> tuple[aiohttp.ClientResponse, str]:
        resp = await self.http.post(self.base + path, data=data, allow_redirects=False)
        return resp, await resp.text()

    async def sign_in(self, key: str) -> tuple[aiohttp.ClientResponse, str]:
        _, page = await self.get()
        return await self.post("/dashboard/sign-in", {"key": key, "csrf": csrf_of(page)})

    def session_id(self) -> str | None:
        found = [c.value for c in self.http.cookie_jar if c.key == SESSION_COOKIE]
        return found[0] if found else None


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]{64})"', page)
    assert match, page
    return match.group(1)


@pytest.fixture
async def operator(hub: Hub) -> AsyncIterator[Operator]:
    o = Operator(hub.base)
    try:
        yield o
    finally:
        await o.http.close()


async def signed_in(operator: Operator) -> str:
    """Signs in with the admin key; the dashboard page."""
    resp, _ = await operator.sign_in(ADMIN_KEY)
    assert resp.status == 303 and resp.headers["Location"] == "/dashboard"
    resp, page = await operator.get()
    assert resp.status == 200 and "Sign out" in page
    return page


def svgs(page: str) -> list[ET.Element]:
    return [ET.fromstring(s) for s in re.findall(r"<svg .*?</svg>", page, flags=re.S)]


# -- sign-in -------------------------------------------------------------------------------------


async def test_without_a_session_the_dashboard_is_the_sign_in_page(hub: Hub, operator: Operator) -> None:
    resp, page = await operator.get()
    assert resp.status == 200 and 'action="/dashboard/sign-in"' in page and "Sign out" not in page
    assert resp.headers["Content-Security-Policy"] == CSP
    assert "<script" not in page and "style=" not in page


async def test_the_admin_key_signs_in_and_the_cookie_holds_a_session_not_the_key(hub: Hub, operator: Operator) -> None:
    resp, _ = await operator.sign_in(ADMIN_KEY)
    assert resp.status == 303
    cookie = next(v for v in resp.headers.getall("Set-Cookie") if v.startswith(SESSION_COOKIE + "="))
    flags = [part.strip().lower() for part in cookie.split(";")]
    assert "httponly" in flags and "samesite=strict" in flags and "path=/dashboard" in flags
    assert "secure" not in flags  # public_url is http here (the https case below)
    assert ADMIN_KEY not in " ".join(resp.headers.getall("Set-Cookie"))
    session_id = operator.session_id()
    assert session_id and ADMIN_KEY not in session_id
    r = aioredis.Redis.from_url(str(hub.settings.redis_url), decode_responses=True)
    try:
        [stored] = [k async for k in r.scan_iter("hub:dash:session:*")]
        assert session_id not in stored  # kept under its digest only
        record = await r.hgetall(stored)
        assert record["source"] == "admin" and record["key"] == hash_key(ADMIN_KEY)
        assert ADMIN_KEY not in str(record)
        assert 0 < await r.ttl(stored) <= int(hub.settings.dashboard.session_hours * 3600)
    finally:
        await r.aclose()
    resp, page = await operator.get()
    assert resp.status == 200 and "Signed in as admin" in page


@pytest.mark.settings(**{"api.auth_failures_per_minute": 2})
async def test_wrong_and_non_admin_keys_are_refused_and_counted_like_the_api(hub: Hub, operator: Operator) -> None:
    resp, page = await operator.sign_in(API_KEY)  # a valid key without the admin scope
    assert resp.status == 403 and "admin" in page and operator.session_id() is None
    assert resp.headers["Content-Security-Policy"] == CSP
    for _ in range(2):
        resp, page = await operator.sign_in("not-a-key-at-all-000000")
        assert resp.status == 401 and "unknown or revoked API key" in page
    resp, page = await operator.sign_in("not-a-key-at-all-000000")
    assert resp.status == 429 and int(resp.headers["Retry-After"]) > 0
    assert resp.headers["Content-Security-Policy"] == CSP
    # The same counters as the API's: this client's next wrong key there is refused too.
    api = await hub.request("GET", "/v1/messages", key="another-wrong-key-0000")
    assert api.status == 429
    # ...and a valid key is never refused.
    resp, _ = await operator.sign_in(ADMIN_KEY)
    assert resp.status == 303 and operator.session_id()


async def test_sign_in_without_its_csrf_token_is_refused(hub: Hub, operator: Operator) -> None:
    await operator.get()
    resp, page = await operator.post("/dashboard/sign-in", {"key": ADMIN_KEY})
    assert resp.status == 403 and "CSRF" in page and operator.session_id() is None
    fresh = Operator(hub.base)  # a form token from another browser's sign-in page
    try:
        _, other = await fresh.get()
        resp, _ = await operator.post("/dashboard/sign-in", {"key": ADMIN_KEY, "csrf": csrf_of(other)})
        assert resp.status == 403 and operator.session_id() is None
    finally:
        await fresh.http.close()


@contextlib.asynccontextmanager
async def another_api(
    settings: Settings, clock: Callable[[], float] | None = None, https: bool = False
) -> AsyncIterator[str]:
    """A second API on the same Redis (what the hub fixture's cannot be: its dashboard's clock set,
    or an https public URL); its base URL."""
    sock = reserve_port()
    port = sock.getsockname()[1]
    public_url = f"https://localhost:{port}" if https else f"http://127.0.0.1:{port}"

    def set_clock(app: web.Application) -> None:
        if clock is not None:
            app[DASHBOARD_CLOCK] = clock

    runner = web.AppRunner(create_app(settings.replace(public_url=public_url), extra_setup=set_clock))
    await runner.setup()
    await web.SockSite(runner, sock).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_secure_cookie_when_the_public_url_is_https(hub: Hub) -> None:
    # A browser keeps Secure cookies off plain http: this test carries the sign-in cookie itself.
    async with (
        another_api(hub.settings, https=True) as base,
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http,
    ):
        resp = await http.get(base + "/dashboard")
        pre = resp.cookies[PRE_COOKIE]
        assert pre["secure"] and pre["httponly"] and pre["samesite"] == "Strict"
        data = {"key": ADMIN_KEY, "csrf": csrf_of(await resp.text())}
        resp = await http.post(
            base + "/dashboard/sign-in",
            data=data,
            headers={"Cookie": f"{PRE_COOKIE}={pre.value}"},
            allow_redirects=False,
        )
        assert resp.status == 303
        session = resp.cookies[SESSION_COOKIE]
        assert session["secure"] and session["httponly"] and session["path"] == "/dashboard"


async def test_the_ranges_end_at_the_dashboards_clock(hub: Hub) -> None:
    async with another_api(hub.settings, clock=hub.clock) as base:
        operator = Operator(base)
        try:
            await signed_in(operator)
            _, page = await operator.get("/dashboard?range=30d")
        finally:
            await operator.http.close()
    assert "figures as of 2026-11-24 07:30 UTC" in page  # the tests' policy clock, 08:30 in Berlin


# -- the session ---------------------------------------------------------------------------------


async def test_a_session_that_ended_in_redis_shows_the_sign_in_page_again(hub: Hub, operator: Operator) -> None:
    await signed_in(operator)
    r = aioredis.Redis.from_url(str(hub.settings.redis_url), decode_responses=True)
    try:
        [stored] = [k async for k in r.scan_iter("hub:dash:session:*")]
        await r.delete(stored)  # what its TTL does after dashboard.session_hours
    finally:
        await r.aclose()
    resp, page = await operator.get()
    assert resp.status == 200 and 'action="/dashboard/sign-in"' in page and "Sign out" not in page


async def test_a_revoked_key_ends_its_sessions_at_the_next_request(hub: Hub, operator: Operator) -> None:
    r = aioredis.Redis.from_url(str(hub.settings.redis_url), decode_responses=True)
    try:
        created = await KeyRing(r).create("ops", ("admin",))
        resp, _ = await operator.sign_in(created.secret)
        assert resp.status == 303
        assert "Signed in as ops" in (await operator.get())[1]
        await KeyRing(r).revoke(created.key.id)
        resp, page = await operator.get()
        assert 'action="/dashboard/sign-in"' in page and "Signed in as" not in page
        assert [k async for k in r.scan_iter("hub:dash:session:*")] == []
    finally:
        await r.aclose()


async def test_sign_out_ends_the_session(hub: Hub, operator: Operator) -> None:
    page = await signed_in(operator)
    resp, _ = await operator.post("/dashboard/sign-out", {"csrf": csrf_of(page)})
    assert resp.status == 303 and resp.headers["Content-Security-Policy"] == CSP
    _, page = await operator.get()
    assert 'action="/dashboard/sign-in"' in page


# -- CSRF ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "", "0" * 64, "x"])
async def test_a_form_without_the_sessions_csrf_token_is_refused_and_changes_nothing(
    hub: Hub, operator: Operator, token: str | None
) -> None:
    await signed_in(operator)
    data = {} if token is None else {"csrf": token}
    resp, page = await operator.post("/dashboard/sign-out", data)
    assert resp.status == 403 and "CSRF" in page and resp.headers["Content-Security-Policy"] == CSP
    resp, page = await operator.post("/dashboard/handled", {**data, "delivery_id": "D-1001"})
    assert resp.status == 403
    resp, page = await operator.get()
    assert "Sign out" in page  # still signed in: the refused sign-out did nothing


async def test_another_sessions_token_is_refused(hub: Hub, operator: Operator) -> None:
    other = Operator(hub.base)
    try:
        theirs = csrf_of(await signed_in(other))
        await signed_in(operator)
        resp, _ = await operator.post("/dashboard/sign-out", {"csrf": theirs})
        assert resp.status == 403
    finally:
        await other.http.close()


async def test_a_form_posted_without_a_session_is_refused(hub: Hub, operator: Operator) -> None:
    resp, page = await operator.post("/dashboard/handled", {"csrf": "0" * 64, "delivery_id": "D-1"})
    assert resp.status == 403 and "not signed in" in page


# -- headers and bad input -----------------------------------------------------------------------


async def test_every_dashboard_answer_carries_the_strict_csp(hub: Hub, operator: Operator) -> None:
    answers = [(await operator.get())[0]]
    page = await signed_in(operator)
    answers.append((await operator.get())[0])
    answers.append((await operator.get("/dashboard?range=7y"))[0])
    answers.append((await operator.get("/dashboard/nothing-here"))[0])
    answers.append((await operator.get("/dashboard/sign-out"))[0])  # 405
    answers.append((await operator.post("/dashboard/handled", {"csrf": "nope"}))[0])
    resp = await operator.http.post(hub.base + "/dashboard/handled", json={"csrf": csrf_of(page)})
    answers.append(resp)
    answers.append((await operator.post("/dashboard/sign-out", {"csrf": csrf_of(page)}))[0])
    assert [a.status for a in answers] == [200, 200, 400, 404, 405, 403, 415, 303]
    for a in answers:
        assert a.headers["Content-Security-Policy"] == CSP, a.url
        assert a.headers["X-Frame-Options"] == "DENY" and a.headers["Referrer-Policy"] == "no-referrer"
        assert a.headers["Cache-Control"] == "no-store"
    # Elsewhere the hub's own headers stay as they were.
    other = await hub.request("GET", "/healthz", key=None)
    assert other.headers.get("Content-Security-Policy") != CSP


async def test_bad_query_and_form_values_are_named(hub: Hub, operator: Operator) -> None:
    page = await signed_in(operator)
    resp, text = await operator.get("/dashboard?range=7y")
    assert resp.status == 400 and "range" in text
    resp, text = await operator.get("/dashboard?shop=" + "x" * 201)
    assert resp.status == 400 and "shop" in text
    resp, text = await operator.post("/dashboard/handled", {"csrf": csrf_of(page)})
    assert resp.status == 422 and "delivery_id" in text
    resp, text = await operator.post("/dashboard/handled", {"csrf": csrf_of(page), "delivery_id": "D-404"})
    assert resp.status == 404 and "D-404" in text


# -- the page ------------------------------------------------------------------------------------


@pytest.mark.parametrize("range_name", ["24h", "30d"])
async def test_the_page_with_nothing_counted_says_nothing_yet_everywhere(
    hub: Hub, operator: Operator, range_name: str
) -> None:
    await signed_in(operator)
    resp, page = await operator.get(f"/dashboard?range={range_name}&shop=acme")
    assert resp.status == 200
    assert "<script" not in page and "style=" not in page
    drawn = svgs(page)
    assert len(drawn) >= 10
    assert all(s.findtext(f"{SVG}desc") == charts.NOTHING_YET for s in drawn)
    assert "Nothing yet: no low rating waits" in page
    assert 'id="dead-letters">0<' in page
    assert RANGES[range_name].label.lower() in page and "shop acme" in page


async def test_dead_letters_are_counted_and_the_newest_named(hub: Hub, operator: Operator) -> None:
    r = aioredis.Redis.from_url(str(hub.settings.redis_url), decode_responses=True)
    try:
        await r.zadd(keys.WEBHOOK_DEAD, {f"wh-{i}": 1_000 + i for i in range(8)})
    finally:
        await r.aclose()
    page = await signed_in(operator)
    assert 'id="dead-letters">8<' in page
    shown = re.findall(r"<code>(wh-\d)</code>", page)
    assert shown == ["wh-7", "wh-6", "wh-5", "wh-4", "wh-3"]  # dashboard.dead_letters_shown, newest first


async def test_a_rating_of_one_by_sms_is_listed_and_marked_handled_through_the_form(
    hub: Hub, operator: Operator
) -> None:
    phone = "+4915112345678"
    await hub.request("PUT", "/v1/customers/C-77", json={"phone": phone})
    await hub.request("PATCH", "/v1/customers/C-77/preferences", json={"channels": {"delivered": ["sms"]}})
    await hub.post_event(make_event("delivered", data={"pod": {"recipient": "Ana", "place": "front door"}}))
    await hub.run_worker()
    await hub.text_hub(phone, "1 parcel thrown over the fence")
    await hub.run_worker()
    page = await signed_in(operator)
    assert "D-1001" in page and "parcel thrown over the fence" in page and "Mark handled" in page
    resp, _ = await operator.post(
        "/dashboard/handled", {"csrf": csrf_of(page), "delivery_id": "D-1001", "range": "30d", "shop": ""}
    )
    assert resp.status == 303 and resp.headers["Location"] == "/dashboard?range=30d&done=handled"
    _, page = await operator.get(resp.headers["Location"])
    assert "The follow-up is marked handled" in page and "by dashboard:admin" in page
    assert 'aria-label="Mark D-1001 handled"' not in page and "Recently handled" in page


# -- the figures and the charts, with real numbers -------------------------------------------------

NOW_MS = 1_764_000_000_000 + 30 * 60_000  # half past an hour


def sample_stats(starts: list[int]) -> dict[str, Any]:
    """Counters in read_stats' documented shape: three hours with traffic."""
    buckets = [
        {
            "start": starts[-3],
            "counts": {
                "message.sms.accepted": 4,
                "message.email.accepted": 2,
                "attempt.first.delivered": 3,
                "attempt.first.failed": 1,
            },
        },
        {
            "start": str(starts[-2]),
            "counts": {
                "message.sms.accepted": 6,
                "attempt.first.delivered": 1,
                "attempt.first.failed": 1,
                "relay.call": 2,
            },
        },
        {"start": starts[-1], "counts": {"message.push.accepted": 5, "webhook.retry": 3, "webhook.dead": 1}},
    ]
    totals = {
        "message.sms.accepted": 10, "message.sms.delivered": 9, "message.sms.failed": 1,
        "message.email.accepted": 2, "message.email.delivered": 1, "message.email.undelivered": 1,
        "message.push.accepted": 5,
        "attempt.first.delivered": 4, "attempt.first.failed": 2,
        "failure.nobody_home": 2, "failure.address_problem": 1,
        "reply.reschedule": 3, "reply.stop": 1, "reply.confirm": 4, "reply.help": 2,
        "rating.count": 4, "rating.sum": 14, "relay.call": 2, "relay.session": 1,
        "webhook.delivered": 20, "webhook.retry": 3, "webhook.dead": 1,
    }  # fmt: skip
    return {
        "buckets": buckets,
        "totals": totals,
        "by_merchant": {"acme": {"attempt.first.delivered": 3, "attempt.first.failed": 1}, "zeta": {}},
        "by_driver": {"DR-5": {"attempt.first.delivered": 1, "attempt.first.failed": 1}},
    }  # fmt: skip


def titles(svg: str) -> list[str]:
    root = ET.fromstring(svg)
    return [t.text or "" for t in root.iter(f"{SVG}title")][1:]  # after the chart's own


def test_the_figures_carry_the_counters_numbers() -> None:
    rng = RANGES["24h"]
    starts = axis(rng, NOW_MS)
    assert len(starts) == 24 and starts[-1] <= NOW_MS < starts[-1] + rng.step_ms
    f = figures(sample_stats(starts), rng, starts)
    assert f["sent"] == 17 and f["first_attempt"] == 66.7 and f["rating_average"] == 3.5
    sms = next(r for r in f["messages_table"] if r["channel"] == "sms")
    assert (sms["accepted"], sms["delivered"], sms["failed"], sms["rate"]) == (10, 9, 1, 90.0)
    email = next(r for r in f["messages_table"] if r["channel"] == "email")
    assert email["rate"] == 50.0
    assert "sms: 90%" in " ".join(titles(f["delivery_rate_chart"]))
    sent_titles = titles(f["messages_chart"])
    assert sum(" sms: " in t for t in sent_titles) == 2 and any(t.endswith("sms: 6") for t in sent_titles)
    over_time = titles(f["first_attempt_chart"])
    assert [t.split(": ")[1] for t in over_time] == ["75%", "50%"]
    assert f["shops_table"] == [{"id": "acme", "delivered": 3, "attempts": 4, "rate": 75.0}]
    assert titles(f["shops_chart"]) == ["acme: 75% (3 of 4)"]
    assert [r for r, _ in f["reasons"]] == ["nobody_home", "address_problem"]
    assert [(r["label"], r["count"], r["share"]) for r in f["replies_table"]] == [
        ("Reschedules", 3, 30.0),
        ("Confirmations", 4, 40.0),
        ("STOP", 1, 10.0),
        ("help", 2, 20.0),
    ]
    assert f["relay"]["totals"][1] == {"label": "Calls", "count": 2}
    assert {t["label"]: t["count"] for t in f["webhooks"]["totals"]} == {
        "Delivered": 20, "Retries": 3, "Dead letters": 1
    }  # fmt: skip


def test_buckets_outside_the_range_or_unreadable_are_left_out() -> None:
    rng = RANGES["30d"]
    starts = axis(rng, NOW_MS)
    stats = {
        "buckets": [
            {"start": starts[0] - rng.step_ms, "counts": {"message.sms.accepted": 99}},
            {"start": "not a time", "counts": {"message.sms.accepted": 98}},
            {"start": "2025-11-24T00:00:00Z", "counts": {"message.sms.accepted": 7}},
        ],
        "totals": {"message.sms.accepted": 7},
    }
    drawn = titles(figures(stats, rng, starts)["messages_chart"])
    assert drawn == ["24 Nov sms: 7"] and starts[-1] == 1_763_942_400_000


def test_the_whole_page_renders_with_figures_and_every_number_is_text() -> None:
    """The page template with real figures (what the page-level tests check once counters exist)."""
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(
        loader=jinja2.FileSystemLoader(str(ROOT / "templates" / "_dashboard")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    rng = RANGES["24h"]
    starts = axis(rng, NOW_MS)
    ratings = [
        {"id": "DR-5", "count": 3, "average": 4.33, "last_7_days": {"count": 2, "average": 4.5},
         "previous_7_days": {"count": 1, "average": 4.0}, "trend": 0.5},
        {"id": "DR-<9>", "count": 1, "average": 1.0, "last_7_days": {"count": 1, "average": 1.0},
         "previous_7_days": {"count": 0, "average": None}, "trend": None},
    ]  # fmt: skip
    page = env.get_template("page.html.j2").render(
        **figures(sample_stats(starts), rng, starts),
        **rating_figures(ratings, []),
        ranges=[{"name": "24h", "label": "Last 24 hours", "current": True}],
        range=rng,
        shop=None,
        shops=["acme"],
        followups=[
            {
                "delivery_id": "D-1",
                "customer_id": "C-1",
                "rating": 1,
                "comment": "<b>late</b>",
                "driver_id": "DR-5",
                "merchant_id": "acme",
                "at": "2026-11-24T08:00:00Z",
                "handled_at": None,
                "handled_by": None,
            },
        ],
        handled=[
            {
                "delivery_id": "D-0",
                "rating": 2,
                "comment": None,
                "driver_id": None,
                "merchant_id": "acme",
                "handled_at": "2026-11-24T09:00:00Z",
                "handled_by": "dashboard:admin",
            }
        ],
        dead_letters={"count": 2, "latest": ["wh-2", "wh-1"]},
        generated_at="now",
        source="admin",
        csrf="0" * 64,
        done=False,
    )
    assert "<script" not in page and "style=" not in page
    assert "&lt;b&gt;late&lt;/b&gt;" in page and "DR-&lt;9&gt;" in page  # escaped, in tables and in charts
    for svg in svgs(page):
        assert svg.findtext(f"{SVG}title")
    assert 'id="tile-sent">17<' in page and 'id="tile-first-attempt">66.7%<' in page
    assert "<td>90.0%</td>" in page and "DR-5: 4.3 (3 ratings)" in page and "sms: 90% (9 of 10)" in page
    assert "Recently handled" in page and "2026-11-24T09:00:00Z by dashboard:admin" in page
    assert 'name="delivery_id" value="D-1"' in page and 'id="tile-followups">1<' in page
    assert '<td class="up">+0.50</td>' in page


# -- hub.charts ----------------------------------------------------------------------------------


def test_each_chart_is_well_formed_svg_named_and_described() -> None:
    drawn = [
        charts.line_chart("l", "Line & <co>", ["a", "b", "c"], {"x": [1, None, 3], "y": [0, 2.5, 5]}),
        charts.line_chart("l1", "One", ["a"], {"x": [4]}, area=True),
        charts.stacked_bars("s", "Stacked", ["a", "b"], {"x": [1, 2], "y": [0, 3]}),
        charts.hbars("h", "Bars", [("shop <1>", 80.5), ("b", 20)], unit="%", max_value=100, notes=["3 of 4", ""]),
        charts.share_bar("p", "Share", [("stop", 1), ("confirm", 3)]),
        charts.empty("e", "Empty"),
    ]
    for svg in drawn:
        root = ET.fromstring(svg)
        assert root.tag == f"{SVG}svg" and root.get("role") == "img"
        title_id, desc_id = root.get("aria-labelledby", "").split()
        assert root.find(f"{SVG}title").get("id") == title_id  # type: ignore[union-attr]
        assert root.find(f"{SVG}desc").get("id") == desc_id  # type: ignore[union-attr]
        assert "<script" not in svg and "style=" not in svg
    assert ET.fromstring(drawn[0]).findtext(f"{SVG}title") == "Line & <co>"


def test_the_charts_numbers_are_the_inputs() -> None:
    line = charts.line_chart("l", "Line", ["a", "b", "c"], {"x": [1, None, 3], "y": [0, 2.5, 5]})
    assert titles(line) == ["a x: 1", "c x: 3", "a y: 0", "b y: 2.5", "c y: 5"]
    assert ET.fromstring(line).findtext(f"{SVG}desc") == "x: total 4, highest 3; y: total 7.5, highest 5"
    bars = charts.stacked_bars("s", "Stacked", ["a", "b"], {"x": [1, 2], "y": [0, 3]})
    assert titles(bars) == ["a x: 1", "b x: 2", "b y: 3"]
    heights = [
        float(r.get("height", 0)) for r in ET.fromstring(bars).iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None
    ]
    assert heights[1] == pytest.approx(2 * heights[0]) and heights[2] == pytest.approx(3 * heights[0])
    h = charts.hbars("h", "Bars", [("a", 80.5), ("b", 20)], unit="%", max_value=100, notes=["3 of 4", ""])
    assert titles(h) == ["a: 80.5% (3 of 4)", "b: 20%"]
    widths = [float(r.get("width", 0)) for r in ET.fromstring(h).iter(f"{SVG}rect")]
    assert widths[0] / widths[1] == pytest.approx(80.5 / 20)
    share = charts.share_bar("p", "Share", [("stop", 1), ("confirm", 3)])
    assert titles(share) == ["stop: 1 (25%)", "confirm: 3 (75%)"]
    assert charts.number(3.0) == "3" and charts.number(2.25, "%") == "2.2%" and charts.nice_max(7) == 10


def test_charts_with_nothing_to_draw_say_so() -> None:
    for svg in (
        charts.line_chart("l", "Line", ["a"], {"x": [None]}),
        charts.line_chart("l", "Line", [], {}),
        charts.stacked_bars("s", "Stacked", ["a", "b"], {"x": [0, 0]}),
        charts.hbars("h", "Bars", []),
        charts.share_bar("p", "Share", [("stop", 0)]),
    ):
        root = ET.fromstring(svg)
        assert root.findtext(f"{SVG}desc") == charts.NOTHING_YET
        assert [t.text for t in root.iter(f"{SVG}text")] == [charts.NOTHING_YET]


def test_the_page_templates_use_no_inline_style_or_script() -> None:
    for path in (ROOT / "templates" / "_dashboard").glob("*.j2"):
        text = Path(path).read_text(encoding="utf-8")
        assert "<script" not in text and "style=" not in text and "<style" not in text, path
