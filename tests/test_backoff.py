"""Backoff: equal-jitter exponential delays, capped, and reset when the link works again."""

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.backoff import Backoff


def delays(backoff, count):
    return [backoff.next() for _ in range(count)]


def test_with_no_jitter_delays_are_half_of_each_doubling_step():
    assert delays(Backoff(1, 100, rng=lambda: 0.0), 5) == [0.5, 1, 2, 4, 8]


def test_with_full_jitter_delays_are_the_whole_step():
    assert delays(Backoff(1, 100, rng=lambda: 1.0), 5) == [1, 2, 4, 8, 16]


def test_the_step_is_capped_at_the_maximum():
    assert delays(Backoff(1, 10, rng=lambda: 1.0), 7) == [1, 2, 4, 8, 10, 10, 10]
    assert delays(Backoff(1, 10, rng=lambda: 0.0), 7)[-1] == 5


def test_jitter_draws_from_the_upper_half_of_the_step():
    draws = iter([0.0, 0.5, 0.25])
    assert delays(Backoff(4, 100, rng=lambda: next(draws)), 3) == [2 + 0, 4 + 2, 8 + 2]


def test_reset_starts_again_from_the_minimum():
    backoff = Backoff(2, 60, rng=lambda: 1.0)
    delays(backoff, 4)
    assert backoff.failures == 4
    backoff.reset()
    assert backoff.failures == 0
    assert delays(backoff, 2) == [2, 4]


def test_failures_count_each_delay_handed_out():
    backoff = Backoff(1, 5)
    assert backoff.failures == 0
    delays(backoff, 3)
    assert backoff.failures == 3


def test_thousands_of_failures_stay_at_the_cap_without_overflow():
    backoff = Backoff(0.001, 300, rng=lambda: 1.0)
    assert list(itertools.islice(iter(backoff.next, None), 5000))[-1] == 300


def test_default_rng_spreads_a_fleet_within_the_step():
    first = [Backoff(10, 100).next() for _ in range(200)]
    assert all(5 <= d <= 10 for d in first)
    assert len(set(first)) > 150


@pytest.mark.parametrize(("minimum", "maximum"), [(0, 10), (-1, 10), (5, 4)])
def test_an_empty_or_inverted_range_is_refused(minimum, maximum):
    with pytest.raises(ValueError, match="minimum_s <= maximum_s"):
        Backoff(minimum, maximum)


@given(
    minimum=st.floats(min_value=1e-3, max_value=1e3),
    factor=st.floats(min_value=1, max_value=1e4),
    draws=st.lists(st.floats(min_value=0, max_value=1, exclude_max=True), min_size=1,
                   max_size=40),
)
def test_every_delay_lies_in_half_to_all_of_its_capped_step(minimum, factor, draws):
    maximum = minimum * factor
    rng = iter(draws)
    backoff = Backoff(minimum, maximum, rng=lambda: next(rng))
    for n in range(len(draws)):
        step = min(maximum, minimum * 2**n)
        delay = backoff.next()
        assert step / 2 <= delay <= step
        assert delay <= maximum
