"""When each customer is home: a Beta-Bernoulli model per local weekday and time block, with a
prior pooled from the customers of the same area (the arithmetic is in hub.availability_model,
the reasons in docs/availability.md).

``Availability`` learns from what the hub sees (an attempt delivered, or failed because nobody
was home; a slot chosen, a confirmation), answers the availability API and lists offered
reschedule slots best-first. Every read and write of what was learned goes through here, and
erasure takes a customer's observations back out of their area's pool as well.

What is kept (hub.keys): per customer, the observations themselves (bounded), so that each can
be taken back; per area, the sums of its customers' observations (the prior of a newcomer).
Recording is one Lua call that stores an observation only under a field it has never held,
then counts it: a job retried learns nothing twice.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from redis.asyncio import Redis

from preferences import CustomerRecord

from . import keys, lua_records
from .availability_model import (
    GLOBAL_AREA,
    BlockView,
    Counts,
    Estimate,
    Observation,
    area_of,
    block_of,
    bounds,
    decode,
    encode,
    estimate,
    own_counts,
    pool_counts,
    window_parts,
    without,
)
from .config import Settings
from .policy import customer_timezone

__all__ = ["Availability", "Known"]

log = logging.getLogger(__name__)

Window = tuple[datetime, datetime]


@dataclass(frozen=True)
class Known:
    """What is stored of one customer, read in one round with the others asked about."""

    customer_id: str
    timezone: str
    area: str
    observations: tuple[Observation, ...]


class Availability:
    def __init__(self, redis: Redis, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.redis = redis
        self.settings = settings
        self.cfg = settings.availability
        self.blocks = bounds(self.cfg)
        self.clock = clock
        self._learn = redis.register_script(lua_records.AVAILABILITY_LEARN)
        self._erase = redis.register_script(lua_records.AVAILABILITY_ERASE)

    # -- learning ------------------------------------------------------------------------------

    async def learn(self, source: str, event: dict[str, Any], customer: CustomerRecord) -> None:
        """What an applied event teaches (an attempt delivered or failed), once per event.

        ``delivered``: home. ``delivery_failed`` because nobody was home, or with no reason at
        all: not home. Any other reason (access, weather, refused...) says nothing about being
        home and is not learned, though it still counts as a failed attempt. Any event naming
        the delivery's area (``delivery.area``, or the destination's grid cell) remembers it, so
        that a customer on tomorrow's route starts at their area's rates; a ``scheduled`` one
        also remembers the zone, for the answers it may bring. Other events cost nothing here."""
        milestone = event.get("type")
        delivery = event.get("delivery") or {}
        destination = delivery.get("destination") or {}
        area = area_of(delivery.get("area"), destination.get("lat"), destination.get("lon"), self.cfg.area_grid_degrees)
        attempt = milestone in ("delivered", "delivery_failed")
        if customer.erased or not (attempt or milestone == "scheduled" or area != GLOBAL_AREA):
            return
        tz = self._zone(customer.prefs, customer.timezone, customer.phone)
        failed = milestone == "delivery_failed"
        reason = (event.get("data") or {}).get("reason_code")
        home = True if milestone == "delivered" else False if failed and reason in (None, "nobody_home") else None
        observation = None
        if home is not None:
            at = datetime.fromisoformat(event["occurred_at"])
            cell = block_of(at, ZoneInfo(tz), self.blocks)
            if cell is not None:
                observation = Observation(int(at.timestamp() * 1000), home, area, ((cell[0], cell[1], 1.0),))
        field = f"o:e:{source}:{event['event_id']}" if observation else ""
        kept_area = "" if area == GLOBAL_AREA else area  # an event naming none keeps the one remembered
        last = ""
        if attempt:  # the customer's latest attempt and when, for failed_before
            last = f"{'f' if failed else 'd'}:{int(datetime.fromisoformat(event['occurred_at']).timestamp() * 1000)}"
        await self._record(customer.id, field, observation, tz, kept_area, last)

    async def observe_window(self, customer_id: str, key: str, start: str, end: str, home: bool, weight: float) -> None:
        """A stated answer about a window (a chosen slot, a confirmation), once per ``key``: its
        weight spread over the blocks the window covers, in the customer's zone, in the area
        their last delivery was in."""
        if weight <= 0:
            return
        [known] = await self._known([customer_id])
        try:
            first, last = datetime.fromisoformat(start), datetime.fromisoformat(end)
            parts = window_parts(first, last, ZoneInfo(known.timezone), self.blocks)
        except (ValueError, TypeError):
            log.warning("stated window unreadable, not learned", extra={"customer_id": customer_id})
            return
        observation = None
        if parts:
            spread = tuple((wd, b, share * weight) for wd, b, share in parts)
            observation = Observation(int(first.timestamp() * 1000), home, known.area, spread)
        await self._record(customer_id, f"o:s:{key}" if observation else "", observation, "", "", "")

    async def _record(
        self, customer_id: str, field: str, observation: Observation | None, tz: str, area: str, last: str
    ) -> None:
        """One learning step (Lua AVAILABILITY_LEARN); ``last`` is an attempt's outcome and time
        (``f:<ms>`` failed, ``d:<ms>`` delivered; kept when it is the latest), or empty."""
        await self._learn(
            keys=[keys.availability(customer_id), keys.customer(customer_id)],
            args=[
                field,
                encode(observation) if observation else "",
                tz,
                area,
                last,
                self.cfg.max_observations,
                keys.AVAILABILITY_AREA_PREFIX,
            ],
        )

    async def erase(self, customer_id: str) -> None:
        """Forget everything learned about the customer, their share of the area pools included."""
        await self._erase(keys=[keys.availability(customer_id)], args=[keys.AVAILABILITY_AREA_PREFIX])

    # -- reading -------------------------------------------------------------------------------

    def _zone(self, prefs: dict[str, Any], given: str | None, phone: str | None) -> str:
        name = customer_timezone(prefs, given, phone, self.settings.policy, self.settings.default_timezone)
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            return self.settings.default_timezone
        return name

    async def _known(self, customer_ids: list[str]) -> list[Known]:
        """What is stored of each customer, in one pipelined round: the learned hash and the
        contact's zone (the customer's own settings win over the zone remembered at learning)."""
        pipe = self.redis.pipeline(transaction=False)
        for customer_id in customer_ids:
            pipe.hgetall(keys.availability(customer_id))
            pipe.hmget(keys.customer(customer_id), ["timezone", "pref:timezone", "phone", "erased"])
        replies = await pipe.execute()
        found = []
        for i, customer_id in enumerate(customer_ids):
            stored: dict[str, str] = replies[2 * i] or {}
            given, pref, phone, erased = replies[2 * i + 1]
            prefs = {"timezone": _json(pref)} if pref else {}
            if given or pref or phone or not stored.get("tz"):
                tz = self._zone(prefs, given, phone)
            else:
                tz = self._zone({}, stored["tz"], None)
            observations = () if erased == "1" else _observations(stored)
            area = stored.get("area") or GLOBAL_AREA
            found.append(Known(customer_id, tz, area, observations))
        return found

    async def _pools(self, areas: Iterable[str]) -> dict[str, Counts]:
        """Each area's pool (and every customer's), each read once, in one pipelined round."""
        names = sorted({GLOBAL_AREA, *areas})
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(keys.availability_area(name))
        return {name: pool_counts(raw or {}) for name, raw in zip(names, await pipe.execute(), strict=True)}

    def _estimate(
        self, known: Known, pools: dict[str, Counts], cells: Iterable[tuple[int, int]] | None = None
    ) -> Estimate:
        own = own_counts(known.observations, int(self.clock() * 1000), self.cfg.half_life_days)
        everyone = without(pools[GLOBAL_AREA], known.observations)
        area = everyone
        if known.area != GLOBAL_AREA:
            area = without(
                pools.get(known.area) or Counts({}, {}), (o for o in known.observations if o.area == known.area)
            )
        return estimate(self.cfg, own, area, everyone, len(self.blocks), cells)

    async def _models(self, customer_ids: list[str]) -> list[tuple[Known, dict[str, Counts]]]:
        known = await self._known(customer_ids)
        pools = await self._pools(k.area for k in known)
        return [(k, pools) for k in known]

    def _blocks(self, model: Estimate) -> list[BlockView]:
        labels = [(s.strftime("%H:%M"), e.strftime("%H:%M")) for s, e in self.blocks]
        return [
            BlockView(wd, labels[b][0], labels[b][1], round(model.p[(wd, b)], 4), round(model.evidence[(wd, b)], 2))
            for wd in range(7)
            for b in range(len(self.blocks))
        ]

    @staticmethod
    def _best(blocks: list[BlockView], n: int) -> list[dict[str, object]]:
        ranked = sorted(blocks, key=lambda v: (-v.p_home, -v.evidence))  # stable: earlier in the week first
        return [v.as_dict() for v in ranked[:n]]

    async def profile(self, customer_id: str) -> dict[str, Any]:
        """``GET /v1/customers/{id}/availability``: every block of the week, and the best five."""
        [(known, pools)] = await self._models([customer_id])
        blocks = self._blocks(self._estimate(known, pools))
        return {
            "customer_id": customer_id,
            "timezone": known.timezone,
            "area": None if known.area == GLOBAL_AREA else known.area,
            "blocks": [v.as_dict() for v in blocks],
            "best": self._best(blocks, 5),
        }

    def _window(self, model: Estimate, parts: list[tuple[int, int, float]]) -> tuple[float | None, float]:
        if not parts:
            return None, 0.0
        p = sum(share * model.p[(wd, b)] for wd, b, share in parts)
        evidence = sum(share * model.evidence[(wd, b)] for wd, b, share in parts)
        return min(1.0, max(0.0, p)), evidence

    async def query(self, asked: list[tuple[str, list[Window]]]) -> list[dict[str, Any]]:
        """``POST /v1/availability/query``: p_home per customer and window, in the order asked;
        two pipelined rounds of reads in all (the customers, then their areas' pools)."""
        models = await self._models([customer_id for customer_id, _ in asked])
        parts_of: dict[tuple[Window, str], list[tuple[int, int, float]]] = {}
        text_of: dict[Window, tuple[str, str]] = {}
        results = []
        for (customer_id, windows), (known, pools) in zip(asked, models, strict=True):
            zone = ZoneInfo(known.timezone)
            parts = []
            for window in windows:
                cached = parts_of.get((window, known.timezone))
                if cached is None:  # a route's candidate windows repeat across its customers
                    cached = parts_of[(window, known.timezone)] = window_parts(window[0], window[1], zone, self.blocks)
                    text_of.setdefault(window, (window[0].isoformat(), window[1].isoformat()))
                parts.append(cached)
            model = self._estimate(known, pools, {(wd, b) for each in parts for wd, b, _ in each})
            answers = []
            for window, each in zip(windows, parts, strict=True):
                p, evidence = self._window(model, each)
                start, end = text_of[window]
                answers.append(
                    {
                        "start": start,
                        "end": end,
                        "p_home": None if p is None else round(p, 4),
                        "evidence": round(evidence, 2),
                    }
                )
            results.append({"customer_id": customer_id, "windows": answers})
        return results

    async def p_window(self, customer_id: str, start: str, end: str) -> float | None:
        """The probability the customer is home during the window: the blocks it touches,
        weighted by the time spent in each. None when there is nothing to go on: the window
        touches no block, or neither the customer nor anyone in their pools was ever observed in
        its blocks (the bare prior is no reason to ask a customer anything)."""
        try:
            first, last = datetime.fromisoformat(start), datetime.fromisoformat(end)
            [(known, pools)] = await self._models([customer_id])
            parts = window_parts(first, last, ZoneInfo(known.timezone), self.blocks)
        except (ValueError, TypeError):
            return None
        cells = {(wd, b) for wd, b, _ in parts}
        pooled = (pools.get(area) for area in {GLOBAL_AREA, known.area})
        if not known.observations and not any(c and any(c.n.get(cell, 0.0) > 0 for cell in cells) for c in pooled):
            return None
        p, _ = self._window(self._estimate(known, pools, cells), parts)
        return None if p is None else round(p, 4)

    async def hint(self, customer_id: str, start: str | None = None, end: str | None = None) -> dict[str, Any]:
        """The availability hint webhooks carry: ``{"p_home": float | None, "best": [blocks]}``
        (the window's p_home when one is given; the customer's best three blocks)."""
        [(known, pools)] = await self._models([customer_id])
        model = self._estimate(known, pools)
        p_home = None
        if start and end:
            try:
                parts = window_parts(
                    datetime.fromisoformat(start), datetime.fromisoformat(end), ZoneInfo(known.timezone), self.blocks
                )
            except (ValueError, TypeError):
                parts = []
            p, _ = self._window(model, parts)
            p_home = None if p is None else round(p, 4)
        return {"p_home": p_home, "best": self._best(self._blocks(model), 3)}

    async def failed_before(self, customer_id: str) -> bool:
        """Whether the customer's latest attempt failed, whatever the reason, within
        ``confirmation.failed_within_days``: one delivery that went wrong months ago, or before
        a string of good ones, is no reason to ask before every parcel."""
        last = await self.redis.hget(keys.availability(customer_id), "last_attempt")  # type: ignore[misc]  # redis-py: Awaitable[T] | T
        if not last or not last.startswith("f:"):
            return False
        age_days = (self.clock() * 1000 - int(last[2:])) / 86_400_000
        return age_days <= self.settings.confirmation.failed_within_days

    async def order_slots(self, event: dict[str, Any], customer: CustomerRecord) -> None:
        """Reorder the event's offered slots best-first in place, when the setting asks for it
        (a stable sort: equal slots, and slots outside every block, keep the upstream's order,
        the latter after the rest). The SMS numbers and the reply's numbered answers read the
        same list, so they follow."""
        slots = (event.get("data") or {}).get("reschedule_slots")
        if not self.cfg.order_slots or not slots or len(slots) < 2 or customer.erased:
            return
        windows = [(datetime.fromisoformat(s["start"]), datetime.fromisoformat(s["end"])) for s in slots]
        [answer] = await self.query([(customer.id, windows)])
        ranked = sorted(
            zip(slots, answer["windows"], strict=True),
            key=lambda pair: 1.0 if pair[1]["p_home"] is None else -pair[1]["p_home"],
        )
        slots[:] = [slot for slot, _ in ranked]


def _json(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _observations(stored: dict[str, str]) -> tuple[Observation, ...]:
    found = (decode(value) for field, value in stored.items() if field.startswith("o:"))
    return tuple(obs for obs in found if obs is not None)
