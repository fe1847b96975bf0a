"""A realistic sample for newcomers: five customers, a morning route, messages you can watch.

``hub demo`` posts it to a running hub over the public API (``hub dev --demo`` does it for you).
Customers differ in channels, locales and time zones; deliveries move through their milestones
with a short pause between steps so the sandbox fills up while you look.

Every ``hub dev --demo`` starts from the same state, however often it ran before in the same
Redis: ``reset_demo`` first forgets what earlier runs left of the demo's own customers, numbers
and driver (see its docstring), so the README's tour works the second time as it did the first.

After the route, Ana's second parcel stays out for delivery and the driver app reports the van
nearing her door (``drive_to_ana``), so her tracking page shows the driver on the map; and Mia,
who asked to confirm each delivery, is asked about tomorrow's planned window (``ask_mia``): by
SMS on the sandbox phone, as push actions and on her tracking page.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
from arq.constants import job_key_prefix
from redis.asyncio import Redis

from . import keys
from .availability import Availability
from .config import Settings

__all__ = ["demo_preferences", "demo_steps", "prepare_customers", "reset_demo", "run_demo", "run_tag"]

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
        "locale": "ja-JP",
        "timezone": "Asia/Tokyo",
    },
]
# Asked to confirm each planned delivery (the preference confirm_deliveries): not on the route.
ASKED: dict[str, Any] = {
    "id": "C-6",
    "name": "Mia Schneider",
    "phone": "+49 151 34567890",
    "email": "mia@example.com",
    "push_tokens": ["demo-token-mia"],
    "locale": "en-GB",
    "timezone": "Europe/Berlin",
}
MERCHANTS = ["Acme Shoes", "Nordlicht Books", "Casa Verde", "Atelier Lune", "Tokyo Tea House"]
DRIVER = {"id": "DR-5", "name": "Sam Okafor", "phone": "+49 157 00000001"}
# Two registered shops with brands of their own (docs/brands.md): Ana's and Lucía's deliveries are
# theirs. Their logos are the hub's own files, so the demo needs no network.
SHOPS: dict[str, dict[str, Any]] = {
    "acme-shoes": {
        "name": "Acme Shoes",
        "email_from": "Acme Shoes <orders@acme-shoes.example>",
        "reply_to": "help@acme-shoes.example",
        "sms_sender": "Acme Shoes",
        "logo_url": "/static/brands/acme-shoes.svg",
        "brand_color": "#c0392b",
        "support_url": "https://acme-shoes.example/help",
        "support_phone": "+49 30 1234567",
    },
    "nordlicht-books": {
        "name": "Nordlicht Books",
        "email_from": "Nordlicht Books <hallo@nordlicht-books.example>",
        "reply_to": "service@nordlicht-books.example",
        "sms_sender": "Nordlicht",
        "logo_url": "/static/brands/nordlicht-books.svg",
        "brand_color": "#0f766e",
        "support_phone": "+49 40 7654321",
    },
}
SHOP_OF = ["acme-shoes", "nordlicht-books"]  # the shop of the first deliveries, in order


def _iso(dt: datetime) -> str:
    return dt.isoformat(timespec="seconds")


def run_tag() -> str:
    """A short tag that makes each demo run's deliveries new (``-K3F2``)."""
    value, digits, out = int(time.time()) % 36**4, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", ""
    for _ in range(4):
        value, rem = divmod(value, 36)
        out = digits[rem] + out
    return f"-{out}"


def _slots(now: datetime) -> list[dict[str, str]]:
    """Tomorrow's three delivery slots, offered for a reschedule."""
    tomorrow = (now + timedelta(days=1)).replace(minute=0)
    hours = (("s1", 8, 12), ("s2", 13, 17), ("s3", 17, 20))
    return [
        {"id": sid, "start": _iso(tomorrow.replace(hour=a)), "end": _iso(tomorrow.replace(hour=b))}
        for sid, a, b in hours
    ]


def _last_step(i: int, customer: dict[str, Any], slots: list[dict[str, str]]) -> tuple[str, dict[str, Any]]:
    """How each customer's route ends: Lucía was not home, Yuki collects from a kiosk, the rest
    are delivered."""
    if i == 1:
        return "delivery_failed", {"reason": "Nobody was home", "reschedule_slots": slots}
    if i == 4:
        kiosk = {"name": "Kiosk am Markt", "address": "Marktplatz 3", "hours": "Mon-Sat 8-20", "code": "4711"}
        return "ready_for_pickup", {"pickup": kiosk}
    pod = {
        "recipient": customer["name"].split()[0],
        "place": "front door",
        "signature": True,
        "photo_url": "https://pod.example/photos/1.jpg",
    }
    return "delivered", {"pod": pod}


