"""Every `hub bench` scenario, small (marked ``bench``: not in the default run; ``make bench-smoke``
and CI run them so the benchmarks keep working). Each run checks itself: the exit code is 0 only
when every expected message arrived once (burst and peak: and every webhook reached the
subscriber); the JSON it writes carries its ceilings. Last, the chaos verdict's arithmetic,
which builds on the same webhook figures (no processes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hub.cli import main
from proofs.chaos import ChaosResult

pytestmark = pytest.mark.bench


def bench(tmp_path: Path, *args: str) -> dict:  # type: ignore[type-arg]
    out = tmp_path / "result.json"
    assert main(["bench", *args, "--json", str(out)]) == 0
    result: dict = json.loads(out.read_text())  # type: ignore[type-arg]
    return result


def assert_every_webhook_received(hooks: dict, sms: int) -> None:  # type: ignore[type-arg]
    """No webhook id missing at the subscriber (repeats are allowed: at least once), every Twilio
    status callback accounted for (applied, or a ``sent`` overtaken by its ``delivered``)."""
    assert hooks["settled"] and hooks["refused"] == 0
    assert hooks["missing_ids"] == 0 and hooks["status_missing"] == 0, hooks
    # A report is told upstream before it is recorded (hub.status): a ``sent`` that its
    # ``delivered`` overtook while both were on their way is told, though the log never shows it.
    assert hooks["unique"] == hooks["recorded"]
    assert hooks["status_expected"] <= hooks["recorded"] <= hooks["status_expected"] + hooks["callbacks_overtaken"]
    assert hooks["callbacks_expected"] == 2 * sms and hooks["callbacks_not_applied"] == 0, hooks
    assert hooks["callbacks_applied"]["delivered"] == sms
    assert hooks["message_status"]["delivered"] == sms


def test_burst_reports_its_figures_beside_same_run_ceilings(tmp_path: Path) -> None:
    r = bench(tmp_path, "burst", "--events", "200")
    assert r["messages"] == r["expected_messages"] == 500 and r["duplicates"] == 0
    assert r["http_ceiling_per_s"] > 0 and r["arq_noop_jobs_per_s"] > 0 and r["redis_round_trips_per_s"] > 0
    assert r["ratio_sent_vs_arq_noop"] > 0 and r["latency_s"]["p50"] <= r["latency_s"]["p99"]
    assert r["memory"]["customer"] > 0 and r["memory"]["message"] > 0
    # The bare clients' ceiling: the same 500 messages, each received once with the hub's text.
    bare = r["bare_clients"]
    assert bare["messages"] == bare["received"] == 500 and bare["by_channel"] == {"sms": 200, "push": 200, "email": 100}
    assert bare["duplicates"] == bare["changed"] == 0 and bare["failed"] == {}
    assert r["bare_clients_msgs_per_s"] > 0 and r["bare_clients_cpu_ms_per_message"] > 0
    assert r["ratio_msgs_vs_bare_clients"] == r["messages_per_s"]["all"] / r["bare_clients_msgs_per_s"]
    assert r["worker_cpu_ms_per_event"] == pytest.approx(r["worker_cpu_ms_per_message"] * 2.5)
    assert r["worker_cpu_ms_per_message"] > 0
    by_name = r["redis_commands_by_name_per_event"]
    assert r["redis_commands_per_event"] >= sum(by_name.values()) > 0 and "info" not in by_name
    assert r["redis_net_bytes_per_event"]["in"] > 0 and r["redis_net_bytes_per_event"]["out"] > 0
    hooks = r["webhooks"]
    assert_every_webhook_received(hooks, sms=200)
    assert hooks["message_status"]["accepted"] == 500 and hooks["by_type"] == {"message.status": hooks["unique"]}


def test_peak_day_accounts_for_every_message(tmp_path: Path) -> None:
    r = bench(tmp_path, "peak", "--events", "100")
    st = r["statuses"]
    taken = sum(st.get(s, 0) for s in ("accepted", "sent", "delivered", "undelivered"))
    assert r["doubled"] == 0 and taken == r["messages_sent"]
    assert st.get("deferred", 0) > 0 and st.get("superseded", 0) > 0 and st.get("failed", 0) > 0
    hooks = r["webhooks"]
    assert_every_webhook_received(hooks, sms=r["messages_by_channel"]["sms"])
    assert hooks["message_status"]["accepted"] == r["messages_sent"]
    assert hooks["message_status"]["failed"] == st["failed"]  # the push tokens gone


def test_relay_routing_beside_a_bare_redis_get(tmp_path: Path) -> None:
    r = bench(tmp_path, "relay", "--events", "100")
    assert r["sessions_opened"] > 0 and r["route_ms"]["p50"] > 0 and r["redis_get_ms"]["p50"] > 0


def test_driver_positions_beside_the_trivial_handler(tmp_path: Path) -> None:
    r = bench(tmp_path, "location", "--events", "200")
    assert r["answers_by_status"] == {"200": 200}
    assert r["positions_per_s"] > 0 and r["healthz_per_s"] > 0
    assert r["redis_commands_by_name_per_position"]["evalsha"] == 1.0  # one Lua call per position


def test_a_crowd_of_replies_is_answered_and_sent_upstream(tmp_path: Path) -> None:
    r = bench(tmp_path, "webhooks", "--events", "100")
    assert r["answers_by_status"] == {"200": 100} and r["upstream_webhooks"] >= r["upstream_expected"]


def test_the_same_emails_through_apprise_and_the_hub(tmp_path: Path) -> None:
    pytest.importorskip("apprise", reason="the bench extra (pip install '.[bench]')")
    r = bench(tmp_path, "email-peer", "--events", "40")
    assert r["hub"]["delivered"] == r["apprise"][r["apprise_best"]]["delivered"] == 40
    assert r["ratio_emails_per_s"] > 0


# -- the chaos verdict's arithmetic (proofs.chaos, on proofs.webhook_check's webhook figures): no processes ---


def chaos_result(scenario: str = "redis-restart", fsync: str = "always", **figures: object) -> ChaosResult:
    r = ChaosResult(scenario, 10, 10, 25, sent_once=25, fsync=fsync)
    for name, value in figures.items():
        setattr(r, name, value)
    return r


def test_the_everysec_verdict_allows_only_what_the_window_before_each_kill_could_lose() -> None:
    window = {"redis_kills": [1000.0, 1010.0], "fsync_allowance": 3}
    assert chaos_result(fsync="everysec", **window).ok()
    assert chaos_result(fsync="everysec", doubled=2, missing=1, sent_once=22, **window).ok()  # 3 of 3
    assert not chaos_result(fsync="everysec", doubled=2, missing=2, sent_once=21, **window).ok()  # 4 of 3
    lost_events = {"lost_events": 2, "sent_once": 20, "missing": 5}  # their messages lost too
    assert not chaos_result(fsync="everysec", **lost_events, **window).ok()  # 5 messages > 3
    events_in_window = {"lost_events": 1, "sent_once": 23, "missing": 2}
    assert chaos_result(fsync="everysec", **events_in_window, **window).ok()
    assert not chaos_result(fsync="everysec", lost_events_outside_window=1, **events_in_window, **window).ok()
    # With nothing received before the kills, everysec is held to what always is.
    assert not chaos_result(fsync="everysec", doubled=1, redis_kills=[1000.0], fsync_allowance=0).ok()
    assert not chaos_result(fsync="always", doubled=1, **window).ok()  # always allows nothing


def test_the_chaos_verdict_fails_on_a_missing_webhook_id_not_on_a_repeat() -> None:
    hooks = {"missing_ids": 0, "status_missing": 0, "refused": 0, "repeated": 4}
    assert chaos_result(webhooks=hooks).ok()
    assert not chaos_result(webhooks={**hooks, "status_missing": 1}).ok()
    assert not chaos_result(webhooks={**hooks, "missing_ids": 1}).ok()
    assert not chaos_result(webhooks={**hooks, "refused": 1}).ok()
    assert chaos_result(fsync="everysec", webhooks={**hooks, "status_missing": 2}, fsync_allowance=2).ok()
    assert not chaos_result(fsync="everysec", webhooks={**hooks, "status_missing": 3}, fsync_allowance=2).ok()
