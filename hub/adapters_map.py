"""Vendor payloads -> hub events: pure functions, no I/O (the routes are in ``hub.adapters``).

Each mapper takes a decoded webhook body and its settings and returns one outcome:

- ``Mapped(payload)``: an event in the public schema (still to be validated by ``parse_event``),
- ``OptOut(phone, ...)``: the recipient asked the vendor to stop SMS (Onfleet),
- ``Skipped(reason)``: nothing for the hub (an unmapped status, a payload without a delivery id).

Event ids are derived from the payload only, so a vendor's retry of the same webhook maps to the
same event id and the hub's idempotency makes it a duplicate.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from preferences import check_phone

from .adapters_settings import AfterShipSettings, OnfleetSettings

__all__ = [
    "IdKey",
    "Mapped",
    "OptOut",
    "Outcome",
    "Skipped",
    "as_text",
    "as_time",
    "customer_id_for",
    "make_event_id",
    "map_aftership",
    "map_onfleet",
    "prune",
    "safe_id",
]

_ID_CHARS = re.compile(r"[^A-Za-z0-9_.:@/+-]")


@dataclass(frozen=True)
class Mapped:
    payload: dict[str, Any]


@dataclass(frozen=True)
class OptOut:
    phone: str
    key: str  # deterministic, for the contact.opted_out webhook's id


@dataclass(frozen=True)
class Skipped:
    reason: str
    delivery_id: str | None = None


Outcome = Mapped | OptOut | Skipped


# -- shared helpers --------------------------------------------------------------------------
def safe_id(value: Any, limit: int = 128) -> str | None:
    """A vendor value as an id of the event schema (unusual characters become '-'); None if empty."""
    if value is None or isinstance(value, bool | dict | list):
        return None
    text = _ID_CHARS.sub("-", str(value).strip())
    text = text.lstrip("_.:@/+-")
    return text[:limit] or None


def make_event_id(*parts: Any) -> str:
    """An event id from its parts; long ones end in a digest of the whole so they stay unique."""
    raw = ":".join(str(p) for p in parts if p not in (None, ""))
    text = _ID_CHARS.sub("-", raw)
    if len(text) <= 128:
        return text
    return text[:95] + ":" + hashlib.sha256(raw.encode()).hexdigest()[:32]


def as_time(value: Any) -> str | None:
    """An RFC 3339 time from epoch seconds or milliseconds, or an RFC 3339/ISO string as given."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        seconds = value / 1000 if abs(value) > 1e11 else value
        try:
            return datetime.fromtimestamp(seconds, UTC).isoformat()
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if re.fullmatch(r"\d{9,13}(\.\d+)?", text):
            return as_time(float(text))
        return text
    return None


def _has_offset(value: Any) -> bool:
    """A date-time string with its UTC offset (AfterShip gives some times without one)."""
    return isinstance(value, str) and bool(re.fullmatch(r"\d{4}-\d\d-\d\dT.*(Z|z|[+-]\d\d:?\d\d)", value.strip()))


def _list(value: Any) -> list[Any]:
    """A vendor value that should be a list: itself when it is one, else empty (a number or an
    object where a list belongs is read as no entries, never iterated)."""
    return value if isinstance(value, list) else []


def as_text(value: Any, limit: int = 300) -> str | None:
    if value is None or isinstance(value, bool | dict | list):
        return None
    text = " ".join(str(value).split())
    return text[:limit] or None


def customer_id_for(source: str, phone: str | None, email: str | None, fallback: str, ids: IdKey) -> str:
    """A stable customer id when the vendor has none: a keyed digest (HMAC with the hub's
    ``secret_key``) of the contact, the phone number in E.164 when it parses, so the id reveals
    nothing and cannot be reversed by trying every number; else one tied to the delivery."""
    contact = ""
    if phone and phone.strip():
        try:
            contact = check_phone(phone, ids.region)
        except ValueError:
            contact = "".join(c for c in phone if c.isdigit() or c == "+")
    if not contact:
        contact = (email or "").strip().lower()
    if contact:
        return f"{source}-{hmac.new(ids.key, contact.encode(), hashlib.sha256).hexdigest()[:24]}"
    return f"{source}-delivery-{fallback}"[:128]


@dataclass(frozen=True)
class IdKey:
    """What derived customer ids need: the key of their digest and the region phone numbers
    without a country code are read in."""

    key: bytes
    region: str


