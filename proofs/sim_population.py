"""The synthetic population of ``hub simulate availability``: customers with known weekly
routines, the parcels they are sent, and the planners' window choices (docs/first-attempt.md).

Everything here is pure and seeded: the same seed gives the same customers, routines, parcels
and random draws, so the planner that ignores the hub and the one that follows it meet the
same population, parcel for parcel. Nothing here talks to the hub (proofs.simulate does).

A customer's routine is a probability per weekday and delivery window that the door is
answered (they, someone of their household, or the building's concierge takes the parcel),
built from an archetype's hourly profile with the customer's own parameters and noise. An
attempt in a window succeeds with that probability: the truth the hub has to learn.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "ARCHETYPES",
    "AREAS",
    "DELIVERY_WEEKDAYS",
    "WINDOWS",
    "Customer",
    "Parcel",
    "Population",
    "Responses",
    "assign_by_probability",
    "assign_random",
    "attempt_draws",
    "brier",
    "capacity",
    "door_answered",
    "make_population",
    "oracle_failures",
    "reliability",
    "respond",
]

# The day's candidate delivery windows, local hours [start, end).
WINDOWS: tuple[tuple[int, int], ...] = ((8, 11), (11, 14), (14, 17), (17, 20))
DELIVERY_WEEKDAYS: tuple[int, ...] = (0, 1, 2, 3, 4, 5)  # Monday to Saturday
# The archetypes' hourly profiles say where the customer is: in (1), out (0), or either (0.5).
IN, OUT, MAYBE = 1.0, 0.0, 0.5
# The door is answered with probability DOOR_IN when the customer is in. When they are out it
# depends on the household: a customer living alone finds the door answered only now and then
# (a concierge, a neighbour who happens to see the driver); in a larger household someone else
# often is in. Published first-attempt failure rates (8-20 %) are of parcels left with whoever
# opens, so "out" is rarely a certain failure.
DOOR_IN = 0.96
ALONE_SHARE, DOOR_OUT_ALONE, DOOR_OUT_SHARED = 0.3, 0.4, (0.75, 0.9)


def _grid(value: float) -> list[list[float]]:
    return [[value] * 24 for _ in range(7)]


def _away(grid: list[list[float]], days: Sequence[int], start: float, end: float, level: float = OUT) -> None:
    for day in days:
        for hour in range(24):
            if start <= hour + 0.5 < end:
                grid[day][hour] = level


def _office(rng: random.Random) -> list[list[float]]:
    """Out from a start between 7 and 9 for nine to ten hours with the commute, Monday to Friday."""
    grid = _grid(IN)
    start = rng.uniform(7.0, 9.0)
    _away(grid, range(5), start, start + rng.uniform(9.0, 10.5))
    _away(grid, [5], 10, 16, MAYBE)  # Saturday errands
    return grid


def _shift(rng: random.Random) -> list[list[float]]:
    """A late shift (out 13-22) on five days of the six, asleep but in mornings."""
    grid = _grid(IN)
    days = rng.sample(range(6), 5)
    start = rng.choice((12.5, 13.0, 13.5))
    _away(grid, days, start, start + 9)
    return grid


def _home_office(rng: random.Random) -> list[list[float]]:
    """At home most weekdays, at the office on two of them; out for lunch now and then."""
    grid = _grid(IN)
    office = rng.sample(range(5), 2)
    _away(grid, office, 8, 18)
    _away(grid, [d for d in range(5) if d not in office], 12, 13, MAYBE)
    _away(grid, [5], 9, 14, MAYBE)
    return grid


def _retired(rng: random.Random) -> list[list[float]]:
    """In most of the time; mornings out on two or three days (shopping, appointments)."""
    grid = _grid(IN)
    _away(grid, rng.sample(range(6), rng.choice((2, 3))), 9, 12.5, OUT)
    _away(grid, range(7), 15, 17, MAYBE)
    return grid


def _student(rng: random.Random) -> list[list[float]]:
    """Lectures on three or four weekdays, out most evenings."""
    grid = _grid(MAYBE)
    _away(grid, rng.sample(range(5), rng.choice((3, 4))), 9.5, 16.5)
    _away(grid, range(6), 18.5, 23, OUT)
    _away(grid, [5, 6], 7, 12, IN)  # weekend mornings in
    return grid


def _family(rng: random.Random) -> list[list[float]]:
    """A part-time parent: out in the morning on weekdays, the school run mid-afternoon."""
    grid = _grid(IN)
    start = rng.uniform(7.5, 8.5)
    _away(grid, range(5), start, start + rng.uniform(4.0, 5.5))
    _away(grid, range(5), 14.5, 16, MAYBE)
    return grid


ARCHETYPES: dict[str, Callable[[random.Random], list[list[float]]]] = {
    "office": _office,
    "shift": _shift,
    "home_office": _home_office,
    "retired": _retired,
    "student": _student,
    "family": _family,
}
# Each area's archetype mix, postcode and city (the area a customer lives in).
AREAS: dict[str, tuple[dict[str, float], str]] = {
    "centre": ({"office": 0.4, "student": 0.25, "home_office": 0.2, "shift": 0.05, "retired": 0.1}, "10115 Berlin"),
    "suburb": (
        {"office": 0.35, "family": 0.3, "retired": 0.15, "home_office": 0.15, "shift": 0.05},
        "14532 Kleinmachnow",
    ),
    "outskirts": ({"retired": 0.3, "shift": 0.25, "family": 0.2, "office": 0.25}, "15711 Königs Wusterhausen"),
}
AREA_SHARES: dict[str, float] = {"centre": 0.45, "suburb": 0.35, "outskirts": 0.2}
NOISE_SD = 0.35  # per customer, weekday and window, on the logit scale


@dataclass(frozen=True)
class Customer:
    id: str
    area: str
    archetype: str
    phone: str
    address: str
    weekly_parcels: float
    # [weekday 0-6][window index]: the probability the door is answered in that window.
    home: tuple[tuple[float, ...], ...]


@dataclass(frozen=True)
class Parcel:
    """One parcel with the draws that decide what happens to it, fixed in advance so both
    planners meet the same luck: ``door`` < p_home means the door is answered (the same draw
    for every window of that attempt, so a customer in at 17-20 on a day stays in when the
    chance is higher), ``answer``/``choice``/``plan`` drive the response model."""

    id: str
    customer: Customer
    day: int  # day of the simulation (week * 7 + weekday)
    draws: tuple[float, ...] = field(repr=False)  # (door, answer, choice, plan, fresh, handover) per attempt


@dataclass(frozen=True)
class Population:
    seed: int
    customers: tuple[Customer, ...]
    parcels: tuple[Parcel, ...]

    def parcels_on(self, day: int) -> list[Parcel]:
        return [p for p in self.parcels if p.day == day]


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _window_probabilities(hourly: list[list[float]], rng: random.Random) -> tuple[tuple[float, ...], ...]:
    """The probability the door is answered per weekday and window: the household's levels
    over the window's hours, then the customer's own noise."""
    door_out = DOOR_OUT_ALONE if rng.random() < ALONE_SHARE else rng.uniform(*DOOR_OUT_SHARED)
    out = []
    for day in range(7):
        row = []
        for start, end in WINDOWS:
            presence = sum(hourly[day][start:end]) / (end - start)
            p = door_out + (DOOR_IN - door_out) * presence
            noisy = _logit(min(0.99, max(0.01, p))) + rng.gauss(0, NOISE_SD)
            row.append(round(min(0.98, max(0.05, 1 / (1 + math.exp(-noisy)))), 4))
        out.append(tuple(row))
    return tuple(out)


def _pick(rng: random.Random, weights: dict[str, float]) -> str:
    names = sorted(weights)
    return rng.choices(names, weights=[weights[n] for n in names])[0]


def _customer(seed: int, i: int) -> Customer:
    rng = random.Random(f"{seed}:customer:{i}")
    area = _pick(rng, AREA_SHARES)
    mix, place = AREAS[area]
    archetype = _pick(rng, mix)
    hourly = ARCHETYPES[archetype](rng)
    # Parcels a week: most order now and then, a few every few days (a log-normal, mean about 0.6).
    weekly = min(4.0, rng.lognormvariate(math.log(1.0), 0.7))
    return Customer(
        id=f"SIM-C{i:05d}",
        area=area,
        archetype=archetype,
        phone=f"+49151{20000000 + i}",
        address=f"Simulationsweg {i % 200 + 1}, {place}",
        weekly_parcels=round(weekly, 3),
        home=_window_probabilities(hourly, rng),
    )


def make_population(seed: int, customers: int, weeks: int) -> Population:
    """``customers`` customers and their parcels over ``weeks`` weeks, all from ``seed``: at most
    one new parcel per customer and day (a second one would travel with the first)."""
    people = tuple(_customer(seed, i) for i in range(customers))
    parcels: list[Parcel] = []
    for week in range(weeks):
        for c in people:
            rng = random.Random(f"{seed}:parcels:{c.id}:{week}")
            # Poisson(weekly_parcels) parcels on distinct delivery days of the week.
            count, acc, limit = 0, rng.random(), math.exp(-c.weekly_parcels)
            while acc > limit and count < len(DELIVERY_WEEKDAYS):
                count += 1
                acc *= rng.random()
            for weekday in sorted(rng.sample(DELIVERY_WEEKDAYS, count)):
                draws = tuple(rng.random() for _ in range(6 * 4))  # up to four attempts
                parcels.append(Parcel(f"SIM-P{c.id[5:]}-{week:02d}{weekday}", c, week * 7 + weekday, draws))
    parcels.sort(key=lambda p: (p.day, p.id))
    return Population(seed, people, tuple(parcels))


def capacity(parcels: int, slack: float = 1.2) -> int:
    """Parcels one window of the day can take: the day's parcels spread over the windows with a
    little slack, so not everyone gets the window they would like best."""
    return max(1, math.ceil(slack * parcels / len(WINDOWS)))


def assign_random(ids: Sequence[str], rng: random.Random, cap: int) -> dict[str, int]:
    """The planner that ignores the hub: each parcel a random window with room left."""
    load = [0] * len(WINDOWS)
    out: dict[str, int] = {}
    for pid in ids:
        free = [w for w in range(len(WINDOWS)) if load[w] < cap]
        w = rng.choice(free)
        load[w] += 1
        out[pid] = w
    return out


def assign_by_probability(probabilities: Mapping[str, Sequence[float]], cap: int) -> dict[str, int]:
    """The hub-aware planner: greedy by the largest loss avoided. Parcels whose best window is
    much better than their next best choose first; each takes its best window with room left."""
    load = [0] * len(WINDOWS)
    out: dict[str, int] = {}

    def regret(pid: str) -> tuple[float, str]:
        ranked = sorted(probabilities[pid], reverse=True)
        return (ranked[0] - (ranked[1] if len(ranked) > 1 else 0.0), pid)

    for pid in sorted(probabilities, key=regret, reverse=True):
        ps = probabilities[pid]
        for w in sorted(range(len(WINDOWS)), key=lambda w: (-ps[w], w)):
            if load[w] < cap:
                load[w] += 1
                out[pid] = w
                break
    return out


def brier(predictions: Sequence[float], outcomes: Sequence[bool]) -> float:
    """Mean squared difference between a predicted probability and what happened (0 or 1)."""
    if not predictions:
        return float("nan")
    return sum((p - float(y)) ** 2 for p, y in zip(predictions, outcomes, strict=True)) / len(predictions)


def reliability(predictions: Sequence[float], outcomes: Sequence[bool], bins: int = 10) -> list[dict[str, float]]:
    """Predictions grouped by probability bin: how many, their mean, and the share that came true."""
    groups: list[list[tuple[float, bool]]] = [[] for _ in range(bins)]
    for p, y in zip(predictions, outcomes, strict=True):
        groups[min(bins - 1, int(p * bins))].append((p, y))
    return [
        {
            "from": i / bins,
            "to": (i + 1) / bins,
            "n": len(g),
            "mean_p": sum(p for p, _ in g) / len(g),
            "observed": sum(1 for _, y in g if y) / len(g),
        }
        for i, g in enumerate(groups)
        if g
    ]


@dataclass(frozen=True)
class Responses:
    """The response model: how a customer asked to confirm a window answers (documented in
    docs/first-attempt.md). They know their plans for the day, and those plans hold with
    ``plans_hold``; ``handover`` is how often a parcel left with a neighbour or in a safe
    place counts as delivered at the first attempt."""

    answer_rate: float = 0.6
    neighbour_share: float = 0.5
    plans_hold: float = 0.9
    handover: float = 0.95


def attempt_draws(parcel: Parcel, attempt: int) -> tuple[float, ...]:
    """(door, answer, choice, plan, fresh, handover) of the parcel's ``attempt`` (0: the first)."""
    return parcel.draws[6 * attempt : 6 * attempt + 6]


