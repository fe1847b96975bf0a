"""Sandbox provider fakes, exercised through the real client libraries.

twilio-python's async client, firebase-admin's ``messaging.send_each_async`` and aiosmtplib talk
to the fakes over real sockets; status callbacks and inbound webhooks are received by small
aiohttp servers in the test.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

import aiosmtplib
import firebase_admin
import pytest
from aiohttp import encode_basic_auth, web
from aiohttp.test_utils import TestClient, TestServer
from firebase_admin import credentials, messaging
from google.oauth2.credentials import Credentials as OAuthCredentials
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from hub.sandbox import Faults, Ledger, LedgerEntry, Sandbox

ACCOUNT_SID = "ACsandbox0000000000000000000000000"
AUTH_TOKEN = "sandbox-auth-token"
PROJECT_ID = "hub-sandbox"
TWILIO_ORIGIN = "https://api.twilio.com"
SENDER = "+15005550006"
RECIPIENT = "+4915112345678"
INVALID = "+15005550001"

AiohttpClient = Callable[..., Awaitable[TestClient[Any, Any]]]
AiohttpServer = Callable[..., Awaitable[TestServer]]


# -- fixtures ---------------------------------------------------------------------------------


@dataclass
class Harness:
    sb: Sandbox
    client: TestClient[Any, Any]
    smtp_port: int

    @property
    def origin(self) -> str:
        return str(self.client.make_url("")).rstrip("/")


@pytest.fixture
async def harness(aiohttp_client: AiohttpClient) -> AsyncIterator[Harness]:
    sb = Sandbox(
        twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token=AUTH_TOKEN,
        fcm_project_id=PROJECT_ID,
        status_callbacks=True,
        callback_delay=0.01,
        invalid_numbers=frozenset({INVALID}),
        unregistered_tokens=frozenset({"stale-device-token"}),
    )
    app = web.Application()
    sb.add_routes(app, prefix="/sandbox")
    client = await aiohttp_client(app)
    smtp_port = await sb.start_smtp(host="127.0.0.1", port=0)
    yield Harness(sb, client, smtp_port)
    # Closed before the aiohttp server fixture tears down (this fixture depends on it).
    await sb.close()


@dataclass
class Receiver:
    """An aiohttp server standing in for the hub's webhook endpoints."""

    server: TestServer
    requests: list[tuple[str, dict[str, str], dict[str, str]]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    reply: str = "<?xml version='1.0' encoding='UTF-8'?><Response/>"

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    async def wait(self, count: int, timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.requests) < count:
                self.arrived.clear()
                await self.arrived.wait()


@pytest.fixture
async def receiver(aiohttp_server: AiohttpServer) -> Receiver:
    holder: list[Receiver] = []

    async def collect(request: web.Request) -> web.Response:
        form = await request.post()
        rec = holder[0]
        rec.requests.append((str(request.url), {k: str(v) for k, v in form.items()}, dict(request.headers)))
        rec.arrived.set()
        if request.path == "/webhooks/twilio/sms":
            return web.Response(text=rec.reply, content_type="text/xml")
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/status", collect)
    app.router.add_post("/webhooks/twilio/sms", collect)
    server = await aiohttp_server(app)
    holder.append(Receiver(server))
    return holder[0]


class SandboxTwilioHttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]
    """twilio-python's aiohttp client with the API origin rewritten to the sandbox.

    Credentials go in as an ``Authorization`` header: the stock client wraps them in
    ``aiohttp.BasicAuth``, which aiohttp 3.14 deprecates (a warning, hence an error here).
    The client's ``timeout`` is applied per request, which the stock client forgets to do.
    """

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.base_url = base_url

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Any:
        if url.startswith(TWILIO_ORIGIN):
            url = self.base_url + url[len(TWILIO_ORIGIN) :]
        headers = dict(headers or {})
        if auth is not None:
            headers["Authorization"] = encode_basic_auth(*auth)
        return await super().request(
            method,
            url,
            params=params,
            data=data,
            headers=headers,
            auth=None,
            # The stock client never applies its own ``timeout``: aiohttp then gets
            # ``timeout=None``, which means no timeout at all.
            timeout=timeout if timeout is not None else self.timeout,
            allow_redirects=allow_redirects,
        )


