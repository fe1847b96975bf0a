"""``hub bench scale``: the burst benchmark with 1, 2, … ``--workers`` worker processes, one after
the other in the same run, each beside its own ceilings; a table, a JSON file and a plot.

The plot (``--plot``; needs matplotlib from the ``bench`` extra) shows events fully sent per
second and the arq no-op ceiling against the worker count, and the p50/p99 event-to-provider
latency, so how the hub scales on the machine is seen at once. By default it goes to
var/benchmarks-scaling.png in the checkout: a run on a laptop must not overwrite the figure the
docs show. docs/benchmarks.md names the command that regenerates that one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from .bench import measure_burst
from .bench_bare import bare_ok
from .common import ROOT

__all__ = ["DEFAULT_PLOT", "run_scale_bench"]

DEFAULT_PLOT = ROOT / "var" / "benchmarks-scaling.png"


def _plot(results: list[dict[str, Any]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install '.[bench]'): no plot", flush=True)
        return False
    workers = [r["workers"] for r in results]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    left.plot(workers, [r["sent_events_per_s"] for r in results], "o-", label="hub: events fully sent /s")
    left.plot(workers, [r["accepted_events_per_s"] for r in results], "s-", label="hub: events accepted /s")
    left.plot(workers, [r["arq_noop_jobs_per_s"] for r in results], "^--", label="ceiling: arq no-op jobs /s")
    left.set_xlabel("worker processes")
    left.set_ylabel("per second")
    left.set_xticks(workers)
    left.set_ylim(bottom=0)
    left.legend(fontsize=8)
    left.set_title("Throughput")
    for key, style in (("p50", "o-"), ("p95", "s-"), ("p99", "^-")):
        right.plot(workers, [r["latency_s"][key] for r in results], style, label=f"{key} event to provider")
    right.set_xlabel("worker processes")
    right.set_ylabel("seconds")
    right.set_xticks(workers)
    right.set_ylim(bottom=0)
    right.legend(fontsize=8)
    right.set_title("Latency, flat out (queueing included)")
    n = results[0]["events"]
    fig.suptitle(f"hub bench scale: {n} events per run, {results[0]['cpus']} CPUs shared by everything")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return True


def run_scale_bench(args: argparse.Namespace) -> int:
    results = []
    for w in range(1, max(1, args.workers) + 1):
        one = argparse.Namespace(**{**vars(args), "workers": w})
        results.append(asyncio.run(measure_burst(one)))
    print()
    print(
        f"{'workers':>7}  {'accepted/s':>10} {'÷http':>6}  {'sent/s':>7} {'÷arq':>6}  {'p50 s':>6} {'p99 s':>6}  "
        f"{'worker CPU s/1k':>15}  {'doubled':>7}"
    )
    for r in results:
        print(
            f"{r['workers']:>7}  {r['accepted_events_per_s']:>10.0f} {r['ratio_accepted_vs_http']:>6.2f}  "
            f"{r['sent_events_per_s']:>7.0f} {r['ratio_sent_vs_arq_noop']:>6.2f}  {r['latency_s']['p50']:>6.1f} "
            f"{r['latency_s']['p99']:>6.1f}  {r['cpu_s_per_1000_events']['workers']:>15.2f}  {r['duplicates']:>7}"
        )
    if getattr(args, "json", None):
        Path(args.json).write_text(json.dumps(results, indent=2))
    plot = Path(args.plot) if getattr(args, "plot", None) else DEFAULT_PLOT
    if _plot(results, plot):
        print(f"plot: {plot}")
    ok = all(
        r["messages"] == r["expected_messages"] and r["duplicates"] == 0 and bare_ok(r["bare_clients"]) for r in results
    )
    return 0 if ok else 1
