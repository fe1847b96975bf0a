"""The command stream Redis received (``MONITOR``), turned into requests and replayed at full speed:
the tools behind ``hub bench redis-capacity`` (proofs.bench_redis).

A MONITOR line is ``+<unix time> [<db> <client>] "arg" "arg" ...``, each argument printed the
way Redis prints bytes (``\\"``, ``\\\\``, ``\\n``, ``\\xHH``...). ``<client>`` is ``ip:port`` for
a command a client sent and ``lua`` for one a script ran: those are counted, never replayed
(the script runs them again).

Requests. MONITOR does not show pipelines, but Redis runs every command of one read of a client's
socket before it turns to another client, and no client sends its next request within
microseconds of the previous line (the reply must be written and read first). So a top-level
command of the client of the line before it (its script's lines included), fed within
``PIPELINE_GAP_S`` of that line, joins that client's request. The recording's
``total_reads_processed`` (Redis's own count of reads) checks the result.

Copies. Each replay client replays its own copy of the stream, every id of the recorded run
(events, deliveries, customers and their addresses, message, webhook, provider and link ids)
suffixed with ``~<copy>`` wherever it appears as a whole token, so copies write keys of their
own, as more events would, while the global keys (queues, indexes, counters) are shared, as in
production.

``python -m proofs.redis_replay PORT STREAM_FILE COPY``: one replay client. It prepares its copy,
connects, prints ``ready``, waits for a line on stdin, replays every request (one request, then
its replies, on the connection the recorded client used), then prints a JSON summary.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import socket
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "PIPELINE_GAP_S",
    "Line",
    "Request",
    "encode",
    "ids_in_keys",
    "parse_line",
    "renamer",
    "requests_of",
    "skip_reply",
]

# A pipelined command is fed to MONITOR a few microseconds after the line before it; the next
# request of the same client comes a reply write, a wake-up and a client's work later.
PIPELINE_GAP_S = 25e-6

# Commands a replay leaves out: they block, change the connection's mode, or end it.
NOT_REPLAYED = frozenset(
    {
        b"MONITOR",
        b"SUBSCRIBE",
        b"PSUBSCRIBE",
        b"BLPOP",
        b"BRPOP",
        b"BRPOPLPUSH",
        b"BLMOVE",
        b"BZPOPMIN",
        b"BZPOPMAX",
        b"WAIT",
        b"QUIT",
        b"CLIENT",
        b"SHUTDOWN",
        b"FLUSHALL",
        b"FLUSHDB",
    }
)

_HEAD = re.compile(rb"^\+(\d+\.\d+) \[\d+ ([^\]]+)\] ")
_ARG = re.compile(rb'"((?:[^"\\]|\\.)*)"')
_ESCAPE = re.compile(rb"\\(x[0-9a-fA-F]{2}|.)")
_SIMPLE = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"a": b"\a", b"b": b"\b"}
# Ids never hold these; everything between them is one token to rename.
_TOKEN = re.compile(rb"[^:\s\"',{}\[\]=&\\]+")
# The id part of the keys whose names carry ids the hub or a provider made up during the run.
_ID_IN_KEY = re.compile(rb"^hub:(?:msg|wh|provider|link|pending_status|phone|conv):([^:]+)")
_NOT_IDS = frozenset({b"index", b"dead", b"customer"})


@dataclass(frozen=True)
class Line:
    """One MONITOR line: when it was fed, the client (``ip:port``, or ``lua``), the arguments."""

    at: float
    client: str
    args: tuple[bytes, ...]

    @property
    def name(self) -> bytes:
        return self.args[0].upper() if self.args else b""


@dataclass
class Request:
    """What one client sent in one write: the commands Redis ran from one read."""

    client: str
    commands: list[tuple[bytes, ...]] = field(default_factory=list)


def _unescape(match: re.Match[bytes]) -> bytes:
    code = match.group(1)
    if code[:1] == b"x" and len(code) == 3:
        return bytes([int(code[1:], 16)])
    return _SIMPLE.get(code, code)


def parse_line(raw: bytes) -> Line | None:
    """The line's parts, or None for what is not a command (``+OK``)."""
    head = _HEAD.match(raw)
    if head is None:
        return None
    body = raw[head.end() :].rstrip(b"\r\n")
    args = tuple(_ESCAPE.sub(_unescape, a) for a in _ARG.findall(body))
    return Line(float(head.group(1)), head.group(2).decode(), args)