@pytest.fixture
async def twilio_client(harness: Harness) -> AsyncIterator[Client]:
    http_client = SandboxTwilioHttpClient(harness.sb.twilio_base_url(harness.origin))
    yield Client(ACCOUNT_SID, AUTH_TOKEN, http_client=http_client)
    await http_client.close()


class StaticCredential(credentials.Base):  # type: ignore[misc]
    """A firebase-admin credential that needs no network: a fixed OAuth access token."""

    def get_credential(self) -> OAuthCredentials:
        return OAuthCredentials(token="sandbox")  # type: ignore[no-untyped-call]


@pytest.fixture
async def firebase_app(harness: Harness) -> AsyncIterator[firebase_admin.App]:
    app = firebase_admin.initialize_app(
        StaticCredential(), {"projectId": PROJECT_ID}, name=f"sandbox-{uuid.uuid4().hex}"
    )
    service = messaging._get_messaging_service(app)
    service._fcm_url = harness.sb.fcm_send_url(harness.origin)
    yield app
    # The service's close() runs asyncio.run(), which cannot nest in this loop: close the httpx
    # client here, then delete the app from a worker thread (its second aclose() is a no-op).
    await service._async_client.aclose()
    await asyncio.to_thread(firebase_admin.delete_app, app)


def _email(to: str = "alice@example.com", **headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Parcel Hub <noreply@hub.example>"
    msg["To"] = to
    msg["Subject"] = "Your parcel is on its way"
    msg["Message-ID"] = make_msgid(domain="hub.example")
    msg["List-Unsubscribe"] = "<https://hub.example/u/abc123>, <mailto:unsubscribe@hub.example>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content("Your parcel arrives today between 10:00 and 12:00.")
    msg.add_alternative("<p>Your parcel arrives <b>today</b>.</p>", subtype="html")
    return msg


# -- Twilio -----------------------------------------------------------------------------------


async def test_twilio_create_records_and_sends_signed_status_callbacks(
    harness: Harness, twilio_client: Client, receiver: Receiver
) -> None:
    callback_url = receiver.url("/status?shipment=42")
    message = await twilio_client.messages.create_async(
        to=RECIPIENT, from_=SENDER, body="Your parcel arrives today.", status_callback=callback_url
    )

    assert message.sid.startswith("SM") and len(message.sid) == 34
    assert message.status == "queued"
    assert message.account_sid == ACCOUNT_SID
    assert message.to == RECIPIENT and message.from_ == SENDER
    assert message.direction == "outbound-api"
    assert message.num_segments == "1"
    assert message.api_version == "2010-04-01"
    assert message.date_created is not None and message.date_created.tzinfo is not None
    assert message.error_code is None and message.price is None
    assert message.uri == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{message.sid}.json"

    [entry] = harness.sb.ledger.entries(channel="sms")
    assert entry.to == RECIPIENT and entry.from_ == SENDER
    assert entry.text == "Your parcel arrives today."
    assert entry.provider_id == message.sid
    assert entry.meta["status_callback"] == callback_url

    await receiver.wait(2)
    validator = RequestValidator(AUTH_TOKEN)
    statuses = []
    for url, form, headers in receiver.requests:
        assert url == callback_url
        assert validator.validate(url, form, headers["X-Twilio-Signature"])
        assert form["MessageSid"] == form["SmsSid"] == message.sid
        assert form["AccountSid"] == ACCOUNT_SID
        assert (form["From"], form["To"], form["ApiVersion"]) == (SENDER, RECIPIENT, "2010-04-01")
        assert form["MessageStatus"] == form["SmsStatus"]
        statuses.append(form["MessageStatus"])
    assert statuses == ["sent", "delivered"]
    # A tampered payload must not validate.
    url, form, headers = receiver.requests[0]
    assert not validator.validate(url, {**form, "MessageStatus": "failed"}, headers["X-Twilio-Signature"])

    fetched = await twilio_client.messages(message.sid).fetch_async()
    assert fetched.status == "delivered"
    assert fetched.date_sent is not None
    assert entry.meta["status"] == "delivered"


async def test_twilio_messaging_service_and_media(harness: Harness, twilio_client: Client) -> None:
    service_sid = "MG" + "0" * 32
    message = await twilio_client.messages.create_async(
        to=RECIPIENT,
        messaging_service_sid=service_sid,
        body="Photo of your delivery",
        media_url=["https://hub.example/p/1.jpg", "https://hub.example/p/2.jpg"],
    )
    assert message.status == "accepted"
    assert message.from_ is None
    assert message.messaging_service_sid == service_sid
    assert message.num_media == "2"
    [entry] = harness.sb.ledger.entries(to=RECIPIENT)
    assert entry.meta["media_urls"] == ["https://hub.example/p/1.jpg", "https://hub.example/p/2.jpg"]
    assert entry.meta["messaging_service_sid"] == service_sid


async def test_twilio_segments_count_like_twilio(twilio_client: Client) -> None:
    long_gsm = await twilio_client.messages.create_async(to=RECIPIENT, from_=SENDER, body="a" * 161)
    assert long_gsm.num_segments == "2"
    unicode = await twilio_client.messages.create_async(to=RECIPIENT, from_=SENDER, body="Paket 📦 " * 9)
    assert unicode.num_segments == "2"


async def test_twilio_invalid_number_is_21211(harness: Harness, twilio_client: Client) -> None:
    for bad in (INVALID, "015112345678"):
        with pytest.raises(TwilioRestException) as caught:
            await twilio_client.messages.create_async(to=bad, from_=SENDER, body="hello")
        assert caught.value.status == 400
        assert caught.value.code == 21211
        assert "is not a valid phone number" in caught.value.msg
    assert len(harness.sb.ledger) == 0


async def test_twilio_missing_fields(harness: Harness) -> None:
    auth = {"Authorization": encode_basic_auth(ACCOUNT_SID, AUTH_TOKEN)}
    url = f"/sandbox/twilio/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    cases = [
        ({"From": SENDER, "Body": "x"}, 21604),
        ({"To": RECIPIENT, "From": SENDER}, 21602),
        ({"To": RECIPIENT, "Body": "x"}, 21603),
    ]
    for form, code in cases:
        resp = await harness.client.post(url, data=form, headers=auth)
        assert resp.status == 400
        body = await resp.json()
        assert body["code"] == code
        assert body["more_info"] == f"https://www.twilio.com/docs/errors/{code}"


