"""E-mail through SMTP with aiosmtplib: multipart text + HTML, one Message-ID per message.

``SmtpEmail`` keeps a small pool of open SMTP connections (created lazily, reused across
messages, replaced when the server drops them).

A connection lost or timed out once the message's DATA has begun is ``in_doubt``: the server may
have taken the message before its answer was lost. It is not tried again on a new connection,
and since SMTP offers no way to ask a server whether it has a message, the policy is
``UNKNOWN``. Lost before DATA (a pooled connection the server had closed, a refused
connection): nothing was handed over, and the message is tried once more on a new connection.
"""

from __future__ import annotations

import asyncio
import email.utils
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from typing import Any

import aiosmtplib
from aiosmtplib.typing import Default

from .base import InDoubtPolicy, Outbound, SendResult

__all__ = ["SmtpEmail", "build_email"]

# SMTP reply codes that mean the address itself is bad (hard bounce).
_BAD_ADDRESS = {550, 551, 553}


def build_email(message: Outbound, sender: str, domain: str) -> Message:
    """multipart/alternative (text, HTML) with a Message-ID and one-click List-Unsubscribe.
    From is the shop's (``message.email_from``) when it has one, else ``sender``; Reply-To the
    shop's when set. The Message-ID's domain and the envelope sender stay the hub's (bounces come
    back to it).

    Built with the compat32 MIME classes: the same wire format as ``EmailMessage``, at a
    fraction of the CPU (the default policy parses every header it is given).
    """
    text = MIMEText(message.text, "plain", "utf-8")
    if message.html:
        msg: Message = MIMEMultipart("alternative")
        msg.attach(text)
        msg.attach(MIMEText(message.html, "html", "utf-8"))
    else:
        msg = text
    msg["From"] = _address_header(message.email_from or sender)
    if message.reply_to:
        msg["Reply-To"] = message.reply_to
    msg["To"] = message.to
    msg["Subject"] = Header(message.subject, "utf-8").encode() if not message.subject.isascii() else message.subject
    msg["Date"] = email.utils.formatdate(localtime=False)
    msg["Message-ID"] = f"<{message.message_id}@{domain}>"
    msg["Content-Language"] = message.locale
    if message.unsubscribe_url:
        msg["List-Unsubscribe"] = f"<{message.unsubscribe_url}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    return msg


def _address_header(value: str) -> str:
    """``Name <address>`` as a header value: a name in other than ASCII encoded (RFC 2047)."""
    if value.isascii():
        return value
    name, address = email.utils.parseaddr(value)
    return email.utils.formataddr((name, address), charset="utf-8")


class _Client(aiosmtplib.SMTP):
    """aiosmtplib's client, noting when a message's DATA command began: a connection lost or
    timed out after that may have left the message with the server."""

    data_started = False

    async def data(
        self, message: str | bytes, /, *, timeout: float | Default | None = Default.token
    ) -> aiosmtplib.SMTPResponse:
        self.data_started = True
        return await super().data(message, timeout=timeout)


class SmtpEmail:
    name = "email"
    in_doubt = InDoubtPolicy.UNKNOWN

    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        username: str | None = None,
        password: str | None = None,
        use_tls: bool = False,
        start_tls: bool = False,
        timeout: float = 10.0,
        pool_size: int = 4,
    ) -> None:
        self._options: dict[str, Any] = {
            "hostname": host,
            "port": port,
            "username": username,
            "password": password,
            "use_tls": use_tls,
            "start_tls": start_tls,
            "timeout": timeout,
            # Fixed EHLO name: otherwise every new connection does a getfqdn() lookup in a thread.
            "local_hostname": "localhost",
        }
        self._sender = sender
        _, address = email.utils.parseaddr(sender)
        self._envelope_from = address or sender
        self._domain = address.rpartition("@")[2] or "localhost"
        self._pool: asyncio.Queue[_Client] = asyncio.Queue()
        self._slots = asyncio.Semaphore(pool_size)
        self._all: set[_Client] = set()

    async def _acquire(self) -> _Client:
        await self._slots.acquire()
        try:
            client = self._pool.get_nowait()
        except asyncio.QueueEmpty:
            client = _Client(**self._options)
            self._all.add(client)
        if not client.is_connected:
            try:
                await client.connect()
            except BaseException:
                self._discard(client)
                raise
        return client

    def _release(self, client: _Client, healthy: bool) -> None:
        if healthy:
            self._pool.put_nowait(client)
        else:
            self._discard(client)
        self._slots.release()

    def _discard(self, client: _Client) -> None:
        self._all.discard(client)
        if client.is_connected:
            client.close()

    async def send(self, message: Outbound) -> SendResult:
        msg = build_email(message, self._sender, self._domain)
        provider_id = f"<{message.message_id}@{self._domain}>"
        for attempt in (1, 2):
            try:
                client = await self._acquire()
            except (TimeoutError, aiosmtplib.SMTPException, OSError) as e:
                self._slots.release()
                return SendResult.transient(f"smtp connect failed: {_describe(e)}")
            healthy = True
            client.data_started = False
            try:
                await client.send_message(msg, sender=self._envelope_from, recipients=[message.to])
                return SendResult.accepted(provider_id)
            except aiosmtplib.SMTPRecipientsRefused as e:
                refused = e.recipients[0] if e.recipients else None
                code = refused.code if refused else 550
                return _by_code(code, f"recipient refused: {refused.message if refused else ''}")
            except aiosmtplib.SMTPResponseException as e:
                healthy = e.code < 500 or e.code in _BAD_ADDRESS
                await _reset(client)
                return _by_code(e.code, e.message)
            except (aiosmtplib.SMTPException, OSError) as e:  # OSError: TimeoutError and resets too
                healthy = False
                if client.data_started:
                    return SendResult.in_doubt(f"smtp answer to DATA lost: {_describe(e)}")
                if attempt == 2 or not isinstance(e, OSError):
                    return SendResult.transient(f"smtp connection lost: {_describe(e)}")
            finally:
                self._release(client, healthy)
        return SendResult.transient("smtp unavailable")  # pragma: no cover - loop always returns

    async def reconcile(self, message: Outbound, since: float) -> SendResult:
        """SMTP cannot be asked whether a server has a message: never sure."""
        return SendResult.in_doubt("smtp offers no lookup")

    async def close(self) -> None:
        for client in list(self._all):
            if client.is_connected:
                try:
                    await asyncio.wait_for(client.quit(), 2)
                except (TimeoutError, aiosmtplib.SMTPException, OSError):
                    client.close()
        self._all.clear()


async def _reset(client: _Client) -> None:
    try:
        await client.rset()
    except (TimeoutError, aiosmtplib.SMTPException, OSError):
        client.close()


def _by_code(code: int, text: str) -> SendResult:
    reason = f"smtp {code}: {text}".strip()
    if 400 <= code < 500:
        return SendResult.transient(reason, code=str(code))
    return SendResult.permanent(reason, code=str(code), contact_invalid=code in _BAD_ADDRESS)


def _describe(error: BaseException) -> str:
    return str(error) or type(error).__name__