def demo_steps(now: datetime | None = None, run: str = "") -> list[list[dict[str, Any]]]:
    """Rounds of events; each round is posted as one batch, rounds follow each other."""
    now = (now or datetime.now(UTC)).replace(second=0, microsecond=0)
    start = now - timedelta(minutes=40)  # a route driven in the last 40 minutes: nothing has expired
    eta = {"start": _iso(now + timedelta(hours=1)), "end": _iso(now + timedelta(hours=3))}
    slots = _slots(now)
    rounds: list[list[dict[str, Any]]] = [[] for _ in range(4)]
    for i, customer in enumerate(CUSTOMERS):
        delivery = {
            "id": f"D-{1001 + i}{run}",
            "tracking_code": f"LM{400100200 + i}",
            "merchant": MERCHANTS[i],
            **({"merchant_id": SHOP_OF[i]} if i < len(SHOP_OF) else {}),
            "address": f"{12 + i} Harbour Street",
            "eta": eta,
        }
        steps = [
            ("shipped", {}),
            ("out_for_delivery", {"reschedule_slots": slots}),
            ("arriving_soon", {"minutes": 15 + 5 * i}),
            _last_step(i, customer, slots),
        ]
        for n, (kind, data) in enumerate(steps):
            rounds[n].append(
                {
                    "event_id": f"demo-{delivery['id']}-{kind}",
                    "type": kind,
                    "occurred_at": _iso(start + timedelta(minutes=10 * n)),
                    "delivery": delivery,
                    "customer": customer,
                    "driver": DRIVER,
                    "data": data,
                }
            )
    return rounds


def demo_preferences(now: datetime | None = None) -> dict[str, dict[str, Any]]:
    """Preferences the demo gives its customers. Lucía prefers WhatsApp. Yuki asked for quiet
    hours that end two minutes from now, so her non-urgent messages are held and then arrive while you watch; the others
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
        # Lucía reads WhatsApp before SMS, as much of Spain does: her news goes there and by e-mail
        # (by SMS where the hub has no WhatsApp).
        "C-2": {
            "quiet_hours": never,
            "channels": {"default": ["whatsapp", "email"]},
            "fallback": ["whatsapp", "sms", "email"],
        },
        "C-3": {"quiet_hours": never, "channels": {"default": ["push"]}},
        "C-4": {"quiet_hours": never},
        "C-5": {"quiet_hours": yuki_quiet},
        "C-6": {"quiet_hours": never, "confirm_deliveries": True},
    }


async def prepare_customers(http: aiohttp.ClientSession, base_url: str) -> None:
    """Create the demo's customers with their preferences (see demo_preferences)."""
    prefs = demo_preferences()
    for customer in [*CUSTOMERS, ASKED]:
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
        for shop_id, shop in SHOPS.items():
            await (await http.put(f"{base_url}/v1/merchants/{shop_id}", json=shop)).release()
        for n, batch in enumerate(demo_steps(run=run)):
            async with http.post(f"{base_url}/v1/events/batch", json={"events": batch}) as resp:
                body = await resp.json()
                accepted += body.get("summary", {}).get("accepted", 0)
                print(f"demo: round {n + 1}: {resp.status} {body.get('summary')}")
            await asyncio.sleep(pause)
        await drive_to_ana(http, base_url, run, pause)
        await ask_mia(http, base_url, run)
    return accepted


# -- the driver on the map: a parcel still on its way, and the driver app's positions -------------
ANA_HOME = {"lat": 52.5301, "lon": 13.4012}
# Where the driver app reports the van, stop by stop, as it nears Ana's door: (lat, lon, stops before).
ROUTE = [(52.5186, 13.3862, 4), (52.5221, 13.3921, 3), (52.5254, 13.3969, 2), (52.5283, 13.3995, 1)]


