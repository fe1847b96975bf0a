"""The operators' dashboard in a real browser (Debian's chromium through chromedriver, as
tests/test_browser.py drives it, and skipping or failing as it does when the browser is missing):
sign in with the admin key, see the charts, follow the range and shop links, mark a follow-up
handled, sign out; every page under the strict CSP with no violation recorded.

With ``HUB_SCREENSHOTS=<dir>`` the sign-in page and the dashboard after the demo route are saved
there as PNG (docs/screenshots/dashboard*.png are those files).
"""

from __future__ import annotations

import pytest

from tests.conftest import ADMIN_KEY, API_KEY, Hub
from tests.events import make_event
from tests.test_browser import (  # the browser, its fixture and the CI rule: one definition of each
    _CSP_RECORDER,
    Browser,
    _browser_installed,
    _until,
    browser,
    pytestmark,
)
from tests.test_demo import _DemoClock

__all__ = ["_browser_installed", "browser", "pytestmark"]

PHONE = "+4915112345678"


async def _record_csp(browser: Browser) -> None:
    """From now on every page the browser opens records its CSP violations in window.__csp."""
    await browser.run(
        browser.driver.execute_cdp_cmd, "Page.addScriptToEvaluateOnNewDocument", {"source": _CSP_RECORDER}
    )


async def _violations(browser: Browser) -> list[str]:
    return list(await browser.run(browser.driver.execute_script, "return window.__csp || [];"))


async def _sign_in(hub: Hub, browser: Browser, key: str = ADMIN_KEY) -> None:
    await browser.open(hub.base + "/dashboard")
    await browser.wait_for("Sign in")
    await browser.type("#key", key)
    await browser.click(".signin button[type=submit]")


async def _low_rating(hub: Hub, delivery_id: str = "D-1001", merchant_id: str = "acme") -> None:
    """A delivered parcel rated 1 by SMS reply (what lands on the follow-up list)."""
    await hub.request("PUT", "/v1/customers/C-77", json={"phone": PHONE})
    await hub.request("PATCH", "/v1/customers/C-77/preferences", json={"channels": {"delivered": ["sms"]}})
    delivered = make_event(
        "delivered",
        data={"pod": {"recipient": "Ana", "place": "front door"}},
        delivery__id=delivery_id,
        delivery__merchant_id=merchant_id,
    )
    await hub.post_event(delivered)
    await hub.run_worker()
    await hub.text_hub(PHONE, "1 parcel thrown over the fence")
    await hub.run_worker()


async def test_sign_in_see_the_charts_switch_range_and_sign_out(hub: Hub, browser: Browser) -> None:
    await _record_csp(browser)
    await _sign_in(hub, browser, key=API_KEY)  # a valid key without the admin scope
    await browser.wait_for("lacks the 'admin' scope")
    assert await _violations(browser) == []  # each page records its own: checked on each
    await browser.type("#key", ADMIN_KEY)
    await browser.click(".signin button[type=submit]")
    await browser.wait_for("Signed in as admin")
    text = await browser.text()
    for heading in ("Messages by channel and status", "First-attempt success", "Replies", "Ratings", "Follow-ups"):
        assert heading in text
    assert "Relay use" in text and "Webhook health" in text
    drawn = await browser.run(browser.driver.execute_script, "return document.querySelectorAll('svg.chart').length")
    assert drawn >= 10
    # The stylesheet applied (the CSP allows the hub's own): the tiles are laid out as a grid.
    display = await browser.run(
        browser.driver.execute_script, "return getComputedStyle(document.querySelector('.tiles')).display"
    )
    assert display == "grid"
    assert await _violations(browser) == []
    await browser.click('nav.ranges a[href^="/dashboard?range=30d"]')
    await browser.wait_for("What works: last 30 days")
    assert await _violations(browser) == []
    await browser.click(".signout button[type=submit]")
    await browser.wait_for("Admin API key")
    assert await _violations(browser) == []
    await browser.open(hub.base + "/dashboard")
    assert "Signed in as" not in await browser.text()
    assert await _violations(browser) == []
    # The recorder works under this policy: an inline style the page did not have is reported.
    probe = "var s = document.createElement('style'); s.textContent = 'body{color:red}'; document.head.appendChild(s);"
    await browser.run(browser.driver.execute_script, probe)
    await _until(
        browser, "return (window.__csp || []).some(function (v) { return v.indexOf('style-src') === 0; });", True
    )


async def test_mark_a_follow_up_handled_in_the_browser(hub: Hub, browser: Browser) -> None:
    await _low_rating(hub)
    await _record_csp(browser)
    await _sign_in(hub, browser)
    await browser.wait_for("parcel thrown over the fence")
    assert await _violations(browser) == []
    await browser.click('#followups button[aria-label="Mark D-1001 handled"]')
    await browser.wait_for("The follow-up is marked handled")
    assert "by dashboard:admin" in await browser.text()
    assert await _violations(browser) == []


@pytest.mark.sandbox(status_callbacks=True)  # as under `hub dev`: the providers report deliveries
async def test_screenshots_after_the_demo_route(hub: Hub, browser: Browser, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's pictures: the sign-in page, and the dashboard over the last 30 days after the
    demo route and a low rating (the demo's events are dated by the tests' policy clock)."""
    from hub.demo import run_demo

    monkeypatch.setattr("hub.demo.datetime", _DemoClock)
    assert await run_demo(hub.base, API_KEY, pause=0) > 0
    await hub.run_worker()
    await _low_rating(hub, "D-2001", "acme-shoes")  # a delivery of its own (the demo has a D-1001)
    await _record_csp(browser)
    await browser.open(hub.base + "/dashboard")
    await browser.wait_for("Admin API key")
    assert await _violations(browser) == []
    await browser.shot("dashboard-sign-in", width=1024)
    await _sign_in(hub, browser)
    await browser.wait_for("Signed in as admin")
    await browser.open(hub.base + "/dashboard?range=30d")
    await browser.wait_for("What works: last 30 days")
    await browser.shot("dashboard", width=1280)
    assert await _violations(browser) == []