async def test_twilio_rejects_bad_credentials(harness: Harness) -> None:
    http_client = SandboxTwilioHttpClient(harness.sb.twilio_base_url(harness.origin))
    try:
        client = Client(ACCOUNT_SID, "wrong-token", http_client=http_client)
        with pytest.raises(TwilioRestException) as caught:
            await client.messages.create_async(to=RECIPIENT, from_=SENDER, body="hello")
    finally:
        await http_client.close()
    assert caught.value.status == 401
    assert caught.value.code == 20003


async def test_twilio_fetch_unknown_is_20404(twilio_client: Client) -> None:
    with pytest.raises(TwilioRestException) as caught:
        await twilio_client.messages("SM" + "f" * 32).fetch_async()
    assert caught.value.status == 404
    assert caught.value.code == 20404


async def test_twilio_fault_500_fails_once(harness: Harness, twilio_client: Client) -> None:
    harness.sb.faults.set("twilio", "500", count=1)
    with pytest.raises(TwilioRestException) as caught:
        await twilio_client.messages.create_async(to=RECIPIENT, from_=SENDER, body="first")
    assert caught.value.status == 500
    assert len(harness.sb.ledger) == 0

    message = await twilio_client.messages.create_async(to=RECIPIENT, from_=SENDER, body="second")
    assert message.status == "queued"
    assert [e.text for e in harness.sb.ledger.entries()] == ["second"]
    assert harness.sb.faults.triggered("twilio") == 1
    assert harness.sb.faults.get("twilio") is None


async def test_twilio_fault_429_has_retry_after(harness: Harness) -> None:
    harness.sb.faults.set("twilio", "429")
    auth = {"Authorization": encode_basic_auth(ACCOUNT_SID, AUTH_TOKEN)}
    url = f"/sandbox/twilio/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    for _ in range(2):
        resp = await harness.client.post(url, data={"To": RECIPIENT, "From": SENDER, "Body": "x"}, headers=auth)
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "1"
        assert (await resp.json())["code"] == 20429
    harness.sb.faults.clear()
    resp = await harness.client.post(url, data={"To": RECIPIENT, "From": SENDER, "Body": "x"}, headers=auth)
    assert resp.status == 201