def requests_of(lines: Iterable[Line]) -> list[Request]:
    """Top-level commands grouped into requests (see the module docstring); ``lua`` lines only
    move the time of the line before the next command."""
    out: list[Request] = []
    last_client, last_at = "", 0.0
    for line in lines:
        if line.client == "lua":
            last_at = line.at
            continue
        if line.client == last_client and line.at - last_at <= PIPELINE_GAP_S and out:
            out[-1].commands.append(line.args)
        else:
            out.append(Request(line.client, [line.args]))
        last_client, last_at = line.client, line.at
    return out


def ids_in_keys(lines: Iterable[Line]) -> set[bytes]:
    """Ids the run made up (message, webhook, provider, link ids; numbers in conversation keys),
    found in the key names the commands carry."""
    found: set[bytes] = set()
    for line in lines:
        for arg in line.args[1:]:
            match = _ID_IN_KEY.match(arg)
            if match and match.group(1) not in _NOT_IDS:
                found.add(match.group(1))
    return found


def renamer(ids: Iterable[bytes], copy: int) -> Any:
    """A function giving an argument with each whole-token id suffixed for ``copy``. Script bodies
    (``EVAL``'s and ``SCRIPT LOAD``'s) and digests are left alone."""
    mapping = {i: i + b"~%d" % copy for i in ids}

    def one(match: re.Match[bytes]) -> bytes:
        token = match.group(0)
        return mapping.get(token, token)

    def command(args: tuple[bytes, ...]) -> tuple[bytes, ...]:
        name = args[0].upper()
        if name == b"SCRIPT":
            return args
        keep = 2 if name in (b"EVAL", b"EVALSHA") else 1
        return args[:keep] + tuple(_TOKEN.sub(one, a) for a in args[keep:])

    return command


def encode(args: tuple[bytes, ...]) -> bytes:
    """The command in RESP, as any client sends it."""
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(parts)


def skip_reply(buf: bytes | bytearray, pos: int) -> int:
    """Where the reply starting at ``pos`` ends, or -1 while ``buf`` does not hold all of it."""
    nl = buf.find(b"\r\n", pos)
    if nl < 0:
        return -1
    kind = buf[pos]
    if kind in b"+-:":
        return nl + 2
    n = int(buf[pos + 1 : nl])
    if kind == ord("$"):
        end = nl + 2 + (n + 2 if n >= 0 else 0)
        return end if end <= len(buf) else -1
    pos = nl + 2
    for _ in range(max(n, 0)):
        pos = skip_reply(buf, pos)
        if pos < 0:
            return -1
    return pos


class _Conn:
    """One socket of a replay client and what it has read but not yet taken."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()

    def replies(self, n: int) -> tuple[int, int]:
        """Read ``n`` replies; returns (errors, aborted transactions) among them."""
        errors = aborted = 0
        while n:
            end = skip_reply(self.buf, 0) if self.buf else -1
            if end < 0:
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    raise ConnectionError("redis closed the connection")
                self.buf += chunk
                continue
            errors += self.buf[0] == ord("-")
            aborted += self.buf[:5] == b"*-1\r\n"
            del self.buf[:end]
            n -= 1
        return errors, aborted


def _replay(port: int, stream: dict[str, Any], copy: int) -> dict[str, Any]:
    rename = renamer(stream["ids"], copy)
    plan = []
    for client, commands in stream["requests"]:
        kept = [rename(c) for c in commands if c[0].upper() not in NOT_REPLAYED]
        if kept:
            plan.append((client, b"".join(encode(c) for c in kept), len(kept)))
    conns = {client: _Conn(port) for client in {p[0] for p in plan}}
    print("ready", flush=True)
    sys.stdin.readline()
    cpu0, start = os.times(), time.perf_counter()
    errors = aborted = 0
    for client, payload, n in plan:
        conn = conns[client]
        conn.sock.sendall(payload)
        e, a = conn.replies(n)
        errors, aborted = errors + e, aborted + a
    elapsed = time.perf_counter() - start
    cpu1 = os.times()
    for conn in conns.values():
        conn.sock.close()
    return {
        "requests": len(plan),
        "commands": sum(p[2] for p in plan),
        "errors": errors,
        "aborted_transactions": aborted,
        "elapsed_s": elapsed,
        "cpu_s": (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system),
    }


def main(argv: list[str]) -> int:
    port, path, copy = int(argv[0]), argv[1], int(argv[2])
    with open(path, "rb") as f:
        stream = pickle.load(f)
    print(json.dumps(_replay(port, stream, copy)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
