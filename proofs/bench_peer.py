"""``hub bench`` peer comparison: the same e-mails through Apprise and through the hub, side by side.

One run sends N e-mails to the bench sandbox's SMTP sink (aiosmtpd on loopback, plain SMTP) two
ways, and counts every message in the sink:

1. the hub: a private redis-server (AOF on, as in production), the sandbox, ``hub api`` and
   ``workers`` ``hub worker`` processes (``proofs.common.start_stack``), quiet hours and sender pacing
   off as in ``hub bench``; N ``order_confirmed`` events (default channels: e-mail only) for
   customers who have nothing but an e-mail address, so each event is exactly one e-mail;
2. Apprise, the popular Python notification library, in this process: one ``apprise.Apprise()``
   with one ``mailto://`` URL pointing at the same sink, sending the subject and HTML body the
   hub produced (taken from the sink), once per notification:

   - ``sequential``: ``notify()`` N times in a loop, as Apprise is mostly used;
   - ``async_notify``: N ``async_notify()`` calls, ``APPRISE_CONCURRENCY`` at a time;
   - ``paced``: a few ``notify()`` calls with Apprise's out-of-the-box pacing.

   Apprise paces every loaded service to one request per ``request_rate_per_sec`` *seconds*
   (5.5 for every notification plugin, ``mailto://`` included; there is no URL parameter for
   it), so out of the box one ``Apprise`` object sends one e-mail every 5.5 s. Only a few
   paced sends are measured (N of them would just take N x 5.5 s); the sequential and
   ``async_notify`` runs set the loaded service's ``request_rate_per_sec`` to 0, and the
   faster of the two is the Apprise figure the ratios use (the report says which).

The hub goes first; its api and worker processes are stopped before Apprise sends, so they take
no CPU from it, and the sink (one process, kept running) is the same for both.

Figures: e-mails/s (first notify or POST to the last e-mail in the sink), the hub/Apprise ratio,
CPU seconds per 1,000 e-mails (Apprise: this process, ``time.process_time``; the hub: its api and
worker processes; the sink and the hub's HTTP poster reported apart) and what arrived: exactly
N, duplicates, missing.

What is compared is not the same work. Apprise sends inline from the caller: nothing is queued
or persisted, a crash or restart loses whatever was not sent yet, a retry is the caller's own
loop, nothing makes a repeated call idempotent, and it opens a new SMTP connection per
notification (and builds a new ``ssl.create_default_context()`` for it, loading the system CA
bundle, even with ``mode=insecure``: most of its CPU per e-mail). The hub accepts each event
over HTTP, validates it, persists it in Redis (idempotent on ``event_id``), plans channels from
preferences and policy, renders templates in the customer's locale, queues the message, sends it
from worker processes over pooled SMTP connections with retries that survive restarts, and
records its status. The ratio says what that costs (or saves) in throughput and CPU on the same
machine in the same minute, nothing more.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import aiohttp

from hub.redis_server import EmbeddedRedis

from .common import BENCH_KEY, Stack, cpu_seconds, post_all, start_stack, stop_all

if TYPE_CHECKING:
    # apprise is in the bench extra; where it is not installed, pyproject tells mypy to let it be.
    import apprise

__all__ = ["peer_email", "run_peer_bench"]

# Concurrent HTTP posters for the hub: `hub bench`'s default.
POSTERS = 16
# Events processed concurrently per worker process: `hub bench`'s setting.
MAX_JOBS = 100
# async_notify calls in flight: the hub's smtp.pool_size, so Apprise holds as many SMTP
# conversations at once as one hub worker may.
APPRISE_CONCURRENCY = 8
# Sends measured with Apprise's default pacing (5.5 s apart per service).
PACED_SAMPLE = 3
SENDER = ("Parcelhub", "updates@parcelhub.example")  # config.yaml's smtp.from_address


@dataclass(frozen=True)
class _Sample:
    """The hub's e-mail for one customer, as the sink received it: what Apprise sends too."""

    subject: str
    html: str
    size: int