async def test_timeout_fault_is_released_by_close(harness: Harness) -> None:
    harness.sb.faults.set("twilio", "timeout")
    auth = {"Authorization": encode_basic_auth(ACCOUNT_SID, AUTH_TOKEN)}
    url = f"/sandbox/twilio/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"

    http_client = SandboxTwilioHttpClient(harness.sb.twilio_base_url(harness.origin), timeout=0.2)
    try:
        client = Client(ACCOUNT_SID, AUTH_TOKEN, http_client=http_client)
        with pytest.raises(TimeoutError):
            await client.messages.create_async(to=RECIPIENT, from_=SENDER, body="slow")
    finally:
        await http_client.close()

    pending = asyncio.ensure_future(
        harness.client.post(url, data={"To": RECIPIENT, "From": SENDER, "Body": "x"}, headers=auth)
    )
    # Held: the fault has taken this request too (it holds from there on, for 30 s).
    async with asyncio.timeout(30):
        while harness.sb.faults.triggered("twilio") < 2:
            await asyncio.sleep(0.01)
    assert not pending.done()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await harness.sb.close()
    resp = await asyncio.wait_for(pending, 10)
    assert resp.status == 504
    # Released by close, typically in milliseconds; the bound tells that from the 30 s hold.
    assert loop.time() - started < 10
    assert len(harness.sb.ledger) == 0


# -- inbound SMS simulation -------------------------------------------------------------------


async def test_inbound_sms_is_signed_and_replies_recorded(harness: Harness, receiver: Receiver) -> None:
    harness.sb.hub_url = receiver.url("/")
    receiver.reply = (
        "<?xml version='1.0' encoding='UTF-8'?><Response><Message>You are unsubscribed.</Message></Response>"
    )
    resp = await harness.client.post("/sandbox/sms/inbound", json={"from": RECIPIENT, "to": SENDER, "body": "STOP"})
    assert resp.status == 200
    result = await resp.json()
    assert result["status"] == 200
    assert "You are unsubscribed." in result["body"]
    assert result["replies"] == ["You are unsubscribed."]

    [(url, form, headers)] = receiver.requests
    assert url == receiver.url("/webhooks/twilio/sms")
    assert RequestValidator(AUTH_TOKEN).validate(url, form, headers["X-Twilio-Signature"])
    assert form["From"] == RECIPIENT and form["To"] == SENDER and form["Body"] == "STOP"
    assert form["AccountSid"] == ACCOUNT_SID and form["NumMedia"] == "0"
    assert form["MessageSid"].startswith("SM") and form["MessageSid"] == result["message_sid"]
    assert form["FromCountry"] == "DE" and form["ToCountry"] == "US"

    inbound, reply = harness.sb.ledger.entries(channel="sms")
    assert inbound.meta["direction"] == "inbound"
    assert (inbound.from_, inbound.to, inbound.text) == (RECIPIENT, SENDER, "STOP")
    assert reply.meta["direction"] == "reply"
    assert (reply.from_, reply.to, reply.text) == (SENDER, RECIPIENT, "You are unsubscribed.")


async def test_inbound_sms_without_hub_url_is_409(harness: Harness) -> None:
    resp = await harness.client.post("/sandbox/sms/inbound", json={"from": RECIPIENT, "to": SENDER, "body": "hi"})
    assert resp.status == 409
    assert "error" in await resp.json()
    bad = await harness.client.post("/sandbox/sms/inbound", json={"from": RECIPIENT})
    assert bad.status == 400


# -- FCM ------------------------------------------------------------------------------------


