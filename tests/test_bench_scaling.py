"""The capacity model's two runs, small (marked ``bench``): ``hub bench redis-capacity`` records
the hub's Redis commands under a burst and replays them from several clients, and ``hub bench
hosts`` shares one Redis between workers under different host names. Each checks itself (the
exit code); these check that the figures docs/scaling.md quotes come out and are sane."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hub.cli import main
from proofs.bench_hosts import can_rename_hosts

pytestmark = pytest.mark.bench


def bench(tmp_path: Path, *args: str) -> object:
    out = tmp_path / "result.json"
    assert main(["bench", *args, "--json", str(out)]) == 0
    return json.loads(out.read_text())


def test_redis_capacity_replays_the_recorded_mix_from_every_client(tmp_path: Path) -> None:
    r = bench(tmp_path, "redis-capacity", "--events", "20", "--clients", "2")
    assert isinstance(r, dict)
    rec, rep = r["recorded"], r["replay"]
    assert rec["messages"] == 50 and not rec["scripts_unknown"]
    assert 0 < rec["commands_per_event"] < rec["all_commands_per_event"]
    # Pipelines found in the MONITOR stream agree with Redis's own count of reads.
    assert rec["requests_per_event"] == pytest.approx(rec["reads_per_event"], rel=0.25)
    assert rec["bytes_in_per_event"] > 0 and rec["bytes_out_per_event"] > 0
    # Every copy ran the same commands the recording did, scripts included.
    assert rep["events"] == 40 and rep["errors"] == 0
    assert rep["all_commands_per_event"] == pytest.approx(rec["all_commands_per_event"], rel=0.1)
    assert rep["redis_cpu_ms_per_event"] > 0 and rep["events_per_s_per_redis_core"] >= rep["events_per_s"] * 0.9


@pytest.mark.skipif(not can_rename_hosts(), reason="no UTS namespaces here (unshare --uts)")
def test_workers_under_two_host_names_share_the_events_and_send_each_once(tmp_path: Path) -> None:
    results = bench(tmp_path, "hosts", "--workers", "2", "--events", "40")
    assert isinstance(results, list)
    two = results[1]
    assert two["heartbeat_hosts"] == ["hub-host-1", "hub-host-2"]
    assert two["messages"] == two["expected_messages"] == 100
    assert two["duplicates"] == 0 and two["sent_from_two_hosts"] == 0
    assert sum(two["messages_by_host"].values()) == 100
