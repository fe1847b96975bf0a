"""The customer's tracking page and the sandbox in a real browser (Debian's chromium, driven by
Selenium through chromedriver): open the link from a received SMS, see the timeline, reschedule,
give instructions, change preferences and see the next event respect them, rate the delivery,
a tampered link, live updates, and the sandbox reply box driving the same flows as an SMS.

The browser runs in its own process; every Selenium call runs in a thread, so the hub's servers
on this test's event loop keep answering it. With ``HUB_SCREENSHOTS=<dir>`` the main pages are
saved there as PNG (docs/screenshots holds the committed ones).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import web

from hub import console as sandbox_console
from hub.appkeys import REDIS, SETTINGS
from hub.redis_server import free_port
from tests.conftest import Hub, reserve_port
from tests.events import make_event
from tests.test_track import SLOTS, link_in

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
MISSING = [name for name, path in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)) if not path]
# In CI (CI=true, as most CI services set it, or CI=1) a missing browser fails these tests: a skip
# there would let the browser tests stop running unnoticed. Elsewhere they skip and say why.
IN_CI = os.environ.get("CI", "").strip().lower() in ("true", "1")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        bool(MISSING) and not IN_CI, reason="needs Debian's chromium and chromium-driver (`make browser`)"
    ),
]
SHOTS = os.environ.get("HUB_SCREENSHOTS")


class Browser:
    """A headless chromium; async methods run Selenium off the event loop."""

    def __init__(self) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.profile = tempfile.mkdtemp(prefix="hub-browser-")
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=420,1400",
            f"--user-data-dir={self.profile}",
        ):
            options.add_argument(flag)
        self.driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
        self.driver.set_page_load_timeout(20)

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    async def open(self, url: str) -> None:
        await self.run(self.driver.get, url)

    async def text(self) -> str:
        """The page's visible text; empty while a navigation replaces the page (the body is gone,
        stale, or, in chromium's words, a node that "does not belong to the document")."""
        from selenium.common.exceptions import WebDriverException

        def read() -> str:
            try:
                return str(self.driver.find_element("tag name", "body").text)
            except WebDriverException:
                return ""

        return str(await self.run(read))

    async def click(self, css: str) -> None:
        await self.run(lambda: self.driver.find_element("css selector", css).click())

    async def type(self, css: str, text: str) -> None:
        def act() -> None:
            element = self.driver.find_element("css selector", css)
            element.clear()
            element.send_keys(text)

        await self.run(act)

    async def wait_for(self, text: str, timeout: float = 10.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while text not in await self.text():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{text!r} did not appear; the page says: {await self.text()}")
            await asyncio.sleep(0.2)

    async def shot(self, name: str, width: int = 420) -> None:
        if not SHOTS:
            return

        def act() -> None:
            height = self.driver.execute_script("return document.documentElement.scrollHeight")
            self.driver.set_window_size(width, min(int(height) + 120, 4000))
            Path(SHOTS).mkdir(parents=True, exist_ok=True)
            self.driver.save_screenshot(str(Path(SHOTS) / f"{name}.png"))
            self.driver.set_window_size(420, 1400)

        await self.run(act)

    def close(self) -> None:
        self.driver.quit()
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture(autouse=True)
def _browser_installed() -> None:
    """With CI set, a missing chromium or chromedriver is a failure, not a skip (see IN_CI)."""
    if MISSING:
        pytest.fail(
            f"CI is set and {' and '.join(MISSING)} cannot be found on PATH: the browser tests must run in CI. "
            "Install Debian's chromium and chromium-driver (`make browser` does, as root or with sudo).",
            pytrace=False,
        )


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    b = await asyncio.to_thread(Browser)
    try:
        yield b
    finally:
        await asyncio.to_thread(b.close)


async def sms_link(hub: Hub, event: dict[str, Any] | None = None) -> str:
    await hub.post_event(event or make_event("out_for_delivery", data={"reschedule_slots": SLOTS}))
    await hub.run_worker()
    return link_in(hub.messages(channel="sms")[-1]["text"])


async def test_open_the_sms_link_see_the_timeline_and_reschedule(hub: Hub, browser: Browser) -> None:
    url = await sms_link(hub)
    await browser.open(url)
    page = await browser.text()
    assert "Ihre Zustellung" in page and "In Zustellung" in page and "Acme Shoes" in page
    assert "Verlauf" in page and "Erwartet" in page
    await browser.shot("tracking-page")
    await browser.click('input[name="slot"][value="s2"]')
    await browser.click("#reschedule button[type=submit]")
    await browser.wait_for("Ihre Anfrage für einen neuen Termin wurde gesendet")
    assert "Sie haben" in await browser.text()  # the request is shown on the page from now on
    await hub.run_worker()
    [hook] = hub.receiver.of_type("delivery.reschedule_requested")
    assert hook["data"]["slot_id"] == "s2" and hook["data"]["channel"] == "web"


async def test_instructions_with_a_friendly_error_first(hub: Hub, browser: Browser) -> None:
    await browser.open(await sms_link(hub))
    await browser.click('input[name="kind"][value="neighbour"]')
    await browser.click("#instructions button[type=submit]")
    await browser.wait_for("Bitte ergänzen Sie die Details")  # a neighbour needs a name
    await browser.shot("tracking-page-error")
    await browser.click('input[name="kind"][value="neighbour"]')
    await browser.type("#note", "Frau Vogel, Nr. 12")
    await browser.click("#instructions button[type=submit]")
    await browser.wait_for("Ihre Hinweise wurden gespeichert")
    await hub.run_worker()
    [hook] = hub.receiver.of_type("delivery.instructions_updated")
    assert hook["data"]["kind"] == "neighbour" and hook["data"]["note"] == "Frau Vogel, Nr. 12"


async def test_preferences_changed_in_the_browser_govern_the_next_event(hub: Hub, browser: Browser) -> None:
    await browser.open(await sms_link(hub))
    for group in ("progress", "problems", "done"):
        for channel in ("sms", "push"):
            await browser.run(
                lambda g=group, c=channel: [
                    e.click()
                    for e in browser.driver.find_elements("css selector", f'input[name="{g}"][value="{c}"]')
                    if e.is_selected()
                ]
            )
            await browser.run(
                lambda g=group: [
                    e.click()
                    for e in browser.driver.find_elements("css selector", f'input[name="{g}"][value="email"]')
                    if not e.is_selected()
                ]
            )
    await browser.run(lambda: browser.driver.find_element("css selector", '#language option[value="en"]').click())
    await browser.click("#preferences button[type=submit]")
    await browser.wait_for("Your preferences were saved")  # and the page now speaks English
    await browser.shot("tracking-page-preferences")
    before = len(hub.messages())
    await hub.post_event(make_event("arriving_soon", occurred_at="2026-11-24T08:20:00+01:00", data={"minutes": 5}))
    await hub.run_worker()
    sent = hub.messages()[before:]
    assert [m["channel"] for m in sent] == ["email"]
    assert "arriving" in (sent[0]["subject"] or "").lower() or sent[0]["subject"]


async def test_rate_the_delivery_after_proof_of_delivery(hub: Hub, browser: Browser) -> None:
    url = await sms_link(hub)
    pod = {"recipient": "Ana", "place": "front door", "signature": True, "photo_url": "https://pod.example/1.jpg"}
    await hub.post_event(make_event("delivered", occurred_at="2026-11-24T11:00:00+01:00", data={"pod": pod}))
    await hub.run_worker()
    await browser.open(url)
    page = await browser.text()
    assert "Zugestellt" in page and "Angenommen von Ana" in page and "Abgelegt: front door" in page
    await browser.shot("tracking-page-delivered")
    await browser.click('input[name="rating"][value="5"]')
    await browser.type("#comment", "Sehr freundlich")
    await browser.click("#feedback button[type=submit]")
    await browser.wait_for("Vielen Dank für Ihre Bewertung")
    await hub.run_worker()
    [hook] = hub.receiver.of_type("feedback.received")
    assert hook["data"]["rating"] == 5 and hook["data"]["comment"] == "Sehr freundlich"


async def test_a_tampered_link_shows_a_clear_page(hub: Hub, browser: Browser) -> None:
    url = await sms_link(hub)
    await browser.open(url[:-1] + ("x" if url[-1] != "x" else "y"))
    page = await browser.text()
    assert "This link is not valid" in page and "Traceback" not in page
    await browser.shot("tracking-page-invalid")


@pytest.mark.settings(**{"tracking.poll_seconds": 2})
async def test_the_page_updates_itself_when_the_delivery_moves(hub: Hub, browser: Browser) -> None:
    await browser.open(await sms_link(hub))
    assert "Gleich da" not in await browser.text()
    await hub.post_event(make_event("arriving_soon", occurred_at="2026-11-24T08:20:00+01:00", data={"minutes": 5}))
    await hub.run_worker()
    # No reload: the page's own script fetched it, within one poll (2 s); the limit is for a
    # failure only, well above a poll on a loaded machine.
    await browser.wait_for("Gleich da", timeout=30)


async def test_the_sandbox_reply_box_drives_the_same_flow_as_an_sms(hub: Hub, browser: Browser) -> None:
    await sms_link(hub)
    await browser.run(browser.driver.set_window_size, 1280, 1400)
    await browser.open(hub.sandbox_url + "?refresh=0")  # no reload while typing
    card = 'section[data-address="+4915112345678"]'
    assert "Open the link" in await browser.text()
    await browser.type(f'{card} input[name="body"]', "2")
    await browser.click(f"{card} button[type=submit]")
    await browser.wait_for("customer wrote")
    await browser.shot("sandbox-phones", width=1280)
    await hub.run_worker()
    [hook] = hub.receiver.of_type("delivery.reschedule_requested")
    assert hook["data"]["slot_id"] == "s2" and hook["data"]["channel"] == "sms"


@pytest.fixture
async def console(hub: Hub) -> AsyncIterator[str]:
    """The sandbox console, as `hub dev` mounts it, beside the fixture's sandbox."""
    app = web.Application()
    app[SETTINGS] = hub.settings
    hub.sandbox.add_routes(app, "/sandbox")
    sandbox_console.add_routes(app)
    sandbox_console.tell_sandbox(app, hub.sandbox)
    app[REDIS] = aioredis.Redis.from_url(str(hub.settings.redis_url), decode_responses=True)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/sandbox"
    finally:
        await app[REDIS].aclose()
        await runner.cleanup()


async def test_the_console_posts_the_next_milestone_and_shows_the_log(hub: Hub, browser: Browser, console: str) -> None:
    await sms_link(hub)
    await browser.run(browser.driver.set_window_size, 1280, 1400)
    await browser.open(console + "/console")
    page = await browser.text()
    assert "D-1001" in page and "out_for_delivery" in page and "Post arriving_soon" in page
    await browser.click('form[action$="/console/next"] button')  # posted through the public API
    await browser.wait_for("Sandbox console")
    await hub.run_worker()
    await browser.open(console + "/console")
    page = await browser.text()
    assert "Post delivered" in page  # the delivery moved on
    assert "D-1001 arriving_soon sms +4915112345678 accepted" in page
    await browser.shot("sandbox-console", width=1280)
    await browser.open(console + "?refresh=0")
    assert "Ana Weber" in await browser.text()  # the phones page names each card


async def test_two_shops_pages_wear_their_own_logo_and_colour(hub: Hub, browser: Browser) -> None:
    """The demo's two shops (hub.demo.SHOPS): each tracking page shows its shop's logo (a file of
    the hub's own, loaded under the page's strict CSP) on its shop's colour."""
    from hub.demo import SHOPS

    colours = {"acme-shoes": "rgb(192, 57, 43)", "nordlicht-books": "rgb(15, 118, 110)"}
    for n, (shop_id, shop) in enumerate(SHOPS.items()):
        assert (await hub.request("PUT", f"/v1/merchants/{shop_id}", json=shop)).status == 201
        event = make_event(
            "out_for_delivery",
            delivery__id=f"D-{shop_id}",
            delivery__merchant_id=shop_id,
            customer__id=f"C-{n}",
            customer__phone=f"+49 151 1234567{n}",
            customer__email=f"customer{n}@example.com",
            data={"reschedule_slots": SLOTS},
        )
        url = await sms_link(hub, event)
        await browser.open(url)
        page = await browser.text()
        assert shop["name"] in page and "Ihre Zustellung" in page
        logo, header = await browser.run(
            lambda: (
                browser.driver.execute_script("return document.querySelector('header img.logo').naturalWidth"),
                browser.driver.execute_script(
                    "return getComputedStyle(document.querySelector('header')).backgroundColor"
                ),
            )
        )
        assert logo > 0 and header == colours[shop_id]
        await browser.shot(f"tracking-page-{shop_id}")


# -- the driver on the map (hub.location) --------------------------------------------------------

HOME = {"lat": 52.5301, "lon": 13.4012}
# Records every Content-Security-Policy violation of the pages the browser opens from now on
# (injected through the DevTools protocol, before any script of the page runs).
_CSP_RECORDER = (
    "window.__csp = [];"
    "document.addEventListener('securitypolicyviolation', function (e) {"
    " window.__csp.push(e.violatedDirective + ' ' + e.blockedURI); });"
)


def _tile_png() -> bytes:
    """A 256-pixel map tile of our own: a pale ground with a faint grid (nothing from the internet)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ground, line = bytes((238, 240, 234)), bytes((214, 219, 208))
    rows = b"".join(
        b"\x00" + b"".join(line if x % 64 == 0 or y % 64 == 0 else ground for x in range(256)) for y in range(256)
    )
    header = struct.pack(">IIBBBBB", 256, 256, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def _tiles_from(request: pytest.FixtureRequest, url: str) -> None:
    """Points the ``hub`` fixture's tile server at ``url`` (a test asks for its tile fixture before
    ``hub``), keeping the test's own settings marker."""
    own = request.node.get_closest_marker("settings")
    merged = {**(own.kwargs if own else {}), "tracking.map_tiles": url}
    request.node.add_marker(pytest.mark.settings(**merged), append=False)