async def test_fcm_send_each_async(harness: Harness, firebase_app: firebase_admin.App) -> None:
    good = messaging.Message(
        fid="device-token-1",
        notification=messaging.Notification(title="Out for delivery", body="Arriving 10:00-12:00"),
        data={"shipment": "42", "milestone": "out_for_delivery"},
        android=messaging.AndroidConfig(collapse_key="shipment-42", priority="high"),
        apns=messaging.APNSConfig(headers={"apns-collapse-id": "shipment-42"}),
    )
    stale = messaging.Message(fid="unregistered-device", data={"shipment": "42"})
    listed = messaging.Message(fid="stale-device-token", data={"shipment": "42"})

    batch = await messaging.send_each_async([good, stale, listed], app=firebase_app)

    assert batch.success_count == 1 and batch.failure_count == 2
    ok, gone, gone_too = batch.responses
    assert ok.success
    assert ok.message_id.startswith(f"projects/{PROJECT_ID}/messages/")
    assert isinstance(gone.exception, messaging.UnregisteredError)
    assert isinstance(gone_too.exception, messaging.UnregisteredError)
    assert gone.exception.http_response.status_code == 404

    [entry] = harness.sb.ledger.entries(channel="push")
    assert entry.to == "device-token-1"
    assert entry.provider_id == ok.message_id
    assert (entry.push_title, entry.push_body) == ("Out for delivery", "Arriving 10:00-12:00")
    assert entry.push_data == {"shipment": "42", "milestone": "out_for_delivery"}
    assert entry.meta["collapse_key"] == "shipment-42"
    assert entry.meta["apns_collapse_id"] == "shipment-42"
    assert entry.meta["token"] == "device-token-1"


async def test_fcm_dry_run_is_not_recorded(harness: Harness, firebase_app: firebase_admin.App) -> None:
    batch = await messaging.send_each_async(
        [messaging.Message(topic="depot-7", data={"k": "v"})], dry_run=True, app=firebase_app
    )
    assert batch.responses[0].message_id == f"projects/{PROJECT_ID}/messages/fake_message_id"
    assert len(harness.sb.ledger) == 0


async def test_fcm_faults(harness: Harness, firebase_app: firebase_admin.App) -> None:
    msg = messaging.Message(fid="device-token-1", data={"k": "v"})
    harness.sb.faults.set("fcm", "429", count=1)
    batch = await messaging.send_each_async([msg], app=firebase_app)
    assert isinstance(batch.responses[0].exception, messaging.QuotaExceededError)
    assert batch.responses[0].exception.http_response.headers["Retry-After"] == "1"
    assert len(harness.sb.ledger) == 0

    # firebase-admin retries 500/503 itself (first retry immediately): one 503 is absorbed.
    harness.sb.faults.set("fcm", "503", count=1)
    batch = await messaging.send_each_async([msg], app=firebase_app)
    assert batch.responses[0].success
    assert harness.sb.faults.triggered("fcm") == 2
    assert len(harness.sb.ledger.entries(channel="push")) == 1


async def test_fcm_wire_validation(harness: Harness) -> None:
    url = "/sandbox/fcm/v1/projects/hub-sandbox/messages:send"
    bearer = {"Authorization": "Bearer sandbox"}
    resp = await harness.client.post(url, json={"message": {"token": "t"}})
    assert resp.status == 401
    assert (await resp.json())["error"]["status"] == "UNAUTHENTICATED"

    resp = await harness.client.post(url, json={"message": {"token": "t", "topic": "x"}}, headers=bearer)
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["status"] == "INVALID_ARGUMENT" and error["code"] == 400

    resp = await harness.client.post(url, json={"message": {"notification": {"title": "x"}}}, headers=bearer)
    assert resp.status == 400

    resp = await harness.client.post(url, json={"message": {"token": "t", "data": {"n": 1}}}, headers=bearer)
    assert resp.status == 400

    resp = await harness.client.post(url, json={"message": {"token": "unregistered-1"}}, headers=bearer)
    assert resp.status == 404
    assert (await resp.json())["error"] == {
        "code": 404,
        "message": "Requested entity was not found.",
        "status": "NOT_FOUND",
        "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}],
    }

    other = "/sandbox/fcm/v1/projects/someone-else/messages:send"
    resp = await harness.client.post(other, json={"message": {"token": "t"}}, headers=bearer)
    assert resp.status == 403
    assert (await resp.json())["error"]["details"][0]["errorCode"] == "SENDER_ID_MISMATCH"
    assert len(harness.sb.ledger) == 0

    # The legacy "token" field (what firebase-admin < 7 sends) is accepted like "fid".
    resp = await harness.client.post(
        url, json={"message": {"token": "legacy-token", "notification": {"title": "Hi"}}}, headers=bearer
    )
    assert resp.status == 200
    name = (await resp.json())["name"]
    [entry] = harness.sb.ledger.entries(channel="push")
    assert (entry.to, entry.provider_id, entry.push_title) == ("legacy-token", name, "Hi")


