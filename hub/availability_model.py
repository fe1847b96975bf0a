"""The availability model's arithmetic (hub.availability keeps its evidence in Redis): the day's
time blocks, where an instant or a window falls among them, the observations' stored form, and
the Beta-Bernoulli estimate with its pooled prior (docs/availability.md explains each choice).

Pure functions over settings and stored values, no I/O, so every rule is testable on its own.
The estimate of weekday ``d``, block ``b`` shrinks four levels into one another, each a rate
with a number of pseudo-observations behind it (the ``*_strength`` settings):

    global   = (H_all[d,b] + g * prior_home) / (N_all[d,b] + g)
    area     = (H_area[d,b] + a * global)   / (N_area[d,b] + a)
    block    = (h[., b]     + c * area)     / (n[., b]      + c)     the customer's block, all weekdays
    p_home   = (h[d, b]     + w * block)    / (n[d, b]      + w)

``H``/``N`` are the pools' weights of home and of all observations less the customer's own
(``without``), ``h``/``n`` the customer's own (each observation weighted, and halved every
``half_life_days`` of age).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

from .config_availability import AvailabilitySettings
from .policy import first_instant_at

__all__ = [
    "GLOBAL_AREA",
    "MAX_WINDOW",
    "BlockView",
    "Counts",
    "Estimate",
    "Observation",
    "area_of",
    "block_of",
    "bounds",
    "decode",
    "encode",
    "estimate",
    "own_counts",
    "pool_counts",
    "window_parts",
    "without",
]

GLOBAL_AREA = "*"  # the pool of every customer: the area of those without one
MAX_WINDOW = timedelta(days=7)  # a longer window is cut here (the API refuses one)
_AREA_UNSAFE = str.maketrans({c: "_" for c in "|;*,"})  # the stored record's separators

Cell = tuple[int, int]  # (weekday, block)


@dataclass(frozen=True)
class Observation:
    """One thing learned: home or not, when, in which area, spread over the blocks it covers."""

    at_ms: int
    home: bool
    area: str
    parts: tuple[tuple[int, int, float], ...]  # (weekday, block, weight)


@dataclass
class Counts:
    """Weights per (weekday, block): of all observations (``n``) and of those at home (``h``)."""

    n: dict[Cell, float]
    h: dict[Cell, float]


@dataclass(frozen=True)
class BlockView:
    weekday: int
    start: str
    end: str
    p_home: float
    evidence: float

    def as_dict(self) -> dict[str, object]:
        return {
            "weekday": self.weekday,
            "start": self.start,
            "end": self.end,
            "p_home": self.p_home,
            "evidence": self.evidence,
        }


@dataclass(frozen=True)
class Estimate:
    """The customer's p_home and own evidence per (weekday, block)."""

    p: dict[Cell, float]
    evidence: dict[Cell, float]


def bounds(cfg: AvailabilitySettings) -> list[tuple[time, time]]:
    """The blocks as (start, end) local times."""
    marks = [time(int(t[:2]), int(t[3:])) for t in cfg.blocks]
    return list(pairwise(marks))


def block_of(instant: datetime, tz: ZoneInfo, blocks: list[tuple[time, time]]) -> Cell | None:
    """The (weekday, block) the instant falls in, in the zone; None outside every block."""
    local = instant.astimezone(tz)
    wall = local.time().replace(tzinfo=None)
    for i, (start, end) in enumerate(blocks):
        if start <= wall < end:
            return local.weekday(), i
    return None


def window_parts(
    start: datetime, end: datetime, tz: ZoneInfo, blocks: list[tuple[time, time]]
) -> list[tuple[int, int, float]]:
    """(weekday, block, share) of the blocks the window overlaps, shares summing to 1 by the
    time spent in each (block edges are the local wall clock's, right across DST changes). An
    instant (start == end) is its block; a window touching no block gives []."""
    if end <= start:
        cell = block_of(start, tz, blocks)
        return [(cell[0], cell[1], 1.0)] if cell else []
    end = min(end, start + MAX_WINDOW)
    overlap: dict[Cell, float] = defaultdict(float)
    day: date = start.astimezone(tz).date()
    last = end.astimezone(tz).date()
    while day <= last:
        for i, (b_start, b_end) in enumerate(blocks):
            lo = max(start, first_instant_at(day, b_start, tz))
            hi = min(end, first_instant_at(day, b_end, tz))
            if hi > lo:
                overlap[(day.weekday(), i)] += (hi - lo).total_seconds()
        day += timedelta(days=1)
    total = sum(overlap.values())
    return [(wd, b, seconds / total) for (wd, b), seconds in sorted(overlap.items())]