# -- the sink ------------------------------------------------------------------------------------
async def _get(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as resp:
        resp.raise_for_status()
        return await resp.json()


async def _email_count(http: aiohttp.ClientSession, port: int) -> int:
    counts = await _get(http, f"http://127.0.0.1:{port}/bench/count")
    return int(counts.get("email", 0))


def _smtp_port(stack: Stack) -> int:
    """The SMTP port of the stack's sandbox: the one its hub sends to (``HUB_SMTP__PORT`` of the
    stack's environment), else the one after the HTTP port on the sandbox's command line
    (``python -m proofs.servers sandbox HTTP_PORT SMTP_PORT ...``)."""
    env = getattr(stack, "env", None) or {}
    if str(env.get("HUB_SMTP__PORT", "")).isdigit():
        return int(env["HUB_SMTP__PORT"])
    args = [str(a) for a in stack.sandbox.args] if isinstance(stack.sandbox.args, list) else []
    at = args.index("sandbox") if "sandbox" in args else len(args)
    ports = args[at + 1 : at + 3]
    if len(ports) != 2 or ports[0] != str(stack.sandbox_port) or not ports[1].isdigit():
        raise RuntimeError(f"cannot tell the sandbox's SMTP port from its command line {args!r}")
    return int(ports[1])


async def _received(http: aiohttp.ClientSession, port: int, to: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = await _get(
        http, f"http://127.0.0.1:{port}/sandbox/messages?{urlencode({'to': to, 'channel': 'email'})}"
    )
    return entries


def _tally(got: Counter[str], expected: list[str]) -> dict[str, int]:
    """Delivered, duplicates and missing of ``expected`` keys (addresses or subjects)."""
    wanted = set(expected)
    return {
        "delivered": sum(c for k, c in got.items() if k in wanted),
        "duplicates": sum(c - 1 for k, c in got.items() if k in wanted and c > 1),
        "missing": len(wanted - set(got)),
        "unexpected": sum(c for k, c in got.items() if k not in wanted),
    }


def _timestamp(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


# -- the hub -------------------------------------------------------------------------------------
def _email_events(n: int, run: str) -> list[dict[str, Any]]:
    occurred = datetime.now(UTC).isoformat(timespec="seconds")
    return [
        {
            "event_id": f"peer{run}-{i}",
            "type": "order_confirmed",  # config.yaml: channels.order_confirmed = [email]
            "occurred_at": occurred,
            "delivery": {"id": f"PD{run}-{i}", "tracking_code": f"LM{300000000 + i}", "merchant": "Acme Shoes"},
            # No phone, no push token: e-mail is the only reachable channel, so the fallback
            # order cannot add another message either.
            "customer": {
                "id": f"PC{run}-{i}",
                "name": "Ana Weber",
                "email": _hub_address(run, i),
                "locale": "en",
                "timezone": "Europe/Berlin",
            },
        }
        for i in range(n)
    ]


def _hub_address(run: str, i: int) -> str:
    return f"peer{run}-{i}@example.com"


async def _hub(stack: Stack, n: int, run: str, http: aiohttp.ClientSession) -> dict[str, Any]:
    events = _email_events(n, run)
    bodies = [json.dumps(e).encode() for e in events]
    addresses = [_hub_address(run, i) for i in range(n)]
    before = await _get(http, f"http://127.0.0.1:{stack.sandbox_port}/bench/count")
    cpu_before = {p.pid: cpu_seconds(p.pid) for p in stack.procs}
    caller_before = time.process_time()
    start_wall = time.time()
    post_elapsed, _ = await post_all(
        f"http://127.0.0.1:{stack.api_port}/v1/events",
        bodies,
        POSTERS,
        {"Content-Type": "application/json", "Authorization": f"Bearer {BENCH_KEY}"},
    )
    caller_cpu = time.process_time() - caller_before
    target = int(before.get("email", 0)) + n
    deadline = time.perf_counter() + max(120.0, n / 10)
    while await _email_count(http, stack.sandbox_port) < target:
        if time.perf_counter() > deadline:
            arrived = await _email_count(http, stack.sandbox_port) - target + n
            raise RuntimeError(f"hub: only {arrived} of {n} e-mails arrived")
        await asyncio.sleep(0.05)

    def used(*ps: subprocess.Popen[bytes]) -> float:
        return sum(cpu_seconds(p.pid) - cpu_before[p.pid] for p in ps)

    cpu = {"api": used(stack.api), "workers": used(*stack.workers), "sink": used(stack.sandbox)}
    await asyncio.sleep(0.5)  # anything sent twice or to another channel shows up too
    after = await _get(http, f"http://127.0.0.1:{stack.sandbox_port}/bench/count")
    ledger: list[dict[str, Any]] = await _get(http, f"http://127.0.0.1:{stack.sandbox_port}/bench/dump")
    ours = [m for m in ledger if m["channel"] == "email" and m["to"] in set(addresses)]
    last = max(_timestamp(m["received_at"]) for m in ours)
    tally = _tally(Counter(m["to"] for m in ours), addresses)
    other_channels = sum(int(v) - int(before.get(k, 0)) for k, v in after.items() if k != "email")
    return {
        "emails_per_s": n / (last - start_wall),
        "accepted_per_s": n / post_elapsed,
        "cpu_s_per_1000": 1000 / n * (cpu["api"] + cpu["workers"]),
        "cpu_s_per_1000_api": 1000 / n * cpu["api"],
        "cpu_s_per_1000_workers": 1000 / n * cpu["workers"],
        "poster_cpu_s_per_1000": 1000 / n * caller_cpu,
        "sink_cpu_s_per_1000": 1000 / n * cpu["sink"],
        "other_channel_messages": other_channels,
        **tally,
    }


async def _sample(http: aiohttp.ClientSession, stack: Stack, run: str) -> _Sample:
    entries = await _received(http, stack.sandbox_port, _hub_address(run, 0))
    first = entries[0]
    return _Sample(subject=str(first["subject"]), html=str(first["html"]), size=int(first["meta"]["size"]))


# -- Apprise -------------------------------------------------------------------------------------
def _mailto(smtp_port: int | str, to: str) -> str:
    """Plain SMTP on loopback: ``mode=insecure`` (no STARTTLS, no TLS), no user, so no AUTH."""
    query = urlencode({"mode": "insecure", "from": SENDER[1], "name": SENDER[0], "to": to})
    return f"mailto://127.0.0.1:{smtp_port}/?{query}"


def _apprise(smtp_port: int, to: str, *, paced: bool) -> apprise.Apprise:
    """One ``apprise.Apprise()`` holding one ``mailto://`` service."""
    try:
        import apprise
    except ImportError as e:
        raise RuntimeError("the peer benchmark needs Apprise: pip install apprise") from e
    service = apprise.Apprise.instantiate(_mailto(smtp_port, to), suppress_exceptions=False)
    if service is None:
        raise RuntimeError(f"apprise did not load {_mailto(smtp_port, to)}")
    if not paced:
        # Apprise waits until `request_rate_per_sec` seconds have passed since the service's
        # previous request (5.5 for notification plugins); no URL parameter changes it.
        service.request_rate_per_sec = 0
    apobj = apprise.Apprise()
    if not apobj.add(service):
        raise RuntimeError("apprise refused the mailto service")
    return apobj


def _apprise_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("apprise")
    except PackageNotFoundError:
        return "not installed"


def _subjects(sample: _Sample, tag: str, n: int) -> list[str]:
    return [f"{sample.subject} [{tag} {i}]" for i in range(n)]


async def _apprise_run(
    http: aiohttp.ClientSession, stack: Stack, sample: _Sample, mode: str, n: int, run: str
) -> dict[str, Any]:
    """Send ``n`` e-mails through one Apprise object (``mode``: sequential, async_notify, paced)."""
    smtp_port = _smtp_port(stack)
    to = f"apprise-{mode.replace('_', '-')}-{run}@example.com"
    apobj = _apprise(smtp_port, to, paced=mode == "paced")
    subjects = _subjects(sample, mode, n)
    failed = 0
    sink_before = cpu_seconds(stack.sandbox.pid)
    cpu_before = time.process_time()
    start_wall = time.time()
    start = time.perf_counter()
    gaps: list[float] = []
    if mode == "async_notify":
        queue: asyncio.Queue[str] = asyncio.Queue()
        for subject in subjects:
            queue.put_nowait(subject)

        async def sender() -> int:
            bad = 0
            while not queue.empty():
                subject = queue.get_nowait()
                if not await apobj.async_notify(body=sample.html, title=subject, body_format="html"):
                    bad += 1
            return bad

        failed = sum(await asyncio.gather(*(sender() for _ in range(APPRISE_CONCURRENCY))))
    else:
        # notify() is synchronous: it blocks this event loop, which has nothing else to do.
        for subject in subjects:
            t = time.perf_counter()
            if not apobj.notify(body=sample.html, title=subject, body_format="html"):
                failed += 1
            gaps.append(time.perf_counter() - t)
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu_before
    sink_cpu = cpu_seconds(stack.sandbox.pid) - sink_before
    await asyncio.sleep(0.3)  # the sink has answered every DATA before notify() returned
    entries = await _received(http, stack.sandbox_port, to)
    last = max((_timestamp(e["received_at"]) for e in entries), default=start_wall + elapsed)
    out: dict[str, Any] = {
        "emails": n,
        "emails_per_s": n / max(last - start_wall, 1e-9),
        "cpu_s_per_1000": 1000 / n * cpu,
        "sink_cpu_s_per_1000": 1000 / n * sink_cpu,
        "notify_failed": failed,
        "bytes_per_email": sum(int(e["meta"]["size"]) for e in entries) / max(1, len(entries)),
        **_tally(Counter(str(e["subject"]) for e in entries), subjects),
    }
    if mode == "async_notify":
        out["concurrency"] = APPRISE_CONCURRENCY
    if mode == "paced" and len(gaps) > 1:
        # The first send goes at once; every later one waits for the service's pacing.
        out["seconds_per_email"] = sum(gaps[1:]) / len(gaps[1:])
        out["emails_per_s"] = 1 / out["seconds_per_email"]
    return out


# -- the run -------------------------------------------------------------------------------------
async def peer_email(n: int, workers: int = 1) -> dict[str, Any]:
    """N e-mails through the hub (``workers`` worker processes) and through Apprise, same sink.

    Apprise sends inline from the caller: no queue, no persistence, no retries across
    restarts, no idempotency, a new SMTP connection per notification. The hub accepts each
    event over HTTP, persists it in Redis, queues it and sends from its workers over pooled
    SMTP connections. The result holds each side's figures, which Apprise mode the ratios use
    (``apprise_best``), and ``ratio_*`` = hub / Apprise.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    tmp = Path(tempfile.mkdtemp(prefix="hub-bench-peer-"))
    redis = EmbeddedRedis(tmp / "redis", appendonly=True).start()
    run = str(int(time.time()))
    procs: list[subprocess.Popen[bytes]] = []
    result: dict[str, Any] = {
        "emails": n,
        "workers": workers,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "apprise_version": _apprise_version(),
        "apprise_url": _mailto("SMTP_PORT", "customer@example.com"),
    }
    try:
        # The pipeline's own speed, as in `hub bench`: nothing held for quiet hours, no pacing.
        stack = await start_stack(
            redis.url,
            workers,
            MAX_JOBS,
            unpaced=True,
        )
        procs += stack.procs
        async with aiohttp.ClientSession() as http:
            result["hub"] = await _hub(stack, n, run, http)
            sample = await _sample(http, stack, run)
            result["hub"]["bytes_per_email"] = sample.size
            # Apprise next, against the same sink, with the hub's processes gone.
            stop_all([stack.api, *stack.workers])
            apprise_figures = {
                "sequential": await _apprise_run(http, stack, sample, "sequential", n, run),
                "async_notify": await _apprise_run(http, stack, sample, "async_notify", n, run),
                "paced": await _apprise_run(http, stack, sample, "paced", min(n, PACED_SAMPLE), run),
            }
        result["apprise"] = apprise_figures
        best = max(("sequential", "async_notify"), key=lambda m: float(apprise_figures[m]["emails_per_s"]))
        result["apprise_best"] = best
        hub, peer = result["hub"], apprise_figures[best]
        result["ratio_emails_per_s"] = hub["emails_per_s"] / peer["emails_per_s"]
        result["ratio_emails_per_s_vs_paced"] = hub["emails_per_s"] / apprise_figures["paced"]["emails_per_s"]
        result["ratio_cpu_s_per_1000"] = hub["cpu_s_per_1000"] / peer["cpu_s_per_1000"]
        return result
    finally:
        stop_all(procs)
        redis.stop()


def _exact(figures: dict[str, Any], n: int) -> bool:
    return bool(
        figures["delivered"] == n
        and figures["duplicates"] == 0
        and figures["missing"] == 0
        and figures["unexpected"] == 0
        and figures.get("other_channel_messages", 0) == 0
        and figures.get("notify_failed", 0) == 0
    )


def _report(r: dict[str, Any]) -> str:
    n, hub, best = r["emails"], r["hub"], r["apprise_best"]
    peer = r["apprise"][best]
    seq, conc, paced = r["apprise"]["sequential"], r["apprise"]["async_notify"], r["apprise"]["paced"]

    def row(name: str, a: str, h: str, ratio: str = "") -> str:
        return f"{name:<36}{a:>14}{h:>14}{ratio:>10}"

    def arrived(f: dict[str, Any]) -> str:
        return f"{f['delivered']}/{f['missing']}/{f['duplicates']}"

    return "\n".join(
        [
            f"peer: {n} e-mails to one SMTP sink; machine {r['cpus']} CPUs, Python {r['python']}; "
            f"hub with {r['workers']} worker process(es), {POSTERS} HTTP posters; "
            f"Apprise {r['apprise_version']}, {best}"
            + (f" ({peer['concurrency']} in flight)" if best == "async_notify" else ""),
            f"Apprise URL: {r['apprise_url']}",
            "",
            row("figure", "apprise", "hub", "hub/apr"),
            row(
                "e-mails sent /s",
                f"{peer['emails_per_s']:.0f}",
                f"{hub['emails_per_s']:.0f}",
                f"{r['ratio_emails_per_s']:.2f}",
            ),
            row("caller done /s (hub: HTTP 202)", f"{peer['emails_per_s']:.0f}", f"{hub['accepted_per_s']:.0f}"),
            row(
                "CPU s / 1,000 e-mails (sender)",
                f"{peer['cpu_s_per_1000']:.2f}",
                f"{hub['cpu_s_per_1000']:.2f}",
                f"{r['ratio_cpu_s_per_1000']:.2f}",
            ),
            row("  hub api / hub workers", "", f"{hub['cpu_s_per_1000_api']:.2f}/{hub['cpu_s_per_1000_workers']:.2f}"),
            row("CPU s / 1,000: HTTP poster", "-", f"{hub['poster_cpu_s_per_1000']:.2f}"),
            row("CPU s / 1,000: SMTP sink", f"{peer['sink_cpu_s_per_1000']:.2f}", f"{hub['sink_cpu_s_per_1000']:.2f}"),
            row("bytes per e-mail", f"{peer['bytes_per_email']:.0f}", f"{hub['bytes_per_email']:.0f}"),
            row("delivered/missing/doubled", arrived(peer), arrived(hub)),
            "",
            f"Apprise modes: sequential notify() {seq['emails_per_s']:.0f}/s, "
            f"async_notify x{conc['concurrency']} {conc['emails_per_s']:.0f}/s "
            f"({conc['cpu_s_per_1000']:.2f} CPU s/1,000); out-of-the-box pacing "
            f"{paced['emails_per_s']:.2f}/s (one e-mail per {paced.get('seconds_per_email', float('nan')):.1f} s "
            f"per service, {paced['emails']} sent), the hub {r['ratio_emails_per_s_vs_paced']:.0f}x that.",
        ]
    )


def run_peer_bench(args: argparse.Namespace) -> int:
    """Run ``peer_email(args.events, args.workers)``, print the table, write ``args.json`` if set."""
    result = asyncio.run(peer_email(args.events, args.workers))
    print(_report(result))
    if getattr(args, "json", None):
        Path(args.json).write_text(json.dumps(result, indent=2))
    n = result["emails"]
    exact = _exact(result["hub"], n) and all(_exact(f, f["emails"]) for f in result["apprise"].values())
    return 0 if exact else 1