# -- SMTP -------------------------------------------------------------------------------------


async def test_smtp_sink_records_multipart_alternative(harness: Harness) -> None:
    msg = _email(Cc="bob@example.com", X_Hub_Shipment="42")
    await aiosmtplib.send(msg, hostname="127.0.0.1", port=harness.smtp_port, start_tls=False)

    entries = harness.sb.ledger.entries(channel="email")
    assert [e.to for e in entries] == ["alice@example.com", "bob@example.com"]
    entry = entries[0]
    assert entry.subject == "Your parcel is on its way"
    assert entry.from_ == "Parcel Hub <noreply@hub.example>"
    assert entry.text is not None
    assert entry.text.strip() == "Your parcel arrives today between 10:00 and 12:00."
    assert entry.html is not None and "<b>today</b>" in entry.html
    assert entry.provider_id == msg["Message-ID"]
    assert entry.meta["message_id"] == msg["Message-ID"]
    assert entry.meta["list_unsubscribe"] == msg["List-Unsubscribe"]
    assert entry.meta["list_unsubscribe_post"] == "List-Unsubscribe=One-Click"
    assert entry.meta["envelope_from"] == "noreply@hub.example"
    assert entry.meta["headers"]["X-Hub-Shipment"] == "42"
    assert entry.push_title is None and entry.push_data is None


async def test_smtp_sink_accepts_auth(harness: Harness) -> None:
    await aiosmtplib.send(
        _email(),
        hostname="127.0.0.1",
        port=harness.smtp_port,
        start_tls=False,
        username="hub",
        password="secret",
    )
    [entry] = harness.sb.ledger.entries(channel="email")
    assert entry.meta["auth_user"] == "hub"


async def test_smtp_refuse_fault(harness: Harness) -> None:
    harness.sb.faults.set("smtp", "refuse", count=1)
    with pytest.raises(aiosmtplib.SMTPException) as caught:
        await aiosmtplib.send(_email(), hostname="127.0.0.1", port=harness.smtp_port, start_tls=False)
    assert isinstance(caught.value, aiosmtplib.SMTPConnectResponseError)
    assert caught.value.code == 421
    assert len(harness.sb.ledger) == 0

    await aiosmtplib.send(_email(), hostname="127.0.0.1", port=harness.smtp_port, start_tls=False)
    assert len(harness.sb.ledger) == 1


async def test_smtp_faults_on_open_connection(harness: Harness) -> None:
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=harness.smtp_port, start_tls=False)
    await smtp.connect()
    try:
        harness.sb.faults.set("smtp", "429", count=1)
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as rate_limited:
            await smtp.send_message(_email())
        assert rate_limited.value.code == 451
        await smtp.rset()
        await smtp.send_message(_email())
        assert len(harness.sb.ledger) == 1

        harness.sb.faults.set("smtp", "refuse", count=1)
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
            await smtp.send_message(_email())
        assert refused.value.code == 421
        assert not smtp.is_connected
    finally:
        smtp.close()
    assert len(harness.sb.ledger) == 1


# -- ledger routes and fault routes -----------------------------------------------------------


async def test_messages_route_filters_and_orders(harness: Harness, twilio_client: Client) -> None:
    await twilio_client.messages.create_async(to=RECIPIENT, from_=SENDER, body="one")
    await aiosmtplib.send(_email(), hostname="127.0.0.1", port=harness.smtp_port, start_tls=False)
    await twilio_client.messages.create_async(to="+4915199999999", from_=SENDER, body="other")
    await twilio_client.messages.create_async(to=RECIPIENT, from_=SENDER, body="two")

    resp = await harness.client.get("/sandbox/messages")
    everything = await resp.json()
    assert [m["channel"] for m in everything] == ["sms", "email", "sms", "sms"]
    first = everything[0]
    assert set(first) == {
        "id",
        "channel",
        "to",
        "from",
        "subject",
        "text",
        "html",
        "push_title",
        "push_body",
        "push_data",
        "received_at",
        "provider_id",
        "meta",
    }
    assert first["received_at"].endswith("Z")
    assert first["subject"] is None and first["html"] is None and first["push_data"] is None

    resp = await harness.client.get("/sandbox/messages", params={"to": RECIPIENT})
    assert [m["text"] for m in await resp.json()] == ["one", "two"]
    resp = await harness.client.get("/sandbox/messages", params={"to": RECIPIENT, "limit": "1"})
    assert [m["text"] for m in await resp.json()] == ["two"]
    resp = await harness.client.get("/sandbox/messages", params={"channel": "email"})
    [mail] = await resp.json()
    assert mail["to"] == "alice@example.com" and mail["meta"]["message_id"]
    assert (await harness.client.get("/sandbox/messages", params={"channel": "fax"})).status == 400
    assert (await harness.client.get("/sandbox/messages", params={"limit": "x"})).status == 400

    resp = await harness.client.delete("/sandbox/messages")
    assert resp.status == 204
    assert await (await harness.client.get("/sandbox/messages")).json() == []


