"""The driver on the customer's map: the latest position a driver app reports for a delivery, and
what of it the tracking page may show.

A driver app reports often (every few seconds), so a report is cheap: one Lua call
(``lua_records.STORE_POSITION``) that keeps the latest position only, under a TTL counted from
the time the position was taken (``tracking.map_position_minutes``); no timeline entry, no
message, no log line with a coordinate. A report is taken only while the delivery is out for
delivery or arriving soon (a new ETA on the road keeps one already there); any other milestone
deletes it, in the step that applies it (``lua_log.APPLY_EVENT``), and so does erasure
(hub.erasure).

Privacy by default, as the tracking pages of the delivery platforms do: the page shows the
position only while the delivery is on the road and at most ``tracking.map_max_stops`` stops
come before the customer's (``shown``). The count of stops is shown on its own; the position
never appears in any API view, only on the customer's own page.
"""

from __future__ import annotations

import enum
import json
import logging
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from redis.asyncio import Redis

from . import keys, lua_records
from .config_sections import TrackingSettings
from .schema import Timestamp, validation_fields

__all__ = [
    "KEEPS",
    "ON_THE_ROAD",
    "LocationReport",
    "Outcome",
    "Positions",
    "ReportInvalid",
    "Shown",
    "Stored",
    "content_security_policy",
    "destination_of",
    "parse_report",
]

log = logging.getLogger(__name__)

# Milestones during which a driver app's reports are taken; and those that keep a position
# already there (a new ETA while the driver is on the round), but take no first one.
ON_THE_ROAD = ("out_for_delivery", "arriving_soon")
KEEPS = ("eta_changed",)
# A position taken further in the future than this (by the hub's clock) is a clock gone wrong:
# stored, it would hide every true position until its own time passed.
FUTURE_SLACK_SECONDS = 300


class LocationReport(BaseModel):
    """What the driver app posts: where the driver is, when, and how many stops come first."""

    model_config = ConfigDict(extra="ignore")
    lat: float = Field(ge=-90, le=90, strict=True, description="latitude, WGS 84 degrees")
    lon: float = Field(ge=-180, le=180, strict=True, description="longitude, WGS 84 degrees")
    at: Timestamp = Field(description="when the position was taken (ISO 8601 with a UTC offset)")
    stops_before: int = Field(ge=0, le=1000, strict=True, description="stops the driver makes before this one")

    @field_validator("at", mode="before")
    @classmethod
    def _offset(cls, value: Any) -> Any:
        if not isinstance(value, str):
            raise ValueError("an ISO 8601 time with a UTC offset, e.g. 2026-11-24T08:05:00+01:00")
        return value


class ReportInvalid(Exception):
    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()))
        self.fields = fields


def parse_report(payload: Any, now: float) -> LocationReport:
    """The report, or ``ReportInvalid`` naming each field at fault (``now``: the hub's clock)."""
    if not isinstance(payload, dict):
        raise ReportInvalid({"body": "a location must be a JSON object"})
    try:
        report = LocationReport.model_validate(payload)
    except ValidationError as e:
        raise ReportInvalid(validation_fields(e)) from e
    if report.at.timestamp() > now + FUTURE_SLACK_SECONDS:
        raise ReportInvalid({"at": f"is more than {FUTURE_SLACK_SECONDS // 60} minutes in the future"})
    return report


class Outcome(enum.Enum):
    STORED = "stored"
    OLDER = "older"  # a newer position is stored: this one is dropped
    EXPIRED = "expired"  # taken longer ago than the positions are kept
    NO_DELIVERY = "missing"
    ERASED = "erased"
    OFF_THE_ROAD = "status"  # the delivery is not out for delivery


@dataclass(frozen=True)
class Stored:
    outcome: Outcome
    status: str | None = None  # the delivery's status, for OFF_THE_ROAD


@dataclass(frozen=True)
class Shown:
    """What the page shows of the driver: the stops before the customer's, and the position and
    destination when the privacy rules allow a map."""

    stops_before: int
    position: tuple[float, float] | None
    destination: tuple[float, float] | None
    at: str


class Positions:
    """The latest position per delivery, in Redis."""

    def __init__(self, redis: Redis, cfg: TrackingSettings) -> None:
        self.redis = redis
        self.cfg = cfg
        self._store = redis.register_script(lua_records.STORE_POSITION)

    async def store(self, delivery_id: str, report: LocationReport, now: float) -> Stored:
        at_ms = int(report.at.timestamp() * 1000)
        life_ms = int(self.cfg.map_position_minutes * 60_000) - (int(now * 1000) - at_ms)
        if life_ms <= 0:
            return Stored(Outcome.EXPIRED)
        value = {
            "lat": report.lat,
            "lon": report.lon,
            "at": report.at.isoformat(),
            "at_ms": at_ms,
            "stops_before": report.stops_before,
        }
        answer = await self._store(
            keys=[keys.driver_position(delivery_id), keys.delivery(delivery_id)],
            args=[
                json.dumps(value, separators=(",", ":")),
                at_ms,
                life_ms,
                "," + ",".join(ON_THE_ROAD) + ",",
                "," + ",".join(KEEPS) + ",",
            ],
        )
        text = answer.decode() if isinstance(answer, bytes) else str(answer)
        if text.startswith("status:"):
            return Stored(Outcome.OFF_THE_ROAD, text.removeprefix("status:"))
        return Stored(Outcome(text))

    async def shown(self, delivery: dict[str, Any]) -> Shown | None:
        """What the page may show for ``delivery`` (its stored record), or None."""
        status = delivery.get("status")
        if delivery.get("terminal") or status not in (*ON_THE_ROAD, *KEEPS):
            return None
        raw = await self.redis.get(keys.driver_position(delivery["id"]))
        if not raw:
            return None
        try:
            found = json.loads(raw)
            stops = int(found["stops_before"])
            position = (float(found["lat"]), float(found["lon"]))
            at = str(found["at"])
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable driver position ignored", extra={"delivery_id": delivery["id"]})
            return None
        near = stops <= self.cfg.map_max_stops
        return Shown(stops, position if near else None, destination_of(delivery) if near else None, at)


def destination_of(delivery: dict[str, Any]) -> tuple[float, float] | None:
    """The delivery's address coordinates (``delivery.destination`` of its events), if given."""
    d = delivery.get("destination")
    if isinstance(d, str):
        try:
            d = json.loads(d)
        except ValueError:
            return None
    if not isinstance(d, dict):
        return None
    try:
        lat, lon = float(d["lat"]), float(d["lon"])
    except (KeyError, TypeError, ValueError):
        return None
    return (lat, lon) if -90 <= lat <= 90 and -180 <= lon <= 180 else None


def tile_origin(tiles: str) -> str | None:
    """The origin of the tile server's URL for the page's CSP (a ``{s}`` subdomain as ``*``)."""
    if not tiles:
        return None
    scheme, _, rest = tiles.partition("://")
    host = rest.split("/", 1)[0].replace("{s}", "*")
    return f"{scheme}://{host}"


def content_security_policy(base: str, cfg: TrackingSettings) -> str:
    """``base`` (the page's policy, with ``img-src 'self'``) with the tile server's origin added
    to ``img-src``: the one other origin the page loads anything from."""
    origin = tile_origin(cfg.map_tiles)
    return base.replace("img-src 'self'", f"img-src 'self' {origin}") if origin else base
