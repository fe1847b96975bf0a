"""The bare-clients ceiling of ``hub bench burst``: the hub's messages sent again straight through
twilio, firebase-admin and aiosmtplib, without the hub.

The hub cannot send with less than its three provider libraries cost, so this, not a no-op job
queue, is the ceiling its sending is judged against. After the hub's run the bench reads the
sandbox ledger (``GET /sandbox/messages``: the texts the hub actually sent, in the order they
arrived) and hands them to a process of its own (``python -m proofs.bench_bare JOB RESULT``),
which sends each one again as a plain user of each library would:

- SMS: twilio's ``Client`` with its ``AsyncTwilioHttpClient``, ``messages.create_async`` (the
  ``api`` domain's ``base_url`` pointed at the sandbox; no status callback, which would make
  the hub work during the ceiling's run);
- push: ``firebase_admin.messaging.send_each_async`` with one message (firebase-admin has no
  single-message async send), ``FCM_URL`` pointed at the sandbox, a fixed bearer token; at
  most ``fcm.max_concurrency`` (8, the hub's default) at a time, as the hub sends them. FCM
  speaks HTTP/2, one connection for them all; the sandbox speaks HTTP/1.1, and firebase-admin's
  httpx client keeps only 20 connections open: 100 pushes at once made it open and close a
  connection for most of them, about 1 ms of CPU more a push at less than half the
  speed (measured), a cost of the sandbox and not of the library;
- e-mail: aiosmtplib, one connection per concurrent sender, opened on its first e-mail and kept.

``concurrency`` senders (the hub worker's ``max_jobs``) take the messages in turn, as the
worker's jobs would be in flight. The process reads its own CPU from /proc around the sending
only (imports, the job file and closing the clients are left out) and writes its figures to
RESULT. Each message goes to an address of its own (``bare_address``), so the ledger tells the
ceiling's messages from the hub's: the bench checks every one arrived once, with the same text.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import os
import sys
import tempfile
import time
import warnings
from collections import Counter
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path
from typing import Any

import aiohttp

from hub.config_sections import FcmSettings

from .common import cpu_seconds, spawn

__all__ = ["bare_address", "bare_clients_ceiling", "bare_ok", "main"]

# The sandbox's default Twilio account and Firebase project (hub.sandbox.Sandbox), which the
# hub's own settings default to as well.
ACCOUNT_SID = "ACsandbox0000000000000000000000000"
AUTH_TOKEN = "sandbox-auth-token"
FCM_PROJECT = "hub-sandbox"


def bare_address(channel: str, to: str) -> str:
    """Where the ceiling sends the copy of a message the hub sent to ``to``: an address of its
    own, so the ledger counts the two runs apart (a phone number stays a valid E.164 number)."""
    if channel == "sms":
        return f"{to[:4]}{(int(to[4]) + 5) % 10}{to[5:]}"
    return f"bare-{to}"


def _digest(subject: str | None, text: str | None, push_body: str | None) -> str:
    """What proofs.servers' ``/bench/dump`` says a message said."""
    return hashlib.sha1(f"{subject}|{text}|{push_body}".encode()).hexdigest()[:16]


def _job(entry: dict[str, Any]) -> dict[str, Any]:
    """One message to send, from a ledger entry of the hub's run."""
    meta = entry.get("meta") or {}
    return {
        "channel": entry["channel"],
        "to": bare_address(entry["channel"], entry["to"]),
        "from": entry.get("from"),
        "subject": entry.get("subject") or entry.get("push_title") or "",
        "text": entry.get("text") if entry["channel"] != "push" else entry.get("push_body"),
        "html": entry.get("html"),
        "data": entry.get("push_data") or {},
        "collapse_key": meta.get("collapse_key"),
        "apns_collapse_id": meta.get("apns_collapse_id"),
        "priority": meta.get("android_priority"),
        "locale": (meta.get("headers") or {}).get("Content-Language"),
        "unsubscribe": meta.get("list_unsubscribe"),
    }