def respond(
    draws: Sequence[float], home: Sequence[float], planned: int, offered: Sequence[int], model: Responses
) -> str | None:
    """The SMS a customer sends back to the ``scheduled`` question (None: no answer): 1 when in
    during the planned window, else the first offered window they will be in (4, 5, ...), else
    2 (neighbour) or 3 (safe place). "In" is the attempt's own door draw against the window's
    probability, the same draw the attempt is decided by."""
    door, answer, choice = draws[0], draws[1], draws[2]
    if answer >= model.answer_rate:
        return None
    if door < home[planned]:
        return "1"
    for n, window in enumerate(offered, start=4):
        if door < home[window]:
            return str(n)
    return "2" if choice < model.neighbour_share else "3"


def door_answered(draws: Sequence[float], p_home: float, answered: bool, model: Responses) -> bool:
    """Whether the attempt finds someone in: the door draw against the window's probability; for
    a customer who answered (and so planned their day), a fresh draw when the plans changed."""
    door, plan, fresh = draws[0], draws[3], draws[4]
    if answered and plan >= model.plans_hold:
        return fresh < p_home
    return door < p_home


def oracle_failures(pop: Population, first_week: int, weeks: int) -> tuple[int, int]:
    """(first attempts, failed) of the greedy planner given the true routines instead of the
    hub's estimates, without questions: what knowing the routines alone could reach (new
    parcels only, so each day's capacity is a little looser than in the runs)."""
    attempts = failed = 0
    for day in range(first_week * 7, weeks * 7):
        parcels = pop.parcels_on(day)
        if not parcels:
            continue
        by_customer: dict[str, list[Parcel]] = {}
        for p in parcels:
            by_customer.setdefault(p.customer.id, []).append(p)
        leads = {ps[0].id: ps for ps in by_customer.values()}
        chosen = assign_by_probability(
            {pid: ps[0].customer.home[day % 7] for pid, ps in leads.items()}, capacity(len(leads))
        )
        for pid, ps in leads.items():
            lead = ps[0]
            ok = attempt_draws(lead, 0)[0] < lead.customer.home[day % 7][chosen[pid]]
            attempts += len(ps)
            failed += 0 if ok else len(ps)
    return attempts, failed
