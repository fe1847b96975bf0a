"""Push notifications through Firebase Cloud Messaging (HTTP v1) with firebase-admin.

``FcmPush`` owns one named firebase-admin app per worker and sends with
``messaging.send_each_async``. Each push carries a notification (title, body) and a data
payload, and a collapse key (Android ``collapse_key``, APNs ``apns-collapse-id``) so a newer
update about the same delivery replaces the older one on the phone.

``base_url`` replaces ``https://fcm.googleapis.com`` (the sandbox serves the same API on
loopback). Without ``credentials_file`` a fixed access token is used, which only the sandbox
accepts.

A send that got no HTTP answer after the request may have gone out (a read timeout, the
connection closed or reset before the answer) is ``in_doubt``; one that never connected is
``transient``. FCM has no way to ask whether it has a message, and a second push is not
harmless: the Android ``collapse_key`` only collapses messages FCM still holds for an offline
device, and a notification already shown is replaced only by one with the same
``android.notification.tag``, which these pushes do not set. So the policy is ``UNKNOWN``.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import firebase_admin
import httpx
from firebase_admin import credentials, exceptions, messaging
from google.oauth2.credentials import Credentials as TokenCredentials

from .base import InDoubtPolicy, Outbound, SendResult

__all__ = ["FcmPush"]

FCM_ORIGIN = "https://fcm.googleapis.com"
_app_numbers = itertools.count(1)


class _StaticToken(credentials.Base):  # type: ignore[misc]  # firebase-admin ships no type hints
    """A credential with a fixed bearer token (sandbox only; needs no network)."""

    def get_credential(self) -> TokenCredentials:
        return TokenCredentials(token="sandbox-token")  # type: ignore[no-untyped-call]  # google-auth untyped


class FcmPush:
    name = "push"
    in_doubt = InDoubtPolicy.UNKNOWN

    def __init__(
        self,
        *,
        project_id: str,
        base_url: str = FCM_ORIGIN,
        credentials_file: str | None = None,
        timeout: float = 10.0,
        max_concurrency: int = 8,
    ) -> None:
        cred = credentials.Certificate(credentials_file) if credentials_file else _StaticToken()
        self._app = firebase_admin.initialize_app(
            cred,
            {"projectId": project_id, "httpTimeout": timeout},
            name=f"hub-push-{next(_app_numbers)}",
        )
        self._service = messaging._get_messaging_service(self._app)
        # firebase-admin has no public setting for the endpoint; the URL format is FCM's v1 API.
        self._service._fcm_url = f"{base_url.rstrip('/')}/v1/projects/{project_id}/messages:send"
        # firebase-admin's httpx client keeps 20 idle connections; more concurrent sends would
        # open (and resolve, and close) a new connection each time.
        self._slots = asyncio.Semaphore(max_concurrency)

    def _build(self, message: Outbound) -> messaging.Message:
        data = {**message.data, "message_id": message.message_id}
        # A push with answers (data "category" and "actions"): the category names the set of action
        # buttons the app registered, on iOS (aps.category) and Android (click_action) alike.
        category = message.data.get("category")
        return messaging.Message(
            fid=message.to,
            notification=messaging.Notification(title=message.subject, body=message.text),
            data=data,
            android=messaging.AndroidConfig(
                collapse_key=message.collapse_key,
                priority="high",
                notification=messaging.AndroidNotification(click_action=category) if category else None,
            ),
            apns=messaging.APNSConfig(
                headers={"apns-collapse-id": message.collapse_key} if message.collapse_key else None,
                payload=messaging.APNSPayload(aps=messaging.Aps(category=category)) if category else None,
            ),
        )

    async def send(self, message: Outbound) -> SendResult:
        try:
            async with self._slots:
                batch = await messaging.send_each_async([self._build(message)], app=self._app, dry_run=False)
        except exceptions.FirebaseError as e:
            return _classify(e)
        response = batch.responses[0]
        if response.success:
            return SendResult.accepted(str(response.message_id))
        return _classify(response.exception)

    async def reconcile(self, message: Outbound, since: float) -> SendResult:
        """FCM cannot be asked whether it has a message: never sure."""
        return SendResult.in_doubt("fcm offers no lookup")

    async def close(self) -> None:
        client: Any = self._service._async_client
        await client.aclose()
        # delete_app closes the service with asyncio.run(), which needs a thread without a loop.
        await asyncio.to_thread(firebase_admin.delete_app, self._app)


def _classify(error: BaseException | None) -> SendResult:
    reason = f"fcm: {error}" if error else "fcm: unknown error"
    if _answer_lost(error):
        return SendResult.in_doubt(reason, code=type(error).__name__)
    if isinstance(error, messaging.UnregisteredError):
        return SendResult.permanent(reason, code="UNREGISTERED", contact_invalid=True)
    if isinstance(error, messaging.SenderIdMismatchError):
        # The token belongs to another Firebase project: unusable by this hub.
        return SendResult.permanent(reason, code="SENDER_ID_MISMATCH", contact_invalid=True)
    if isinstance(
        error,
        (
            messaging.QuotaExceededError,
            exceptions.UnavailableError,
            exceptions.InternalError,
            exceptions.DeadlineExceededError,
            exceptions.ResourceExhaustedError,
            exceptions.UnknownError,
            exceptions.AbortedError,
        ),
    ):
        return SendResult.transient(reason, code=type(error).__name__, retry_after=_retry_after(error))
    if isinstance(error, exceptions.InvalidArgumentError):
        # FCM answers INVALID_ARGUMENT for malformed tokens and for malformed messages alike;
        # only the first is the contact's fault.
        token_problem = "token" in str(error).lower()
        return SendResult.permanent(reason, code="INVALID_ARGUMENT", contact_invalid=token_problem)
    return SendResult.permanent(reason, code=type(error).__name__ if error else None)


def _answer_lost(error: BaseException | None) -> bool:
    """No HTTP answer, and the request may have been sent: anything but failing to connect."""
    if not isinstance(error, exceptions.FirebaseError) or error.http_response is not None:
        return False
    cause = error.cause
    if isinstance(cause, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return False  # no connection: FCM cannot have it
    return isinstance(cause, httpx.TransportError)


def _retry_after(error: BaseException) -> float | None:
    """FCM's Retry-After (seconds) on a 429 or 503, from the HTTP response the error carries."""
    response = getattr(error, "http_response", None)
    value = getattr(response, "headers", {}).get("Retry-After") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: the hub's own backoff applies
