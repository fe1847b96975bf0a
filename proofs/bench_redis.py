"""``hub bench redis-capacity``: how many events per second one Redis primary serves with the hub's
own command mix.

1. Record. A small burst (``--events``, at most ``MAX_RECORDED``) runs through the whole stack as
   in ``hub bench burst`` (status callbacks and a webhook subscriber included) against a private
   redis-server (AOF, appendfsync everysec), while a ``MONITOR`` connection records every
   command. The window runs from a marker before the first post to one after the last message,
   callback and webhook (nothing new for ``QUIET_S``); the INFO stats taken at the two markers
   give the bytes in and out and the reads (round trips) Redis counted, less what the MONITOR
   stream and the markers themselves account for.
2. Replay. ``--clients`` processes (``python -m proofs.redis_replay``) replay the recorded
   requests at full speed against a fresh redis-server (same binary, same AOF setting), each its
   own copy with the run's ids renamed, one request at a time per copy as the hub's clients sent
   them (pipelines kept, see proofs.redis_replay). Redis's own CPU (``used_cpu_sys`` +
   ``used_cpu_user``) over the replay gives its CPU per event: ``1 / that`` is the events/s one
   fully used Redis core serves, the figure that carries over to a server where Redis has a core
   of its own (here the clients share the machine's cores with it).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib
import json
import os
import pickle
import pkgutil
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from redis import Redis

import hub
from hub.redis_server import EmbeddedRedis

from .common import BENCH_KEY, ROOT, burst_events, post_all, start_stack, stop_all
from .redis_replay import Line, ids_in_keys, parse_line, requests_of

__all__ = ["MAX_RECORDED", "record_mix", "replay_mix", "run_redis_capacity"]

MAX_RECORDED = 500  # events: the mix is per event, a longer recording only costs memory
QUIET_S = 1.5  # nothing new at the providers or the subscriber for this long: the run is over
_STATS = (
    "total_net_input_bytes",
    "total_net_output_bytes",
    "total_reads_processed",
    "total_error_replies",
    "total_connections_received",
)


class _Tap:
    """A ``MONITOR`` connection that keeps every line it is fed, raw."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self._task: asyncio.Task[None] | None = None

    async def open(self, port: int) -> None:
        reader, self._writer = await asyncio.open_connection("127.0.0.1", port)
        self._writer.write(b"MONITOR\r\n")
        await self._writer.drain()

        async def pump() -> None:
            while line := await reader.readline():
                self.lines.append(line)

        self._task = asyncio.get_running_loop().create_task(pump())

    async def seen(self, marker: bytes) -> None:
        """Wait until the stream has shown ``marker`` (the lines before it are all in)."""
        while not any(marker in line for line in self.lines[-200:]):
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        self._writer.close()
        if self._task:
            await asyncio.gather(self._task, return_exceptions=True)


class _Probe:
    """A raw connection that marks a point of the MONITOR stream and reads INFO stats there, and
    counts its own bytes (Redis's totals include them)."""

    def __init__(self) -> None:
        self.sent = self.received = 0

    async def open(self, port: int) -> str:
        self._reader, self._writer = await asyncio.open_connection("127.0.0.1", port)
        host, local_port = self._writer.get_extra_info("sockname")[:2]
        return f"{host}:{local_port}"

    async def snapshot(self, mark: str) -> dict[str, int]:
        request = f"*2\r\n$4\r\nECHO\r\n${len(mark)}\r\n{mark}\r\n*2\r\n$4\r\nINFO\r\n$5\r\nstats\r\n".encode()
        self._writer.write(request)
        self.sent += len(request)
        replies = []
        for _ in range(2):
            head = await self._reader.readline()
            body = await self._reader.readexactly(int(head[1:]) + 2)
            self.received += len(head) + len(body)
            replies.append(body.decode())
        fields = dict(line.split(":", 1) for line in replies[1].splitlines() if ":" in line)
        return {k: int(fields[k]) for k in _STATS}

    async def close(self) -> None:
        self._writer.close()


async def _wait_until_settled(stack: Any, expected: int, timeout: float) -> None:
    """Until the providers hold every message and neither they nor the webhook subscriber got
    anything new for ``QUIET_S`` (the last callbacks and webhooks are in)."""
    last: tuple[int, int] | None = None
    since = deadline = time.monotonic()
    deadline += timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            async with http.get(f"http://127.0.0.1:{stack.sandbox_port}/bench/count") as resp:
                sent = sum((await resp.json()).values())
            async with http.get(f"{stack.receiver_url}/hook/count") as resp:
                hooks = int((await resp.json())["received"])
            if (sent, hooks) != last:
                last, since = (sent, hooks), time.monotonic()
            elif sent >= expected and time.monotonic() - since >= QUIET_S:
                return
            await asyncio.sleep(0.05)
    raise RuntimeError(f"the recorded burst did not settle: {last} of {expected} messages, webhooks")


