"""The tracking page's forms (hub.track): reschedule, delivery instructions, rating, preferences,
and the answer to a ``scheduled`` question (confirm, neighbour, safe place, another time).

Each takes the resolved page and the posted form and answers the errors to show in the page's
language (none: done). An answer equal to what is stored changes nothing and sends no webhook
(a reload, a double click); a changed one goes through ``Conversations`` exactly as the same
answer by SMS does, with ``channel="web"``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection
from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from preferences import CHANNELS, Preferences

from . import keys
from .appkeys import CONVERSATIONS, CUSTOMERS, SETTINGS, STORE, TRACK_STRINGS
from .context import Formatter
from .prompts import answer_number, stored_question
from .track_page import GROUPS, KINDS, NEEDS_NOTE, NOTE_MAX, Page, answer_key

__all__ = ["ACTIONS", "Action"]

Action = Callable[[web.Request, Page, Any], Awaitable[list[str]]]


async def reschedule(request: web.Request, page: Page, form: Any) -> list[str]:
    t, d = page.strings, page.delivery
    if d.get("terminal"):
        return [t["error_slot_closed"]]
    now = time.time()
    offered = {s["id"]: s for s in d.get("slots") or [] if datetime.fromisoformat(s["start"]).timestamp() > now}
    slot = offered.get(str(form.get("slot", "")))
    if slot is None:
        return [t["error_slot"] if offered else t["error_slot_closed"]]
    previous = d.get("reschedule_requested")
    if isinstance(previous, dict) and previous.get("slot_id") == slot["id"]:
        return []  # already asked for (a resubmit, a reload): nothing new to tell upstream
    label = Formatter(page.lang, page.timezone).slot(slot["start"], slot["end"])
    await request.app[CONVERSATIONS].reschedule(
        page.customer,
        {"delivery_id": d["id"]},
        {**slot, "label": label},
        page.lang,
        answer_key(page, "reschedule", previous, slot["id"]),
        channel="web",
    )
    return []


async def instruct(request: web.Request, page: Page, form: Any) -> list[str]:
    t = page.strings
    if page.delivery.get("terminal"):
        return [t["error_slot_closed"]]
    kind, note = str(form.get("kind", "")), str(form.get("note", "")).strip()
    errors = []
    if kind not in KINDS:
        errors.append(t["error_kind"])
    if len(note) > NOTE_MAX:
        errors.append(t["error_note"].format(max=NOTE_MAX))
    elif kind in NEEDS_NOTE and not note:
        errors.append(t["error_note_needed"])
    if errors:
        return errors
    always = form.get("always") == "1"
    answer = {"kind": kind, "note": note or None, "always": always}  # as Conversations.instruct stores it
    previous = page.delivery.get("instructions")
    if isinstance(previous, dict) and {k: previous.get(k) for k in answer} == answer:
        return []  # the instructions given already (a resubmit, a reload)
    await request.app[CONVERSATIONS].instruct(
        page.customer,
        {"delivery_id": page.delivery["id"]},
        kind,
        note,
        always,
        page.lang,
        answer_key(page, "instructions", previous, answer),
        channel="web",
    )
    return []


async def rate(request: web.Request, page: Page, form: Any) -> list[str]:
    t = page.strings
    if page.delivery.get("status") != "delivered":
        return [t["error_rating_early"]]  # as by SMS: the rating prompt comes with the delivery
    try:
        rating = int(str(form.get("rating", "")))
    except ValueError:
        rating = 0
    comment = str(form.get("comment", "")).strip()
    if not 1 <= rating <= 5:
        return [t["error_rating"]]
    if len(comment) > NOTE_MAX:
        return [t["error_note"].format(max=NOTE_MAX)]
    # redis-py types every async command as Awaitable[T] | T (pyproject's "misc" overrides).
    stored = request.app[STORE].redis.hgetall(keys.feedback(page.delivery["id"]))
    previous: dict[str, str] = await stored  # type: ignore[misc]
    if previous.get("rating") == str(rating) and previous.get("comment", "") == comment:
        return []  # this rating was given already (a resubmit, a reload)
    driver = page.delivery.get("driver") or {}
    await request.app[CONVERSATIONS].rate(
        page.customer,
        {"delivery_id": page.delivery["id"], "driver_id": driver.get("id")},
        rating,
        comment,
        page.lang,
        answer_key(page, "feedback", previous, [rating, comment]),
        channel="web",
    )
    return []


async def confirm(request: web.Request, page: Page, form: Any) -> list[str]:
    """An answer to the open question, as the same number by SMS does (hub.conversation)."""
    t, d = page.strings, page.delivery
    question = stored_question(d, page.lang, page.timezone, time.time())
    if question is None:
        return [t["error_confirm_closed"]]
    answer = str(form.get("answer", ""))
    number = answer_number(question, answer)
    if number is None:
        return [t["error_confirm_choice"]]
    window = question["window"]
    # What this answer would store, and what is stored: the same answered again changes nothing.
    if number == 1:
        previous: Any = d.get("confirmed_window")
        same = previous == f"{window['start']}/{window['end']}"
    elif number < 4:
        previous = d.get("instructions")
        kind = "neighbour" if number == 2 else "safe_place"
        same = isinstance(previous, dict) and previous.get("kind") == kind and not previous.get("note")
    else:
        previous = d.get("reschedule_requested")
        same = isinstance(previous, dict) and f"slot:{previous.get('slot_id')}" == answer
    if same:
        return []
    key = answer_key(page, "confirm", previous, [answer, window])
    await request.app[CONVERSATIONS].answer_question(page.customer, question, number, page.lang, key, "web")
    return []


def _preferences_change(
    form: Any, reachable: list[str], t: dict[str, Any], languages: Collection[str]
) -> tuple[dict[str, Any], list[str]]:
    """The preferences the form asks for, as a change to validate, and the errors found so far."""
    opted_out = [c for c in form.getall("opt_out", []) if c in CHANNELS]
    errors: list[str] = []
    channels: dict[str, list[str]] = {}
    for group, milestones in GROUPS.items():
        picked = [c for c in form.getall(group, []) if c in reachable]
        if not picked and any(c not in opted_out for c in reachable):
            errors.append(t["error_channels"])
            break
        for m in milestones:
            channels[m] = picked
    start, end = str(form.get("quiet_start", "")), str(form.get("quiet_end", ""))
    change: dict[str, Any] = {"channels": {m: c for m, c in channels.items() if c}, "opt_out": opted_out}
    if start or end:
        change["quiet_hours"] = {"start": start[:5], "end": end[:5]}
    language = str(form.get("language", ""))
    if language in languages:
        change["locale"] = language
    if not change["channels"]:
        del change["channels"]
    return change, errors


def reachable_channels(request: web.Request, page: Page) -> list[str]:
    """The channels the page offers: those the customer has an address for, WhatsApp only when
    the hub has a WhatsApp sender (else choosing it would only ever mean its fallback)."""
    whatsapp = request.app[SETTINGS].whatsapp.from_number is not None
    return [c for c in CHANNELS if page.customer.contact(c) and (c != "whatsapp" or whatsapp)]


async def prefer(request: web.Request, page: Page, form: Any) -> list[str]:
    t = page.strings
    reachable = reachable_channels(request, page)
    languages = request.app[TRACK_STRINGS].keys()
    change, errors = _preferences_change(form, reachable, t, languages)
    try:
        prefs = Preferences.model_validate(change)
    except ValidationError as e:
        if any(str(err["loc"][0]) == "quiet_hours" for err in e.errors()):
            errors.append(t["error_time"])
        else:
            errors.append(t["error_title"])
    if errors:
        return list(dict.fromkeys(errors))
    await request.app[CUSTOMERS].patch_preferences(page.customer.id, prefs.model_dump(exclude_none=True))
    return []


# The path's last segment -> its form (the route admits only these).
ACTIONS: dict[str, Action] = {
    "reschedule": reschedule,
    "instructions": instruct,
    "feedback": rate,
    "preferences": prefer,
    "confirm": confirm,
}
