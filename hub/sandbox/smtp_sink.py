"""SMTP sink: an aiosmtpd server in the caller's event loop that records every e-mail.

``await sink.start(host, port)`` binds with ``loop.create_server`` (aiosmtpd's threaded
``Controller`` is not used, so the sink shares the loop, the ledger and the faults with the
HTTP fakes). ``AUTH PLAIN``/``LOGIN`` are advertised without TLS and accept any credentials, so a
hub configured with SMTP credentials works unchanged; STARTTLS is not offered.

Each accepted message is parsed with the ``email.policy.default`` policy and recorded once
per envelope recipient (``RCPT TO``), with the ``text/plain`` and ``text/html`` bodies, Subject,
header From, Message-ID and List-Unsubscribe(-Post). The server answers ``250 OK``; under a
lost-answer fault (consumed at the end of DATA) it records the message and then holds that
answer (``accept-stall``) or closes the connection without it (``accept-drop``), or closes the
connection without recording anything (``drop``).

aiosmtpd logs envelope addresses in full at INFO on the ``mail.log`` logger; starting the sink
sets that logger to WARNING unless its level was configured.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesParser
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from ..masking import mask_email
from .faults import LOST_ANSWER, MODES, Faults
from .ledger import Ledger, LedgerEntry

__all__ = ["SmtpSink"]

logger = logging.getLogger(__name__)

_IDENT = "hub-sandbox ESMTP"
# Faults consumed at MAIL; the lost-answer ones are consumed at the end of DATA.
_MAIL_FAULTS = tuple(m for m in MODES if m not in LOST_ANSWER)
# Headers copied into ``meta["headers"]`` besides every ``X-*`` header.
_HEADERS_OF_INTEREST = (
    "Reply-To",
    "In-Reply-To",
    "References",
    "Auto-Submitted",
    "Precedence",
    "Content-Language",
    "Feedback-ID",
)


def _accept_any_credentials(
    server: Any, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    return AuthResult(success=True, auth_data=auth_data)


def _text_of(message: Message, subtype: str) -> str | None:
    """The first text/<subtype> part that is not an attachment, decoded."""
    for part in message.walk():
        if part.get_content_type() != f"text/{subtype}" or part.get("Content-Disposition", "").startswith("attachment"):
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            return None
        return payload.decode(part.get_content_charset() or "utf-8", "replace")
    return None


class _RefusingProtocol(asyncio.Protocol):
    """Greets with ``421`` and hangs up (the ``"refuse"`` fault for new connections)."""

    def __init__(self, hostname: str) -> None:
        self._hostname = hostname

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(f"421 4.3.2 {self._hostname} Service not available, closing transmission channel\r\n".encode())
        transport.close()


class _Handler:
    """aiosmtpd handler hooks (aiosmtpd calls every ``handle_*`` attribute as a hook)."""

    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_MAIL(
        self, server: Any, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        failure = await self._sink._fault(server)
        if failure is not None:
            return failure
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address.lower() in self._sink.bouncing_addresses:
            return "550 5.1.1 No such user here (sandbox hard bounce)"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        lost = self._sink._faults.take("smtp", LOST_ANSWER)
        if lost != "drop":
            self._sink._record(raw, envelope, session)
        if lost == "accept-stall":
            await self._sink._faults.stall()
        elif lost is not None:  # the connection closes with no answer to the message
            transport = server.transport
            if transport is not None:
                transport.abort()
        return "250 OK"


class SmtpSink:
    """Owns the SMTP listening socket and open connections."""

    def __init__(self, *, ledger: Ledger, faults: Faults, hostname: str = "sandbox.localhost") -> None:
        self.hostname = hostname
        # Addresses answered "550 no such user" at RCPT time: a hard bounce.
        self.bouncing_addresses: set[str] = set()
        self._ledger = ledger
        self._faults = faults
        self._handler = _Handler(self)
        self._server: asyncio.Server | None = None
        self._connections: weakref.WeakSet[asyncio.BaseProtocol] = weakref.WeakSet()
        # compat32 parsing: the default policy parses every header into objects, which made the
        # sink the most expensive part of a benchmark run.
        self._parser = BytesParser()

    @property
    def port(self) -> int | None:
        if self._server is None or not self._server.sockets:
            return None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen in the running event loop; return the bound port."""
        if self._server is not None:
            raise RuntimeError("SMTP sink already started")
        _quiet_aiosmtpd_log()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._make_protocol, host, port)
        bound = self.port
        assert bound is not None
        logger.info("SMTP sink listening on %s:%s", host, bound)
        return bound

    def _make_protocol(self) -> asyncio.BaseProtocol:
        if self._faults.take("smtp", modes=("refuse",)) is not None:
            return _RefusingProtocol(self.hostname)
        protocol: asyncio.BaseProtocol = SMTP(
            self._handler,
            hostname=self.hostname,
            ident=_IDENT,
            decode_data=False,
            enable_SMTPUTF8=True,
            auth_required=False,
            auth_require_tls=False,
            authenticator=_accept_any_credentials,
            loop=asyncio.get_running_loop(),
        )
        self._connections.add(protocol)
        return protocol

    async def _fault(self, server: Any) -> str | None:
        mode = self._faults.take("smtp", _MAIL_FAULTS)
        if mode is None:
            return None
        if mode == "refuse":
            transport = server.transport
            if transport is not None:
                asyncio.get_running_loop().call_soon(transport.close)
            return "421 4.3.2 Service not available, closing transmission channel"
        if mode == "500":
            return "451 4.3.0 Internal server error, try again later"
        if mode == "429":
            return "451 4.7.1 Rate limit exceeded, try again later"
        if mode == "timeout":
            await self._faults.stall()
            return "451 4.4.2 Timeout, try again later"
        return "451 4.3.2 Service temporarily unavailable, try again later"

    def _record(self, raw: bytes, envelope: Envelope, session: Session) -> None:
        parsed = self._parser.parsebytes(raw)
        message_id = _header(parsed, "Message-ID")
        headers: dict[str, str] = {}
        for name, value in parsed.items():
            if name.lower().startswith("x-") or name in _HEADERS_OF_INTEREST:
                headers[name] = _decode(value)
        attachments = [
            part.get_filename() or part.get_content_type()
            for part in parsed.walk()
            if part.get("Content-Disposition", "").startswith("attachment")
        ]
        auth_user: str | None = None
        auth_data = getattr(session, "auth_data", None)
        if isinstance(auth_data, LoginPassword):
            auth_user = auth_data.login.decode("utf-8", "replace")
        common: dict[str, Any] = {
            "from_": _header(parsed, "From") or envelope.mail_from,
            "subject": _header(parsed, "Subject"),
            "text": _text_of(parsed, "plain"),
            "html": _text_of(parsed, "html"),
            "provider_id": message_id,
        }
        for recipient in envelope.rcpt_tos:
            self._ledger.record(
                LedgerEntry(
                    channel="email",
                    to=recipient,
                    meta={
                        "message_id": common["provider_id"],
                        "list_unsubscribe": _header(parsed, "List-Unsubscribe"),
                        "list_unsubscribe_post": _header(parsed, "List-Unsubscribe-Post"),
                        "envelope_from": envelope.mail_from,
                        "header_to": _header(parsed, "To"),
                        "cc": _header(parsed, "Cc"),
                        "headers": headers,
                        "attachments": attachments,
                        "auth_user": auth_user,
                        "size": len(raw),
                    },
                    **common,
                )
            )
            logger.info("smtp: accepted message for %s", mask_email(recipient))

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for protocol in list(self._connections):
            transport = getattr(protocol, "transport", None)
            if transport is not None:
                transport.close()
        await server.wait_closed()
        # Let connection_lost() run so aiosmtpd's per-connection tasks are cancelled.
        for _ in range(3):
            await asyncio.sleep(0)


def _quiet_aiosmtpd_log() -> None:
    """aiosmtpd logs every envelope address in full at INFO on its ``mail.log`` logger.

    Unless someone configured that logger explicitly, keep it to warnings.
    """
    aiosmtpd_log = logging.getLogger("mail.log")
    if aiosmtpd_log.level == logging.NOTSET:
        aiosmtpd_log.setLevel(logging.WARNING)


def _decode(value: Any) -> str:
    # Encoded words (=?utf-8?...?=) decoded; folded long headers unfolded and stripped.
    return " ".join(str(make_header(decode_header(str(value)))).split())


def _header(message: Message, name: str) -> str | None:
    value = message.get(name)
    return _decode(value) if value is not None else None
