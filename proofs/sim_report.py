"""The report of ``hub simulate availability``: calibration of the hub's p_home, first-attempt
failures of both planners, the messages it cost, and the verdict against the target."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from datetime import date
from typing import TYPE_CHECKING, Any

from .sim_population import Population, brier, oracle_failures, reliability

if TYPE_CHECKING:
    from .simulate import Options, Tally

__all__ = ["COST_PER_FAILED_ATTEMPT", "build_report", "calibration", "print_report"]

COST_PER_FAILED_ATTEMPT = 17.50  # USD, the middle of the published $17-18
TARGET_REDUCTION = 1 / 3
TARGET_MESSAGES = 0.3


def calibration(records: list[tuple[float, float, bool]]) -> dict[str, Any]:
    """The hub's p_home for each attempted window against whether the door was answered: its
    Brier score, the base rate's (always predicting the share observed), and the true routine's
    (the best any model can do against this much chance), with a reliability table."""
    if not records:
        return {"n": 0}
    hub_p = [r[0] for r in records]
    true_p = [r[1] for r in records]
    outcomes = [r[2] for r in records]
    rate = sum(outcomes) / len(outcomes)
    score, base = brier(hub_p, outcomes), brier([rate] * len(outcomes), outcomes)
    return {
        "n": len(records),
        "base_rate": rate,
        "brier": score,
        "brier_base_rate": base,
        "brier_true_routine": brier(true_p, outcomes),
        "skill_vs_base_rate": 1 - score / base if base else 0.0,
        "reliability": reliability(hub_p, outcomes),
    }


def _planner(t: Tally) -> dict[str, Any]:
    first = max(1, t.first)
    return {
        "first_attempts": t.first,
        "first_attempts_failed": t.first_failed,
        "first_attempt_failure_rate": t.first_failed / first,
        "attempts": t.attempts,
        "attempts_failed": t.failed,
        "messages": t.messages,
        "messages_per_parcel": t.messages / first,
        "questions": t.questions,
        "customer_replies": t.replies,
        "hub_answers_to_replies": t.acks,
        "answers_without_webhook": t.answers_unheard,
        "answers": dict(t.answers),
        "weekly": t.weekly,
        "seconds": round(t.seconds, 1),
    }


def build_report(pop: Population, opts: Options, start: date, baseline: Tally, aware: Tally) -> dict[str, Any]:
    base, hub = _planner(baseline), _planner(aware)
    parcels = max(1, aware.first)
    base_rate, hub_rate = base["first_attempt_failure_rate"], hub["first_attempt_failure_rate"]
    reduction = 1 - hub_rate / base_rate if base_rate else 0.0
    extra = (aware.questions + aware.acks) / parcels
    avoided = baseline.first_failed - aware.first_failed
    oracle_first, oracle_failed = oracle_failures(pop, opts.warmup, opts.weeks)
    return {
        "seed": opts.seed,
        "customers": opts.customers,
        "weeks": opts.weeks,
        "warmup_weeks": opts.warmup,
        "calendar_start": start.isoformat(),
        "responses": asdict(opts.responses),
        "population": {
            "archetypes": dict(Counter(c.archetype for c in pop.customers)),
            "areas": dict(Counter(c.area for c in pop.customers)),
            "parcels": len(pop.parcels),
            # The greedy planner given the true routines, no questions (docs/first-attempt.md).
            "true_routine_planner_failure_rate": oracle_failed / max(1, oracle_first),
        },
        "baseline": base,
        "hub_aware": hub,
        "hub_settings": dict(opts.hub_env),
        # The hub's p_home for the windows each planner attempted: the baseline's random ones,
        # and the hub-aware planner's chosen ones (the best by the hub's own estimate).
        "calibration": calibration(baseline.calibration),
        "calibration_chosen_windows": calibration(aware.calibration),
        "first_attempt": {
            "parcels": aware.first,
            "baseline_failure_rate": base_rate,
            "hub_aware_failure_rate": hub_rate,
            "relative_reduction": reduction,
            "extra_messages_per_parcel": extra,
            "customer_replies_per_parcel": aware.replies / parcels,
            "failed_first_attempts_avoided": avoided,
            "saving_usd": avoided * COST_PER_FAILED_ATTEMPT,
            "saving_per_1000_parcels_usd": avoided * COST_PER_FAILED_ATTEMPT * 1000 / parcels,
            "target": {"reduction_at_least": TARGET_REDUCTION, "extra_messages_at_most": TARGET_MESSAGES},
            "target_met": reduction >= TARGET_REDUCTION and extra <= TARGET_MESSAGES,
        },
    }


def print_report(r: dict[str, Any]) -> None:
    f = r["first_attempt"]
    if r["hub_settings"]:
        print(f"\nhub settings: {r['hub_settings']}")
    print(f"\nevaluated weeks {r['warmup_weeks'] + 1}-{r['weeks']}: {f['parcels']} parcels (seed {r['seed']})")
    print(f"{'':<34}{'baseline':>10}{'hub-aware':>11}")
    print(f"{'failed first attempts':<34}{f['baseline_failure_rate']:>10.1%}{f['hub_aware_failure_rate']:>11.1%}")
    b, h = r["baseline"], r["hub_aware"]
    oracle = r["population"]["true_routine_planner_failure_rate"]
    print(f"(the same greedy planner knowing the true routines, no questions: {oracle:.1%})")
    print(f"{'messages per parcel (all)':<34}{b['messages_per_parcel']:>10.2f}{h['messages_per_parcel']:>11.2f}")
    print(
        f"relative reduction {f['relative_reduction']:.1%};"
        f" extra messages per parcel {f['extra_messages_per_parcel']:.2f}"
        f" (questions {h['questions']}, answers to replies {h['hub_answers_to_replies']});"
        f" customer replies per parcel {f['customer_replies_per_parcel']:.2f}"
    )
    print(f"answers applied: {h['answers']}; without a webhook: {h['answers_without_webhook']}")
    print(
        f"failed first attempts avoided {f['failed_first_attempts_avoided']}: ${f['saving_usd']:,.0f}"
        f" (${f['saving_per_1000_parcels_usd']:,.0f} per 1,000 parcels at $17.50)"
    )
    for title, c in (
        ("the baseline's random windows", r["calibration"]),
        ("the hub-aware planner's chosen windows", r["calibration_chosen_windows"]),
    ):
        _print_calibration(title, c)
    verdict = "met" if f["target_met"] else "NOT met"
    print(f"\ntarget (failed first attempts down by a third, at most 0.3 extra messages per parcel): {verdict}")


def _print_calibration(title: str, c: dict[str, Any]) -> None:
    if not c.get("n"):
        return
    print(
        f"\ncalibration, {title}, {c['n']} attempts: Brier {c['brier']:.4f}; base rate {c['base_rate']:.3f}:"
        f" {c['brier_base_rate']:.4f}; the true routine: {c['brier_true_routine']:.4f}"
    )
    print(f"{'p bin':<12}{'n':>6}{'mean p':>9}{'observed':>10}")
    for row in c["reliability"]:
        print(f"{row['from']:.1f}-{row['to']:.1f}{'':<5}{row['n']:>6}{row['mean_p']:>9.3f}{row['observed']:>10.3f}")
