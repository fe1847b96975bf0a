"""``hub bench availability``, small (marked ``bench``: ``make bench-smoke`` runs it so the
benchmark keeps working): every query answered, figures beside the same run's ceiling."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_bench import bench

pytestmark = pytest.mark.bench


def test_route_queries_beside_the_trivial_handler(tmp_path: Path) -> None:
    r = bench(tmp_path, "availability", "--events", "200")
    assert r["answers_by_status"] == {"200": r["queries"] + r["clients"] + 1}
    assert r["answers_per_s"] == pytest.approx(r["queries_per_s"] * 1000) and r["healthz_per_s"] > 0
    assert r["evening_over_morning"]
    # Two pipelined rounds: each customer's learned hash and record, each area's pool once.
    by_name = r["redis_commands_by_name_per_query"]
    assert by_name["hmget"] == 100 and by_name["hgetall"] == 100 + 11 and "evalsha" not in by_name