async def _get_json(url: str) -> Any:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return await resp.json()


async def bare_clients_ceiling(sandbox_port: int, smtp_port: int, concurrency: int) -> dict[str, Any]:
    """Send again every message the sandbox holds through the bare clients, in a process of
    their own; their messages/s, CPU per message, and whether each arrived once, unchanged."""
    base = f"http://127.0.0.1:{sandbox_port}"
    entries = await _get_json(f"{base}/sandbox/messages")
    jobs = [_job(e) for e in entries]
    expected = {
        (e["channel"], bare_address(e["channel"], e["to"])): _digest(e["subject"], e["text"], e["push_body"])
        for e in entries
    }
    tmp = Path(tempfile.mkdtemp(prefix="hub-bench-bare-"))
    job = {
        "twilio_base_url": f"{base}/sandbox/twilio",
        "fcm_url": f"{base}/sandbox/fcm/v1/projects/{{0}}/messages:send",
        "smtp_port": smtp_port,
        "concurrency": concurrency,
        "push_concurrency": FcmSettings().max_concurrency,
        "messages": jobs,
    }
    (tmp / "job.json").write_text(json.dumps(job))
    proc = spawn(["-m", "proofs.bench_bare", str(tmp / "job.json"), str(tmp / "result.json")])
    code = await asyncio.to_thread(proc.wait, max(120.0, len(jobs) / 10))
    if code != 0:
        raise RuntimeError(f"the bare-clients process failed (exit code {code})")
    sent = json.loads((tmp / "result.json").read_text())
    dump = await _get_json(f"{base}/bench/dump")
    arrived = [m for m in dump if (m["channel"], m["to"]) in expected]
    n = len(jobs)
    return {
        "bare_clients_msgs_per_s": n / sent["elapsed_s"],
        "bare_clients_cpu_ms_per_message": sent["cpu_s"] * 1000 / n,
        "bare_clients": {
            "messages": n,
            "by_channel": dict(Counter(j["channel"] for j in jobs)),
            "received": len(arrived),
            "duplicates": len(arrived) - len({(m["channel"], m["to"]) for m in arrived}),
            "changed": sum(1 for m in arrived if m["digest"] != expected[(m["channel"], m["to"])]),
            "failed": sent["failed"],
            "elapsed_s": sent["elapsed_s"],
            "cpu_s": sent["cpu_s"],
        },
    }


def bare_ok(bare: dict[str, Any]) -> bool:
    """Every message of the ceiling sent without an error and received once, unchanged."""
    return bool(
        not bare["failed"] and bare["received"] == bare["messages"] and not bare["duplicates"] and not bare["changed"]
    )


# -- the bare-clients process -------------------------------------------------------------------
def _email(m: dict[str, Any], number: int, domain: str) -> Message:
    """The e-mail as a user of the standard library's (compat32) MIME classes writes it."""
    text = MIMEText(m["text"] or "", "plain", "utf-8")
    if m["html"]:
        msg: Message = MIMEMultipart("alternative")
        msg.attach(text)
        msg.attach(MIMEText(m["html"], "html", "utf-8"))
    else:
        msg = text
    subject = m["subject"]
    msg["From"] = m["from"]
    msg["To"] = m["to"]
    msg["Subject"] = subject if subject.isascii() else Header(subject, "utf-8").encode()
    msg["Date"] = email.utils.formatdate()
    msg["Message-ID"] = f"<bare-{number}@{domain}>"
    if m["locale"]:
        msg["Content-Language"] = m["locale"]
    if m["unsubscribe"]:
        msg["List-Unsubscribe"] = m["unsubscribe"]
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    return msg


