"""A realistic sample for newcomers: five customers, a morning route, messages you can watch.

``hub demo`` posts it to a running hub over the public API (``hub dev --demo`` does it for you).
Customers differ in channels, locales and time zones; deliveries move through their milestones
with a short pause between steps so the sandbox fills up while you look.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp

__all__ = ["demo_preferences", "demo_steps", "prepare_customers", "run_demo", "run_tag"]

CUSTOMERS: list[dict[str, Any]] = [
    {
        "id": "C-1",
        "name": "Ana Weber",
        "phone": "+49 151 23456789",
        "email": "ana.weber@example.com",
        "push_tokens": ["demo-token-ana"],
        "locale": "de-DE",
        "timezone": "Europe/Berlin",
    },
    {
        "id": "C-2",
        "name": "Lucía García",
        "phone": "+34 612 345 678",
        "email": "lucia@example.es",
        "locale": "es-ES",
        "timezone": "Europe/Madrid",
    },
    {
        "id": "C-3",
        "name": "Camille Martin",
        "email": "camille@example.fr",
        "push_tokens": ["demo-token-camille"],
        "locale": "fr-FR",
        "timezone": "Europe/Paris",
    },
    {
        "id": "C-4",
        "name": "James Carter",
        "phone": "+1 212 555 0142",
        "locale": "en-US",
        "timezone": "America/New_York",
    },
    {
        "id": "C-5",
        "name": "Yuki Tanaka",
        "email": "yuki@example.jp",
        "push_tokens": ["demo-token-yuki"],
        "locale": "en",
        "timezone": "Asia/Tokyo",
    },
]
MERCHANTS = ["Acme Shoes", "Nordlicht Books", "Casa Verde", "Atelier Lune", "Tokyo Tea House"]
DRIVER = {"id": "DR-5", "name": "Sam Okafor", "phone": "+49 157 00000001"}


def _iso(dt: datetime) -> str:
    return dt.isoformat(timespec="seconds")


def run_tag() -> str:
    """A short tag that makes each demo run's deliveries new (``-K3F2``)."""
    value, digits, out = int(time.time()) % 36**4, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", ""
    for _ in range(4):
        value, rem = divmod(value, 36)
        out = digits[rem] + out
    return f"-{out}"


def demo_steps(now: datetime | None = None, run: str = "") -> list[list[dict[str, Any]]]:
    """Rounds of events; each round is posted as one batch, rounds follow each other."""
    now = (now or datetime.now(UTC)).replace(second=0, microsecond=0)
    start = now - timedelta(minutes=40)  # a route driven in the last 40 minutes: nothing has expired
    eta = {"start": _iso(now + timedelta(hours=1)), "end": _iso(now + timedelta(hours=3))}
    tomorrow = (now + timedelta(days=1)).replace(minute=0)
    slots = [
        {
            "id": "s1",
            "start": _iso(tomorrow.replace(hour=8, minute=0)),
            "end": _iso(tomorrow.replace(hour=12, minute=0)),
        },
        {
            "id": "s2",
            "start": _iso(tomorrow.replace(hour=13, minute=0)),
            "end": _iso(tomorrow.replace(hour=17, minute=0)),
        },
        {
            "id": "s3",
            "start": _iso(tomorrow.replace(hour=17, minute=0)),
            "end": _iso(tomorrow.replace(hour=20, minute=0)),
        },
    ]
    rounds: list[list[dict[str, Any]]] = [[] for _ in range(5)]
    for i, customer in enumerate(CUSTOMERS):
        delivery = {
            "id": f"D-{1001 + i}{run}",
            "tracking_code": f"LM{400100200 + i}",
            "merchant": MERCHANTS[i],
            "address": f"{12 + i} Harbour Street",
            "eta": eta,
        }

        def event(
            kind: str,
            minutes: int,
            data: dict[str, Any] | None = None,
            *,
            d: dict[str, Any] = delivery,
            c: dict[str, Any] = customer,
        ) -> dict[str, Any]:
            return {
                "event_id": f"demo-{d['id']}-{kind}",
                "type": kind,
                "occurred_at": _iso(start + timedelta(minutes=minutes)),
                "delivery": d,
                "customer": c,
                "driver": DRIVER,
                "data": data or {},
            }

        rounds[0].append(event("shipped", 0))
        rounds[1].append(event("out_for_delivery", 10, {"reschedule_slots": slots}))
        rounds[2].append(event("arriving_soon", 20, {"minutes": 15 + 5 * i}))
        if i == 1:
            rounds[3].append(event("delivery_failed", 30, {"reason": "Nobody was home", "reschedule_slots": slots}))
        elif i == 4:
            rounds[3].append(
                event(
                    "ready_for_pickup",
                    30,
                    {
                        "pickup": {
                            "name": "Kiosk am Markt",
                            "address": "Marktplatz 3",
                            "hours": "Mon-Sat 8-20",
                            "code": "4711",
                        }
                    },
                )
            )
        else:
            rounds[3].append(
                event(
                    "delivered",
                    30,
                    {
                        "pod": {
                            "recipient": customer["name"].split()[0],
                            "place": "front door",
                            "signature": True,
                            "photo_url": "https://pod.example/photos/1.jpg",
                        }
                    },
                )
            )
    return [r for r in rounds if r]


def demo_preferences(now: datetime | None = None) -> dict[str, dict[str, Any]]:
    """Preferences the demo gives its customers. Yuki asked for quiet hours that end two minutes
    from now, so her non-urgent messages are held and then arrive while you watch; the others
    have none, so the tour in the README works at any hour."""
    now = now or datetime.now(UTC)
    tokyo = now.astimezone(ZoneInfo("Asia/Tokyo"))
    yuki_quiet = {
        "start": (tokyo - timedelta(hours=1)).strftime("%H:%M"),
        "end": (tokyo + timedelta(minutes=2)).strftime("%H:%M"),
    }
    never = {"start": "00:00", "end": "00:00"}
    return {
        "C-1": {"quiet_hours": never},
        "C-2": {"quiet_hours": never},
        "C-3": {"quiet_hours": never, "channels": {"default": ["push"]}},
        "C-4": {"quiet_hours": never},
        "C-5": {"quiet_hours": yuki_quiet},
    }


async def prepare_customers(http: aiohttp.ClientSession, base_url: str) -> None:
    """Create the demo's customers with their preferences (see demo_preferences)."""
    prefs = demo_preferences()
    for customer in CUSTOMERS:
        contact = {k: v for k, v in customer.items() if k != "id"}
        await (await http.put(f"{base_url}/v1/customers/{customer['id']}", json=contact)).release()
        url = f"{base_url}/v1/customers/{customer['id']}/preferences"
        await (await http.patch(url, json=prefs[customer["id"]])).release()


async def run_demo(base_url: str, api_key: str, pause: float = 2.0, run: str = "") -> int:
    """Post the demo; returns how many events were accepted."""
    accepted = 0
    headers = {"Authorization": f"Bearer {api_key}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        await prepare_customers(http, base_url)
        for n, batch in enumerate(demo_steps(run=run)):
            async with http.post(f"{base_url}/v1/events/batch", json={"events": batch}) as resp:
                body = await resp.json()
                accepted += body.get("summary", {}).get("accepted", 0)
                print(f"demo: round {n + 1}: {resp.status} {body.get('summary')}")
            await asyncio.sleep(pause)
    return accepted