@pytest.fixture
async def tile_server(request: pytest.FixtureRequest) -> AsyncIterator[list[str]]:
    """A local tile server answering every tile with the same plain PNG; the Referer of each
    tile request it served."""
    png = _tile_png()
    referers: list[str] = []

    async def tile(request: web.Request) -> web.Response:
        referers.append(request.headers.get("Referer", ""))
        return web.Response(body=png, content_type="image/png")

    app = web.Application()
    app.router.add_get("/{z}/{x}/{y}.png", tile)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}/{{z}}/{{x}}/{{y}}.png"
    _tiles_from(request, url)
    try:
        yield referers
    finally:
        await runner.cleanup()


@pytest.fixture
def dead_tiles(request: pytest.FixtureRequest) -> Iterator[str]:
    """A tile server that is not there: a loopback port bound but not listening (refused)."""
    sock = reserve_port()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/{{z}}/{{x}}/{{y}}.png"
    _tiles_from(request, url)
    try:
        yield url
    finally:
        sock.close()


async def _map_page(hub: Hub, browser: Browser) -> str:
    """The sample delivery out for delivery (English, with its address's coordinates), opened in the
    browser with the CSP recorder in place; its link."""
    from tests.test_location import out_for_delivery

    url = await out_for_delivery(hub)
    await browser.run(
        browser.driver.execute_cdp_cmd, "Page.addScriptToEvaluateOnNewDocument", {"source": _CSP_RECORDER}
    )
    return url