def _window(raw: list[bytes], probe: str) -> tuple[list[Line], int]:
    """The parsed lines between the two markers (the probe's own left out), and the bytes the
    MONITOR stream was sent meanwhile."""
    start = next(i for i, r in enumerate(raw) if b'"bench-mark-start"' in r)
    end = next(i for i, r in enumerate(raw) if b'"bench-mark-end"' in r)
    lines = [line for r in raw[start + 1 : end] if (line := parse_line(r)) and line.client != probe]
    return lines, sum(len(r) for r in raw[start:end])


def _hub_scripts() -> dict[str, tuple[str, bytes]]:
    """sha1 -> (``module.NAME``, body) of every Lua script a hub module holds as a constant,
    wherever the scripts live."""
    found: dict[str, tuple[str, bytes]] = {}
    for info in pkgutil.iter_modules(hub.__path__):
        if info.name.startswith("_"):
            continue  # __main__ runs the command line
        try:
            module = importlib.import_module(f"hub.{info.name}")
        except ImportError:
            continue
        for name, value in vars(module).items():
            if isinstance(value, str) and "redis.call" in value and name.isupper():
                found[hashlib.sha1(value.encode()).hexdigest()] = (f"{info.name}.{name}", value.encode())
    return found


def _scripts(raw: list[bytes]) -> dict[str, bytes]:
    """sha1 -> body of every script the run loaded or sent whole, and of the hub's own."""
    bodies = [body for _, body in _hub_scripts().values()]
    for r in raw:
        if b'"SCRIPT" "LOAD"' in r or b'] "EVAL" ' in r:
            line = parse_line(r)
            if line:
                bodies.append(line.args[2] if line.name == b"SCRIPT" else line.args[1])
    return {hashlib.sha1(b).hexdigest(): b for b in bodies}


def _event_ids(events: list[dict[str, Any]]) -> set[bytes]:
    ids: set[bytes] = set()
    for e in events:
        c, d = e["customer"], e["delivery"]
        for value in (e["event_id"], d["id"], d["tracking_code"], c["id"], c["phone"], c["email"], *c["push_tokens"]):
            ids.add(str(value).encode())
    return ids


async def _record_burst(tap: _Tap, port: int, url: str, n: int, concurrency: int) -> dict[str, Any]:
    stack = await start_stack(
        url,
        1,
        100,
        status_callbacks=True,
        subscriber=True,
        unpaced=True,
    )
    probe = _Probe()
    try:
        probe_client = await probe.open(port)
        events = burst_events(n, f"-{int(time.time())}")
        expected = sum(3 if e["type"] == "out_for_delivery" else 2 for e in events)
        before = await probe.snapshot("bench-mark-start")
        start_reply, start = probe.received, time.perf_counter()
        await post_all(
            f"http://127.0.0.1:{stack.api_port}/v1/events",
            [json.dumps(e).encode() for e in events],
            concurrency,
            {"Content-Type": "application/json", "Authorization": f"Bearer {BENCH_KEY}"},
        )
        await _wait_until_settled(stack, expected, max(120.0, n / 5))
        sent_before_end = probe.sent
        after = await probe.snapshot("bench-mark-end")
        elapsed = time.perf_counter() - start
        await tap.seen(b'"bench-mark-end"')
    finally:
        await probe.close()
        stop_all(stack.procs)
    return {
        "events": events,
        "messages": expected,
        "elapsed_s": elapsed,
        "probe": probe_client,
        "delta": {k: after[k] - before[k] for k in _STATS},
        # Counted in the window: the end marker's request, and the replies to the start marker
        # (written after its INFO ran); the end marker's replies are not.
        "probe_in": probe.sent - sent_before_end,
        "start_reply": start_reply,
    }


