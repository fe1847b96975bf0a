"""``hub simulate availability``: the seeded population, the planners, the response model and
the scores, each on its own; then a tiny run through a hub of real processes."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from hub.cli import main
from proofs.sim_population import (
    DELIVERY_WEEKDAYS,
    WINDOWS,
    Responses,
    assign_by_probability,
    assign_random,
    brier,
    capacity,
    door_answered,
    make_population,
    reliability,
    respond,
)
from proofs.sim_report import calibration
from proofs.simulate import Calendar


def test_the_population_is_the_same_for_a_seed_and_differs_for_another() -> None:
    first, again, other = make_population(5, 40, 3), make_population(5, 40, 3), make_population(6, 40, 3)
    assert first == again
    assert first.customers != other.customers
    assert [p.id for p in first.parcels] == [p.id for p in again.parcels]


def test_parcels_come_on_delivery_days_at_most_one_a_day_per_customer() -> None:
    pop = make_population(2, 200, 4)
    seen = set()
    for parcel in pop.parcels:
        assert parcel.day % 7 in DELIVERY_WEEKDAYS and 0 <= parcel.day < 28
        assert (parcel.customer.id, parcel.day) not in seen
        seen.add((parcel.customer.id, parcel.day))
    assert 1.0 < len(pop.parcels) / (200 * 4) < 1.6  # about 1.3 parcels per customer and week


def test_routines_follow_their_archetype() -> None:
    """Office workers are in more on weekday evenings than at midday, shift workers the other
    way round; every probability stays away from certainty."""
    pop = make_population(3, 400, 1)

    def mean(archetype: str, window: int) -> float:
        rows = [c.home[d][window] for c in pop.customers if c.archetype == archetype for d in range(5)]
        return sum(rows) / len(rows)

    assert mean("office", 3) > mean("office", 1) + 0.15
    assert mean("shift", 0) > mean("shift", 3) + 0.15
    assert all(0.05 <= p <= 0.98 for c in pop.customers for row in c.home for p in row)
    assert len({c.archetype for c in pop.customers}) == 6 and len({c.area for c in pop.customers}) == 3


def test_the_planner_that_ignores_the_hub_fails_as_often_as_published_rates() -> None:
    """The expected first-attempt failure rate of random windows lies in the published 8-20 %."""
    pop = make_population(1, 500, 1)
    expected = [1 - sum(c.home[d]) / len(WINDOWS) for c in pop.customers for d in DELIVERY_WEEKDAYS]
    assert 0.08 <= sum(expected) / len(expected) <= 0.20


def test_both_planners_keep_to_each_windows_capacity() -> None:
    ids = [f"p{i}" for i in range(10)]
    cap = capacity(len(ids))
    assert cap == 3
    randomly = assign_random(ids, random.Random(1), cap)
    probs = {pid: [0.2, 0.3, 0.4, 0.9] for pid in ids}
    probs["p0"] = [0.95, 0.1, 0.1, 0.1]
    greedy = assign_by_probability(probs, cap)
    for chosen in (randomly, greedy):
        assert sorted(chosen) == ids
        assert max(list(chosen.values()).count(w) for w in range(len(WINDOWS))) <= cap
    assert greedy["p0"] == 0  # the parcel with most to lose chooses first
    assert list(greedy.values()).count(3) == cap


def test_the_response_model_answers_from_the_customers_own_day() -> None:
    model = Responses()
    home = [0.9, 0.3, 0.5, 0.7]
    #        door, answer, choice, plan, fresh, handover
    silent = (0.1, 0.7, 0.0, 0.0, 0.0, 0.0)
    assert respond(silent, home, 1, [3, 2], model) is None
    assert respond((0.2, 0.1, 0.0, 0.0, 0.0, 0.0), home, 1, [3, 2], model) == "1"
    assert respond((0.6, 0.1, 0.0, 0.0, 0.0, 0.0), home, 1, [3, 2], model) == "4"  # in at 17-20
    assert respond((0.8, 0.1, 0.0, 0.0, 0.0, 0.0), home, 1, [2, 3], model) == "2"  # not in either: a neighbour
    assert respond((0.8, 0.1, 0.7, 0.0, 0.0, 0.0), home, 1, [2, 3], model) == "3"
    # Plans that changed: the attempt is a fresh draw, not the one the answer was based on.
    assert door_answered((0.2, 0.1, 0.0, 0.95, 0.99, 0.0), 0.5, True, model) is False
    assert door_answered((0.2, 0.1, 0.0, 0.95, 0.99, 0.0), 0.5, False, model) is True


def test_brier_scores_and_the_reliability_table() -> None:
    assert brier([1.0, 0.0], [True, False]) == 0.0
    assert brier([0.5, 0.5], [True, False]) == 0.25
    table = reliability([0.05, 0.07, 0.95], [False, True, True])
    assert table == [
        {"from": 0.0, "to": 0.1, "n": 2, "mean_p": pytest.approx(0.06), "observed": 0.5},
        {"from": 0.9, "to": 1.0, "n": 1, "mean_p": 0.95, "observed": 1.0},
    ]
    # The base rate's score is rate * (1 - rate); a model that knows more scores lower.
    records = [(0.9, 0.9, True)] * 8 + [(0.2, 0.2, False)] * 2
    c = calibration(records)
    assert c["base_rate"] == 0.8 and c["brier_base_rate"] == pytest.approx(0.16)
    assert c["brier"] == pytest.approx((8 * 0.01 + 2 * 0.04) / 10) and c["skill_vs_base_rate"] > 0.8


def test_the_calendar_starts_on_the_next_monday_in_local_time() -> None:
    from datetime import date

    cal = Calendar.from_next_monday(date(2026, 12, 6))  # a Sunday
    assert cal.start == date(2026, 12, 7)
    assert cal.window(0, 3) == ("2026-12-07T17:00:00+01:00", "2026-12-07T20:00:00+01:00")
    assert Calendar.from_next_monday(date(2026, 12, 7)).start == date(2026, 12, 14)


@pytest.mark.bench  # hub processes for a quarter of a minute: with the benchmarks (make bench-smoke)
def test_a_tiny_run_through_the_hub_reports_both_planners(tmp_path: Path) -> None:
    out = tmp_path / "simulation.json"
    args = ["--customers", "15", "--weeks", "2", "--warmup", "1", "--seed", "4", "--json", str(out)]
    assert main(["simulate", "availability", *args]) == 0
    report = json.loads(out.read_text())
    assert report["population"]["parcels"] == len(make_population(4, 15, 2).parcels)
    base, aware = report["baseline"], report["hub_aware"]
    # Both planners met the same parcels in the evaluated week, and posted every attempt.
    assert base["first_attempts"] == aware["first_attempts"] > 0
    assert base["questions"] == 0 and base["customer_replies"] == 0
    assert aware["messages"] >= aware["attempts"] > 0
    assert aware["answers_without_webhook"] == 0
    f = report["first_attempt"]
    assert set(f) >= {"baseline_failure_rate", "hub_aware_failure_rate", "relative_reduction", "saving_usd"}
    assert f["extra_messages_per_parcel"] == (aware["questions"] + aware["hub_answers_to_replies"]) / f["parcels"]
    c = report["calibration"]
    assert c["n"] > 0 and 0 <= c["brier"] <= 1 and sum(row["n"] for row in c["reliability"]) == c["n"]