async def _report(hub: Hub, lat: float, lon: float, stops: int, minutes_ago: float) -> None:
    from tests.test_location import at

    body = {"lat": lat, "lon": lon, "at": at(minutes_ago), "stops_before": stops}
    resp = await hub.request("POST", "/v1/deliveries/D-1001/location", json=body)
    assert resp.status == 200 and (await resp.json())["status"] == "stored"


async def _until(browser: Browser, script: str, expected: Any, timeout: float = 30.0) -> Any:
    """Waits (WebDriverWait, polling the page) until ``script`` returns ``expected``."""
    from selenium.webdriver.support.ui import WebDriverWait

    def wait() -> Any:
        return WebDriverWait(browser.driver, timeout, poll_frequency=0.1).until(
            lambda d: d.execute_script(script) == expected
        )

    try:
        return await browser.run(wait)
    except Exception as e:
        raise AssertionError(f"{script} is {await browser.run(browser.driver.execute_script, script)!r}") from e


_DRIVER_AT = (
    "var m = window.hubTrackMap && window.hubTrackMap.driver; return m ? [m.getLatLng().lat, m.getLatLng().lng] : null;"
)
# Where the driver's marker is drawn on screen, against where the map projects its position: the
# marker's centre, less the point the map computes for its LatLng, in CSS pixels.
_DRIVER_DRAWN_OFF = (
    "var t = window.hubTrackMap, box = t.driver.getElement().getBoundingClientRect(),"
    " frame = t.map.getContainer().getBoundingClientRect(), p = t.map.latLngToContainerPoint(t.driver.getLatLng());"
    " return [Math.round(box.left + box.width / 2 - frame.left - p.x),"
    " Math.round(box.top + box.height / 2 - frame.top - p.y),"
    " p.x > 0 && p.y > 0 && p.x < frame.width && p.y < frame.height];"
)