def on_the_road(run: str = "", now: datetime | None = None) -> dict[str, Any]:
    """Ana's second parcel, out for delivery when the route is over, with her address's coordinates
    (its driver has no number here: no relay session to take a proxy number from the tour's pool)."""
    now = (now or datetime.now(UTC)).replace(second=0, microsecond=0)
    delivery = {
        "id": f"D-1006{run}",
        "tracking_code": "LM400100299",
        "merchant": MERCHANTS[1],
        "merchant_id": SHOP_OF[1],
        "address": "12 Harbour Street",
        "eta": {"start": _iso(now), "end": _iso(now + timedelta(hours=1))},
        "destination": ANA_HOME,
    }
    return {
        "event_id": f"demo-{delivery['id']}-out_for_delivery",
        "type": "out_for_delivery",
        "occurred_at": _iso(now),
        "delivery": delivery,
        "customer": CUSTOMERS[0],
        "driver": {"id": DRIVER["id"], "name": DRIVER["name"]},
    }


async def drive_to_ana(http: aiohttp.ClientSession, base_url: str, run: str = "", pause: float = 2.0) -> None:
    """Post Ana's parcel on the road, then the driver's positions along ``ROUTE``, one per pause.
    A position posted before the worker has applied the event is refused (409) and skipped."""
    event = on_the_road(run)
    async with http.post(f"{base_url}/v1/events", json=event) as resp:
        print(f"demo: a parcel on the road: {resp.status}")
    for n, (lat, lon, stops) in enumerate(ROUTE, start=1):
        await asyncio.sleep(pause)
        # Taken now, each a little later than the one before (however short the pause).
        at = datetime.now(UTC) - timedelta(milliseconds=len(ROUTE) - n)
        body = {"lat": lat, "lon": lon, "at": at.isoformat(timespec="milliseconds"), "stops_before": stops}
        async with http.post(f"{base_url}/v1/deliveries/{event['delivery']['id']}/location", json=body) as resp:
            answer = await resp.json()
            outcome = answer.get("status") or answer.get("error", {}).get("code")
            print(f"demo: driver position {n}/{len(ROUTE)}: {resp.status} {outcome}")


# -- asking before the route is planned ------------------------------------------------------------
def tomorrows_question(run: str = "", now: datetime | None = None) -> dict[str, Any]:
    """Mia's parcel, planned for tomorrow morning (``scheduled``), with two other times offered."""
    now = (now or datetime.now(UTC)).replace(second=0, microsecond=0)
    tomorrow = (now.astimezone(ZoneInfo(ASKED["timezone"])) + timedelta(days=1)).replace(minute=0)
    later = tomorrow + timedelta(days=1)
    slots = [
        {"id": "s1", "start": _iso(tomorrow.replace(hour=17)), "end": _iso(tomorrow.replace(hour=20))},
        {"id": "s2", "start": _iso(later.replace(hour=9)), "end": _iso(later.replace(hour=12))},
    ]
    delivery = {
        "id": f"D-1007{run}",
        "tracking_code": "LM400100307",
        "merchant": MERCHANTS[2],
        "address": "7 Harbour Street",
        "eta": {"start": _iso(tomorrow.replace(hour=9)), "end": _iso(tomorrow.replace(hour=12))},
    }
    return {
        "event_id": f"demo-{delivery['id']}-scheduled",
        "type": "scheduled",
        "occurred_at": _iso(now),
        "delivery": delivery,
        "customer": ASKED,
        "data": {"reschedule_slots": slots},
    }


async def ask_mia(http: aiohttp.ClientSession, base_url: str, run: str = "") -> None:
    """Post Mia's planned delivery: she opted in, so she is asked to confirm it."""
    async with http.post(f"{base_url}/v1/events", json=tomorrows_question(run)) as resp:
        print(f"demo: tomorrow's delivery, a question for Mia: {resp.status}")


# -- a fresh start ---------------------------------------------------------------------------------
def _e164(number: str) -> str:
    return "".join(c for c in number if c == "+" or c.isdigit())


def demo_numbers() -> list[str]:
    """The phone numbers the demo owns: its customers' and its driver's."""
    return [_e164(c["phone"]) for c in [*CUSTOMERS, ASKED] if c.get("phone")] + [_e164(DRIVER["phone"])]