async def record_mix(n: int, concurrency: int, tmp: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run a burst of ``n`` events while recording; returns the figures per event and the stream
    to replay (requests, ids to rename, scripts)."""
    redis = EmbeddedRedis(tmp / "record", appendonly=True).start()
    tap = _Tap()
    try:
        await tap.open(redis.port)
        run = await _record_burst(tap, redis.port, redis.url, n, concurrency)
    finally:
        await tap.close()
        redis.stop()
    lines, monitor_bytes = _window(tap.lines, run["probe"])
    top = [line for line in lines if line.client != "lua"]
    requests = requests_of(lines)
    d = run["delta"]
    by_name = Counter(line.name.decode() for line in top)
    figures = {
        "events": n,
        "messages": run["messages"],
        "recorded_s": run["elapsed_s"],
        "commands_per_event": len(top) / n,
        "lua_commands_per_event": (len(lines) - len(top)) / n,
        "all_commands_per_event": len(lines) / n,
        "requests_per_event": len(requests) / n,
        "reads_per_event": (d["total_reads_processed"] - 1) / n,
        "bytes_in_per_event": (d["total_net_input_bytes"] - run["probe_in"]) / n,
        "bytes_out_per_event": (d["total_net_output_bytes"] - monitor_bytes - run["start_reply"]) / n,
        "error_replies": d["total_error_replies"],
        "connections_opened": d["total_connections_received"],
        "top_commands_per_event": {k: v / n for k, v in by_name.most_common(12)},
        "clients": len({line.client for line in top}),
    }
    scripts = _scripts(tap.lines)
    names = {sha: name for sha, (name, _) in _hub_scripts().items()}
    shas = Counter(line.args[1].decode() for line in top if line.name == b"EVALSHA")
    figures["scripts_unknown"] = sorted(set(shas) - set(scripts))
    figures["script_calls_per_event"] = {names.get(sha, sha): calls / n for sha, calls in shas.most_common()}
    stream = {
        "requests": [(r.client, r.commands) for r in requests],
        "ids": sorted(_event_ids(run["events"]) | ids_in_keys(top)),
        "scripts": scripts,
    }
    return figures, stream


def _redis_counters(r: Redis) -> dict[str, float]:
    """Redis's CPU, commands, reads, and microseconds spent per command (``usec:<name>``)."""
    cpu: dict[str, Any] = r.info("cpu")  # type: ignore[assignment]  # the sync client's answer
    stats: dict[str, Any] = r.info("stats")  # type: ignore[assignment]
    commandstats: dict[str, Any] = r.info("commandstats")  # type: ignore[assignment]
    calls = sum(v["calls"] for v in commandstats.values())
    return {
        "cpu_s": float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]),
        "commands": float(calls),
        "reads": float(stats["total_reads_processed"]),
        **{f"usec:{k.removeprefix('cmdstat_')}": float(v["usec"]) for k, v in commandstats.items()},
    }


def _usec_per_event(before: dict[str, float], after: dict[str, float], events: int) -> dict[str, float]:
    """Microseconds Redis spent per event in each command, the costliest first (a script's time
    includes the commands it ran, which are also counted under their own names)."""
    spent = {k[5:]: (v - before.get(k, 0.0)) / events for k, v in after.items() if k.startswith("usec:")}
    return dict(sorted(((k, v) for k, v in spent.items() if v > 0), key=lambda kv: -kv[1]))


def _start_clients(port: int, path: Path, clients: int) -> list[subprocess.Popen[bytes]]:
    """The replay clients, each with its copy prepared and connected (they said ``ready``)."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "proofs.redis_replay", str(port), str(path), str(copy)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for copy in range(clients)
    ]
    for p in procs:
        if p.stdout is None or p.stdout.readline().strip() != b"ready":
            _stop_clients(procs)
            raise RuntimeError("a replay client failed to start")
    return procs


def _stop_clients(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(10)
        for pipe in (p.stdin, p.stdout):
            if pipe is not None:
                pipe.close()


def replay_mix(stream: dict[str, Any], n: int, clients: int, tmp: Path) -> dict[str, Any]:
    """Replay ``clients`` copies of the stream at once, flat out; Redis's figures over the replay."""
    redis = EmbeddedRedis(tmp / "replay", appendonly=True).start()
    path = tmp / "stream.pickle"
    path.write_bytes(pickle.dumps({k: stream[k] for k in ("requests", "ids")}))
    procs: list[subprocess.Popen[bytes]] = []
    r = Redis.from_url(redis.url)
    try:
        for body in stream["scripts"].values():
            r.script_load(body)
        # The AOF's growth is then what the replay appended: no automatic rewrite shrinks it (a
        # rewrite runs in a child process, whose CPU is not counted as Redis's anyway).
        r.config_set("auto-aof-rewrite-percentage", 0)
        procs += _start_clients(redis.port, path, clients)
        before = _redis_counters(r)
        start = time.perf_counter()
        for p in procs:
            assert p.stdin is not None
            p.stdin.write(b"go\n")
            p.stdin.flush()
        done = [json.loads(p.stdout.readline()) for p in procs if p.stdout is not None]
        elapsed = time.perf_counter() - start
        after = _redis_counters(r)
        aof = sum(f.stat().st_size for f in (tmp / "replay").glob("appendonly*"))
    finally:
        r.close()
        _stop_clients(procs)
        redis.stop()
    events = n * clients
    cpu = after["cpu_s"] - before["cpu_s"]
    by_command = _usec_per_event(before, after, events)
    return {
        "clients": clients,
        "events": events,
        "elapsed_s": elapsed,
        "events_per_s": events / elapsed,
        "requests_per_s": sum(c["requests"] for c in done) / elapsed,
        "commands_per_s": (after["commands"] - before["commands"]) / elapsed,
        "all_commands_per_event": (after["commands"] - before["commands"]) / events,
        "reads_per_event": (after["reads"] - before["reads"]) / events,
        "redis_cpu_s": cpu,
        "redis_cpu_share": cpu / elapsed,
        "redis_cpu_ms_per_event": cpu / events * 1000,
        "events_per_s_per_redis_core": events / cpu if cpu else float("nan"),
        "aof_bytes_per_event": aof / events,
        # At most this much of Redis's CPU per event ran commands (scripts' commands counted twice);
        # the rest is reading requests, writing replies and appending to the AOF.
        "redis_command_usec_per_event_at_most": sum(by_command.values()),
        "redis_usec_per_event_by_command": dict(list(by_command.items())[:12]),
        "clients_cpu_s": sum(c["cpu_s"] for c in done),
        "errors": sum(c["errors"] for c in done),
        "aborted_transactions": sum(c["aborted_transactions"] for c in done),
    }


