"""``hub simulate availability``: does following the hub's availability and confirmations cut
failed first attempts, and at what cost in messages? (docs/first-attempt.md)

One seeded population (proofs.sim_population) is delivered to twice, each time through a fresh
hub of real processes (a private Redis, ``hub api``, ``hub worker``, the sandbox providers):

- by the planner that ignores the hub (a random window with room, as a route's natural order
  falls), which still posts every outcome;
- by the hub-aware planner: after the warm-up weeks (the hub learns from outcomes, the planner
  plans as the first one does) it asks ``POST /v1/availability/query`` for the day's parcels by
  windows in one call, assigns windows by p_home within each window's capacity, posts a
  ``scheduled`` event per stop the evening before (the planned window, two alternatives), lets
  simulated customers answer the questions the hub chose to send by SMS, and applies the answer
  webhooks before it cuts the route.

Attempts are decided by the customer's true routine (``door_answered``) and posted as
``delivered`` or ``delivery_failed`` (``nobody_home``), so the hub learns from them. The calendar
runs from the next Monday on: the hub judges a question's expiry and a message's time to live
against its own clock, so the simulated days lie ahead of it, as a real route's next day does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hub.redis_server import EmbeddedRedis

from .common import start_stack, stop_all
from .sim_hub import Receiver, SimHub
from .sim_population import (
    DELIVERY_WEEKDAYS,
    WINDOWS,
    Parcel,
    Population,
    Responses,
    assign_by_probability,
    assign_random,
    attempt_draws,
    capacity,
    door_answered,
    make_population,
    respond,
)
from .sim_report import build_report, print_report

__all__ = ["Calendar", "Options", "Tally", "run_simulate_cli", "simulate"]

ZONE = ZoneInfo("Europe/Berlin")
MAX_ATTEMPTS = 4  # then the parcel goes back to the shop
NO_LIMITS = "{sms: 0, email: 0, push: 0, whatsapp: 0}"  # weeks pass in minutes: no per-hour caps


@dataclass(frozen=True)
class Options:
    customers: int = 500
    weeks: int = 16
    warmup: int = 12
    seed: int = 1
    responses: Responses = field(default_factory=Responses)
    answer_timeout: float = 20.0
    hub_env: tuple[tuple[str, str], ...] = ()  # settings of the hubs under test (HUB_* variables)


@dataclass
class Stop:
    """A customer's parcels of one day (a parcel re-attempted and a new one travel together)."""

    parcels: list[tuple[Parcel, int]]  # (parcel, attempt number)
    window: int = 0
    offered: list[int] = field(default_factory=list)
    p_hub: list[float] | None = None
    answered: bool = False
    handover: str | None = None  # neighbour | safe_place, from delivery.instructions_updated

    @property
    def lead(self) -> tuple[Parcel, int]:
        return self.parcels[0]

    @property
    def delivery_id(self) -> str:
        return self.lead[0].id


@dataclass
class Tally:
    """One planner's figures over the evaluated weeks (first attempts are what the target counts)."""

    first: int = 0
    first_failed: int = 0
    attempts: int = 0
    failed: int = 0
    messages: int = 0  # everything the providers took, every milestone
    questions: int = 0  # messages the scheduled events made
    replies: int = 0  # customers' texts
    acks: int = 0  # the hub's answers to them
    answers_unheard: int = 0  # replies no answer webhook followed within the timeout
    answers: Counter[str] = field(default_factory=Counter)
    calibration: list[tuple[float, float, bool]] = field(default_factory=list)  # (hub p, true p, door answered)
    weekly: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


class Calendar:
    """Day n of the simulation is ``start + n`` days, local time in ``ZONE``."""

    def __init__(self, start: date) -> None:
        self.start = start

    @classmethod
    def from_next_monday(cls, today: date) -> Calendar:
        return cls(today + timedelta(days=7 - today.weekday()))

    def at(self, day: int, hour: float) -> datetime:
        base = datetime.combine(self.start + timedelta(days=day), dtime(0), ZONE)
        return base + timedelta(hours=hour)

    def window(self, day: int, w: int) -> tuple[str, str]:
        start, end = WINDOWS[w]
        return self.at(day, start).isoformat(), self.at(day, end).isoformat()


