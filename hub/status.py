"""Provider status reports (Twilio status callbacks): forward-only status changes and their effects;
and the one ``message.status`` webhook, told by the dispatcher's outcomes and by these reports.

A callback can arrive before the worker has recorded the provider's message id (the provider
answers the send request and calls back almost at once). Such an early report is parked under
``hub:pending_status:{sid}`` for an hour and applied when the worker records the id.
"""

from __future__ import annotations

import json
from typing import Any

from channels.twilio_errors import INVALID_NUMBER_ERRORS
from preferences import CustomerStore

from . import keys, metrics
from .clock import now_iso
from .records import MessageRecord
from .stats import Stats
from .store import HubStore
from .webhooks import Webhooks

__all__ = ["STATUS_RANK", "apply_parked", "apply_status", "park", "tell_status"]

# Twilio message statuses in the order they can follow each other.
STATUS_RANK = {
    "accepted": 1,
    "queued": 1,
    "sending": 1,
    "sent": 2,
    "delivered": 3,
    "undelivered": 3,
    "failed": 3,
    "read": 4,  # WhatsApp's read receipt comes after "delivered"
}
# The rank of a status found in the log (as STATUS_FORWARD ranks it): the hub's own "sending" is
# before any report.
_RECORDED_RANK = {**STATUS_RANK, "sending": 0}


async def apply_status(
    store: HubStore,
    customers: CustomerStore,
    webhooks: Webhooks,
    message_id: str,
    sid: str,
    status: str,
    error_code: str,
) -> bool:
    """Move the message forward to ``status``; on a change, retire a dead number and tell upstream.

    Upstream is told first, then the status recorded: a crash between the two leaves a webhook
    whose status the log lacks (the next report moves it on), never a recorded status upstream
    never hears of (providers do not send a report twice)."""
    message = await store.message_fields(message_id)  # the record only: its history is not needed
    if not message or STATUS_RANK[status] <= _RECORDED_RANK.get(message.get("status") or "", 0):
        return False
    record = MessageRecord.from_fields(message)
    await tell_status(webhooks, record, status, provider_id=sid, error_code=error_code or None)
    if not await store.status_forward(message_id, status, STATUS_RANK[status], error_code):
        return False  # another report moved it on meanwhile
    metrics.MESSAGES.labels(message.get("channel") or "sms", status).inc()  # delivery reports, read receipts
    await Stats(store.redis, store.settings).message(record.channel or "sms", status, message.get("merchant_id"))
    # A WhatsApp refusal says nothing about the number's SMS: only an SMS marks the phone invalid.
    sms = (message.get("channel") or "sms") == "sms"
    if sms and status in ("undelivered", "failed") and error_code in INVALID_NUMBER_ERRORS and message.get("to"):
        await customers.mark_invalid(message["customer_id"], "sms", f"twilio error {error_code}", message["to"])
    return True


async def tell_status(
    webhooks: Webhooks, rec: MessageRecord, status: str, *, provider_id: str | None, error_code: str | None
) -> None:
    """Tell upstream a message's status (``message.status``). The delivery id is derived from
    (message, status), so telling one status twice creates one delivery."""
    body = {
        "message_id": rec.id,
        "event_id": rec.event_id,
        "delivery_id": rec.delivery_id,
        "customer_id": rec.customer_id,
        "channel": rec.channel,
        "milestone": rec.milestone,
        "status": status,
        "provider_id": provider_id,
        "error_code": error_code,
        "at": now_iso(),
    }
    await webhooks.emit("message.status", body, key=f"{rec.id}:{status}")


async def park(store: HubStore, sid: str, status: str, error_code: str) -> None:
    """Keep an early report (the message id is not known yet); the furthest status wins."""
    key = keys.pending_status(sid)
    current = await store.redis.get(key)
    if current and STATUS_RANK.get(json.loads(current)["status"], 0) >= STATUS_RANK[status]:
        return
    await store.redis.set(key, json.dumps({"status": status, "error_code": error_code}), ex=3600)


async def apply_parked(
    store: HubStore, customers: CustomerStore, webhooks: Webhooks, message_id: str, sid: str
) -> None:
    raw = await store.redis.getdel(keys.pending_status(sid))
    if raw:
        parked: dict[str, Any] = json.loads(raw)
        final = parked["status"]
        steps = ("sent", final) if STATUS_RANK[final] > STATUS_RANK["sent"] else (final,)
        for status in steps:
            await apply_status(
                store, customers, webhooks, message_id, sid, status, parked["error_code"] if status == final else ""
            )