class _Clients:
    """The three libraries' clients, set up as their documentation shows; ``send`` sends one
    message. Made inside the running event loop (twilio's aiohttp session needs it)."""

    def __init__(self, job: dict[str, Any]) -> None:
        import firebase_admin
        from firebase_admin import credentials, messaging
        from google.oauth2.credentials import Credentials
        from twilio.http.async_http_client import AsyncTwilioHttpClient
        from twilio.rest import Client

        class Token(credentials.Base):  # type: ignore[misc]  # firebase-admin ships no type hints
            def get_credential(self) -> Credentials:
                return Credentials(token="sandbox-token")  # type: ignore[no-untyped-call]  # google-auth untyped

        self._http = AsyncTwilioHttpClient()
        self._twilio = Client(ACCOUNT_SID, AUTH_TOKEN, http_client=self._http)
        self._twilio.api.base_url = job["twilio_base_url"]
        # firebase-admin reads its endpoint from this class constant when an app first sends.
        messaging._MessagingService.FCM_URL = job["fcm_url"]
        self._app = firebase_admin.initialize_app(Token(), {"projectId": FCM_PROJECT}, name="bare-clients")
        self._messaging = messaging
        self._smtp_port = int(job["smtp_port"])
        self._push_slots = asyncio.Semaphore(int(job["push_concurrency"]))
        self.smtp: list[Any] = []  # every SMTP connection opened, to close at the end
        self.failed = Counter[str]()

    async def send(self, m: dict[str, Any], number: int, smtp: Any) -> Any:
        """Send ``m``; returns the sender's SMTP connection (opened on its first e-mail)."""
        if m["channel"] == "sms":
            await self._twilio.messages.create_async(to=m["to"], from_=m["from"], body=m["text"])
        elif m["channel"] == "push":
            fcm = self._messaging
            push = fcm.Message(
                fid=m["to"],
                notification=fcm.Notification(title=m["subject"], body=m["text"]),
                data=m["data"],
                android=fcm.AndroidConfig(collapse_key=m["collapse_key"], priority=m["priority"]),
                apns=fcm.APNSConfig(
                    headers={"apns-collapse-id": m["apns_collapse_id"]} if m["apns_collapse_id"] else None
                ),
            )
            async with self._push_slots:
                answer = (await fcm.send_each_async([push], app=self._app)).responses[0]
            if not answer.success:
                self.failed[type(answer.exception).__name__] += 1
        else:
            import aiosmtplib

            if smtp is None:
                smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=self._smtp_port, start_tls=False)
                await smtp.connect()
                self.smtp.append(smtp)
            sender = email.utils.parseaddr(m["from"])[1]
            msg = _email(m, number, sender.rpartition("@")[2])
            await smtp.send_message(msg, sender=sender, recipients=[m["to"]])
        return smtp

    async def close(self) -> None:
        for smtp in self.smtp:
            await smtp.quit()
        await self._http.close()
        await self._messaging._get_messaging_service(self._app)._async_client.aclose()


async def _send_all(job: dict[str, Any]) -> dict[str, Any]:
    """Send every message with ``concurrency`` senders; the seconds and CPU seconds it took."""
    clients = _Clients(job)
    messages = job["messages"]
    turns = iter(range(len(messages)))

    async def sender() -> None:
        smtp = None
        for i in turns:
            try:
                smtp = await clients.send(messages[i], i, smtp)
            except Exception as e:  # counted: the bench fails a run with any
                clients.failed[type(e).__name__] += 1

    cpu, start = cpu_seconds(os.getpid()), time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(job["concurrency"])))
    elapsed, cpu = time.perf_counter() - start, cpu_seconds(os.getpid()) - cpu
    await clients.close()
    return {"elapsed_s": elapsed, "cpu_s": cpu, "failed": dict(clients.failed)}


def main(argv: list[str]) -> None:
    # twilio's async client passes aiohttp a BasicAuth, which aiohttp 3.14 deprecates.
    warnings.simplefilter("ignore", DeprecationWarning)
    job = json.loads(Path(argv[0]).read_text())
    Path(argv[1]).write_text(json.dumps(asyncio.run(_send_all(job))))


if __name__ == "__main__":
    main(sys.argv[1:])
