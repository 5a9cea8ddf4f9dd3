"""thyrocam.metrics: the binomial test that decides whether a descriptor head is trusted."""

from __future__ import annotations

import itertools

import pytest

from thyrocam.metrics import beats_rate, binomial_tail


def test_binomial_tail_counts_every_outcome() -> None:
    # Brute force over all 2^8 outcomes of 8 draws at p = 0.3.
    n, p = 8, 0.3
    for k in range(n + 2):
        mass = sum(
            p ** sum(draw) * (1 - p) ** (n - sum(draw))
            for draw in itertools.product((0, 1), repeat=n)
            if sum(draw) >= k
        )
        assert binomial_tail(k, n, p) == pytest.approx(mass, abs=1e-12)
    assert binomial_tail(0, n, p) == 1.0 and binomial_tail(n + 1, n, p) == 0.0


@pytest.mark.parametrize(
    ("correct", "n", "baseline", "expected"),
    [
        (20, 30, 0.5, True),  # P(>= 20 of 30) = 0.049
        (19, 30, 0.5, False),  # P(>= 19 of 30) = 0.100
        (16, 30, 0.5, False),  # a one-frame edge
        (10, 21, 0.43, False),  # the DDTI run's echogenicity head: 48 % vs 43 %
        (15, 33, 0.42, False),  # and its margins head: 45 % vs 42 %
        (30, 30, 0.9, True),
        (0, 0, 0.5, False),  # nothing held out: nothing shown
    ],
)
def test_beats_rate_needs_more_than_a_one_frame_edge(
    correct: int, n: int, baseline: float, expected: bool
) -> None:
    accuracy = correct / n if n else 0.0
    assert beats_rate(accuracy=accuracy, baseline=baseline, n=n) is expected