def _customer(parcel: Parcel) -> dict[str, Any]:
    c = parcel.customer
    return {"id": c.id, "name": f"Kundin {c.id[5:]}", "phone": c.phone, "locale": "de-DE", "timezone": str(ZONE)}


def _delivery(parcel: Parcel, eta: tuple[str, str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": parcel.id,
        "tracking_code": parcel.id.replace("-", ""),
        "merchant": "Simshop",
        "address": parcel.customer.address,
        "area": parcel.customer.area,  # the district, as a carrier's depot knows it
    }
    if eta:
        out["eta"] = {"start": eta[0], "end": eta[1]}
    return out


def scheduled_event(cal: Calendar, day: int, stop: Stop) -> dict[str, Any]:
    parcel, k = stop.lead
    slots = [dict(zip(("start", "end"), cal.window(day, w), strict=True), id=f"w{w}") for w in stop.offered]
    return {
        "event_id": f"{parcel.id}-s{k}",
        "type": "scheduled",
        "occurred_at": cal.at(day - 1, 19).isoformat(),  # the evening before
        "delivery": _delivery(parcel, cal.window(day, stop.window)),
        "customer": _customer(parcel),
        "data": {"reschedule_slots": slots},
    }


def outcome_event(cal: Calendar, day: int, stop: Stop, parcel: Parcel, k: int, ok: bool) -> dict[str, Any]:
    start, end = WINDOWS[stop.window]
    at = cal.at(day, start + (end - start) * (0.1 + 0.8 * attempt_draws(parcel, k)[5]))
    data: dict[str, Any] = {"reason_code": "nobody_home"} if not ok else {}
    if ok and stop.handover:
        data["pod"] = {"place": "with a neighbour" if stop.handover == "neighbour" else "safe place"}
    return {
        "event_id": f"{parcel.id}-a{k}",
        "type": "delivered" if ok else "delivery_failed",
        "occurred_at": at.isoformat(),
        "delivery": _delivery(parcel, cal.window(day, stop.window)),
        "customer": _customer(parcel),
        "driver": {"id": f"SIM-DR-{parcel.customer.area}"},
        "data": data,
    }


def _stops(todays: list[tuple[Parcel, int]]) -> list[Stop]:
    by_customer: dict[str, list[tuple[Parcel, int]]] = defaultdict(list)
    for parcel, k in todays:
        by_customer[parcel.customer.id].append((parcel, k))
    return [Stop(sorted(v, key=lambda pk: (-pk[1], pk[0].id))) for _, v in sorted(by_customer.items())]


def _alternatives(stop: Stop, load: Counter[int], cap: int, ps: list[float]) -> list[int]:
    """Two other windows, best first by the hub's p: those with room left, then any."""
    others = sorted((w for w in range(len(WINDOWS)) if w != stop.window), key=lambda w: (-ps[w], w))
    return ([w for w in others if load[w] < cap] + [w for w in others if load[w] >= cap])[:2]


class Day:
    """One delivery day of one planner: plan, ask (hub-aware), attempt, post the outcomes."""

    def __init__(self, run: Run, day: int, todays: list[tuple[Parcel, int]]) -> None:
        self.run, self.day = run, day
        self.stops = _stops(todays)
        self.weekday = day % 7
        self.evaluated = day // 7 >= run.opts.warmup
        self.aware = run.hub_aware and self.evaluated

    async def plan(self) -> None:
        cap = capacity(len(self.stops))
        probs: dict[str, list[float]] = {}
        if self.evaluated:
            # The baseline asks too, only to score the hub's estimates on windows it did not
            # choose (a read: the hub learns nothing from it); it plans without them.
            spans = [self.run.cal.window(self.day, w) for w in range(len(WINDOWS))]
            probs = await self.run.hub.query({s.delivery_id: (s.lead[0].customer.id, spans) for s in self.stops})
        if not self.aware:
            rng = random.Random(f"{self.run.opts.seed}:route:{self.day}")
            chosen = assign_random([s.delivery_id for s in self.stops], rng, cap)
            for s in self.stops:
                s.window, s.p_hub = chosen[s.delivery_id], probs.get(s.delivery_id)
            return
        chosen = assign_by_probability(probs, cap)
        load = Counter(chosen.values())
        for s in self.stops:
            s.window, s.p_hub = chosen[s.delivery_id], probs[s.delivery_id]
            s.offered = _alternatives(s, load, cap, s.p_hub)

    async def ask(self) -> None:
        """The scheduled events; the customers the hub asked answer; the answers are applied."""
        hub, model = self.run.hub, self.run.opts.responses
        await hub.ledger(clear=True)  # nothing but the questions from here on
        self.run.receiver.by_delivery.clear()  # an answer that came too late is not today's
        await hub.post_events([scheduled_event(self.run.cal, self.day, s) for s in self.stops])
        sent = await hub.ledger(clear=True)
        asked = {e["to"] for e in sent if e["channel"] == "sms"}
        self.count(questions=len(sent), messages=len(sent))
        replies: list[tuple[Stop, str]] = []
        for s in self.stops:
            parcel, k = s.lead
            if parcel.customer.phone in asked:
                body = respond(attempt_draws(parcel, k), parcel.customer.home[self.weekday], s.window, s.offered, model)
                if body is not None:
                    replies.append((s, body))
        acks = await asyncio.gather(*(hub.text(s.lead[0].customer.phone, body) for s, body in replies))
        await self.run.receiver.wait_for([s.delivery_id for s, _ in replies], self.run.opts.answer_timeout)
        # The hub's answers: in its TwiML reply, and whatever else it sent meanwhile.
        later = len(await hub.ledger(clear=True))
        self.count(replies=len(replies), acks=sum(acks) + later, messages=sum(acks) + later)
        for s, body in replies:
            self.apply(s, body)

    def apply(self, stop: Stop, body: str) -> None:
        """What the planner does with the answer webhook (none: nothing, as in production)."""
        stop.answered = True  # the customer has planned their day around the window they named
        hooks = self.run.receiver.by_delivery.pop(stop.delivery_id, [])
        if not hooks:
            if self.evaluated:
                self.run.tally.answers_unheard += 1
            return
        kind, data = hooks[-1]
        if kind == "delivery.reschedule_requested" and str(data.get("slot_id", "")).startswith("w"):
            stop.window = int(str(data["slot_id"])[1:])
            label = "another window"
        elif kind == "delivery.instructions_updated" and data.get("kind") in ("neighbour", "safe_place"):
            stop.handover = str(data["kind"])
            label = stop.handover
        else:
            label = "confirmed" if kind == "delivery.confirmed" else kind
        if self.evaluated:
            self.run.tally.answers[label] += 1

    def count(self, **figures: int) -> None:
        if self.evaluated:
            for name, n in figures.items():
                setattr(self.run.tally, name, getattr(self.run.tally, name) + n)

    async def attempt(self) -> list[tuple[Parcel, int]]:
        """Every stop attempted; the outcomes posted; the parcels to try again returned."""
        tally, model, events, again = self.run.tally, self.run.opts.responses, [], []
        for s in self.stops:
            parcel, k = s.lead
            draws = attempt_draws(parcel, k)
            p_true = parcel.customer.home[self.weekday][s.window]
            door = door_answered(draws, p_true, s.answered, model)
            ok = draws[5] < model.handover if s.handover else door
            if s.p_hub is not None and not s.handover:
                tally.calibration.append((s.p_hub[s.window], p_true, door))
            for p, pk in s.parcels:
                events.append(outcome_event(self.run.cal, self.day, s, p, pk, ok))
                if not ok and pk + 1 < MAX_ATTEMPTS:
                    again.append((p, pk + 1))
                if self.evaluated:
                    tally.attempts += 1
                    tally.failed += not ok
                    tally.first += pk == 0
                    tally.first_failed += pk == 0 and not ok
        await self.run.hub.post_events(events)
        self.count(messages=len(await self.run.hub.ledger(clear=True)))
        return again


class Run:
    """One planner over the whole calendar, against its own fresh hub."""

    def __init__(self, pop: Population, opts: Options, hub_aware: bool, cal: Calendar) -> None:
        self.pop, self.opts, self.hub_aware, self.cal = pop, opts, hub_aware, cal
        self.tally = Tally()
        self.receiver = Receiver()
        self.hub: SimHub

    async def go(self) -> Tally:
        tmp = Path(tempfile.mkdtemp(prefix="hub-simulate-"))
        redis = EmbeddedRedis(tmp / "redis", appendonly=False).start()
        await self.receiver.start()
        stack = None
        begin = time.monotonic()
        try:
            env: dict[str, Any] = {  # every value a string: start_stack's keywords beyond its own
                "HUB_WEBHOOKS__SUBSCRIPTIONS": self.receiver.subscription,
                "HUB_POLICY__PER_CUSTOMER_HOUR": NO_LIMITS,
                **dict(self.opts.hub_env),
            }
            stack = await start_stack(redis.url, 1, 50, unpaced=True, **env)
            self.hub = SimHub(stack, redis.url)
            try:
                await self._days()
            finally:
                await self.hub.close()
        finally:
            if stack is not None:
                stop_all(stack.procs)
            await self.receiver.close()
            redis.stop()
        self.tally.seconds = time.monotonic() - begin
        return self.tally

    async def _days(self) -> None:
        again: list[tuple[Parcel, int]] = []
        label = "hub-aware" if self.hub_aware else "baseline"
        for week in range(self.opts.weeks):
            started, before = time.monotonic(), (self.tally.first, self.tally.first_failed, self.tally.questions)
            for weekday in DELIVERY_WEEKDAYS:
                day = week * 7 + weekday
                todays = [(p, 0) for p in self.pop.parcels_on(day)] + again
                if not todays:
                    again = []
                    continue
                today = Day(self, day, todays)
                await today.plan()
                if today.aware:
                    await today.ask()
                again = await today.attempt()
            self._progress(label, week, started, before)

    def _progress(self, label: str, week: int, started: float, before: tuple[int, int, int]) -> None:
        first, failed, asked = (
            a - b
            for a, b in zip((self.tally.first, self.tally.first_failed, self.tally.questions), before, strict=True)
        )
        warm = week < self.opts.warmup
        line = f"{label}: week {week + 1}/{self.opts.weeks}" + (" (warm-up)" if warm else "")
        if not warm:
            line += f", {first} parcels, {failed / max(1, first):.1%} failed first attempts, {asked} questions"
            self.tally.weekly.append({"week": week + 1, "parcels": first, "failed_first": failed, "questions": asked})
        print(f"{line} ({time.monotonic() - started:.0f} s)", flush=True)


async def simulate(opts: Options, today: date | None = None) -> dict[str, Any]:
    """Both planners on the same population; the report (proofs.sim_report)."""
    pop = make_population(opts.seed, opts.customers, opts.weeks)
    cal = Calendar.from_next_monday(today or datetime.now(ZONE).date())
    print(
        f"{len(pop.customers)} customers, {len(pop.parcels)} parcels over {opts.weeks} weeks"
        f" from {cal.start} (seed {opts.seed})"
    )
    baseline = await Run(pop, opts, False, cal).go()
    aware = await Run(pop, opts, True, cal).go()
    return build_report(pop, opts, cal.start, baseline, aware)


def run_simulate_cli(args: argparse.Namespace) -> int:
    """``hub simulate availability``; exit 0 when the run completed (the verdict is in the report)."""
    settings = [tuple(item.split("=", 1)) for item in args.hub_env]
    if any(len(pair) != 2 or not pair[0].startswith("HUB_") for pair in settings):
        print("--hub-env takes HUB_NAME=value")
        return 2
    opts = Options(
        customers=args.customers,
        weeks=args.weeks,
        warmup=args.warmup,
        seed=args.seed,
        hub_env=tuple((name, value) for name, value in settings),
    )
    if not 0 <= opts.warmup < opts.weeks:
        print("--warmup must be at least 0 and less than --weeks")
        return 2
    logging.getLogger("hub.sandbox").setLevel(logging.WARNING)  # a line per simulated text otherwise
    report = asyncio.run(simulate(opts))
    print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
    return 0