def _report(rec: dict[str, Any], rep: dict[str, Any]) -> str:
    top = ", ".join(f"{k} {v:.1f}" for k, v in rec["top_commands_per_event"].items())
    return "\n".join(
        [
            f"machine: {os.cpu_count()} CPUs shared by Redis and the replay clients; Python {sys.version.split()[0]}",
            f"recorded: {rec['events']} events ({rec['messages']} messages, status callbacks, a webhook subscriber),"
            f" {rec['clients']} Redis connections ({rec['connections_opened']} opened meanwhile),"
            f" {rec['error_replies']} error replies, {rec['recorded_s']:.1f} s",
            f"{'Redis commands / event (top-level)':<44}{rec['commands_per_event']:>10.1f}",
            f"{'  run by Lua scripts / all':<44}{rec['lua_commands_per_event']:>10.1f}"
            f" / {rec['all_commands_per_event']:.1f}",
            f"{'requests / event (pipelines as one)':<44}{rec['requests_per_event']:>10.1f}",
            f"{'round trips / event (Redis reads)':<44}{rec['reads_per_event']:>10.1f}",
            f"{'bytes / event in / out':<44}{rec['bytes_in_per_event']:>10.0f} / {rec['bytes_out_per_event']:.0f}",
            f"top commands / event: {top}",
            "scripts / event: " + ", ".join(f"{k} {v:.1f}" for k, v in rec["script_calls_per_event"].items()),
            "",
            f"replay: {rep['clients']} client processes, {rep['events']} events, {rep['elapsed_s']:.1f} s",
            f"{'events /s served (this machine)':<44}{rep['events_per_s']:>10.0f}",
            f"{'  requests /s, commands /s (Lua incl.)':<44}{rep['requests_per_s']:>10.0f}"
            f" / {rep['commands_per_s']:.0f}",
            f"{'Redis CPU: share of one core':<44}{rep['redis_cpu_share']:>10.2f}",
            f"{'Redis CPU ms / event':<44}{rep['redis_cpu_ms_per_event']:>10.3f}",
            f"{'events /s per fully used Redis core':<44}{rep['events_per_s_per_redis_core']:>10.0f}",
            f"{'AOF bytes / event':<44}{rep['aof_bytes_per_event']:>10.0f}",
            f"{'Redis CPU µs / event in commands, at most':<44}{rep['redis_command_usec_per_event_at_most']:>10.0f}",
            f"{'replay clients CPU s (the other core)':<44}{rep['clients_cpu_s']:>10.1f}",
            f"{'replay commands / event (Lua incl.)':<44}{rep['all_commands_per_event']:>10.1f}",
            "Redis µs / event by command (a script's own time includes its commands'): "
            + ", ".join(f"{k} {v:.0f}" for k, v in rep["redis_usec_per_event_by_command"].items()),
            f"{'replay errors / aborted transactions':<44}{rep['errors']:>10} / {rep['aborted_transactions']}",
        ]
    )


def run_redis_capacity(args: argparse.Namespace) -> int:
    n = max(1, min(args.events, MAX_RECORDED))
    clients = max(1, getattr(args, "clients", 8))
    tmp = Path(tempfile.mkdtemp(prefix="hub-bench-redis-"))
    print(f"bench: recording {n} events through the hub, then {clients} replay clients", flush=True)
    try:
        recorded, stream = asyncio.run(record_mix(n, args.concurrency, tmp))
        replayed = replay_mix(stream, n, clients, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(_report(recorded, replayed))
    result = {"recorded": recorded, "replay": replayed, "cpus": os.cpu_count()}
    if getattr(args, "json", None):
        Path(args.json).write_text(json.dumps(result, indent=2))
    ok = not recorded["scripts_unknown"] and replayed["errors"] <= clients * recorded["error_replies"]
    return 0 if ok else 1