async def reset_demo(redis: Redis, settings: Settings) -> None:
    """Forget what earlier demo runs left, so this one plays as the first did.

    The demo's customers are fictional and the state below is theirs alone: their records,
    deliveries, logged messages and the jobs of those still waiting, their hourly rate-limit
    windows (a second run within the hour would otherwise be held back by the first), reply
    prompts, opt-outs (a STOP texted during an earlier tour), tracking links, and the relay
    sessions, routes and sticky proxies of their numbers and the driver's (else the pool looks
    taken for hours), what the hub learned of when they are home, and the follow-ups of their low
    ratings. Events of earlier runs still queued are dropped. Nothing else is touched.
    """
    message_ids: set[str] = set()
    sessions: set[str] = set()
    for customer in [*CUSTOMERS, ASKED]:
        await Availability(redis, settings).erase(str(customer["id"]))  # what the tours taught
        found, sids = await _forget_customer(redis, str(customer["id"]))
        message_ids |= found
        sessions |= sids
    pepper = keys.optout_pepper(settings.secret_key)
    doomed = [keys.feedback_days(str(DRIVER["id"]))]
    for number in demo_numbers():
        doomed += [keys.phone(number), keys.sms_optout(pepper, number), keys.relay_sticky(number)]
        doomed += [keys.whatsapp_optout(pepper, number), keys.whatsapp_window(pepper, number)]
        doomed += [k async for k in redis.scan_iter(match=keys.conversation(f"whatsapp:{number}", "*"), count=1000)]
        doomed += [k async for k in redis.scan_iter(match=keys.conversation(number, "*"), count=1000)]
        doomed += [k async for k in redis.scan_iter(match=keys.relay_route(number, "*"), count=1000)]
    await redis.delete(*doomed)
    await _drop_jobs(redis, settings.worker.queue_name, message_ids, sessions)


async def _forget_customer(redis: Redis, customer_id: str) -> tuple[set[str], set[str]]:
    """Delete one demo customer's keys; returns their message ids and relay session ids."""
    message_ids = set(await redis.zrange(keys.messages_by_customer(customer_id), 0, -1))
    deliveries = await redis.smembers(keys.deliveries_of(customer_id))
    links = await redis.smembers(keys.links_of(customer_id))
    doomed = [
        keys.customer(customer_id),
        keys.messages_by_customer(customer_id),
        keys.deliveries_of(customer_id),
        keys.links_of(customer_id),
        keys.webhooks_of(customer_id),
        *(keys.link(link_id) for link_id in links),
    ]
    doomed += [k async for k in redis.scan_iter(match=keys.rate_window(customer_id, "*"), count=1000)]
    for message_id in message_ids:
        provider_id = await redis.hget(keys.message(message_id), "provider_id")
        doomed += [keys.message(message_id), keys.message_history(message_id)]
        doomed += [keys.provider(provider_id)] if provider_id else []
    sessions: set[str] = set()
    for delivery_id in deliveries:
        sid = await redis.get(keys.relay_delivery(delivery_id))
        doomed += [keys.delivery(delivery_id), keys.timeline(delivery_id), keys.messages_by_delivery(delivery_id)]
        doomed += [keys.relay_delivery(delivery_id), keys.feedback(delivery_id), keys.followup(delivery_id)]
        doomed.append(keys.driver_position(delivery_id))
        if sid:
            sessions.add(sid)
            doomed += [keys.relay_session(sid), keys.relay_log(sid)]
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(*doomed)
        if message_ids:
            for status in keys.INDEXED_STATUSES:
                pipe.zrem(keys.messages_by_status(status), *message_ids)
        if deliveries:  # a low rating of an earlier tour is no follow-up for this one
            pipe.zrem(keys.FOLLOWUPS_OPEN, *deliveries)
            pipe.zrem(keys.FOLLOWUPS_HANDLED, *deliveries)
        await pipe.execute()
    return message_ids, sessions


async def _drop_jobs(redis: Redis, queue: str, message_ids: set[str], sessions: set[str]) -> None:
    """Drop queued jobs of earlier runs: their events, their waiting messages, their relay closes."""
    doomed = []
    async for job_id, _ in redis.zscan_iter(queue, count=1000):
        kind, _, rest = str(job_id).partition(":")
        if (
            rest.startswith("demo-")
            or (kind == "msg" and rest.partition(":")[0] in message_ids)
            or (kind == "relay-close" and rest in sessions)
        ):
            doomed.append(job_id)
    if doomed:
        async with redis.pipeline(transaction=True) as pipe:
            pipe.zrem(queue, *doomed)
            pipe.delete(*(job_key_prefix + job_id for job_id in doomed))
            await pipe.execute()
