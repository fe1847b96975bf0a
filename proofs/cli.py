"""What ``hub bench`` and ``hub chaos`` call once their arguments are parsed (hub.cli parses them,
so ``--help`` works without the proofs installed)."""

from __future__ import annotations

import argparse
import signal
from collections.abc import Callable

from . import (
    bench,
    bench_availability,
    bench_hosts,
    bench_location,
    bench_mix,
    bench_peak,
    bench_peer,
    bench_redis,
    bench_relay,
    bench_scale,
    bench_webhooks,
    chaos,
    chaos_failover,
    simulate,
)

__all__ = ["run"]

SCENARIOS: dict[str, Callable[[argparse.Namespace], int]] = {
    "burst": bench.run_bench,
    "events": bench.run_bench,
    "peak": bench_peak.run_peak_bench,
    "mix": bench_mix.run_mix_bench,
    "relay": bench_relay.run_relay_bench,
    "scale": bench_scale.run_scale_bench,
    "webhooks": bench_webhooks.run_webhooks_bench,
    "email-peer": bench_peer.run_peer_bench,
    "redis-capacity": bench_redis.run_redis_capacity,
    "hosts": bench_hosts.run_hosts_bench,
    "location": bench_location.run_location_bench,
    "availability": bench_availability.run_availability_bench,
}


def _interrupt_on_sigterm() -> None:
    """SIGTERM as Ctrl-C, so a bench or chaos run stopped by a timeout still stops the processes
    it started (its ``finally`` blocks run)."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def run(args: argparse.Namespace) -> int:
    """Run ``hub bench <scenario>`` or ``hub chaos <scenario>``; the exit status is the verdict."""
    _interrupt_on_sigterm()
    if args.command == "simulate":
        return simulate.run_simulate_cli(args)
    if args.command == "chaos" and args.scenario == "redis-failover":
        return chaos_failover.run_failover_cli(args)
    if args.command == "chaos":
        return chaos.run_chaos_cli(args)
    return SCENARIOS[args.scenario](args)
