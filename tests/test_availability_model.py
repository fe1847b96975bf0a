"""The availability model's arithmetic (hub.availability_model): properties over any evidence,
and where windows fall among the blocks, DST nights included."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from hub.availability_model import (
    GLOBAL_AREA,
    Counts,
    Observation,
    area_of,
    bounds,
    decode,
    encode,
    estimate,
    own_counts,
    window_parts,
)
from hub.config_availability import AvailabilitySettings

CFG = AvailabilitySettings()
BLOCKS = bounds(CFG)
NOW_MS = 1_800_000_000_000
BERLIN = ZoneInfo("Europe/Berlin")

cells = st.tuples(st.integers(0, 6), st.integers(0, len(BLOCKS) - 1))
observations = st.builds(
    lambda cell, home, weight, age_days: Observation(
        NOW_MS - int(age_days * 86_400_000), home, "a", ((cell[0], cell[1], weight),)
    ),
    cells,
    st.booleans(),
    st.floats(0.01, 1.0),
    st.floats(0, 1000),
)


@st.composite
def pools(draw: st.DrawFn) -> Counts:
    counts = Counts(defaultdict(float), defaultdict(float))
    for cell in draw(st.lists(cells, max_size=10)):
        n = draw(st.floats(0, 1000))
        counts.n[cell] = n
        counts.h[cell] = draw(st.floats(0, n)) if n else 0.0
    return counts


@given(
    st.lists(observations, max_size=30),
    pools(),
    pools(),
    cells,
    st.integers(1, 5),
    st.sampled_from([0.0, 30.0, 180.0]),
)
def test_p_home_stays_a_probability_and_grows_with_each_home_observation(
    seen: list[Observation], area: Counts, everyone: Counts, cell: tuple[int, int], more: int, half_life: float
) -> None:
    cfg = AvailabilitySettings(half_life_days=half_life)
    before = estimate(cfg, own_counts(seen, NOW_MS, half_life), area, everyone, len(BLOCKS))
    home = [Observation(NOW_MS, True, "a", ((cell[0], cell[1], 1.0),)) for _ in range(more)]
    after = estimate(cfg, own_counts(seen + home, NOW_MS, half_life), area, everyone, len(BLOCKS))
    for wd in range(7):
        for b in range(len(BLOCKS)):
            assert 0.0 <= before.p[(wd, b)] <= 1.0 and 0.0 <= after.p[(wd, b)] <= 1.0
            assert after.p[(wd, b)] >= before.p[(wd, b)] - 1e-12  # never lower anywhere
    assert after.p[cell] > before.p[cell]
    assert abs(after.evidence[cell] - before.evidence[cell] - more) < 1e-9


@given(st.lists(observations, min_size=1, max_size=5))
def test_a_stored_observation_reads_back_the_same(seen: list[Observation]) -> None:
    for obs in seen:
        back = decode(encode(obs))
        assert back is not None and back.at_ms == obs.at_ms and back.home == obs.home and back.area == obs.area
        assert [(wd, b) for wd, b, _ in back.parts] == [(wd, b) for wd, b, _ in obs.parts]
        assert abs(back.parts[0][2] - obs.parts[0][2]) < 1e-6


@given(st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1)), st.integers(0, 3 * 24 * 60))
def test_a_windows_shares_sum_to_one(start: datetime, minutes: int) -> None:
    first = start.replace(tzinfo=UTC)
    parts = window_parts(first, first + timedelta(minutes=minutes), BERLIN, BLOCKS)
    assert not parts or abs(sum(share for _, _, share in parts) - 1) < 1e-9
    assert all(0 < share <= 1 for _, _, share in parts)


def test_a_window_is_split_by_the_time_spent_in_each_block() -> None:
    start = datetime(2026, 11, 24, 16, 0, tzinfo=BERLIN)  # Tuesday 16:00-18:00
    assert window_parts(start, start + timedelta(hours=2), BERLIN, BLOCKS) == [(1, 2, 0.5), (1, 3, 0.5)]
    assert window_parts(start, start, BERLIN, BLOCKS) == [(1, 2, 1.0)]  # an instant: its block
    night = datetime(2026, 11, 24, 23, 0, tzinfo=BERLIN)
    assert window_parts(night, night + timedelta(hours=8), BERLIN, BLOCKS) == []


def test_block_edges_follow_the_local_clock_across_a_dst_change() -> None:
    # Sunday 29 March 2026: Berlin's clocks go from 02:00 to 03:00; 08:00 local is 06:00 UTC.
    start = datetime(2026, 3, 29, 6, 0, tzinfo=UTC)
    assert window_parts(start, start + timedelta(hours=3), BERLIN, BLOCKS) == [(6, 0, 1.0)]


def test_the_area_is_the_upstreams_else_the_grid_cell_else_everyones() -> None:
    assert area_of(" 10115 ", 52.5, 13.4, 0.05) == "10115"
    assert area_of("a|b;c*", None, None, 0.05) == "a_b_c_"
    assert area_of(None, 52.5301, 13.4012, 0.05) == area_of(None, 52.5302, 13.4013, 0.05) == "grid:52.5000:13.4000"
    assert area_of(None, 52.5301, 13.4012, 0) == area_of(None, None, None, 0.05) == GLOBAL_AREA