def prune(value: Any) -> Any:
    """Drop None values and empty objects (the schema treats absent and null alike)."""
    if isinstance(value, dict):
        pruned = {k: prune(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v is not None and v != {}}
    return value


# -- Onfleet ---------------------------------------------------------------------------------
# Triggers that fire more than once per task: the id carries the webhook's time (a retry sends
# the same body, so the same time). The others happen once per task.
_ONFLEET_REPEATING = frozenset({"tasketa", "taskarrival", "taskdelayed"})
_ONFLEET_DONE = 3  # task state: completed


def _onfleet_phone(data: dict[str, Any]) -> str | None:
    recipient = data.get("recipient")
    if isinstance(recipient, dict) and recipient.get("phone"):
        return str(recipient["phone"])
    task = data.get("task")
    if isinstance(task, dict):
        for r in _list(task.get("recipients")):
            if isinstance(r, dict) and r.get("phone"):
                return str(r["phone"])
    return None


def map_onfleet(body: Any, settings: OnfleetSettings, ids: IdKey) -> Outcome:
    """An Onfleet task webhook (``triggerName``, ``taskId``, ``time``, ``data.task``...)."""
    if not isinstance(body, dict):
        return Skipped("the body is not a JSON object")
    trigger = str(body.get("triggerName") or "")
    data = body.get("data") if isinstance(body.get("data"), dict) else {}
    assert isinstance(data, dict)
    if trigger.lower() == "smsrecipientoptout":
        phone = _onfleet_phone(data) or as_text(body.get("phone"), 40)
        if not phone:
            return Skipped("SMSRecipientOptOut without a recipient phone")
        return OptOut(phone, make_event_id("onfleet", "optout", body.get("time"), phone))
    key = trigger.lower()
    if key not in settings.triggers:
        return Skipped(f"trigger {trigger or '(none)'!r} is not mapped")
    milestone = settings.triggers[key]
    if milestone is None:
        return Skipped(f"trigger {trigger!r} is mapped to nothing")
    task = data.get("task") if isinstance(data.get("task"), dict) else {}
    assert isinstance(task, dict)
    task_id = safe_id(body.get("taskId") or task.get("id"))
    delivery_id = _onfleet_delivery_id(task, settings, task_id)
    if not delivery_id or not task_id:
        return Skipped("no task id (delivery id) in the payload")
    completion = task.get("completionDetails") if isinstance(task.get("completionDetails"), dict) else {}
    assert isinstance(completion, dict)
    occurred = as_time(body.get("time")) or as_time(completion.get("time")) or as_time(task.get("timeLastModified"))
    stamp: Any = body.get("time") if key in _ONFLEET_REPEATING else None
    if key == "taskcompleted" and completion.get("success") is False:
        milestone = settings.triggers.get("taskfailed") or "delivery_failed"
    event_data = _onfleet_data(milestone, key, body, completion, settings)
    eta = _onfleet_eta(task)
    arrival = task.get("estimatedArrivalTime")
    if milestone == "eta_changed":
        if task.get("state") == _ONFLEET_DONE or not isinstance(arrival, int | float):
            return Skipped(f"{trigger} without a new ETA", delivery_id)
        stamp = f"eta{int(arrival) // 60000}"  # an update that keeps the ETA is a duplicate

    payload = {
        "event_id": make_event_id("onfleet", task_id, key, stamp),
        "type": milestone,
        "occurred_at": occurred,
        "delivery": {
            "id": delivery_id,
            "tracking_code": as_text(task.get("shortId"), 64),
            "merchant": settings.merchant,
            "address": _onfleet_address(task),
            "eta": eta,
        },
        "customer": _onfleet_customer(task, delivery_id, ids),
        "driver": _onfleet_driver(body, data, task),
        "data": event_data,
    }
    return Mapped(prune(payload))


def _onfleet_customer(task: dict[str, Any], delivery_id: str, ids: IdKey) -> dict[str, Any]:
    """The task's first recipient; its id, or one derived from its phone when Onfleet gave none."""
    recipients = [r for r in _list(task.get("recipients")) if isinstance(r, dict)]
    recipient = recipients[0] if recipients else {}
    phone = as_text(recipient.get("phone"), 40)
    return {
        "id": safe_id(recipient.get("id")) or customer_id_for("onfleet", phone, None, delivery_id, ids),
        "name": as_text(recipient.get("name"), 200),
        "phone": phone,
    }


def _onfleet_data(
    milestone: str, key: str, body: dict[str, Any], completion: dict[str, Any], settings: OnfleetSettings
) -> dict[str, Any]:
    """The event's ``data``: proof of delivery, the failure's reason, the delay or the minutes left."""
    event_data: dict[str, Any] = {}
    if milestone == "delivered":
        photos = list(_list(completion.get("photoUploadIds")))
        if completion.get("photoUploadId"):
            photos.insert(0, completion["photoUploadId"])
        photo = safe_id(photos[0]) if photos else None
        signed = bool(completion.get("signatureUploadId"))
        event_data["pod"] = {
            "photo_url": settings.photo_url.replace("{id}", photo) if photo else None,
            "signature": as_text(completion.get("signatureText"), 200) or (True if signed else None),
            "recipient": as_text(completion.get("signatureText"), 200),
            "place": as_text(completion.get("notes"), 200),
        }
    elif milestone == "delivery_failed":
        reason = completion.get("failureReason")
        notes = completion.get("failureNotes") or completion.get("notes")
        text = str(reason).replace("_", " ").lower() if reason else None
        event_data["reason"] = as_text(": ".join(t for t in (text, as_text(notes)) if t))
        if code := settings.reason_codes.get(str(reason).lower()):
            event_data["reason_code"] = code
    elif milestone == "exception":
        event_data["kind"] = "delay" if key == "taskdelayed" else None
        delay = body.get("delay")
        if isinstance(delay, int | float) and not isinstance(delay, bool) and delay >= 0:
            event_data["minutes"] = min(round(delay / 60), 24 * 60)
    if milestone == "arriving_soon":
        seconds = body.get("etaSeconds")
        if isinstance(seconds, int | float) and not isinstance(seconds, bool) and seconds >= 0:
            event_data["minutes"] = min(round(seconds / 60), 24 * 60)
    return event_data


def _onfleet_delivery_id(task: dict[str, Any], settings: OnfleetSettings, task_id: str | None) -> str | None:
    """The task metadata field named by ``delivery_id_metadata`` (the last such), else the task id."""
    delivery_id = task_id
    if not settings.delivery_id_metadata:
        return delivery_id
    for entry in _list(task.get("metadata")):
        if isinstance(entry, dict) and entry.get("name") == settings.delivery_id_metadata:
            delivery_id = safe_id(entry.get("value"))
    return delivery_id


def _onfleet_address(task: dict[str, Any]) -> str | None:
    destination = task.get("destination") if isinstance(task.get("destination"), dict) else {}
    address = (destination or {}).get("address") if isinstance((destination or {}).get("address"), dict) else {}
    return as_text((address or {}).get("unparsed"))


def _onfleet_eta(task: dict[str, Any]) -> dict[str, Any] | None:
    """The ETA window: Onfleet's estimate (arrival to completion), else the task's time window."""
    arrival = task.get("estimatedArrivalTime")
    if isinstance(arrival, int | float) and not isinstance(arrival, bool):
        finish = task.get("estimatedCompletionTime")
        finish = finish if isinstance(finish, int | float) and finish >= arrival else arrival
        return {"start": as_time(arrival), "end": as_time(finish)}
    if task.get("completeAfter") and task.get("completeBefore"):
        return {"start": as_time(task["completeAfter"]), "end": as_time(task["completeBefore"])}
    return None


def _onfleet_driver(body: dict[str, Any], data: dict[str, Any], task: dict[str, Any]) -> dict[str, Any] | None:
    worker = data.get("worker") if isinstance(data.get("worker"), dict) else None
    worker_id = safe_id((worker or {}).get("id") or body.get("workerId") or task.get("worker"))
    if not worker_id:
        return None
    return {"id": worker_id, "name": as_text((worker or {}).get("name"), 200)}


# -- AfterShip -------------------------------------------------------------------------------
def _first_text(values: Any) -> str | None:
    if isinstance(values, list):
        for value in values:
            text = as_text(value, 254)
            if text:
                return text
    return None


def map_aftership(body: Any, settings: AfterShipSettings, ids: IdKey) -> Outcome:
    """An AfterShip tracking webhook (``event``, ``event_id``, ``ts``, ``msg`` = the tracking)."""
    if not isinstance(body, dict):
        return Skipped("the body is not a JSON object")
    msg = body.get("msg")
    if not isinstance(msg, dict):
        return Skipped("no msg (tracking) in the payload")
    tag = str(msg.get("tag") or "")
    subtag = str(msg.get("subtag") or "")
    if subtag.lower() in settings.subtags:
        milestone = settings.subtags[subtag.lower()]
    elif tag.lower() in settings.tags:
        milestone = settings.tags[tag.lower()]
    else:
        return Skipped(f"tag {tag or '(none)'!r} is not mapped")
    tracking = safe_id(msg.get("tracking_number"))
    delivery_id = {
        "tracking_number": tracking,
        "order_id": safe_id(msg.get("order_id")) or tracking,
        "id": safe_id(msg.get("id")),
    }[settings.delivery_id]
    if milestone is None:
        return Skipped(f"tag {subtag or tag!r} is mapped to nothing", delivery_id)
    if not delivery_id:
        return Skipped("no tracking number (delivery id) in the payload")

    checkpoints = [c for c in _list(msg.get("checkpoints")) if isinstance(c, dict)]
    last = checkpoints[-1] if checkpoints else {}
    checkpoint_time = last.get("checkpoint_time")
    occurred = (
        (checkpoint_time if _has_offset(checkpoint_time) else None)
        or as_time(body.get("ts"))
        or (msg.get("updated_at") if _has_offset(msg.get("updated_at")) else None)
    )
    stamp = last.get("checkpoint_time") or body.get("event_id") or body.get("ts")

    eta = None
    expected = msg.get("expected_delivery")
    if _has_offset(expected):
        eta = {"start": expected, "end": expected}
    payload = {
        "event_id": make_event_id("aftership", msg.get("id") or tracking, (subtag or tag).lower(), stamp),
        "type": milestone,
        "occurred_at": occurred,
        "delivery": {
            "id": delivery_id,
            "tracking_code": as_text(msg.get("tracking_number"), 64),
            "merchant": as_text(msg.get("title"), 120) if msg.get("title") != msg.get("tracking_number") else None,
            "eta": eta,
        },
        "customer": _aftership_customer(msg, delivery_id, ids),
        "data": _aftership_data(milestone, msg, last, subtag, settings),
    }
    return Mapped(prune(payload))


def _aftership_customer(msg: dict[str, Any], delivery_id: str, ids: IdKey) -> dict[str, Any]:
    """The tracking's first customer, else its notification lists (``smses``, ``emails``)."""
    customers = [c for c in _list(msg.get("customers")) if isinstance(c, dict)]
    person = customers[0] if customers else {}
    phone = as_text(person.get("phone_number"), 40) or _first_text(msg.get("smses"))
    email = as_text(person.get("email"), 254) or _first_text(msg.get("emails"))
    return {
        "id": customer_id_for("aftership", phone, email, delivery_id, ids),
        "name": as_text(person.get("name"), 200) or as_text(msg.get("customer_name"), 200),
        "phone": phone,
        "email": email,
        "locale": as_text(person.get("language") or msg.get("language"), 20),
    }


def _aftership_data(
    milestone: str, msg: dict[str, Any], last: dict[str, Any], subtag: str, settings: AfterShipSettings
) -> dict[str, Any]:
    """The event's ``data`` from the tracking and its last checkpoint: reason, kind, proof, pickup."""
    event_data: dict[str, Any] = {}
    reason = as_text(msg.get("subtag_message")) or as_text(last.get("message"))
    if milestone in ("exception", "delivery_failed", "returned"):
        event_data["reason"] = reason
        if code := settings.reason_codes.get(subtag.lower()):
            event_data["reason_code"] = code
    if milestone == "exception":
        event_data["kind"] = settings.exception_kinds.get(subtag.lower())
    if milestone == "delivered":
        event_data["pod"] = {
            "recipient": as_text(msg.get("signed_by"), 200),
            "place": as_text(last.get("location"), 200),
        }
    if milestone == "ready_for_pickup":
        location = as_text(last.get("location"), 200) or as_text(msg.get("pickup_location"), 200)
        if location:
            event_data["pickup"] = {"name": location, "hours": as_text(msg.get("pickup_note"), 200)}
    return event_data