async def test_fault_routes(harness: Harness) -> None:
    resp = await harness.client.post("/sandbox/faults", json={"provider": "twilio", "mode": "500", "count": 3})
    assert resp.status == 200
    state = await (await harness.client.get("/sandbox/faults")).json()
    assert state["twilio"] == {"mode": "500", "remaining": 3, "triggered": 0}
    assert state["fcm"]["mode"] is None and state["smtp"]["mode"] is None

    resp = await harness.client.post("/sandbox/faults", json={"provider": "smtp", "mode": 503})
    assert (await resp.json())["smtp"]["mode"] == "503"
    for bad in ({"provider": "pigeon", "mode": "500"}, {"provider": "fcm", "mode": "418"}, [1]):
        assert (await harness.client.post("/sandbox/faults", json=bad)).status == 400

    resp = await harness.client.post("/sandbox/faults", json={"provider": "twilio", "mode": None})
    assert (await resp.json())["twilio"]["mode"] is None
    assert (await harness.client.delete("/sandbox/faults")).status == 204
    assert harness.sb.faults.get("smtp") is None


async def test_logs_mask_addresses(
    harness: Harness, twilio_client: Client, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="hub.sandbox")
    harness.sb.hub_url = receiver.url("/")
    await twilio_client.messages.create_async(to=RECIPIENT, from_=SENDER, body="hi")
    with pytest.raises(TwilioRestException):
        await twilio_client.messages.create_async(to=INVALID, from_=SENDER, body="hi")
    await harness.client.post("/sandbox/sms/inbound", json={"from": RECIPIENT, "to": SENDER, "body": "hi"})
    await aiosmtplib.send(_email(), hostname="127.0.0.1", port=harness.smtp_port, start_tls=False)
    ours = [r.getMessage() for r in caplog.records if r.name.startswith(("hub.sandbox", "mail.log"))]
    assert any("+49*******5678" in line for line in ours)  # hub.masking's form of RECIPIENT
    assert any("a***@example.com" in line for line in ours)
    for line in ours:
        for secret in (RECIPIENT, INVALID, "alice@example.com"):
            assert secret not in line


# -- units ------------------------------------------------------------------------------------


async def test_ledger_wait_for() -> None:
    ledger = Ledger()
    waiter = asyncio.ensure_future(ledger.wait_for(lambda e: e.channel == "push", count=1, timeout=30))
    await asyncio.sleep(0)
    ledger.record(LedgerEntry(channel="sms", to="+491"))
    await asyncio.sleep(0)
    assert not waiter.done()
    ledger.record(LedgerEntry(channel="push", to="token"))
    [entry] = await waiter
    assert entry.to == "token"
    with pytest.raises(TimeoutError):
        await ledger.wait_for(lambda e: e.channel == "email", timeout=0.05)


def test_faults_count_semantics() -> None:
    faults = Faults()
    faults.set("fcm", "503", count=2)
    assert [faults.take("fcm") for _ in range(3)] == ["503", "503", None]
    faults.set("smtp", "refuse")
    assert faults.take("smtp", modes=("500",)) is None
    assert faults.take("smtp") == "refuse"
    assert faults.get("smtp") is not None
    with pytest.raises(ValueError):
        faults.set("twilio", "teapot")
    with pytest.raises(ValueError):
        faults.set("carrier-pigeon", "500")