def area_of(given: str | None, lat: float | None, lon: float | None, grid: float) -> str:
    """The pool a delivery belongs to: the area the upstream names, else the grid cell of the
    destination, else every customer's."""
    if given and given.strip():
        return given.strip()[:64].translate(_AREA_UNSAFE)
    if lat is not None and lon is not None and grid > 0:
        return f"grid:{math.floor(lat / grid) * grid:.4f}:{math.floor(lon / grid) * grid:.4f}"
    return GLOBAL_AREA


def encode(obs: Observation) -> str:
    parts = ";".join(f"{wd},{b},{round(w, 6):g}" for wd, b, w in obs.parts)
    return f"{obs.at_ms}|{1 if obs.home else 0}|{obs.area}|{parts}"


def decode(record: str) -> Observation | None:
    """The stored form back (None for an unreadable one: it is skipped, never fatal)."""
    try:
        at_ms, home, area, raw = record.split("|", 3)
        parts = tuple((int(wd), int(b), float(w)) for wd, b, w in (p.split(",") for p in raw.split(";") if p))
        return Observation(int(at_ms), home == "1", area, parts)
    except ValueError:
        return None


def own_counts(observations: Iterable[Observation], now_ms: int, half_life_days: float) -> Counts:
    """The customer's weights per cell, each observation halved every ``half_life_days`` of age
    (none for one from the future: a clock ahead upstream earns it no extra weight)."""
    counts = Counts(defaultdict(float), defaultdict(float))
    half_life_ms = half_life_days * 86_400_000
    for obs in observations:
        age = max(0, now_ms - obs.at_ms)
        decay = 0.5 ** (age / half_life_ms) if half_life_ms > 0 else 1.0
        for wd, b, w in obs.parts:
            counts.n[(wd, b)] += w * decay
            if obs.home:
                counts.h[(wd, b)] += w * decay
    return counts


def pool_counts(raw: Mapping[str, str]) -> Counts:
    """A pool's hash (``n:<wd>:<b>``, ``h:<wd>:<b>``) as counts; unreadable fields are skipped."""
    counts = Counts(defaultdict(float), defaultdict(float))
    for field, value in raw.items():
        kind, _, cell = field.partition(":")
        wd, _, b = cell.partition(":")
        try:
            weight = max(0.0, float(value))
            key = (int(wd), int(b))
        except ValueError:
            continue
        if kind == "n":
            counts.n[key] = weight
        elif kind == "h":
            counts.h[key] = weight
    return counts


def without(pool: Counts, observations: Iterable[Observation]) -> Counts:
    """The pool less the given observations' weights as stored (undecayed): a customer's prior
    is their area without themselves, so their own evidence never counts twice."""
    mine = list(observations)
    if not mine:
        return pool
    rest = Counts(defaultdict(float, pool.n), defaultdict(float, pool.h))
    for obs in mine:
        for wd, b, w in obs.parts:
            rest.n[(wd, b)] = max(0.0, rest.n[(wd, b)] - w)
            if obs.home:
                rest.h[(wd, b)] = max(0.0, rest.h[(wd, b)] - w)
    return rest


def _rate(home: float, total: float, prior: float, strength: float) -> float:
    """A Beta posterior mean: ``strength`` pseudo-observations at rate ``prior`` plus the evidence."""
    home = min(max(home, 0.0), total)  # rounding in the pools never makes a rate leave [0, 1]
    return (home + strength * prior) / (total + strength)


def estimate(
    cfg: AvailabilitySettings,
    own: Counts,
    area: Counts,
    everyone: Counts,
    n_blocks: int,
    cells: Iterable[Cell] | None = None,
) -> Estimate:
    """p_home and evidence per (weekday, block) for a customer, through the pooled prior: for
    the given cells only (a query's windows touch few), else for the whole week."""
    wanted = [(wd, b) for wd in range(7) for b in range(n_blocks)] if cells is None else list(cells)
    block_n: dict[int, float] = {}
    block_h: dict[int, float] = {}
    p: dict[Cell, float] = {}
    evidence: dict[Cell, float] = {}
    for cell in wanted:
        b = cell[1]
        if b not in block_n:
            block_n[b] = sum(own.n.get((wd, b), 0.0) for wd in range(7))
            block_h[b] = sum(own.h.get((wd, b), 0.0) for wd in range(7))
        rate = _rate(everyone.h.get(cell, 0.0), everyone.n.get(cell, 0.0), cfg.prior_home, cfg.global_strength)
        rate = _rate(area.h.get(cell, 0.0), area.n.get(cell, 0.0), rate, cfg.area_strength)
        rate = _rate(block_h[b], block_n[b], rate, cfg.customer_strength)
        n = own.n.get(cell, 0.0)
        p[cell] = _rate(own.h.get(cell, 0.0), n, rate, cfg.weekday_strength)
        evidence[cell] = n
    return Estimate(p, evidence)
