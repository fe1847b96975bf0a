"""Fake of the Firebase Cloud Messaging HTTP v1 send endpoint.

``POST {prefix}/fcm/v1/projects/{project}/messages:send`` with ``{"message": {...},
"validate_only"?: bool}``, as firebase-admin's ``messaging.send`` / ``send_each_async`` post it.

* ``Authorization: Bearer <token>`` is required (any non-empty token): else 401 UNAUTHENTICATED.
* A project other than the sandbox's: 403 PERMISSION_DENIED / ``SENDER_ID_MISMATCH``.
* The message needs exactly one of ``token``, ``fid``, ``topic``, ``condition``, and ``data``
  must map strings to strings: else 400 INVALID_ARGUMENT. firebase-admin 7.x deprecates
  ``Message.token`` (it warns) in favour of ``Message.fid``, sent as ``"fid"``; both are device
  addresses here.
* A token/fid listed as unregistered, or starting with ``"unregistered"``: 404 NOT_FOUND with the
  ``UNREGISTERED`` FcmError detail (firebase-admin raises ``messaging.UnregisteredError``).
* Success: 200 ``{"name": "projects/{project}/messages/<id>"}``, recorded in the ledger (under
  an ``accept-`` fault, recorded and then the answer held or the connection closed).
  ``validate_only`` answers like FCM's dry run (``.../messages/fake_message_id``) and is not
  recorded.

Errors use the Google API error shape ``{"error": {"code", "message", "status", "details"}}``;
firebase-admin maps ``details[].errorCode`` of the ``google.firebase.fcm.v1.FcmError`` detail
to its exception classes.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ..masking import mask_token
from ._lost import drop_connection, lose_answer
from .faults import ACCEPTING, MODES, Faults
from .ledger import Ledger, LedgerEntry

__all__ = ["FCM_ERROR_TYPE", "FcmFake", "fcm_error"]

logger = logging.getLogger(__name__)

FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
_TARGETS = ("token", "fid", "topic", "condition")
# Faults consumed before a message is looked at; the ``accept-`` ones only once it is accepted.
_EARLY_FAULTS = tuple(m for m in MODES if m not in ACCEPTING)
_DEVICE_TARGETS = ("token", "fid")


def fcm_error(
    http_status: int,
    status: str,
    message: str,
    *,
    error_code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """A Google API error document, optionally with an FCM ``errorCode`` detail."""
    error: dict[str, Any] = {"code": http_status, "message": message, "status": status}
    if error_code is not None:
        error["details"] = [{"@type": FCM_ERROR_TYPE, "errorCode": error_code}]
    return web.json_response({"error": error}, status=http_status, headers=headers)


def _invalid(message: str) -> web.Response:
    return fcm_error(400, "INVALID_ARGUMENT", message, error_code="INVALID_ARGUMENT")


class FcmFake:
    """State and request handler of the FCM fake."""

    def __init__(
        self,
        *,
        project_id: str,
        ledger: Ledger,
        faults: Faults,
        unregistered_tokens: frozenset[str] = frozenset(),
    ) -> None:
        self.project_id = project_id
        self.unregistered_tokens = unregistered_tokens
        self._ledger = ledger
        self._faults = faults

    def add_routes(self, app: web.Application, prefix: str) -> None:
        app.router.add_post(f"{prefix}/fcm/v1/projects/{{project}}/messages:send", self.handle_send)

    def is_unregistered(self, token: str) -> bool:
        return token in self.unregistered_tokens or token.startswith("unregistered")

    async def _fault(self, request: web.Request) -> web.Response | None:
        mode = self._faults.take("fcm", _EARLY_FAULTS)
        if mode is None:
            return None
        if mode == "drop":
            return drop_connection(request)
        if mode == "500":
            return fcm_error(500, "INTERNAL", "Internal error encountered.", error_code="INTERNAL")
        if mode == "429":
            return fcm_error(
                429,
                "RESOURCE_EXHAUSTED",
                "Quota exceeded for quota metric 'Send requests'.",
                error_code="QUOTA_EXCEEDED",
                headers={"Retry-After": "1"},
            )
        if mode == "timeout":
            await self._faults.stall()
            return fcm_error(504, "DEADLINE_EXCEEDED", "The request timed out.")
        return fcm_error(503, "UNAVAILABLE", "The service is currently unavailable.", error_code="UNAVAILABLE")

    async def handle_send(self, request: web.Request) -> web.Response:
        failed = await self._refuse(request)
        if failed is not None:
            return failed
        try:
            payload = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return fcm_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        send = _read_send(payload)
        if isinstance(send, web.Response):
            return send
        if send.target in _DEVICE_TARGETS and self.is_unregistered(send.address):
            logger.info("fcm: unregistered token %s", mask_token(send.address))
            return fcm_error(404, "NOT_FOUND", "Requested entity was not found.", error_code="UNREGISTERED")
        if send.validate_only:
            return web.json_response({"name": f"projects/{self.project_id}/messages/fake_message_id"})
        name = self._record(send)
        answer = web.json_response({"name": name})
        lost = self._faults.take("fcm", ACCEPTING)
        return answer if lost is None else await lose_answer(request, lost, self._faults, answer)

    async def _refuse(self, request: web.Request) -> web.Response | None:
        """The answer to a request a fault, its credentials or its project fail, or ``None``."""
        failed = await self._fault(request)
        if failed is not None:
            return failed
        scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            return fcm_error(
                401,
                "UNAUTHENTICATED",
                "Request is missing required authentication credential. Expected OAuth 2 access "
                "token, login cookie or other valid authentication credential.",
                headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'},
            )
        if request.match_info["project"] != self.project_id:
            return fcm_error(403, "PERMISSION_DENIED", "SenderId mismatch", error_code="SENDER_ID_MISMATCH")
        return None

    def _record(self, send: _Send) -> str:
        """Record an accepted message in the ledger; return its name."""
        message, target, address = send.message, send.target, send.address
        message_id = f"0:{int(time.time() * 1000)}%{secrets.token_hex(8)}"
        name = f"projects/{self.project_id}/messages/{message_id}"
        android_notification = send.android.get("notification") or {}
        apns_headers = send.apns.get("headers") or {}
        to = f"/topics/{address}" if target == "topic" else address
        self._ledger.record(
            LedgerEntry(
                channel="push",
                to=to,
                push_title=send.notification.get("title", android_notification.get("title")),
                push_body=send.notification.get("body", android_notification.get("body")),
                push_data=dict(send.data) if send.data is not None else None,
                provider_id=name,
                meta={
                    "token": address if target in _DEVICE_TARGETS else None,
                    "target": target,
                    "topic": address if target == "topic" else None,
                    "condition": address if target == "condition" else None,
                    "collapse_key": send.android.get("collapse_key"),
                    "apns_collapse_id": apns_headers.get("apns-collapse-id"),
                    "android_priority": send.android.get("priority"),
                    "ttl": send.android.get("ttl"),
                    "message": message,
                },
            )
        )
        logger.info("fcm: accepted %s to %s", message_id, mask_token(to))
        return name


@dataclass(frozen=True)
class _Send:
    """A send request that passed the checks: the message and where it goes."""

    message: dict[str, Any]
    target: str  # token, fid, topic or condition
    address: str
    data: dict[str, str] | None
    notification: dict[str, Any]
    android: dict[str, Any]
    apns: dict[str, Any]
    validate_only: bool


def _read_send(payload: Any) -> _Send | web.Response:
    """The send request in ``payload``, or FCM's answer to a malformed one."""
    if not isinstance(payload, dict) or not isinstance(payload.get("message"), dict):
        return _invalid("Request contains an invalid argument: 'message' is required.")
    message: dict[str, Any] = payload["message"]
    validate_only = payload.get("validate_only", False)
    if not isinstance(validate_only, bool):
        return _invalid("Invalid value at 'validate_only' (TYPE_BOOL).")
    targets = [t for t in _TARGETS if message.get(t) not in (None, "")]
    if len(targets) != 1:
        return _invalid(
            "Request contains an invalid argument: exactly one of token, fid, topic or "
            f"condition must be set (got {', '.join(targets) or 'none'})."
        )
    target = targets[0]
    address = message[target]
    if not isinstance(address, str):
        return _invalid(f"Invalid value at 'message.{target}' (TYPE_STRING).")
    data = message.get("data")
    if data is not None and (
        not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items())
    ):
        return _invalid("Invalid value at 'message.data': values must be strings.")
    notification = message.get("notification") or {}
    android = message.get("android") or {}
    apns = message.get("apns") or {}
    if not all(isinstance(part, dict) for part in (notification, android, apns)):
        return _invalid("Invalid value at 'message': notification, android and apns must be objects.")
    return _Send(message, target, address, data, notification, android, apns, validate_only)
