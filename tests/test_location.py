"""The driver on the customer's map: ``POST /v1/deliveries/{id}/location`` (the driver app) and
what the tracking page's live part shows of it, under the privacy rules (hub.location)."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis

from hub import keys
from hub.config import ConfigError, load_settings
from tests.conftest import ADMIN_KEY, ROOT, Hub
from tests.events import make_event
from tests.test_track import browser, link_in

HOME = {"lat": 52.5301, "lon": 13.4012}
PATH = "/v1/deliveries/D-1001/location"


def at(minutes_ago: float = 0.0) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes_ago)).isoformat()


def spot(lat: float = 52.52, lon: float = 13.405, stops: int = 2, when: str | None = None) -> dict[str, Any]:
    return {"lat": lat, "lon": lon, "at": when or at(), "stops_before": stops}


async def out_for_delivery(hub: Hub, **changes: Any) -> str:
    """The sample delivery out for delivery (with its address's coordinates), for a customer who
    reads English; its tracking link."""
    changes = {"delivery__destination": HOME, "customer__locale": "en-GB", **changes}
    await hub.post_event(make_event("out_for_delivery", **changes))
    await hub.run_worker()
    return link_in(hub.messages(channel="sms")[-1]["text"])


async def post(hub: Hub, body: Any, path: str = PATH) -> tuple[int, dict[str, Any]]:
    resp = await hub.request("POST", path, json=body)
    return resp.status, await resp.json()


async def live(url: str) -> dict[str, Any]:
    async with browser() as s, s.get(url + "/live") as resp:
        assert resp.status == 200
        found: dict[str, Any] = await resp.json()
        return found


def marker(html: str) -> tuple[float, float] | None:
    found = re.search(r'data-lat="([-0-9.]+)" data-lon="([-0-9.]+)"', html)
    return (float(found.group(1)), float(found.group(2))) if found else None


async def stored(hub: Hub) -> str | None:
    client = aioredis.Redis.from_url(str(hub.settings.redis_url), decode_responses=True)
    try:
        value: str | None = await client.get(keys.driver_position("D-1001"))
        return value
    finally:
        await client.aclose()


async def pttl(hub: Hub) -> int:
    client = aioredis.Redis.from_url(str(hub.settings.redis_url), decode_responses=True)
    try:
        return int(await client.pttl(keys.driver_position("D-1001")))
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**spot(), "lat": 90.5}, "lat"),
        ({**spot(), "lat": "52.5"}, "lat"),
        ({**spot(), "lat": True}, "lat"),
        ({**spot(), "lon": -180.01}, "lon"),
        ({k: v for k, v in spot().items() if k != "lon"}, "lon"),
        ({**spot(), "at": "2026-11-24T08:05:00"}, "at"),  # no offset
        ({**spot(), "at": 1764000000}, "at"),
        ({**spot(), "at": "yesterday"}, "at"),
        ({**spot(), "at": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}, "at"),  # a clock gone wrong
        ({**spot(), "stops_before": -1}, "stops_before"),
        ({**spot(), "stops_before": 2.0}, "stops_before"),
        ({**spot(), "stops_before": "2"}, "stops_before"),
        ({k: v for k, v in spot().items() if k != "stops_before"}, "stops_before"),
        ([spot()], "body"),
    ],
)
async def test_a_bad_report_is_refused_with_422_naming_the_field(hub: Hub, body: Any, field: str) -> None:
    await out_for_delivery(hub)
    status, answer = await post(hub, body)
    assert status == 422, answer
    assert answer["error"]["code"] == "validation_failed" and list(answer["error"]["fields"]) == [field]
    assert await stored(hub) is None


async def test_a_report_that_is_not_json_or_for_a_bad_id_is_a_clear_4xx(hub: Hub) -> None:
    resp = await hub.request("POST", PATH, data=b"{", headers={"Content-Type": "application/json"})
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "invalid_json"
    resp = await hub.request("POST", PATH, data=b"lat=1", headers={"Content-Type": "text/plain"})
    assert resp.status == 415
    resp = await hub.request("POST", PATH, json=spot(), key=None)
    assert resp.status == 401


async def test_an_unknown_delivery_is_404(hub: Hub) -> None:
    status, answer = await post(hub, spot(), "/v1/deliveries/D-nobody/location")
    assert status == 404 and answer["error"]["code"] == "not_found"


async def test_a_position_is_stored_once_out_for_delivery_and_refused_before_and_after(hub: Hub) -> None:
    await hub.post_event(make_event("in_transit"))
    await hub.run_worker()
    status, answer = await post(hub, spot())
    assert status == 409 and answer["error"]["code"] == "not_out_for_delivery", answer
    assert "in_transit" in answer["error"]["message"]
    await hub.post_event(make_event("out_for_delivery", occurred_at="2026-11-24T08:10:00+01:00"))
    await hub.run_worker()
    status, answer = await post(hub, spot())
    assert (status, answer) == (200, {"delivery_id": "D-1001", "status": "stored"})
    await hub.post_event(make_event("delivered", occurred_at="2026-11-24T11:00:00+01:00"))
    await hub.run_worker()
    assert await stored(hub) is None  # the delivered event took it away
    status, answer = await post(hub, spot())
    assert status == 409 and answer["error"]["code"] == "not_out_for_delivery"
    assert await stored(hub) is None  # nothing is kept after delivery


async def test_an_older_position_is_ignored_and_says_so(hub: Hub) -> None:
    url = await out_for_delivery(hub)
    taken = at(1)
    assert (await post(hub, spot(52.51, 13.40, when=taken)))[0] == 200
    status, answer = await post(hub, spot(52.40, 13.30, when=at(2)))
    assert status == 200 and answer["status"] == "ignored" and answer["reason"] == "older"
    status, answer = await post(hub, spot(52.40, 13.30, when=taken))  # the same time again
    assert answer["reason"] == "older"
    assert marker((await live(url))["html"]) == (52.51, 13.40)


async def test_a_position_lives_its_ttl_from_the_time_it_was_taken(hub: Hub) -> None:
    await out_for_delivery(hub)  # tracking.map_position_minutes: 10
    assert (await post(hub, spot(when=at(0))))[0] == 200
    assert 9 * 60_000 < await pttl(hub) <= 10 * 60_000
    assert (await post(hub, spot(when=at(9))))[1]["reason"] == "older"
    client = aioredis.Redis.from_url(str(hub.settings.redis_url))
    await client.delete(keys.driver_position("D-1001"))
    await client.aclose()
    assert (await post(hub, spot(when=at(9))))[0] == 200  # taken 9 minutes ago: one minute left
    assert 0 < await pttl(hub) <= 60_000
    status, answer = await post(hub, spot(when=at(10.5)))  # older than positions are kept
    assert status == 200 and answer["reason"] == "expired"


@pytest.mark.settings(**{"tracking.map_position_minutes": 0.5})
async def test_the_ttl_is_a_setting(hub: Hub) -> None:
    await out_for_delivery(hub)
    assert (await post(hub, spot()))[0] == 200
    assert 0 < await pttl(hub) <= 30_000
    assert (await post(hub, spot(when=at(1))))[1]["reason"] == "expired"


async def test_the_page_shows_the_driver_only_within_the_last_stops(hub: Hub) -> None:
    url = await out_for_delivery(hub)
    first = await live(url)
    assert "driver-map" not in first["html"] and "stops before" not in first["html"]  # no report yet
    await post(hub, spot(52.4, 13.3, stops=6, when=at(3)))  # tracking.map_max_stops: 5
    far = await live(url)
    assert "6 stops before you" in far["html"]
    assert marker(far["html"]) is None and "52.4" not in far["html"] and "13.3" not in far["html"]
    assert "52.5301" not in far["html"]  # nor where the customer lives
    assert far["version"] != first["version"]
    await post(hub, spot(52.51, 13.39, stops=5, when=at(2)))
    near = await live(url)
    assert marker(near["html"]) == (52.51, 13.39) and "5 stops before you" in near["html"]
    assert 'data-dest-lat="52.5301" data-dest-lon="13.4012"' in near["html"]
    assert 'data-tiles="https://tile.openstreetmap.org/{z}/{x}/{y}.png"' in near["html"]
    assert "© OpenStreetMap contributors" in near["html"]
    await post(hub, spot(52.52, 13.40, stops=1, when=at(1)))
    moved = await live(url)
    assert marker(moved["html"]) == (52.52, 13.40) and "1 stop before you" in moved["html"]
    assert moved["version"] != near["version"]
    await post(hub, spot(52.53, 13.401, stops=0))
    assert "Your stop is next" in (await live(url))["html"]
    async with browser() as s, s.get(url) as resp:
        page = await resp.text()
    assert marker(page) == (52.53, 13.401)  # the page itself, before any script runs


@pytest.mark.settings(**{"tracking.map_max_stops": 0})
async def test_with_no_stops_allowed_the_map_shows_only_for_the_next_stop(hub: Hub) -> None:
    url = await out_for_delivery(hub)
    await post(hub, spot(stops=1, when=at(1)))
    assert marker((await live(url))["html"]) is None
    await post(hub, spot(stops=0))
    assert marker((await live(url))["html"]) is not None


async def test_a_new_eta_on_the_road_keeps_the_map_other_milestones_end_it(hub: Hub) -> None:
    url = await out_for_delivery(hub)
    await post(hub, spot(when=at(1)))
    await hub.post_event(
        make_event(
            "eta_changed",
            occurred_at="2026-11-24T08:15:00+01:00",
            delivery__eta={"start": "2026-11-24T11:00:00+01:00", "end": "2026-11-24T13:00:00+01:00"},
        )
    )
    await hub.run_worker()
    assert marker((await live(url))["html"]) is not None
    assert (await post(hub, spot()))[0] == 200  # still on the round: a position already there is renewed
    await hub.post_event(make_event("exception", occurred_at="2026-11-24T08:30:00+01:00", data={"reason": "Flat tyre"}))
    await hub.run_worker()
    assert await stored(hub) is None and "driver-map" not in (await live(url))["html"]
    status, answer = await post(hub, spot())
    assert status == 409 and "exception" in answer["error"]["message"]


async def test_a_new_eta_before_the_round_takes_no_position(hub: Hub) -> None:
    await hub.post_event(make_event("eta_changed"))
    await hub.run_worker()
    status, answer = await post(hub, spot())
    assert status == 409 and answer["error"]["code"] == "not_out_for_delivery"


async def test_delivered_clears_the_map_from_the_page(hub: Hub) -> None:
    url = await out_for_delivery(hub)
    await post(hub, spot(stops=0))
    assert marker((await live(url))["html"]) is not None
    await hub.post_event(make_event("delivered", occurred_at="2026-11-24T11:00:00+01:00"))
    await hub.run_worker()
    after = (await live(url))["html"]
    assert await stored(hub) is None and "driver-map" not in after
    assert "stops before" not in after and "stop is next" not in after


@pytest.mark.parametrize("milestone", ["delivery_failed", "returned"])
async def test_a_failed_or_returned_delivery_drops_the_position(hub: Hub, milestone: str) -> None:
    await out_for_delivery(hub)
    await post(hub, spot())
    await hub.post_event(make_event(milestone, occurred_at="2026-11-24T11:00:00+01:00", data={"reason": "x"}))
    await hub.run_worker()
    assert await stored(hub) is None


async def test_erasure_removes_the_position_and_the_coordinates_and_takes_no_new_one(hub: Hub) -> None:
    await out_for_delivery(hub)
    await post(hub, spot())
    resp = await hub.request("DELETE", "/v1/customers/C-77", key=ADMIN_KEY)
    assert resp.status == 204
    assert await stored(hub) is None
    view = await (await hub.request("GET", "/v1/deliveries/D-1001")).json()
    assert "destination" not in view
    status, answer = await post(hub, spot())
    assert status == 409 and answer["error"]["code"] == "customer_erased"
    assert await stored(hub) is None


async def test_the_position_is_in_no_api_view_and_no_log(hub: Hub, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await out_for_delivery(hub)
    status, answer = await post(hub, spot(48.13713, 11.57549, stops=3))
    assert status == 200 and "48.137" not in str(answer)
    delivery = await (await hub.request("GET", "/v1/deliveries/D-1001")).json()
    assert delivery["destination"] == HOME  # the address's coordinates, like the address itself
    messages = await (await hub.request("GET", "/v1/messages?delivery_id=D-1001")).json()
    everything = str(delivery) + str(messages)
    assert "48.137" not in everything and "11.575" not in everything
    assert not [r for r in caplog.records if "48.137" in r.getMessage() or "11.575" in r.getMessage()]


async def test_a_bad_destination_in_an_event_names_the_field(hub: Hub) -> None:
    resp = await hub.post_event(make_event(delivery__destination={"lat": 91, "lon": 13.4}))
    assert resp.status == 422
    assert list((await resp.json())["error"]["fields"]) == ["delivery.destination.lat"]


async def test_the_page_may_load_images_from_the_tile_server_only(hub: Hub) -> None:
    url = await out_for_delivery(hub)
    async with browser() as s, s.get(url) as resp:
        csp = resp.headers["Content-Security-Policy"]
    assert "img-src 'self' https://tile.openstreetmap.org;" in csp
    assert "script-src 'self';" in csp and "style-src 'self';" in csp


@pytest.mark.settings(**{"tracking.map_tiles": "none"})
async def test_without_tiles_the_map_still_has_its_markers_and_the_policy_no_other_origin(hub: Hub) -> None:
    url = await out_for_delivery(hub)
    await post(hub, spot())
    async with browser() as s, s.get(url) as resp:
        csp, page = resp.headers["Content-Security-Policy"], await resp.text()
    assert "img-src 'self';" in csp
    assert marker(page) is not None and 'data-tiles=""' in page


@pytest.mark.parametrize(
    "tiles",
    [
        "ftp://tiles.example/{z}/{x}/{y}.png",
        "https://tiles.example/{z}/{x}.png",
        "https://tiles.example; script-src *;/{z}/{x}/{y}.png",
        "https://tiles.example/{z}/{x}/{y}.png 'unsafe-inline'",
        "https://user@tiles.example/{z}/{x}/{y}.png",
    ],
)
def test_a_tile_server_that_is_not_a_plain_url_is_refused_at_start(tiles: str) -> None:
    with pytest.raises(ConfigError, match=r"tracking\.map_tiles"):
        load_settings(ROOT / "config.yaml", environ={}, **{"tracking.map_tiles": tiles})


def test_a_tile_server_with_subdomains_is_allowed_by_its_wildcard_origin() -> None:
    from hub.location import content_security_policy

    settings = load_settings(
        ROOT / "config.yaml", environ={}, **{"tracking.map_tiles": "https://{s}.tiles.example:8443/{z}/{x}/{y}.png"}
    )
    policy = content_security_policy("default-src 'self'; img-src 'self'; style-src 'self'", settings.tracking)
    assert policy == "default-src 'self'; img-src 'self' https://*.tiles.example:8443; style-src 'self'"


async def test_the_demo_leaves_ana_s_parcel_on_the_road_with_the_driver_near_her_door(hub: Hub) -> None:
    import aiohttp

    from hub.demo import ROUTE, drive_to_ana, on_the_road
    from tests.conftest import API_KEY

    await hub.post_event(on_the_road("-T"))  # what drive_to_ana posts first, applied before its positions
    await hub.run_worker()
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {API_KEY}"}) as http:
        await drive_to_ana(http, hub.base, "-T", pause=0)
    url = link_in(hub.messages(channel="sms", to="+4915123456789")[-1]["text"])
    html = (await live(url))["html"]
    assert marker(html) == ROUTE[-1][:2] and 'data-dest-lat="52.5301"' in html