@pytest.mark.settings(**{"tracking.poll_seconds": 2})
async def test_the_driver_marker_sits_where_the_position_says_and_moves_with_it(
    tile_server: list[str], hub: Hub, browser: Browser
) -> None:
    url = await _map_page(hub, browser)
    await _report(hub, 52.5205, 13.3951, stops=3, minutes_ago=2)
    await browser.open(url)
    assert "3 stops before you" in await browser.text()
    await _until(browser, _DRIVER_AT, [52.5205, 13.3951])
    dest = "var d = window.hubTrackMap.destination; return d ? [d.getLatLng().lat, d.getLatLng().lng] : null;"
    assert await browser.run(browser.driver.execute_script, dest) == [HOME["lat"], HOME["lon"]]
    off = await browser.run(browser.driver.execute_script, _DRIVER_DRAWN_OFF)
    assert abs(off[0]) <= 1 and abs(off[1]) <= 1 and off[2] is True, off  # drawn at its position, inside the map
    await browser.run(browser.driver.execute_script, "window.__firstMap = window.hubTrackMap.map;")
    await _until(browser, "return document.querySelectorAll('#driver-map img.leaflet-tile-loaded').length > 0", True)
    await browser.shot("tracking-page-map")
    assert set(tile_server) == {hub.base + "/"}  # the page's origin, never the link with its token
    await _report(hub, 52.5262, 13.3998, stops=1, minutes_ago=1)
    # No reload: the page's own refresh brought the new position and moved the same marker on the same map.
    await _until(browser, _DRIVER_AT, [52.5262, 13.3998])
    same = "return window.hubTrackMap.map === window.__firstMap && document.getElementById('driver-map') !== null;"
    assert await browser.run(browser.driver.execute_script, same) is True
    assert "1 stop before you" in await browser.text()
    off = await browser.run(browser.driver.execute_script, _DRIVER_DRAWN_OFF)
    assert abs(off[0]) <= 1 and abs(off[1]) <= 1 and off[2] is True, off
    assert await browser.run(browser.driver.execute_script, "return window.__csp;") == []
    # The recorder itself works: an image from an origin the policy does not name is reported.
    probe = "var i = new Image(); i.src = 'http://192.0.2.1/x.png'; document.body.appendChild(i);"
    await browser.run(browser.driver.execute_script, probe)
    await _until(browser, "return window.__csp.length > 0 && window.__csp[0].indexOf('img-src') === 0;", True)


async def test_without_tiles_the_page_still_shows_the_driver_and_the_destination(
    dead_tiles: str, hub: Hub, browser: Browser
) -> None:
    url = await _map_page(hub, browser)
    await _report(hub, 52.5262, 13.3998, stops=0, minutes_ago=1)
    await browser.open(url)
    await _until(browser, _DRIVER_AT, [52.5262, 13.3998])
    assert "Your stop is next" in await browser.text()
    off = await browser.run(browser.driver.execute_script, _DRIVER_DRAWN_OFF)
    assert abs(off[0]) <= 1 and abs(off[1]) <= 1 and off[2] is True, off
    shown = (
        "return !!window.hubTrackMap.destination.getElement() && window.hubTrackMap.destination.getElement().complete;"
    )
    await _until(browser, shown, True)  # the destination's pin (a vendored image) is drawn
    assert await browser.run(browser.driver.execute_script, "return window.__csp;") == []
